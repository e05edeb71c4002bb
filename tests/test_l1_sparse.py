"""What is specific to l1-sparse: the penalty makes the weights smaller in l1 than the same
fine-tuning without it, bad settings are one-line errors (what every modern method must do is in
test_modern_methods.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_task

from labelleak.errors import LabelleakError
from labelleak.unlearning import build_method, make_config


def test_l1_penalty_shrinks_the_weights(digits_pipeline, digits_original) -> None:
    task = make_task(digits_pipeline, digits_original, (3,))

    def l1(model: torch.nn.Module) -> float:
        return float(sum(p.detach().abs().sum() for p in model.parameters()))

    plain = build_method("l1-sparse", {"gamma": 0.0}).unlearn(task)
    sparse = build_method("l1-sparse").unlearn(task)
    assert l1(sparse) < 0.95 * l1(plain)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"gamma": -1.0}, "gamma"), ({"epochs": 0}, "epochs"), ({"lr_scale": 0}, "lr_scale")],
)
def test_l1_sparse_config_rejects_bad_values(params, field) -> None:
    with pytest.raises(LabelleakError, match=field):
        make_config("l1-sparse", params)
