"""What is specific to UNSIR: it never reads a forget image, bad settings are one-line errors (what
every modern method must do is in test_modern_methods.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import assert_same_state, make_task, state_of

from labelleak.errors import LabelleakError
from labelleak.unlearning import build_method, make_config


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
