"""Decision rules on synthetic per-class features where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from labelleak.attacks.rules import (
    ClassFeatures,
    LabelledFeatures,
    decide,
    fit_tree,
    fit_youden,
    rule_kmeans,
    rule_top,
    rule_tree,
    rule_youden,
)
from labelleak.errors import LabelleakError

K = 10


def synthetic(forgotten: tuple[int, ...], seed: int, gap: float = 8.0) -> ClassFeatures:
    """Two features per class: forgotten classes score ``gap`` higher on the first."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(K, 2))
    values[list(forgotten), 0] += gap
    values[list(forgotten), 1] -= gap / 2
    return ClassFeatures(values, ("a", "b"), values[:, 0].copy(), np.ones(K, bool))


def test_top_names_the_highest_candidate() -> None:
    features = synthetic((4,), seed=0)
    assert rule_top(features).predicted == (4,)
    masked = ClassFeatures(features.values, features.names, features.score, np.arange(K) != 4)
    assert 4 not in rule_top(masked).predicted


@pytest.mark.parametrize("forgotten", [(3,), (1, 7), (0, 5, 9)])
def test_kmeans_finds_one_two_and_three_forgotten(forgotten: tuple[int, ...]) -> None:
    for seed in range(5):
        assert rule_kmeans(synthetic(forgotten, seed)).predicted == forgotten


def test_kmeans_on_all_columns() -> None:
    assert rule_kmeans(synthetic((2, 6), 1), columns=None).predicted == (2, 6)


def test_kmeans_says_nothing_when_no_class_stands_out() -> None:
    named = [rule_kmeans(synthetic((), seed)).predicted for seed in range(20)]
    assert all(p == () for p in named)
    flat = ClassFeatures.from_score(np.zeros(K))
    assert rule_kmeans(flat).predicted == ()


def test_kmeans_only_names_candidates() -> None:
    features = synthetic((3,), 0)
    candidates = np.zeros(K, bool)
    candidates[[3, 4, 5, 6, 7]] = True
    masked = ClassFeatures(features.values, features.names, features.score, candidates)
    assert rule_kmeans(masked).predicted == (3,)


def shadows(n: int = 12) -> list[LabelledFeatures]:
    """Shadow runs with one, two or no forgotten classes and their truth."""
    runs = []
    for i in range(n):
        truth = [(), (i % K,), (i % K, (i + 3) % K)][i % 3]
        runs.append(LabelledFeatures(synthetic(truth, 100 + i), truth))
    return runs


@pytest.mark.parametrize("forgotten", [(), (2,), (1, 8), (0, 4, 6)])
def test_youden_and_tree_fit_on_shadows(forgotten: tuple[int, ...]) -> None:
    threshold = fit_youden(shadows())
    assert 1.0 < threshold < 8.0
    target = synthetic(forgotten, 7)
    assert rule_youden(target, threshold).predicted == forgotten
    assert rule_tree(target, fit_tree(shadows())).predicted == forgotten


def test_shadow_labels_are_the_only_labels() -> None:
    # Swapping which classes the shadows call forgotten flips the fitted rule's answer.
    target = synthetic((2,), 7)
    flipped = [
        LabelledFeatures(s.features, tuple(c for c in range(K) if c not in s.forgotten))
        for s in shadows()
        if s.forgotten
    ]
    assert rule_youden(target, fit_youden(shadows())).predicted == (2,)
    assert 2 not in rule_youden(target, fit_youden(flipped)).predicted


def test_unknown_classes_stay_out_of_the_fit() -> None:
    runs = [LabelledFeatures(s.features, s.forgotten, known=np.arange(K) >= 5) for s in shadows()]
    values = np.concatenate([r.rows()[0] for r in runs])
    assert len(values) == 5 * len(runs)


def test_fit_needs_both_labels() -> None:
    with pytest.raises(LabelleakError, match="both forgotten and retained"):
        fit_youden([LabelledFeatures(synthetic((), 0), ())])
    with pytest.raises(LabelleakError, match="none were given"):
        decide(["tree"], synthetic((1,), 0), [])


def test_decide_rejects_unknown_rule_and_bad_shapes() -> None:
    with pytest.raises(LabelleakError, match="unknown decision rule"):
        decide(["nope"], synthetic((1,), 0))
    with pytest.raises(LabelleakError, match="shape"):
        ClassFeatures(np.zeros((3, 2)), ("a", "b"), np.zeros(4), np.ones(4, bool))
