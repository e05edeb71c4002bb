"""What is specific to SCRUB: the max steps are what removes the class, the KL helper, bad settings
are one-line errors (what every modern method must do is in test_modern_methods.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_task

from labelleak.errors import LabelleakError
from labelleak.evaluation import class_accuracies
from labelleak.unlearning import build_method, make_config
from labelleak.unlearning.scrub import distill_kl


def test_without_max_steps_scrub_is_distillation_plus_finetuning(
    digits_pipeline, digits_original, digits_test
) -> None:
    # The max steps are what removes the class: min steps alone (3 epochs at the paper's rate)
    # leave it known on digits.
    x_test, y_test = digits_test
    task = make_task(digits_pipeline, digits_original, (3,))
    model = build_method("scrub", {"max_epochs": 0, "extra_epochs": 0}).unlearn(task)
    assert class_accuracies(model, x_test, y_test, (3,))["forget_acc"] >= 0.9


def test_distill_kl_is_zero_at_the_teacher_and_positive_elsewhere() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(distill_kl(logits, logits, 4.0), torch.zeros(5), atol=1e-6)
    assert bool((distill_kl(logits, logits.flip(1), 4.0) > 0).all())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"max_epochs": -1}, "max_epochs"),
        ({"lr": "x"}, "lr"),
    ],
)
def test_scrub_config_rejects_bad_values(params, field) -> None:
    with pytest.raises(LabelleakError, match=field):
        make_config("scrub", params)
