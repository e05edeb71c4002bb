"""The inversions' threshold-fit and entropy-fit rules: levels fit on the attacker's shadows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from labelleak.attacks.base import (
    AttackerKnowledge,
    QueryFunction,
    ShadowRun,
    get_attack_class,
    make_attack_config,
    probabilities_of,
    run_attack,
)
from labelleak.attacks.inversion import CriteriaConfig, shadow_levels
from labelleak.attacks.inversion.shadow_levels import shadow_measures
from labelleak.attacks.parameter import make_shadow_runs
from labelleak.errors import LabelleakError
from labelleak.experiment.config import parse_config
from labelleak.experiment.pipeline import Pipeline
from labelleak.experiment.store import ArtifactStore
from labelleak.models.base import ImageClassifier

SHAPE = (1, 8, 8)
FORGOTTEN = (3,)
#: The attacker's own classes (the target's forgotten class 3 is not among them).
OWN = (0, 1, 2, 4, 5)
FITTED = ["threshold-fit", "entropy-fit", "top"]
SMALL_GA = {"queries_per_class": 300, "population": 24}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """digits targets (class 3 forgotten by retrain and neg-grad) and the attacker's shadows."""
    torch.set_num_threads(1)
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    pipeline = Pipeline(
        parse_config({"dataset": "digits", "methods": ["retrain", "neg-grad"]}),
        store,
        torch.device("cpu"),
    )
    x, y = pipeline.splits("digits").attacker_data(OWN)
    runs = make_shadow_runs(
        x,
        y,
        lambda: pipeline.new_model("digits", 1000),
        pipeline.config.train_config("digits"),
        ("retrain", "neg-grad"),
        [(1,), (4,), (0, 2)],
        seed=1000,
    )
    return {
        "original": pipeline.original("digits", 0).model,
        "retrain": pipeline.unlearned("digits", 0, "retrain", FORGOTTEN).model,
        "neg-grad": pipeline.unlearned("digits", 0, "neg-grad", FORGOTTEN).model,
        "shadows": [dataclasses.replace(run, trained_classes=OWN) for run in runs],
    }


def knowledge(
    model: ImageClassifier, runs: list[ShadowRun] | None, **extra: object
) -> AttackerKnowledge:
    query = QueryFunction(probabilities_of(model), SHAPE, 10)
    shadows = None if runs is None else (lambda: runs)
    return AttackerKnowledge(
        num_classes=10,
        input_shape=SHAPE,
        white_box=model,
        query=query,
        shadows=shadows,
        extra=dict(extra),
    )


def by_rule(results: list) -> dict:
    return {r.rule: r for r in results}


@pytest.mark.parametrize("method", ["retrain", "neg-grad"])
def test_fitted_levels_name_the_forgotten_class(grid: dict, method: str) -> None:
    params = {"steps": 120, "rules": FITTED}
    white = by_rule(run_attack("invert-white", knowledge(grid[method], grid["shadows"]), params))
    assert list(white) == FITTED
    assert white["threshold-fit"].predicted == FORGOTTEN
    assert white["entropy-fit"].predicted == FORGOTTEN
    levels = white["threshold-fit"].details["fitted_levels"]
    assert 0 < levels.alpha < 1 and levels.shadows == len(grid["shadows"])
    black = by_rule(
        run_attack(
            "invert-black",
            knowledge(grid[method], grid["shadows"]),
            {**SMALL_GA, "rules": FITTED},
        )
    )
    assert black["threshold-fit"].predicted == FORGOTTEN
    # Inverting the attacker's own shadows costs the target no queries.
    assert black["top"].queries <= 10 * SMALL_GA["queries_per_class"]


def test_fitted_levels_leave_the_original_alone(grid: dict) -> None:
    params = {"steps": 120, "rules": FITTED}
    white = by_rule(
        run_attack("invert-white", knowledge(grid["original"], grid["shadows"]), params)
    )
    assert white["threshold-fit"].predicted == ()
    assert white["entropy-fit"].predicted == ()


def test_fitted_levels_read_only_the_shadows_truth(grid: dict) -> None:
    target = grid["neg-grad"]
    params = {"steps": 40, "rules": FITTED}
    first = run_attack("invert-white", knowledge(target, grid["shadows"], forgotten=(3,)), params)
    second = run_attack("invert-white", knowledge(target, grid["shadows"], forgotten=(7,)), params)
    assert [r.predicted for r in first] == [r.predicted for r in second]
    # Claiming the shadows forgot classes they kept moves the fitted level: the fit reads the
    # shadows' labels, and only those.
    mislabelled = [
        dataclasses.replace(run, forgotten=(0, 1, 2) if run.forgotten else ())
        for run in grid["shadows"]
    ]
    moved = run_attack("invert-white", knowledge(target, mislabelled), params)
    assert moved[0].details["fitted_levels"] != first[0].details["fitted_levels"]


def test_fitted_rules_are_opt_in_and_need_shadows(grid: dict) -> None:
    cls = get_attack_class("invert-white")
    default = cls(make_attack_config("invert-white", None))
    assert "shadows" not in default.needs()
    assert default.rules == ("threshold", "entropy", "gap", "top")
    fitted = cls(make_attack_config("invert-white", {"rules": FITTED}))
    assert "shadows" in fitted.needs()
    with pytest.raises(LabelleakError, match="needs shadows"):
        run_attack("invert-white", knowledge(grid["retrain"], None), {"rules": FITTED})
    with pytest.raises(LabelleakError, match="threshold-fit"):
        make_attack_config("invert-black", {"rules": ["threshold-fitted"]})


def test_shadow_fits_use_only_the_classes_a_shadow_was_trained_on() -> None:
    # A shadow trained on classes 0-3 forgot class 2; classes 4-9 were never seen and look
    # forgotten, but must not enter the fit.
    log_odds = torch.tensor([9.0, 10.0, -4.0, 11.0, -8.0, -8.0, -8.0, -8.0, -8.0, -8.0])
    profiles = torch.softmax(torch.diag(log_odds), dim=1)
    run = ShadowRun(torch.nn.Linear(1, 1), (2,), trained_classes=(0, 1, 2, 3))  # type: ignore[arg-type]
    measures, _, truths = shadow_measures([run], lambda model: (profiles, log_odds), cap=25.0)
    assert np.allclose(measures[0], [9.0, 10.0, -4.0, 11.0])
    assert truths == [(2,)]
    fitted = shadow_levels([run], lambda model: (profiles, log_odds), CriteriaConfig())
    assert 0 < fitted.alpha < 9 / 9.5
    stray = dataclasses.replace(run, forgotten=(7,))
    with pytest.raises(LabelleakError, match="outside the classes it was trained on"):
        shadow_measures([stray], lambda model: (profiles, log_odds), cap=25.0)


def test_diverged_shadows_are_left_out_and_none_left_is_an_error() -> None:
    broken = torch.nn.Linear(1, 1)
    with torch.no_grad():
        broken.weight.fill_(float("nan"))
    run = ShadowRun(broken, (1,))  # type: ignore[arg-type]

    def never(model: object) -> tuple[torch.Tensor, None]:
        raise AssertionError("a diverged shadow must not be inverted")

    with pytest.raises(LabelleakError, match="diverged"):
        shadow_levels([run], never, CriteriaConfig())
