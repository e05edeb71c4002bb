"""UNSIR on digits: removes the forgotten classes, keeps the others, never reads a forget image,
leaves the original alone and is deterministic."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import assert_same_state, make_task, state_of

import labelleak.unlearning.unsir  # noqa: F401
from labelleak.errors import LabelleakError
from labelleak.evaluation import class_accuracies
from labelleak.unlearning import build_method, make_config

# Measured on digits (seed 0, default config): retained test accuracy drop 0.010 forgetting 3
# (forget acc 0.0), 0.011 forgetting 2 and 7 (forget acc 0.0). Bound: 0.03.
RETAIN_DROP = 0.03


@pytest.mark.parametrize("forget", [(3,), (2, 7)], ids=["3", "2+7"])
def test_unsir_forgets_and_keeps_the_rest(
    forget, digits_pipeline, digits_original, digits_original_state, digits_test
) -> None:
    x_test, y_test = digits_test
    before = class_accuracies(digits_original.model, x_test, y_test, forget)
    task = make_task(digits_pipeline, digits_original, forget)
    model = build_method("unsir").unlearn(task)
    after = class_accuracies(model, x_test, y_test, forget)
    assert after["forget_acc"] <= 0.05, after
    for label in forget:
        assert class_accuracies(model, x_test, y_test, (label,))["forget_acc"] <= 0.10, label
    assert after["retain_acc"] >= before["retain_acc"] - RETAIN_DROP, (before, after)
    assert_same_state(state_of(digits_original.model), digits_original_state)
    assert_same_state(state_of(build_method("unsir").unlearn(task)), state_of(model))


def test_unsir_never_reads_the_forget_data(digits_pipeline, digits_original) -> None:
    task = make_task(digits_pipeline, digits_original, (2, 7))
    blind = dataclasses.replace(
        task,
        forget_x=torch.full_like(task.forget_x, float("nan")),
        forget_y=torch.randint(
            0, 10, task.forget_y.shape, generator=torch.Generator().manual_seed(1)
        ),
    )
    assert_same_state(
        state_of(build_method("unsir").unlearn(blind)),
        state_of(build_method("unsir").unlearn(task)),
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"noise_copies": 0}, "noise_copies"),
        ({"noise_lr": 0}, "noise_lr"),
        ({"retain_per_class": 0}, "retain_per_class"),
    ],
)
def test_unsir_config_rejects_bad_values(params, field) -> None:
    with pytest.raises(LabelleakError, match=field):
        make_config("unsir", params)
