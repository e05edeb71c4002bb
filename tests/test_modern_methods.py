"""The seven modern methods, each with its default config, remove digits classes, keep the rest,
leave the original alone and are deterministic (what is specific to each is in its own file)."""

from __future__ import annotations

import pytest
from conftest import assert_same_state, make_task, state_of

from labelleak.evaluation import class_accuracies
from labelleak.unlearning import MODERN_METHODS, build_method

# Retained test accuracy each method may lose, forgetting 3 and forgetting 2 and 7 (about the
# measured drop + 0.02, never below 0.03), and the forget accuracy allowed on 2 and 7 together.
# Measured on digits, seed 0, default configs (drop, forget accuracy):
#   ssd              3: 0.0025, 0.0     2+7: -0.003, 0.023 (2: 0.0, 7: 0.045)
#   salun            3: 0.0225, 0.0     2+7: 0.0448, 0.0 (random-label loses 0.031 there)
#   scrub            3: 0.0125, 0.0     2+7: 0.042, 0.0
#   bad-teacher      3: 0.0325, 0.0     2+7: 0.014, 0.057 (2: 0.045, 7: 0.068; on MNIST it meets
#                                       0.05: with ~90 training images per class it needs tens
#                                       of passes, see its module)
#   unsir            3: 0.010, 0.0      2+7: 0.011, 0.0
#   l1-sparse        3: -0.0025, 0.0    2+7: -0.003, 0.0
#   boundary-shrink  3: 0.010, 0.0      2+7: 0.014, 0.0
BOUNDS = {
    "ssd": (0.03, 0.03, 0.05),
    "salun": (0.045, 0.065, 0.05),
    "scrub": (0.035, 0.065, 0.05),
    "bad-teacher": (0.055, 0.035, 0.08),
    "unsir": (0.03, 0.03, 0.05),
    "l1-sparse": (0.03, 0.03, 0.05),
    "boundary-shrink": (0.03, 0.035, 0.05),
}


def test_every_modern_method_is_registered_and_bounded() -> None:
    assert set(BOUNDS) == set(MODERN_METHODS)
    for name in MODERN_METHODS:
        assert build_method(name).name == name


@pytest.mark.parametrize("forget", [(3,), (2, 7)], ids=["3", "2+7"])
@pytest.mark.parametrize("method", MODERN_METHODS)
def test_method_forgets_and_keeps_the_rest(
    method, forget, digits_pipeline, digits_original, digits_original_state, digits_test
) -> None:
    x_test, y_test = digits_test
    single_drop, pair_drop, pair_forget = BOUNDS[method]
    before = class_accuracies(digits_original.model, x_test, y_test, forget)
    assert before["forget_acc"] >= 0.9, "the original must know the classes to begin with"
    task = make_task(digits_pipeline, digits_original, forget)
    model = build_method(method).unlearn(task)
    assert model is not digits_original.model
    assert_same_state(state_of(digits_original.model), digits_original_state)
    after = class_accuracies(model, x_test, y_test, forget)
    assert after["forget_acc"] <= (0.05 if len(forget) == 1 else pair_forget), after
    for label in forget:
        assert class_accuracies(model, x_test, y_test, (label,))["forget_acc"] <= 0.10, label
    drop = single_drop if len(forget) == 1 else pair_drop
    assert after["retain_acc"] >= before["retain_acc"] - drop, (before, after)
    # The same task gives the same weights.
    assert_same_state(state_of(build_method(method).unlearn(task)), state_of(model))
