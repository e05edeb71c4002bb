"""What is specific to SalUn: only the salient weights change, bad settings are one-line errors
(what every modern method must do is in test_modern_methods.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import CPU, make_task

from labelleak.errors import LabelleakError
from labelleak.unlearning import build_method, make_config
from labelleak.unlearning.salun import saliency_mask


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
