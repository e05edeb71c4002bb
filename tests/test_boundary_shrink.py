"""What is specific to Boundary Shrink: every forget sample gets a retained neighbour class, bad
settings are one-line errors (what every modern method must do is in test_modern_methods.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import CPU, make_task

from labelleak.errors import LabelleakError
from labelleak.unlearning import make_config
from labelleak.unlearning.boundary_shrink import neighbour_labels


@pytest.mark.parametrize("steps", [1, 5], ids=["fgsm", "pgd"])
@pytest.mark.parametrize("forget", [(3,), (2, 7)], ids=["3", "2+7"])
def test_neighbour_labels_are_wrong_and_retained(
    forget, steps, digits_pipeline, digits_original
) -> None:
    task = make_task(digits_pipeline, digits_original, forget)
    retained = torch.tensor([c for c in range(task.num_classes) if c not in forget])
    labels = neighbour_labels(
        copy.deepcopy(digits_original.model),
        task.forget_x,
        task.forget_y,
        retained,
        0.1,
        steps,
        CPU,
    )
    assert labels.shape == task.forget_y.shape
    assert bool((labels != task.forget_y).all())
    assert bool(torch.isin(labels, retained).all())
    # The neighbours are not one constant class: the search depends on the sample.
    assert len(set(labels.tolist())) > 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"eps": 0.0}, "eps"),
        ({"steps": 0}, "steps"),
        ({"lr_scale": -1.0}, "lr_scale"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"stop_accuracy": -0.1}, "stop_accuracy"),
    ],
)
def test_boundary_shrink_config_rejects_bad_values(params, field) -> None:
    with pytest.raises(LabelleakError, match=field):
        make_config("boundary-shrink", params)
