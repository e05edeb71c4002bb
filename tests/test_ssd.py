"""What is specific to Selective Synaptic Dampening: it only shrinks parameters, a fixed alpha
skips the search, bad settings are one-line errors (what every modern method must do is in
test_modern_methods.py)."""

from __future__ import annotations

import pytest
from conftest import make_task

from labelleak.errors import LabelleakError
from labelleak.unlearning import build_method, make_config


def test_ssd_only_shrinks_parameters(digits_pipeline, digits_original) -> None:
    task = make_task(digits_pipeline, digits_original, (2, 7))
    model = build_method("ssd").unlearn(task)
    changed = 0
    for name, new in model.state_dict().items():
        old = digits_original.model.state_dict()[name]
        assert (new.abs() <= old.abs()).all(), name
        assert (new * old >= 0).all(), f"{name} changed sign"
        changed += int((new != old).sum())
    assert changed > 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"search_ratio": 1.5}, "search_ratio"),
        ({"alpha": 0}, "alpha"),
        ({"dampening": -1}, "dampening"),
    ],
)
def test_ssd_config_rejects_bad_values(params, field) -> None:
    with pytest.raises(LabelleakError, match=field):
        make_config("ssd", params)


def test_ssd_fixed_alpha_skips_the_search(digits_pipeline, digits_original) -> None:
    # At alpha 1000 nearly nothing is selected: the class survives (the search would go on).
    task = make_task(digits_pipeline, digits_original, (3,))
    model = build_method("ssd", {"alpha": 1000.0}).unlearn(task)
    x, y = task.forget_probe()
    assert float((model(x).argmax(dim=1) == y).float().mean()) > 0.5
