"""SalUn forgets digits classes with its default config, changes only the salient weights, leaves
the original alone and is deterministic."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import CPU, assert_same_state, make_task, state_of

import labelleak.unlearning.salun  # noqa: F401
from labelleak.errors import LabelleakError
from labelleak.evaluation import class_accuracies
from labelleak.unlearning import build_method, make_config
from labelleak.unlearning.salun import saliency_mask

# Retained test accuracy SalUn may lose, measured on digits (seed 0, default config): forgetting
# class 3 it lost 0.0225, forgetting 2 and 7 0.0448 (random-label, training all weights under a
# cosine schedule, loses 0.031 there; at mask_fraction 1 this loop lost 0.056).
RETAIN_DROP = {(3,): 0.045, (2, 7): 0.065}


@pytest.mark.parametrize("forget", [(3,), (2, 7)], ids=["3", "2+7"])
def test_salun_forgets_and_keeps_the_rest(
    forget, digits_pipeline, digits_original, digits_original_state, digits_test
) -> None:
    x_test, y_test = digits_test
    before = class_accuracies(digits_original.model, x_test, y_test, forget)
    task = make_task(digits_pipeline, digits_original, forget)
    model = build_method("salun").unlearn(task)
    assert model is not digits_original.model
    assert_same_state(state_of(digits_original.model), digits_original_state)
    after = class_accuracies(model, x_test, y_test, forget)
    assert after["forget_acc"] <= 0.05, after
    for label in forget:
        assert class_accuracies(model, x_test, y_test, (label,))["forget_acc"] <= 0.10, label
    assert after["retain_acc"] >= before["retain_acc"] - RETAIN_DROP[forget], (before, after)


def test_salun_is_deterministic(digits_pipeline, digits_original) -> None:
    task = make_task(digits_pipeline, digits_original, (2, 7))
    first = build_method("salun").unlearn(task)
    second = build_method("salun").unlearn(task)
    assert_same_state(state_of(first), state_of(second))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_salun_changes_only_the_masked_weights(scope, digits_pipeline, digits_original) -> None:
    task = make_task(digits_pipeline, digits_original, (3,))
    mask = saliency_mask(
        copy.deepcopy(digits_original.model), task.forget_x, task.forget_y, 0.5, scope, CPU
    )
    total = sum(m.numel() for m in mask.values())
    assert abs(sum(int(m.sum()) for m in mask.values()) / total - 0.5) < 1e-3
    model = build_method("salun", {"scope": scope}).unlearn(task)
    original = dict(digits_original.model.named_parameters())
    moved = 0
    for name, param in model.named_parameters():
        frozen = ~mask[name]
        # Bit-identical despite momentum and weight decay in the recipe.
        assert torch.equal(param.detach()[frozen], original[name].detach()[frozen]), name
        moved += int((param.detach()[mask[name]] != original[name].detach()[mask[name]]).sum())
    assert moved > total // 4


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mask_fraction": 0.0}, "mask_fraction"),
        ({"mask_fraction": 1.5}, "mask_fraction"),
        ({"scope": "row"}, "scope"),
        ({"lr_scale": -1.0}, "lr_scale"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"stop_accuracy": 2.0}, "stop_accuracy"),
    ],
)
def test_salun_config_rejects_bad_values(params, field) -> None:
    with pytest.raises(LabelleakError, match=field):
        make_config("salun", params)
