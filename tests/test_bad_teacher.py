"""Bad Teacher, with its default config, removes digits classes, keeps the rest, leaves the
original alone, is deterministic, and moves the student towards the incompetent teacher."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_same_state, make_task, state_of

import labelleak.unlearning.bad_teacher  # noqa: F401
from labelleak.errors import LabelleakError
from labelleak.evaluation import class_accuracies
from labelleak.training import predict_logits
from labelleak.unlearning import build_method, make_config
from labelleak.unlearning.bad_teacher import incompetent_teacher, retained_subset
from labelleak.unlearning.scrub import distill_kl

# Measured on digits, seed 0: class 3 forget acc 0.0, retained drop 0.0325.
SINGLE_DROP = 0.055


def test_bad_teacher_forgets_one_class_and_keeps_the_rest(
    digits_pipeline, digits_original, digits_original_state, digits_test
) -> None:
    x_test, y_test = digits_test
    task = make_task(digits_pipeline, digits_original, (3,))
    model = build_method("bad-teacher").unlearn(task)
    assert_same_state(state_of(digits_original.model), digits_original_state)
    before = class_accuracies(digits_original.model, x_test, y_test, (3,))
    after = class_accuracies(model, x_test, y_test, (3,))
    assert after["forget_acc"] <= 0.05, after
    assert after["retain_acc"] >= before["retain_acc"] - SINGLE_DROP, (before, after)


def test_bad_teacher_forgets_two_classes(digits_pipeline, digits_original, digits_test) -> None:
    # Measured 0.057 (2: 0.045, 7: 0.068), retained drop 0.014: a little above the 0.05 the other
    # methods meet on digits (about 90 training images per class, three steps per pass); on
    # MNIST it meets it (docs/results.md).
    x_test, y_test = digits_test
    forget = (2, 7)
    before = class_accuracies(digits_original.model, x_test, y_test, forget)
    assert before["forget_acc"] >= 0.9
    model = build_method("bad-teacher").unlearn(make_task(digits_pipeline, digits_original, forget))
    after = class_accuracies(model, x_test, y_test, forget)
    assert after["forget_acc"] <= 0.08, after
    for label in forget:
        assert class_accuracies(model, x_test, y_test, (label,))["forget_acc"] <= 0.10, label
    assert after["retain_acc"] >= before["retain_acc"] - 0.035, (before, after)


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


def test_bad_teacher_is_deterministic(digits_pipeline, digits_original) -> None:
    task = make_task(digits_pipeline, digits_original, (3,))
    first = state_of(build_method("bad-teacher").unlearn(task))
    assert_same_state(first, state_of(build_method("bad-teacher").unlearn(task)))


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
