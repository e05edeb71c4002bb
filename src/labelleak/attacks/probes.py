"""Baselines that probe the target with chosen inputs: ``noise-histogram`` and ``probe-drop``.

* ``noise-histogram`` (black box): query ``queries`` uniform-noise images and count which class
  the target predicts; a forgotten class is (almost) never predicted. Ties between
  never-predicted classes break by the mean probability the class receives.
* ``probe-drop`` (Hu et al., "Learn What You Want to Unlearn", IEEE S&P 2024): with the ORIGINAL
  model in hand (white box), craft per-class probes that the original predicts with very high
  confidence (the gradient inversion of ``invert-white`` run on the original), query the
  unlearned target with them, and name the class whose own-class confidence drops most. It
  needs more knowledge than the inversion attacks (the pre-unlearning model); its queries are
  the probes sent to the target.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from labelleak.attacks.base import (
    Attack,
    AttackConfig,
    AttackerKnowledge,
    AttackResult,
    register_attack,
)
from labelleak.attacks.inversion.black_box import query_probabilities
from labelleak.attacks.inversion.criteria import (
    log_odds_from_logits,
    log_odds_from_probs,
    robust_outliers,
)
from labelleak.attacks.inversion.white_box import (
    GradientInversionConfig,
    Inversion,
    invert_classes,
)
from labelleak.attacks.rules import top_classes


class NoiseHistogramConfig(AttackConfig):
    """noise-histogram settings."""

    queries: int = Field(
        1000, ge=1, description="uniform-noise images queried (total over all classes)"
    )
    never_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="'never' rule: classes predicted on at most this fraction of the noise",
    )


def per_rule(
    attack: Attack,
    named: dict[str, tuple[int, ...]],
    scores: np.ndarray,
    queries: int,
    seconds: float,
    details: dict[str, Any],
) -> list[AttackResult]:
    """One :class:`AttackResult` per rule of ``attack``, naming ``named[rule]``."""
    return [
        AttackResult(
            attack=attack.name,
            rule=rule,
            predicted=named[rule],
            scores=scores,
            queries=queries,
            seconds=seconds,
            details=details,
        )
        for rule in attack.rules
    ]


@register_attack("noise-histogram")
class NoiseHistogram(Attack):
    """The class the target least predicts on uniform noise (black box, no data)."""

    Config = NoiseHistogramConfig
    requires = frozenset({"query"})
    rules = ("top", "never")
    summary = "least-predicted class on uniform-noise queries (black-box baseline)"

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        query = knowledge.need("query")
        config: NoiseHistogramConfig = self.config  # type: ignore[assignment]
        started = time.perf_counter()
        before = query.queries
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand((config.queries, *knowledge.input_shape), generator=generator)
        probs = query_probabilities(query, noise).double()
        k = knowledge.num_classes
        counts = torch.bincount(probs.argmax(dim=1), minlength=k).double()
        mean_prob = probs.mean(dim=0)
        # Counts are whole numbers and mean probabilities lie in [0, 1): adding them breaks
        # count ties by probability without ever overturning a count difference.
        scores = -(counts + mean_prob * (1 - 1e-9)).numpy()
        never = counts <= config.never_fraction * config.queries
        named = {
            "top": top_classes(scores, knowledge.forget_count),
            "never": tuple(int(c) for c in torch.nonzero(never).flatten()),
        }
        details = {"counts": counts.numpy(), "mean_prob": mean_prob.numpy()}
        seconds = time.perf_counter() - started
        return per_rule(self, named, scores, query.queries - before, seconds, details)


class ProbeDropConfig(GradientInversionConfig):
    """probe-drop: the probes' gradient inversion (on the original) and the drop rule."""

    restarts: int = Field(8, ge=1, description="probes per class (one query each)")
    cap: float = Field(
        25.0, gt=0, description="log-odds (nats) are capped here before drops are taken"
    )
    drop_z: float = Field(3.5, gt=0, description="'drop' rule: robust z-score of the drop")
    drop_min_gap: float = Field(
        3.0, gt=0, description="'drop' rule: least excess of a drop over the median (nats)"
    )


@register_attack("probe-drop")
class ProbeDrop(Attack):
    """Hu et al. (S&P 2024): per-class confidence drop from the original to the target."""

    Config = ProbeDropConfig
    requires = frozenset({"original", "query"})
    rules = ("top", "drop")
    summary = "confidence drop of original-crafted probes on the target (needs the original)"

    def __init__(self, config: ProbeDropConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        # Probes depend only on the original (and the seed): crafted once, reused by every
        # target unlearned from it.
        self._probes: dict[tuple[int, int], tuple[nn.Module, Inversion, torch.Tensor]] = {}

    def probes(
        self, original: nn.Module, num_classes: int, input_shape: tuple[int, int, int], seed: int
    ) -> tuple[Inversion, torch.Tensor]:
        """The probes crafted on ``original`` and its own-class log-odds on them ``(K * R,)``."""
        key = (id(original), seed)
        cached = self._probes.get(key)
        if cached is None or cached[0] is not original:
            config: ProbeDropConfig = self.config  # type: ignore[assignment]
            crafted = invert_classes(original, num_classes, input_shape, config, seed)
            labels = torch.arange(num_classes).repeat_interleave(config.restarts)
            device = next(original.parameters()).device
            with torch.no_grad():
                logits = original(crafted.restarts.flatten(0, 1).to(device)).double().cpu()
            cached = (original, crafted, log_odds_from_logits(logits, labels))
            self._probes[key] = cached
        return cached[1], cached[2]

    def prepare(self, knowledge: AttackerKnowledge, seed: int = 0) -> None:
        original = knowledge.need("original")
        self.probes(original, knowledge.num_classes, knowledge.input_shape, seed)

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        original, query = knowledge.need("original", "query")
        config: ProbeDropConfig = self.config  # type: ignore[assignment]
        started = time.perf_counter()
        k, r = knowledge.num_classes, config.restarts
        crafted, before_odds = self.probes(original, k, knowledge.input_shape, seed)
        probes = crafted.restarts.flatten(0, 1)
        labels = torch.arange(k).repeat_interleave(r)
        used = query.queries
        target_probs = query_probabilities(query, probes)
        after_odds = log_odds_from_probs(target_probs, labels)
        # Capping both sides keeps a model's overall logit scale from posing as a drop.
        drop = (before_odds.clamp(max=config.cap) - after_odds.clamp(max=config.cap)).view(k, r)
        scores = drop.mean(dim=1).numpy()
        own_prob = target_probs.double().gather(1, labels.view(-1, 1)).view(k, r).mean(dim=1)
        named = {
            "top": top_classes(scores, knowledge.forget_count),
            "drop": tuple(
                sorted(
                    set(robust_outliers(scores, config.drop_z, config.drop_min_gap))
                    | {int(c) for c in torch.nonzero(own_prob < 0.5).flatten()}
                )
            ),
        }
        details = {
            "prototypes": crafted.prototypes,
            "original_log_odds": before_odds.view(k, r),
            "target_log_odds": after_odds.view(k, r),
            "target_own_prob": own_prob.numpy(),
        }
        queries = query.queries - used
        seconds = time.perf_counter() - started
        return per_rule(self, named, scores, queries, seconds, details)
