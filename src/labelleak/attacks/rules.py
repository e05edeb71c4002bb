"""Decision rules that turn per-class features into a set of forgotten classes.

Every attack that produces per-class features hands them over as a :class:`ClassFeatures`
(``values`` ``(K, F)``, a primary ``score`` ``(K,)`` where higher means "more like a removed
class", and a boolean ``candidates`` mask of the classes that may be named at all). The rules never
look at how the features were made, so every rule works on every feature set:

* ``top``: the highest-scoring candidates, as many as the attacker is told were forgotten (one
  by default).
* ``kmeans``: two clusters over the candidates' features; the cluster with the higher mean score
  is the forgotten set, unless the two clusters are not separated (then nothing is named). Needs no
  shadows: the separation criterion is a fixed, documented number.
* ``gap``: the candidates above the largest break in their sorted scores, searched among the
  highest half, when that break clearly exceeds the other steps; needs no shadows either.
* ``youden``: a threshold on the score at the maximum of TPR - FPR over the attacker's OWN shadow
  runs; every candidate at or above it is named (possibly none, possibly several).
* ``tree``: a shallow decision tree over the feature rows of the shadow runs' classes, labelled
  forgotten or retained by the shadows' known truth; every candidate it calls forgotten is named.

Fitting (:func:`fit_youden`, :func:`fit_tree`) only ever sees :class:`LabelledFeatures` built
from shadow runs; nothing here can read a target's truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from labelleak.attacks.base import SHADOW_RULES, AttackConfig, AttackResult
from labelleak.errors import LabelleakError, unknown_choice

if TYPE_CHECKING:
    from sklearn.tree import DecisionTreeClassifier

#: Rules that need no shadow runs, and rules fit on shadow runs.
SHADOW_FREE_RULES = ("top", "kmeans", "gap")
RULES = SHADOW_FREE_RULES + SHADOW_RULES

#: Default minimum separation (see :func:`separation`) for ``kmeans`` to name anything. Chosen on
#: never-unlearned digits/MNIST models, where the largest separation of 2-means over the standard
#: scores of ten classes stayed below it, while a removed class usually lies far above.
DEFAULT_MIN_SEPARATION = 4.0

#: Defaults of ``gap`` (see :func:`rule_gap`). Chosen on the param-dot and param-diff scores of
#: MNIST and Fashion-MNIST targets of seed 0 (LeNet-5, 1,000 images per class, the five methods,
#: every single class and ten pairs), then checked on seeds 1 and 2 (README, parameter attacks):
#: level 1.0 named 4-6 points more there, but named something on 27% of pure-noise scores.
DEFAULT_GAP_RATIO = 3.0
DEFAULT_GAP_LEVEL = 1.25


class SetRuleConfig(AttackConfig):
    """Settings of the shadow-free set rules, shared by every attack that reports them."""

    min_separation: float = Field(
        DEFAULT_MIN_SEPARATION,
        ge=0,
        description="kmeans names nothing when the high cluster's separation (standard "
        "deviations of the rest, see rules.separation) is below this",
    )
    gap_ratio: float = Field(
        DEFAULT_GAP_RATIO,
        ge=0,
        description="gap names nothing unless its break is at least this many times the median "
        "of the other steps between sorted candidate scores",
    )
    gap_level: float = Field(
        DEFAULT_GAP_LEVEL,
        ge=0,
        description="gap names nothing unless its break is at least this many standard "
        "deviations of the candidates' scores",
    )


@dataclass(frozen=True)
class ClassFeatures:
    """Per-class features of one model (a target or a shadow).

    ``values`` ``(K, F)`` with column names ``names``; ``score`` ``(K,)``, higher = more likely
    forgotten; ``candidates`` ``(K,)`` bool, the classes a rule may name (all by default).
    """

    values: np.ndarray
    names: tuple[str, ...]
    score: np.ndarray
    candidates: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.score)
        if self.values.ndim != 2 or self.values.shape[0] != k:
            raise LabelleakError(
                f"per-class features must have shape (K, F) with K={k}; "
                f"got {tuple(self.values.shape)}"
            )
        if self.values.shape[1] != len(self.names):
            raise LabelleakError(
                f"{self.values.shape[1]} feature columns but {len(self.names)} names"
            )
        if self.candidates.shape != (k,) or self.candidates.dtype != bool:
            raise LabelleakError(f"candidates must be a boolean mask of shape ({k},)")

    @classmethod
    def from_score(cls, score: np.ndarray, candidates: np.ndarray | None = None) -> ClassFeatures:
        """Features made of the score alone (a baseline's one number per class)."""
        score = np.asarray(score, dtype=np.float64)
        mask = np.ones(len(score), bool) if candidates is None else np.asarray(candidates, bool)
        return cls(score[:, None], ("score",), score, mask)


@dataclass(frozen=True)
class LabelledFeatures:
    """A shadow run's features with its known truth: ``forgotten`` class ids.

    ``known`` ``(K,)`` bool marks the classes whose label is meaningful (e.g. a shadow never
    trained on some class cannot say whether that class behaves forgotten); only candidates that
    are also known enter a fit.
    """

    features: ClassFeatures
    forgotten: tuple[int, ...]
    known: np.ndarray | None = None

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values (M, F), score (M,), labels (M,))`` of the known candidate classes."""
        mask = self.features.candidates.copy()
        if self.known is not None:
            mask &= self.known
        labels = np.isin(np.arange(len(mask)), self.forgotten)
        return self.features.values[mask], self.features.score[mask], labels[mask]


@dataclass(frozen=True)
class Decision:
    """What a rule concluded: ``predicted`` class ids (sorted) and diagnostics."""

    predicted: tuple[int, ...]
    details: dict[str, Any] = field(default_factory=dict)


def _candidate_ids(features: ClassFeatures) -> np.ndarray:
    ids = np.flatnonzero(features.candidates)
    if len(ids) == 0:
        raise LabelleakError("no candidate classes to decide among")
    return ids


def top_classes(
    scores: np.ndarray, count: int = 1, candidates: np.ndarray | None = None
) -> tuple[int, ...]:
    """The ``count`` highest of ``scores`` ``(K,)`` among ``candidates`` ``(K,)`` bool (default
    all), lowest class id first on ties; fewer when there are fewer candidates. Sorted."""
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.arange(len(scores)) if candidates is None else np.flatnonzero(candidates)
    order = ids[np.argsort(-scores[ids], kind="stable")]
    return tuple(sorted(int(c) for c in order[:count]))


def rule_top(features: ClassFeatures, count: int = 1) -> Decision:
    """The ``count`` candidates with the highest scores (lowest class id on ties): the attacker
    is told how many classes were forgotten (one by default)."""
    _candidate_ids(features)  # raises when there is none
    return Decision(top_classes(features.score, count, features.candidates))


def _standardise(values: np.ndarray) -> np.ndarray:
    """Z-score each column ``(M, F)``; constant columns become 0."""
    std = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)


def separation(scores: np.ndarray, forgotten: np.ndarray) -> float:
    """How far the ``forgotten`` cluster's scores lie above the rest's, in units of their spread.

    ``(min score in the forgotten cluster - mean of the rest) / sample std of the rest``, the std
    floored at a tenth of the std of all scores so that near-identical retained scores cannot make
    any gap look infinite. ``scores`` ``(M,)``, ``forgotten`` ``(M,)`` bool. For ten standard
    normal scores (nothing forgotten) the top one's separation exceeds 3.5 in 5% and 4.6 in 1% of
    draws.
    """
    rest = scores[~forgotten]
    if forgotten.all() or len(rest) < 2:
        return 0.0
    spread = max(float(rest.std(ddof=1)), 0.1 * float(scores.std()), 1e-12)
    return float((scores[forgotten].min() - rest.mean()) / spread)


def rule_kmeans(
    features: ClassFeatures,
    *,
    columns: Sequence[str] | None = ("score",),
    min_separation: float = DEFAULT_MIN_SEPARATION,
    max_fraction: float = 0.5,
    seed: int = 0,
) -> Decision:
    """Two-means over the candidates; the higher-scoring cluster is forgotten if it stands out.

    ``columns`` picks the feature columns clustered (``"score"`` is the primary score; ``None``
    uses every column), each standardised over the candidates. The cluster with the higher mean
    score is the forgotten set; nothing is named when it holds more than ``max_fraction`` of the
    candidates (removed classes are the minority) or its :func:`separation` is below
    ``min_separation``.
    """
    ids = _candidate_ids(features)
    if len(ids) < 3:
        return Decision((), {"reason": "fewer than three candidates"})
    scores = features.score[ids]
    matrix = _select(features, columns)[ids]
    matrix = _standardise(matrix)
    if np.allclose(matrix, 0.0):
        return Decision((), {"reason": "candidates are indistinguishable", "separation": 0.0})
    if matrix.shape[1] == 1:
        # Exact 1-D 2-means: the best split of the sorted values, no random restarts needed.
        forgotten = _split_1d(matrix[:, 0])
    else:
        # scikit-learn is imported where used: it is most of the start-up time of a warm rerun.
        from sklearn.cluster import KMeans

        labels = KMeans(2, n_init=10, random_state=seed).fit_predict(matrix)
        high = int(scores[labels == 1].mean() > scores[labels == 0].mean())
        forgotten = labels == high
    sep = separation(scores, forgotten)
    details = {"separation": sep, "cluster_size": int(forgotten.sum())}
    if forgotten.sum() > max_fraction * len(ids) or sep < min_separation:
        return Decision((), details)
    return Decision(tuple(int(c) for c in ids[forgotten]), details)


def largest_break(scores: np.ndarray) -> tuple[np.ndarray, int, float, float]:
    """The largest step between neighbours of ``scores`` ``(M,)`` sorted from high to low.

    Searched among the first ``M // 2`` positions (removed classes are the minority). Returns
    ``(order, cut, step, typical)``: the indices from high to low (stable), the position after
    which the break lies (``order[: cut + 1]`` are above it), its size, and the median of the
    other steps (0 when there are none). Shared by ``gap`` here and the inversions' gap rule.
    """
    order = np.argsort(-scores, kind="stable")
    steps = -np.diff(scores[order])
    cut = int(np.argmax(steps[: len(scores) // 2]))
    others = np.delete(steps, cut)
    typical = float(np.median(others)) if len(others) else 0.0
    return order, cut, float(steps[cut]), typical


def rule_gap(
    features: ClassFeatures,
    *,
    ratio: float = DEFAULT_GAP_RATIO,
    level: float = DEFAULT_GAP_LEVEL,
) -> Decision:
    """The candidates above the largest break in their sorted scores, if the break stands out.

    The candidates' scores are sorted from high to low and the largest step between neighbours
    is searched among the first ``M // 2`` positions (removed classes are the minority); every
    candidate above it is named when the step is at least ``ratio`` times the median of the
    other steps and at least ``level`` standard deviations of the candidates' scores. It asks
    less of a break than ``kmeans`` does (a step large against the scores' typical spacing, not
    against the spread of the rest), so it names more removed classes and more false alarms:
    on ten standard normal scores (nothing removed) it names something in 14% of draws at the
    defaults (27% at ``level`` 1.0, 6% at 1.5, 1% at 2.0; ``ratio`` barely matters), ``kmeans``
    in 5%. A class far below the others is never named.
    """
    ids = _candidate_ids(features)
    if len(ids) < 3:
        return Decision((), {"reason": "fewer than three candidates"})
    scores = features.score[ids]
    order, cut, step, typical = largest_break(scores)
    needed = max(ratio * typical, level * float(scores.std()))
    details = {"break": step, "needed": needed}
    if step <= 0 or step < needed:
        return Decision((), details)
    return Decision(tuple(sorted(int(c) for c in ids[order[: cut + 1]])), details)


def _split_1d(values: np.ndarray) -> np.ndarray:
    """The upper cluster of the within-sum-of-squares-optimal split of ``values`` ``(M,)``."""
    order = np.argsort(values)
    sorted_values = values[order]
    best, best_cost = 1, np.inf
    for cut in range(1, len(values)):
        low, high = sorted_values[:cut], sorted_values[cut:]
        cost = ((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum()
        if cost < best_cost - 1e-12:
            best, best_cost = cut, cost
    upper = np.zeros(len(values), bool)
    upper[order[best:]] = True
    return upper


def _select(features: ClassFeatures, columns: Sequence[str] | None) -> np.ndarray:
    if columns is None:
        return features.values
    parts = []
    for name in columns:
        if name == "score":
            parts.append(features.score[:, None])
        elif name in features.names:
            parts.append(features.values[:, [features.names.index(name)]])
        else:
            raise unknown_choice("feature column", name, ("score", *features.names))
    return np.concatenate(parts, axis=1)


def _pool(shadows: Sequence[LabelledFeatures]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not shadows:
        raise LabelleakError("this rule is fit on shadow runs, and none were given")
    parts = [shadow.rows() for shadow in shadows]
    values = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    labels = np.concatenate([p[2] for p in parts])
    if labels.all() or not labels.any():
        raise LabelleakError(
            "the shadow runs must hold both forgotten and retained classes to fit a rule"
        )
    return values, scores, labels


def shadow_roc_points(shadows: Sequence[LabelledFeatures]) -> dict[str, np.ndarray]:
    """The pooled shadow ``score`` ``(M,)`` and ``forgotten`` ``(M,)`` 0/1 behind a Youden fit.

    Empty arrays when there are no shadows; for reports (ROC curves), never for decisions.
    """
    if not shadows:
        return {"score": np.zeros(0), "forgotten": np.zeros(0, dtype=int)}
    parts = [shadow.rows() for shadow in shadows]
    return {
        "score": np.concatenate([p[1] for p in parts]),
        "forgotten": np.concatenate([p[2] for p in parts]).astype(int),
    }


def fit_youden(shadows: Sequence[LabelledFeatures]) -> float:
    """The score threshold at the maximum of TPR - FPR over the shadows' candidate classes."""
    _, scores, labels = _pool(shadows)
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    # roc_curve's first threshold is +inf (name nothing); keep it finite for reporting.
    return float(min(thresholds[best], np.max(scores) + 1.0))


