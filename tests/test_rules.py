"""Decision rules on synthetic per-class features where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from labelleak.attacks.rules import (
    ClassFeatures,
    LabelledFeatures,
    SetRuleConfig,
    decide,
    fit_tree,
    fit_youden,
    rule_gap,
    rule_kmeans,
    rule_top,
    rule_tree,
    rule_youden,
    top_classes,
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
def test_top_names_as_many_classes_as_it_is_told(forgotten: tuple[int, ...]) -> None:
    features = synthetic(forgotten, seed=2)
    assert rule_top(features, count=len(forgotten)).predicted == forgotten
    assert decide(["top"], features, count=len(forgotten))["top"].predicted == forgotten


def test_top_classes_breaks_ties_by_class_id_and_keeps_to_candidates() -> None:
    scores = np.array([0.0, 5.0, 5.0, 1.0, 5.0])
    assert top_classes(scores, 2) == (1, 2)
    assert top_classes(scores, 2, np.array([True, False, True, True, False])) == (2, 3)
    # Fewer candidates than the count: all of them, nothing more.
    assert top_classes(scores, 3, np.array([True, False, False, False, False])) == (0,)


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


@pytest.mark.parametrize("forgotten", [(3,), (1, 7), (0, 5, 9)])
def test_gap_finds_one_two_and_three_forgotten(forgotten: tuple[int, ...]) -> None:
    for seed in range(5):
        assert rule_gap(synthetic(forgotten, seed)).predicted == forgotten


def test_gap_names_a_class_kmeans_misses() -> None:
    # One class clearly above nine evenly spaced ones: the step is large against their spacing
    # (gap names it) but 3.6 standard deviations of the rest (kmeans asks for 4).
    score = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.4])
    features = ClassFeatures.from_score(score)
    assert rule_gap(features).predicted == (9,)
    assert rule_kmeans(features).predicted == ()


def test_gap_says_nothing_without_a_break() -> None:
    evenly = ClassFeatures.from_score(np.linspace(0.0, 1.0, K))
    assert rule_gap(evenly).predicted == ()
    assert rule_gap(ClassFeatures.from_score(np.zeros(K))).predicted == ()
    # A class far BELOW the others is not a removed class (high scores mean removed).
    low = ClassFeatures.from_score(np.array([-9.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]))
    assert rule_gap(low).predicted == ()
    # The documented false-alarm rate on pure noise: about 14% of draws at the defaults.
    named = [rule_gap(synthetic((), seed)).predicted != () for seed in range(400)]
    assert 0.08 < float(np.mean(named)) < 0.20


def test_gap_only_names_candidates_and_obeys_its_settings() -> None:
    features = synthetic((3, 6), 0)
    candidates = np.ones(K, bool)
    candidates[6] = False
    masked = ClassFeatures(features.values, features.names, features.score, candidates)
    assert rule_gap(masked).predicted == (3,)
    assert rule_gap(features, level=100.0).predicted == ()
    strict = SetRuleConfig(gap_level=100.0)
    assert decide(["gap"], features, settings=strict)["gap"].predicted == ()
    assert decide(["gap"], features)["gap"].predicted == (3, 6)


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
