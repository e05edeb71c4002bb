"""Decision rules over prototype profiles, on synthetic profiles with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelleak.attacks.inversion.criteria import (
    CriteriaConfig,
    entropy_decision,
    fit_level,
    gap_decision,
    log_odds_from_logits,
    log_odds_from_probs,
    own_class_log_odds,
    profile_decisions,
    row_entropy,
    threshold_decision,
)
from labelleak.errors import LabelleakError

K = 10


def profiles_from(log_odds: list[float], spread: dict[int, bool] | None = None) -> np.ndarray:
    """Profiles ``(K, K)`` whose row ``k`` has own-class log-odds ``log_odds[k]``.

    The other mass goes to one class (a confident wrong prediction) unless ``spread[k]``, in
    which case it is shared evenly by the other classes (a high-entropy row).
    """
    spread = spread or {}
    rows = []
    for k, c in enumerate(log_odds):
        own = 1.0 / (1.0 + np.exp(-c))
        rest = np.exp(-c) / (1.0 + np.exp(-c))
        row = np.full(K, 0.0)
        if spread.get(k):
            row[:] = rest / (K - 1)
        else:
            row[(k + 1) % K] = rest
        row[k] = own
        rows.append(row)
    return np.array(rows)


def retained(seed: int = 0) -> list[float]:
    """Log-odds like those retained classes reach: 18-30 nats, scattered (digits MLP: 17-27)."""
    return list(np.random.default_rng(seed).uniform(18, 30, K))


@pytest.mark.parametrize(
    "forgotten",
    [(), (4,), (2, 7), (0, 5, 9)],
    ids=["none", "one", "two", "three"],
)
@pytest.mark.parametrize("reached", [-3.0, 6.0], ids=["unreached", "reached-but-low"])
def test_rules_find_any_number_of_forgotten_classes(
    forgotten: tuple[int, ...], reached: float
) -> None:
    c = retained()
    for k in forgotten:
        c[k] = reached
    profiles = profiles_from(c, spread=dict.fromkeys(forgotten, True))
    decisions = profile_decisions(profiles, CriteriaConfig())
    assert decisions["threshold"][0] == forgotten
    assert decisions["entropy"][0] == forgotten
    assert decisions["gap"][0] == forgotten
    if forgotten:
        assert decisions["top"][0][0] in forgotten
        # Told how many classes were forgotten, top names exactly them.
        told = profile_decisions(profiles, CriteriaConfig(), count=len(forgotten))
        assert told["top"][0] == forgotten
    # Scores rank forgotten classes above every retained one.
    for rule in ("threshold", "entropy", "gap", "top"):
        scores = decisions[rule][1]
        others = [s for k, s in enumerate(scores) if k not in forgotten]
        assert all(scores[k] > max(others) for k in forgotten)


def test_original_like_profiles_name_nothing() -> None:
    # Saturated, unequal retained classes (logit scales differ a lot) are not "forgotten".
    c = [40.0, 300.0, 35.0, 26.0, 500.0, 60.0, 18.0, 22.0, 90.0, 31.0]
    decisions = profile_decisions(profiles_from(c), CriteriaConfig())
    assert decisions["threshold"][0] == ()
    assert decisions["entropy"][0] == ()
    assert decisions["gap"][0] == ()


def test_saturated_probabilities_keep_their_log_odds() -> None:
    # p_kk rounds to 1.0 in float32, yet the small entries still carry the log-odds.
    probs = torch.tensor([[1.0, 1e-20, 3e-20], [2e-30, 1.0, 0.0], [0.25, 0.25, 0.5]])
    odds = log_odds_from_probs(probs, torch.arange(3))
    assert odds[0] == pytest.approx(-np.log(4e-20), rel=1e-5)
    assert odds[1] == pytest.approx(-np.log(2e-30), rel=1e-5)
    assert odds[2] == pytest.approx(0.0, abs=1e-9)
    entropy = row_entropy(probs.double().numpy())
    assert 0 < entropy[0] < entropy[2]
    logits = torch.tensor([[5.0, 1.0, 1.0]])
    assert log_odds_from_logits(logits, torch.tensor([0]))[0] == pytest.approx(4.0 - np.log(2.0))


def test_threshold_is_relative_to_the_median_class() -> None:
    c = np.array([20.0] * 8 + [11.0, 13.0])
    assert threshold_decision(c, alpha=0.6) == (8,)
    assert threshold_decision(c, alpha=0.5) == ()
    # Any prototype that is not predicted as its own class is forgotten, whatever alpha.
    assert threshold_decision(np.array([20.0] * 9 + [-0.1]), alpha=0.05) == (9,)


def test_gap_rule_names_the_classes_below_a_clear_break() -> None:
    scattered = np.array(retained())
    # A low class on a model whose classes are scattered anyway, with no break below them: the
    # relative threshold fires, the gap rule does not (a hard retained class, not a removed one).
    low = scattered.copy()
    low[3] = 13.0
    assert threshold_decision(low) == (3,)
    assert gap_decision(low) == ()
    # Classes cut off from the rest are named, however many (fewer than half).
    cut = scattered.copy()
    cut[[1, 6]] = [4.0, 6.0]
    assert gap_decision(cut) == (1, 6)
    # A break must stand out against the other steps, not just be the largest.
    assert gap_decision(np.linspace(0.0, 27.0, K)) == ()
    # A model whose classes all reach the cap names nothing.
    assert (
        gap_decision(np.array([30.0, 80.0, 26.0, 500.0, 25.5, 40.0, 27.0, 90.0, 33.0, 29.0])) == ()
    )


def test_entropy_rule_is_relative_and_catches_spread_rows() -> None:
    h = np.array([-20.0, -21.0, -19.0, -20.5, -22.0, -18.0, -20.0, -19.5, -16.5, -2.0])
    assert entropy_decision(h) == (9,)
    assert entropy_decision(h, alpha=0.85) == (8, 9)
    # A row spread over many classes (entropy > 1 nat) is forgotten whatever alpha says.
    assert entropy_decision(np.array([-20.0] * 9 + [np.log(1.5)]), alpha=0.05) == (9,)


def test_fit_level_on_shadows_picks_a_separating_alpha() -> None:
    shadows = []
    truths: list[tuple[int, ...]] = []
    for seed in range(6):
        c = np.array(retained(seed))
        forgotten = (seed % K,) if seed % 3 else ()
        for k in forgotten:
            c[k] = 0.35 * np.median(c)
        shadows.append(c)
        truths.append(forgotten)
    fitted = fit_level("threshold", shadows, truths, CriteriaConfig())
    assert all(
        threshold_decision(s, fitted.alpha) == t for s, t in zip(shadows, truths, strict=True)
    )
    with pytest.raises(LabelleakError):
        fit_level("top", shadows, truths, CriteriaConfig())


@pytest.mark.parametrize("forgotten", [(4,), (2, 7), (0, 5, 9)])
def test_levels_fit_on_shadows_name_one_two_or_three_classes(forgotten: tuple[int, ...]) -> None:
    # Retained classes reach 18-30 nats but class 8 only 9-10 (a hard class); forgotten classes
    # 3-5. The set level (0.6 of the median) names class 8 too; shadows of the same kind move
    # the level below it.
    rng = np.random.default_rng(0)

    def shadow(forget: tuple[int, ...]) -> np.ndarray:
        c = rng.uniform(18.0, 30.0, K)
        c[8] = rng.uniform(9.0, 10.0)
        c[list(forget)] = rng.uniform(3.0, 5.0, len(forget))
        return c

    shadow_sets = [(), (1,), (3,), (6,), (2, 5), (0, 7, 9), ()]
    fitted = fit_level("threshold", [shadow(f) for f in shadow_sets], shadow_sets, CriteriaConfig())
    target = shadow(forgotten)
    assert threshold_decision(target, fitted.alpha) == forgotten
    assert threshold_decision(shadow(()), fitted.alpha) == ()
    assert 8 in threshold_decision(target, alpha=0.6)


def test_shadows_that_do_not_tell_levels_apart_keep_the_set_level() -> None:
    # Every class of these shadows stays below p = 0.5: every level names all of them.
    shadows = [np.full(K, -2.0) + 0.1 * np.arange(K) for _ in range(3)]
    config = CriteriaConfig(alpha=0.45)
    assert fit_level("threshold", shadows, [(), (1,), (2, 3)], config).alpha == 0.45


@pytest.mark.parametrize(
    "bad",
    [np.ones((3, 4)) / 4, -np.eye(3), np.full((3, 3), np.nan)],
    ids=["not-square", "negative", "nan"],
)
def test_bad_profiles_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(LabelleakError):
        own_class_log_odds(bad)


def test_scores_need_two_finite_classes() -> None:
    with pytest.raises(LabelleakError):
        threshold_decision(np.array([1.0]))
    with pytest.raises(LabelleakError):
        entropy_decision(np.array([1.0, np.inf]))