def rule_youden(features: ClassFeatures, threshold: float) -> Decision:
    """Every candidate whose score reaches ``threshold``."""
    ids = _candidate_ids(features)
    named = ids[features.score[ids] >= threshold]
    return Decision(tuple(int(c) for c in named), {"threshold": threshold})


def fit_tree(
    shadows: Sequence[LabelledFeatures], *, max_depth: int = 3, seed: int = 0
) -> DecisionTreeClassifier:
    """A decision tree classifying feature rows ``(F,)`` as forgotten (1) or retained (0).

    Classes are balanced (one forgotten class per ten would otherwise teach "never forgotten").
    """
    values, _, labels = _pool(shadows)
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(
        max_depth=max_depth, min_samples_leaf=2, class_weight="balanced", random_state=seed
    )
    return tree.fit(values, labels.astype(int))


def rule_tree(features: ClassFeatures, tree: DecisionTreeClassifier) -> Decision:
    """Every candidate the shadow-fit ``tree`` calls forgotten."""
    ids = _candidate_ids(features)
    if tree.n_features_in_ != features.values.shape[1]:
        raise LabelleakError(
            f"the tree was fit on {tree.n_features_in_} features, the target has "
            f"{features.values.shape[1]}"
        )
    forgotten = tree.predict(features.values[ids]) == 1
    return Decision(tuple(int(c) for c in ids[forgotten]), {"depth": int(tree.get_depth())})


