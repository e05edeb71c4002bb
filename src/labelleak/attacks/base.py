"""What every label-leakage attack shares: the attacker's knowledge, query counting, results.

An attack declares the knowledge it needs (:attr:`Attack.requires`) and receives an
:class:`AttackerKnowledge` holding only what its threat model grants; :func:`restrict` builds that
view, so a black-box attack never sees the model object, only a :class:`QueryFunction` that
counts every input it is asked about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from labelleak.errors import LabelleakError, unknown_choice
from labelleak.models.base import ImageClassifier
from labelleak.registry import ComponentConfig, Registry

T = TypeVar("T")

#: The kinds of knowledge an attack may require.
KNOWLEDGE_KINDS = ("white_box", "query", "attacker_data", "unrelated_data", "original", "shadows")


class QueryBudgetExceeded(LabelleakError):
    """Raised when a black-box attack asks for more inputs than its budget allows."""


class QueryFunction:
    """Black-box access: maps images ``(N, C, H, W)`` in ``[0, 1]`` to probabilities ``(N, K)``.

    Every input counts as one query, whether it arrives alone or in a batch. With a ``budget``,
    a call that would exceed it raises :class:`QueryBudgetExceeded` before the model runs.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        input_shape: tuple[int, int, int],
        num_classes: int,
        budget: int | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 1024,
    ) -> None:
        if budget is not None and budget < 1:
            raise LabelleakError(f"query budget must be at least 1, got {budget}")
        self._model = model
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.budget = budget
        self.queries = 0
        self._device = torch.device(device)
        self._batch_size = batch_size

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise LabelleakError(
                f"queries must have shape (N, {', '.join(map(str, self.input_shape))}); "
                f"got {tuple(x.shape)}"
            )
        if self.budget is not None and self.queries + len(x) > self.budget:
            raise QueryBudgetExceeded(
                f"query budget exhausted: {self.queries} used, {len(x)} more asked, "
                f"budget {self.budget}"
            )
        self.queries += len(x)
        outputs = []
        for chunk in x.split(self._batch_size):
            out = self._model(chunk.to(self._device)).float().cpu()
            outputs.append(out)
        probs = torch.cat(outputs) if outputs else torch.empty(0, self.num_classes)
        if probs.shape[1:] != (self.num_classes,):
            raise LabelleakError(
                f"the model returned outputs of shape {tuple(probs.shape)}; expected (N, "
                f"{self.num_classes}) probabilities"
            )
        return probs


