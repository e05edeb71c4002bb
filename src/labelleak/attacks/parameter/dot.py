"""A1 ``param-dot``: the target's classifier rows against a head trained on the attacker's data.

The attacker holds labelled data of some retained classes. An auxiliary head in the target's
feature space (:mod:`.auxiliary`) is trained on it; its rows for classes the attacker has no data
of are "trained only to stay low", which is what unlearning does to a forgotten row. Only classes
absent from the attacker's data are candidates (a class it holds data of was retained, by the
threat model); among them the forgotten rows are the ones most similar to their auxiliary rows.

With data of every retained class, a single candidate is left: the answer is then the trivial
``absent-class`` baseline in disguise, and the attack is only informative with partial coverage.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field

from labelleak.attacks.base import AttackerKnowledge, AttackResult, register_attack
from labelleak.attacks.parameter.auxiliary import (
    ParameterAttack,
    ParameterAttackConfig,
    build_auxiliaries,
    check_images,
    classifier_params,
    validated_target,
)
from labelleak.attacks.parameter.features import class_features
from labelleak.attacks.rules import (
    NO_CLASS_ABSENT,
    ClassFeatures,
    LabelledFeatures,
    name_nothing,
)
from labelleak.errors import LabelleakError
from labelleak.models.base import ImageClassifier


class ParamDotConfig(ParameterAttackConfig):
    score: str | tuple[str, ...] = Field(
        ("cos", "-diff_norm", "-target_peak"),
        description="primary per-class score: feature names (see features.FEATURE_NAMES), each "
        "prefixed with '-' when low values mean forgotten; their standard scores are summed. "
        "Default: a forgotten row points like, and lies close to, a row trained on no sample, "
        "and the target is confident of the class on none of the attacker's images (chosen on "
        "seed 0 of MNIST and Fashion-MNIST, see the README; [cos, -diff_norm] was the former)",
    )


@register_attack("param-dot")
class ParamDot(ParameterAttack):
    Config = ParamDotConfig
    requires = frozenset({"white_box", "attacker_data", "shadows"})
    summary = "target rows vs a head trained on the attacker's data, among the classes it lacks"

    def calibration(self, knowledge: AttackerKnowledge, seed: int) -> list[LabelledFeatures]:
        """Shadow features for the fitted rules, computed once per knowledge setting."""
        x, y = attacker_data(knowledge)
        lacking = ~np.isin(np.arange(knowledge.num_classes), np.unique(y.numpy()))
        if "shadows" not in self.needs() or not lacking.any():
            return []
        return self.calibrated(
            knowledge, lambda: self.shadow_features(knowledge, x, y, int(lacking.sum()), seed)
        )

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        started = time.perf_counter()
        target = validated_target(knowledge)
        x, y = attacker_data(knowledge)
        present = np.unique(y.numpy())
        lacking = ~np.isin(np.arange(knowledge.num_classes), present)
        if not lacking.any():
            # Data of every class: by the threat model nothing can have been forgotten.
            return name_nothing(
                self.name,
                self.rules,
                knowledge.num_classes,
                NO_CLASS_ABSENT,
                seconds=time.perf_counter() - started,
            )
        features = self.features(target, x, y, lacking, seed)
        shadows = self.calibration(knowledge, seed)
        return self.conclude(
            features,
            shadows,
            seed,
            started,
            details={"candidates": int(lacking.sum())},
            count=knowledge.forget_count,
        )

    def features(
        self,
        model: ImageClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        candidates: np.ndarray,
        seed: int,
    ) -> ClassFeatures:
        """Per-class features of ``model`` against a head trained on ``(x, y)``."""
        return self.features_of([(model, x, y, candidates)], seed)[0]

    def features_of(
        self,
        problems: list[tuple[ImageClassifier, torch.Tensor, torch.Tensor, np.ndarray]],
        seed: int,
    ) -> list[ClassFeatures]:
        """:meth:`features` of several ``(model, x, y, candidates)``, auxiliary heads batched."""
        config = self.config
        assert isinstance(config, ParamDotConfig)
        heads = build_auxiliaries(
            [(model, x, y) for model, x, y, _ in problems],
            label_source="given",
            seed=seed,
            **config.auxiliary_kwargs(),
        )
        results = []
        for (model, _, _, candidates), aux in zip(problems, heads, strict=True):
            weight, bias = classifier_params(model)
            results.append(
                class_features(
                    weight,
                    bias,
                    aux,
                    score=config.score,
                    candidates=candidates,
                    contrast=True,
                    use_bias=config.use_bias,
                )
            )
        return results

    def shadow_features(
        self,
        knowledge: AttackerKnowledge,
        x: torch.Tensor,
        y: torch.Tensor,
        lacking: int,
        seed: int,
    ) -> list[LabelledFeatures]:
        """Features of every shadow run, made exactly as for the target.

        A shadow was trained on the attacker's classes ``A``. To mimic the target, where the
        attacker lacks ``lacking`` classes, each shadow's auxiliary head sees the attacker's data
        of ``A`` minus the shadow's forgotten classes minus a random hold-out of retained classes
        (as many as the target's lacking retained classes, keeping at least two classes); its
        candidates are the forgotten plus held-out classes. Classes outside ``A`` were never
        trained by the shadow and are left out (their rows look forgotten but are not).
        """
        trained = np.unique(y.numpy())
        rng = np.random.default_rng(seed)
        problems = []
        truths = []
        for run in self.usable_shadows(knowledge):
            forgotten = np.array(run.forgotten, dtype=int)
            retained = np.setdiff1d(trained, forgotten)
            holdout_size = min(max(lacking - len(forgotten), 0), len(retained) - 2)
            holdout = rng.choice(retained, size=max(holdout_size, 0), replace=False)
            seen = np.setdiff1d(retained, holdout)
            keep = torch.from_numpy(np.isin(y.numpy(), seen))
            candidates = np.isin(np.arange(knowledge.num_classes), np.union1d(forgotten, holdout))
            if not candidates.any():
                continue
            problems.append((run.target, x[keep], y[keep], candidates))
            truths.append(tuple(int(c) for c in forgotten))
        features = self.features_of(problems, seed) if problems else []
        return [LabelledFeatures(f, t) for f, t in zip(features, truths, strict=True)]


def attacker_data(knowledge: AttackerKnowledge) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacker's labelled data, checked for shape, emptiness and label range."""
    x, y = knowledge.need("attacker_data")
    check_images(x, knowledge.input_shape, "the attacker's data")
    if y.ndim != 1 or len(y) != len(x):
        raise LabelleakError(f"the attacker's labels must have shape ({len(x)},)")
    if int(y.min()) < 0 or int(y.max()) >= knowledge.num_classes:
        raise LabelleakError(f"the attacker's labels must lie in 0..{knowledge.num_classes - 1}")
    return x, y.long()