def decide(
    rules: Sequence[str],
    target: ClassFeatures,
    shadows: Sequence[LabelledFeatures] | None = None,
    *,
    kmeans_columns: Sequence[str] | None = ("score",),
    settings: SetRuleConfig | None = None,
    tree_depth: int = 3,
    seed: int = 0,
    count: int = 1,
) -> dict[str, Decision]:
    """Apply each of ``rules`` to ``target``; shadow rules are fit once on ``shadows``.

    ``settings`` hold the kmeans and gap parameters (their defaults when ``None``); ``count`` is
    how many classes ``top`` names (the attacker's ``forget_count``).
    """
    settings = settings or SetRuleConfig()
    decisions: dict[str, Decision] = {}
    for rule in rules:
        if rule == "top":
            decisions[rule] = rule_top(target, count)
        elif rule == "kmeans":
            decisions[rule] = rule_kmeans(
                target,
                columns=kmeans_columns,
                min_separation=settings.min_separation,
                seed=seed,
            )
        elif rule == "gap":
            decisions[rule] = rule_gap(target, ratio=settings.gap_ratio, level=settings.gap_level)
        elif rule == "youden":
            decisions[rule] = rule_youden(target, fit_youden(shadows or []))
        elif rule == "tree":
            decisions[rule] = rule_tree(
                target, fit_tree(shadows or [], max_depth=tree_depth, seed=seed)
            )
        else:
            raise unknown_choice("decision rule", rule, RULES)
    return decisions


