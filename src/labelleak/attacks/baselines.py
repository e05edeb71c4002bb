"""Baselines that need the same or less knowledge than the attacks, reported beside them.

* ``chance``: classes drawn at random (no knowledge).
* ``head-bias``: the class with the lowest classifier bias (white box).
* ``head-norm``: the class with the smallest classifier row norm (white box).
* ``absent-class``: the classes missing from the attacker's own data; the trivial answer by
  elimination when that data covers every retained class.
* ``data-peak``: among the classes missing from the attacker's own data, the one the target is
  least confident of on any of those images (query access and the attacker's data: param-dot's
  knowledge less the white box). A forgotten class loses its most confident images; a retained
  class the attacker lacks still wins some of them (README, parameter attacks).
* ``unrelated-histogram``: the class the target least often predicts on unrelated data, ties
  broken by its mean probability (query access only). With ``ranks: 2`` a class is counted
  wherever it is among the target's two most probable classes: a minimally unlearned class
  (neg-grad stops once the forget data is misclassified) keeps some top-1 wins but loses its
  runner-up places (README, parameter attacks).

Each scores every class (higher = more likely forgotten) and decides with the generic rules of
:mod:`labelleak.attacks.rules`: ``top`` names as many classes as the attacker is told were
forgotten, ``kmeans`` and ``gap`` the classes that stand out (possibly none).
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from labelleak.attacks.base import (
    Attack,
    AttackConfig,
    AttackerKnowledge,
    AttackResult,
    register_attack,
)
from labelleak.attacks.inversion.criteria import class_log_odds
from labelleak.attacks.parameter.diff import unrelated_data
from labelleak.attacks.parameter.dot import attacker_data
from labelleak.attacks.rules import (
    NO_CLASS_ABSENT,
    ClassFeatures,
    Decision,
    SetRuleConfig,
    decide,
    name_nothing,
    to_results,
    top_classes,
)
from labelleak.errors import LabelleakError
from labelleak.models.base import linear_head
from labelleak.utils import content_hash


class ScoreBaseline(Attack):
    """A baseline defined by one score per class; subclasses implement :meth:`score`."""

    Config = SetRuleConfig
    rules = ("top", "kmeans", "gap")

    def score(self, knowledge: AttackerKnowledge, seed: int) -> tuple[np.ndarray, int]:
        """Scores ``(K,)`` (higher = more likely forgotten) and the queries spent."""
        raise NotImplementedError

    def candidates(self, knowledge: AttackerKnowledge) -> np.ndarray | None:
        """``(K,)`` bool: the classes the rules may name (default: all)."""
        return None

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        started = time.perf_counter()
        candidates = self.candidates(knowledge)
        if candidates is not None and not candidates.any():
            # Nothing may be named (e.g. the attacker holds data of every class): no query spent.
            return name_nothing(self.name, self.rules, knowledge.num_classes, NO_CLASS_ABSENT)
        scores, queries = self.score(knowledge, seed)
        features = ClassFeatures.from_score(scores, candidates)
        config = self.config
        assert isinstance(config, SetRuleConfig)
        decisions = decide(
            self.rules, features, settings=config, seed=seed, count=knowledge.forget_count
        )
        return to_results(
            self.name, decisions, features, seconds=time.perf_counter() - started, queries=queries
        )


def _head(knowledge: AttackerKnowledge) -> tuple[np.ndarray, np.ndarray]:
    return linear_head(knowledge.need("white_box"), "this baseline")


@register_attack("chance")
class Chance(Attack):
    Config = AttackConfig
    requires = frozenset()
    rules = ("top",)
    summary = "classes drawn at random"
    per_trial = True

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        # The harness names each trial in ``extra["trial"]``, so targets sharing a seed still
        # get independent draws (a guess fixed per seed would be one draw repeated n times).
        trial = int(content_hash([str(knowledge.extra.get("trial", ""))])[:8], 16)
        scores = np.random.default_rng([seed, trial]).random(knowledge.num_classes)
        features = ClassFeatures.from_score(scores)
        decisions = decide(self.rules, features, count=knowledge.forget_count)
        return to_results(self.name, decisions, features)


@register_attack("head-bias")
class HeadBias(ScoreBaseline):
    requires = frozenset({"white_box"})
    summary = "the class with the lowest classifier bias"

    def score(self, knowledge: AttackerKnowledge, seed: int) -> tuple[np.ndarray, int]:
        return -_head(knowledge)[1], 0


@register_attack("head-norm")
class HeadNorm(ScoreBaseline):
    requires = frozenset({"white_box"})
    summary = "the class with the smallest classifier row norm"

    def score(self, knowledge: AttackerKnowledge, seed: int) -> tuple[np.ndarray, int]:
        return -np.linalg.norm(_head(knowledge)[0], axis=1), 0


class UnrelatedHistogramConfig(SetRuleConfig):
    ranks: int = Field(
        1,
        ge=1,
        description="count a class on each image where it is among the target's this many most "
        "probable classes; 1 is the plain top-1 histogram, 2 also counts runner-up places",
    )


@register_attack("unrelated-histogram")
class UnrelatedHistogram(ScoreBaseline):
    Config = UnrelatedHistogramConfig
    requires = frozenset({"query", "unrelated_data"})
    summary = "the class the target least predicts on unrelated data"

    def score(self, knowledge: AttackerKnowledge, seed: int) -> tuple[np.ndarray, int]:
        assert knowledge.query is not None
        x = unrelated_data(knowledge)
        config = self.config
        assert isinstance(config, UnrelatedHistogramConfig)
        if config.ranks >= knowledge.num_classes:
            raise LabelleakError(
                f"unrelated-histogram ranks must be below the number of classes "
                f"({knowledge.num_classes}); got {config.ranks}"
            )
        probs = knowledge.query(x).double().numpy()
        ranked = np.argsort(-probs, axis=1, kind="stable")[:, : config.ranks]
        counts = np.bincount(ranked.ravel(), minlength=knowledge.num_classes)
        # Mean probability is below 1, so it only breaks ties between equal counts.
        return -(counts + probs.mean(axis=0)), len(x)


@register_attack("data-peak")
class DataPeak(ScoreBaseline):
    requires = frozenset({"query", "attacker_data"})
    summary = "the class the attacker lacks that the target is least sure of on the attacker's data"

    def candidates(self, knowledge: AttackerKnowledge) -> np.ndarray:
        # With data of every class nothing is a candidate, and the run names nothing (as
        # param-dot concludes; absent-class is the answer in that setting).
        _, labels = attacker_data(knowledge)
        return ~np.isin(np.arange(knowledge.num_classes), labels.numpy())

    def score(self, knowledge: AttackerKnowledge, seed: int) -> tuple[np.ndarray, int]:
        assert knowledge.query is not None
        images, _ = attacker_data(knowledge)
        # Log-odds, so confident classes are told apart past p = 0.99.
        peak = class_log_odds(knowledge.query(images)).max(dim=0).values.numpy()
        return -peak, len(images)


@register_attack("absent-class")
class AbsentClass(Attack):
    Config = AttackConfig
    requires = frozenset({"attacker_data"})
    rules = ("set", "top")
    summary = "the classes missing from the attacker's own data (set), or some of them (top)"

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        assert knowledge.attacker_data is not None
        labels = knowledge.attacker_data[1]
        if len(labels) == 0:
            raise LabelleakError("the attacker's data is empty")
        absent = ~np.isin(np.arange(knowledge.num_classes), labels.numpy())
        # A random score among the absent classes: "top" is a fair guess among them (none when
        # nothing is absent).
        scores = np.where(absent, 1.0 + np.random.default_rng(seed).random(len(absent)), 0.0)
        features = ClassFeatures.from_score(scores)
        named = tuple(int(c) for c in np.flatnonzero(absent))
        decisions = {
            "set": Decision(named),
            "top": Decision(top_classes(scores, knowledge.forget_count, absent)),
        }
        return to_results(self.name, decisions, features)
