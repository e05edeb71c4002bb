"""What is specific to Bad Teacher: the incompetent teacher never favours a forgotten class, the
student moves towards it, the retained subset follows the config, bad settings are one-line errors
(what every modern method must do is in test_modern_methods.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_task

from labelleak.errors import LabelleakError
from labelleak.evaluation import class_accuracies
from labelleak.training import predict_logits
from labelleak.unlearning import build_method, make_config
from labelleak.unlearning.bad_teacher import incompetent_teacher, retained_subset
from labelleak.unlearning.scrub import distill_kl


def test_the_incompetent_teacher_never_favours_a_forgotten_class(
    digits_pipeline, digits_original, digits_test
) -> None:
    # retained_only: with it the forgotten class is gone; without it a random teacher's
    # near-uniform outputs may keep it (MNIST seed 1, class 2: 66% left).
    x_test, y_test = digits_test
    task = make_task(digits_pipeline, digits_original, (2, 7))
    kept = build_method("bad-teacher", {"retained_only": False}).unlearn(task)
    masked = build_method("bad-teacher").unlearn(task)
    without = class_accuracies(kept, x_test, y_test, (2, 7))["forget_acc"]
    assert class_accuracies(masked, x_test, y_test, (2, 7))["forget_acc"] < without


def test_student_moves_towards_the_incompetent_teacher(digits_pipeline, digits_original) -> None:
    task = make_task(digits_pipeline, digits_original, (3,))
    bad = predict_logits(incompetent_teacher(task), task.forget_x)
    # The incompetent teacher is a fresh random model, not the original's own initialisation.
    fresh = predict_logits(task.new_model(), task.forget_x)
    assert not torch.allclose(bad, fresh)
    before = distill_kl(predict_logits(digits_original.model, task.forget_x), bad, 1.0).mean()
    model = build_method("bad-teacher").unlearn(task)
    after = distill_kl(predict_logits(model, task.forget_x), bad, 1.0).mean()
    # Measured: from 13.2 to 3.6 nats.
    assert float(after) < 0.5 * float(before), (before, after)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 1.0])
def test_retained_subset_follows_the_config(digits_pipeline, digits_original, fraction) -> None:
    task = make_task(digits_pipeline, digits_original, (3,))
    picks = retained_subset(task, fraction, torch.Generator().manual_seed(0))
    assert len(picks) == round(fraction * len(task.retain_y))
    assert len(set(picks.tolist())) == len(picks)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"retain_fraction": 0.0}, "retain_fraction"),
        ({"retain_fraction": 1.5}, "retain_fraction"),
        ({"temperature": -1}, "temperature"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_teacher_config_rejects_bad_values(params, field) -> None:
    with pytest.raises(LabelleakError, match=field):
        make_config("bad-teacher", params)