def to_results(
    attack: str,
    decisions: dict[str, Decision],
    target: ClassFeatures,
    *,
    seconds: float = 0.0,
    queries: int = 0,
    details: dict[str, Any] | None = None,
) -> list[AttackResult]:
    """One :class:`AttackResult` per decision.

    Non-candidate classes score one below the lowest candidate (finite, so rank metrics work).
    """
    floor = target.score[target.candidates].min() - 1.0 if target.candidates.any() else 0.0
    scores = np.where(target.candidates, target.score, floor)
    return [
        AttackResult(
            attack=attack,
            rule=rule,
            predicted=tuple(sorted(decision.predicted)),
            scores=scores.copy(),
            queries=queries,
            seconds=seconds,
            details={**(details or {}), **decision.details},
        )
        for rule, decision in decisions.items()
    ]


#: Why an attack whose candidates are the classes missing from the attacker's data names nothing
#: when none is missing.
NO_CLASS_ABSENT = "no class is absent"


def name_nothing(
    attack: str, rules: Sequence[str], num_classes: int, reason: str, seconds: float = 0.0
) -> list[AttackResult]:
    """Results naming no class under every rule, with ``reason`` in their details (e.g. the
    attacker's data covers every class, so by the threat model nothing can have been forgotten).
    """
    empty = ClassFeatures.from_score(np.zeros(num_classes))
    decisions = {rule: Decision((), {"reason": reason}) for rule in rules}
    return to_results(attack, decisions, empty, seconds=seconds)
