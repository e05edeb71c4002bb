"""Threshold and entropy levels fit on the attacker's own shadow runs (rules ``threshold-fit``
and ``entropy-fit``).

The shadow-free ``threshold`` and ``entropy`` rules use levels chosen once for the default
searches on MNIST and Fashion-MNIST (``alpha``, ``entropy_alpha``); another search, dataset or
kind of model moves the prototypes' confidences and can leave those levels behind. The fitted
rules instead invert the attacker's own shadow models with the very same search, measure every
class exactly as on the target, and take the level that names each shadow's forgotten classes
(none for the untouched shadow) exactly most often
(:func:`~labelleak.attacks.inversion.criteria.fit_level`); where no level does better than any
other, the set level is kept. The target's truth is never read. Only the classes a shadow was
trained on enter its fit: a class it never saw looks forgotten without having been unlearned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from labelleak.attacks.base import Attack, AttackerKnowledge, ShadowRun
from labelleak.attacks.inversion.criteria import (
    ALL_RULES,
    CriteriaConfig,
    FittedLevels,
    fit_level,
    profile_measures,
)
from labelleak.errors import LabelleakError
from labelleak.models.base import ImageClassifier, is_finite

#: Inverts one model with the attack's own search: its profiles ``(K, K)`` (probabilities) and,
#: where exact logits are known, own-class log-odds ``(K,)``, else ``None``.
Invert = Callable[[ImageClassifier], tuple[torch.Tensor, torch.Tensor | None]]


def shadow_measures(
    runs: Sequence[ShadowRun], invert: Invert, cap: float
) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[int, ...]]]:
    """Per usable shadow: log-odds and log-entropies over the classes it was trained on, and
    the positions of its forgotten classes among them.

    Shadows whose unlearning diverged (non-finite parameters) are left out.
    """
    log_odds, log_entropies, truths = [], [], []
    for run in runs:
        if not is_finite(run.target):
            continue
        profiles, exact = invert(run.target)
        c, log_h = profile_measures(profiles, exact, cap)
        known = list(range(len(c))) if run.trained_classes is None else sorted(run.trained_classes)
        position = {k: i for i, k in enumerate(known)}
        outside = [k for k in run.forgotten if k not in position]
        if outside:
            raise LabelleakError(
                f"a shadow run forgot classes {outside} outside the classes it was trained on "
                f"({known}); shadows forget the attacker's own classes"
            )
        if len(known) < 2:
            raise LabelleakError(
                f"a shadow run was trained on classes {known}; fitting a level needs at least two"
            )
        log_odds.append(c[known])
        log_entropies.append(log_h[known])
        truths.append(tuple(sorted(position[k] for k in run.forgotten)))
    if not truths:
        raise LabelleakError(
            "every shadow run diverged while unlearning: no levels can be fit; use the "
            "threshold and entropy rules, whose levels are set"
        )
    return log_odds, log_entropies, truths


def shadow_levels(
    runs: Sequence[ShadowRun], invert: Invert, config: CriteriaConfig
) -> FittedLevels:
    """The fitted rules' levels on the shadow runs ``runs``, starting from ``config``'s.

    ``invert`` runs the attack's own search on one shadow model (see :data:`Invert`).
    """
    log_odds, log_entropies, truths = shadow_measures(runs, invert, config.cap)
    threshold = fit_level("threshold", log_odds, truths, config)
    entropy = fit_level("entropy", log_entropies, truths, config)
    return FittedLevels(threshold.alpha, entropy.entropy_alpha, shadows=len(truths))


class InversionAttack(Attack):
    """What ``invert-white`` and ``invert-black`` share: every rule of
    :data:`~labelleak.attacks.inversion.criteria.ALL_RULES`, and the fitted rules' levels from
    the attacker's shadow runs, inverted by the attack's own :meth:`profile`."""

    rules = ALL_RULES

    def profile(
        self, model: ImageClassifier, knowledge: AttackerKnowledge, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``model``'s profiles ``(K, K)`` and, where exact logits are known, own-class log-odds
        ``(K,)``, by the attack's own search (see :data:`Invert`)."""
        raise NotImplementedError

    def levels(self, knowledge: AttackerKnowledge, seed: int) -> FittedLevels | None:
        """The fitted rules' levels on the attacker's shadows, once per knowledge setting
        (``None`` when no fitted rule is asked for)."""
        if "shadows" not in self.needs():
            return None
        runs = knowledge.need("shadows")()
        config: CriteriaConfig = self.config  # type: ignore[assignment]
        return self.calibrated(
            knowledge,
            lambda: shadow_levels(runs, lambda model: self.profile(model, knowledge, seed), config),
        )

    def prepare(self, knowledge: AttackerKnowledge, seed: int = 0) -> None:
        self.levels(knowledge, seed)