def probabilities_of(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a logits model into the probability function a :class:`QueryFunction` exposes."""

    def query(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return torch.softmax(model(x), dim=1)

    return query


@dataclass(frozen=True)
class ShadowRun:
    """One of the attacker's own experiments, where it knows the answer.

    ``target`` is a model the attacker trained on its own data and unlearned itself (or left
    untouched: ``forgotten == ()``); ``original`` is the shadow before unlearning.
    """

    target: ImageClassifier
    forgotten: tuple[int, ...]
    original: ImageClassifier | None = None
    method: str = ""
    #: The classes the shadow original was trained on (None: every class). A class outside
    #: them looks forgotten without having been unlearned, so fits should leave it out.
    trained_classes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class AttackerKnowledge:
    """Everything an attacker may hold about one target; absent pieces are ``None``.

    * ``white_box``: the target model itself (parameters and gradients).
    * ``query``: output probabilities only, through a counting :class:`QueryFunction`.
    * ``attacker_data``: labelled images ``(N, C, H, W)`` and labels ``(N,)`` of some classes
      the target retained (``attacker_classes`` lists which).
    * ``unrelated_data``: unlabelled images of the same shape from another distribution.
    * ``original``: the model before unlearning (only the prior-art baseline ``probe-drop``).
    * ``shadows``: a callable returning the attacker's own :class:`ShadowRun` list, for fitting
      thresholds and trees; it never sees the target's truth.
    * ``forget_count``: how many classes the attacker is told were forgotten. Only the ``top``
      rules use it (they name that many classes); the set rules decide how many themselves.
    """

    num_classes: int
    input_shape: tuple[int, int, int]
    white_box: ImageClassifier | None = None
    query: QueryFunction | None = None
    attacker_data: tuple[torch.Tensor, torch.Tensor] | None = None
    attacker_classes: tuple[int, ...] | None = None
    unrelated_data: torch.Tensor | None = None
    original: ImageClassifier | None = None
    shadows: Callable[[], Sequence[ShadowRun]] | None = None
    forget_count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.forget_count < self.num_classes:
            raise LabelleakError(
                f"forget_count must lie in 1..{self.num_classes - 1} (at least one class is "
                f"forgotten and one retained); got {self.forget_count}"
            )

    def has(self, kind: str) -> bool:
        return getattr(self, kind) is not None

    def need(self, *kinds: str) -> Any:
        """The piece of knowledge ``kinds[0]`` (or a tuple of all), raising if any is missing."""
        missing = [kind for kind in sorted(kinds) if not self.has(kind)]
        if missing:
            raise LabelleakError(
                f"this attack needs {', '.join(missing)}, which the attacker lacks"
            )
        pieces = tuple(getattr(self, kind) for kind in kinds)
        return pieces[0] if len(pieces) == 1 else pieces


def restrict(knowledge: AttackerKnowledge, kinds: frozenset[str]) -> AttackerKnowledge:
    """A view of ``knowledge`` holding only ``kinds``; raise if one of them is missing."""
    knowledge.need(*kinds)
    dropped = {kind: None for kind in KNOWLEDGE_KINDS if kind not in kinds}
    if "attacker_data" not in kinds:
        dropped["attacker_classes"] = None
    return replace(knowledge, **dropped)


@dataclass(frozen=True)
class AttackResult:
    """What an attack concluded about one target under one decision rule.

    ``predicted`` are the classes named as forgotten (sorted; empty means "nothing was
    forgotten"); ``scores`` ``(K,)`` rank the classes, higher meaning more likely forgotten;
    ``queries`` counts black-box model queries (0 for white-box-only attacks).
    """

    attack: str
    rule: str
    predicted: tuple[int, ...]
    scores: np.ndarray
    queries: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def success(self, forgotten: Sequence[int]) -> bool:
        """Exact identification: the named set equals the true forgotten set."""
        return tuple(sorted(self.predicted)) == tuple(sorted(forgotten))


class AttackConfig(ComponentConfig):
    """Base of every attack's settings (see :class:`ComponentConfig`)."""

    def check_input(self, input_shape: tuple[int, int, int]) -> None:
        """Raise :class:`LabelleakError` when these settings cannot serve inputs of shape
        ``(C, H, W)``; a grid checks this before its first model is trained."""


def check_resolution(resolution: int, input_shape: tuple[int, int, int], full: str = "") -> None:
    """The low-resolution search spaces' shared check: ``resolution`` (a side, in pixels) must
    not exceed the input's smaller side; ``full`` names the setting's no-reduction value."""
    side = min(input_shape[1:])
    if resolution > side:
        raise LabelleakError(
            f"resolution {resolution} is larger than the input ({input_shape[1]}x"
            f"{input_shape[2]}); use at most {side}{full}"
        )


class Attack:
    """A label-leakage attack or baseline. Subclasses set the class attributes and :meth:`run`."""

    name: ClassVar[str]
    Config: ClassVar[type[AttackConfig]] = AttackConfig
    #: Knowledge kinds (see :data:`KNOWLEDGE_KINDS`) the attack needs.
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Decision rules the attack supports and by default reports, one result row each; an
    #: instance reports its config's ``rules`` where the config has that setting.
    rules: tuple[str, ...] = ("top",)
    summary: ClassVar[str] = ""
    #: True when the attack draws afresh per trial (``knowledge.extra["trial"]``), so two
    #: targets that are the same model under the same knowledge may still get different answers.
    per_trial: ClassVar[bool] = False

    def __init__(self, config: AttackConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config object or keyword parameters, not both")
        self.config = config if config is not None else make_attack_config(self.name, params)
        chosen = getattr(self.config, "rules", None)
        if chosen is not None:
            for rule in chosen:
                if rule not in type(self).rules:
                    raise unknown_choice(f"{self.name} rule", rule, type(self).rules)
            self.rules = tuple(chosen)
        self._calibrations: dict[int, tuple[Sequence[ShadowRun], Any]] = {}

    def calibrated(self, knowledge: AttackerKnowledge, compute: Callable[[], T]) -> T:
        """What the attack learns from the attacker's shadow runs, computed once per shadow set.

        Targets attacked under the same knowledge share one shadow list (the harness hands out
        the same list object), so one attack instance reuses its shadow features across them.
        """
        assert knowledge.shadows is not None
        runs = knowledge.shadows()
        cached = self._calibrations.get(id(runs))
        if cached is None or cached[0] is not runs:
            cached = (runs, compute())
            self._calibrations[id(runs)] = cached
        return cached[1]

    def needs(self) -> frozenset[str]:
        """The knowledge this instance needs: :attr:`requires`, less what its rules do not use."""
        if "shadows" in self.requires and not set(self.rules) & set(FIT_ON_SHADOWS):
            return self.requires - {"shadows"}
        return self.requires

    def prepare(self, knowledge: AttackerKnowledge, seed: int = 0) -> None:
        """Do the once-per-knowledge work (shadow calibration) before targets are timed."""

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        """Attack one target; return one :class:`AttackResult` per rule in :attr:`rules`."""
        raise NotImplementedError


#: The parameter attacks' decision rules fit on the attacker's shadow runs (see
#: :mod:`labelleak.attacks.rules`).
SHADOW_RULES = ("youden", "tree")

#: The inversion attacks' threshold and entropy rules with levels fit on shadow runs (see
#: :mod:`labelleak.attacks.inversion.shadow_levels`).
FITTED_LEVEL_RULES = ("threshold-fit", "entropy-fit")

#: Every rule of any attack that is fit on shadow runs: an attack whose rules include none of
#: them does not need shadows.
FIT_ON_SHADOWS = SHADOW_RULES + FITTED_LEVEL_RULES

ATTACKS: Registry[Attack] = Registry("attack")
register_attack = ATTACKS.register
get_attack_class = ATTACKS.get_class


def make_attack_config(name: str, params: dict[str, Any] | None) -> AttackConfig:
    """Validate ``params`` against attack ``name``'s config, with a one-line error."""
    return ATTACKS.make_config(name, params)


def run_attack(
    name: str,
    knowledge: AttackerKnowledge,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> list[AttackResult]:
    """Run attack ``name`` on the part of ``knowledge`` its threat model grants."""
    attack = get_attack_class(name)(make_attack_config(name, params))
    return attack.run(restrict(knowledge, attack.needs()), seed=seed)
