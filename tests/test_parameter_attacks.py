"""param-dot, param-diff and the baselines on a tiny digits grid (trained once per module)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import labelleak.attacks.baselines
import labelleak.attacks.parameter  # noqa: F401  (registers the attacks)
from labelleak.attacks.base import (
    AttackerKnowledge,
    QueryFunction,
    ShadowRun,
    probabilities_of,
    run_attack,
)
from labelleak.attacks.parameter import make_shadow_runs
from labelleak.errors import LabelleakError
from labelleak.experiment.config import parse_config
from labelleak.experiment.pipeline import Pipeline
from labelleak.experiment.store import ArtifactStore

FORGOTTEN = (3,)
#: The attacker's data covers about half of the retained classes.
HALF = (0, 1, 2, 4, 5)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> dict:
    store = ArtifactStore(tmp_path_factory.mktemp("cache"))
    pipeline = Pipeline(
        parse_config({"dataset": "digits", "methods": ["retrain", "neg-grad"]}),
        store,
        torch.device("cpu"),
    )
    splits = pipeline.splits("digits")
    config = pipeline.config.train_config("digits")

    def shadows(classes: tuple[int, ...], sets: list[tuple[int, ...]]) -> list[ShadowRun]:
        x, y = splits.attacker_data(classes)
        return make_shadow_runs(
            x,
            y,
            lambda: pipeline.new_model("digits", 1000),
            config,
            ("retrain", "neg-grad"),
            sets,
            seed=1000,
        )

    return {
        "splits": splits,
        "original": pipeline.original("digits", 0).model,
        "targets": {
            m: pipeline.unlearned("digits", 0, m, FORGOTTEN).model for m in ("retrain", "neg-grad")
        },
        "shadows_all": shadows(tuple(range(10)), [(1,), (5,), (2, 8)]),
        "shadows_half": shadows(HALF, [(1,), (4,)]),
    }


def knowledge(
    grid: dict, model: nn.Module, classes: tuple[int, ...] | None = None, **changes: object
) -> AttackerKnowledge:
    splits = grid["splits"]
    shape = tuple(splits.dataset.input_shape)
    covered = tuple(c for c in range(10) if c not in FORGOTTEN) if classes is None else classes
    runs = grid["shadows_half"] if classes == HALF else grid["shadows_all"]
    base = AttackerKnowledge(
        num_classes=10,
        input_shape=shape,
        white_box=model,
        query=QueryFunction(probabilities_of(model), shape, 10),
        attacker_data=splits.attacker_data(covered),
        attacker_classes=covered,
        unrelated_data=torch.rand(500, *shape, generator=torch.Generator().manual_seed(0)),
        shadows=lambda: runs,
    )
    return dataclasses.replace(base, **changes)


def by_rule(results: list) -> dict:
    return {r.rule: r for r in results}


@pytest.mark.parametrize("method", ["retrain", "neg-grad"])
def test_param_diff_names_the_forgotten_class(grid: dict, method: str) -> None:
    results = by_rule(run_attack("param-diff", knowledge(grid, grid["targets"][method])))
    assert set(results) == {"top", "kmeans", "gap", "youden", "tree"}
    assert results["top"].predicted == FORGOTTEN
    assert results["kmeans"].predicted == FORGOTTEN
    assert results["gap"].predicted == FORGOTTEN
    assert results["top"].scores.shape == (10,)


@pytest.mark.parametrize("method", ["retrain", "neg-grad"])
def test_param_dot_names_the_forgotten_class(grid: dict, method: str) -> None:
    k = knowledge(grid, grid["targets"][method], HALF)
    results = by_rule(run_attack("param-dot", k))
    assert results["top"].predicted == FORGOTTEN
    # Classes the attacker holds data of are never named.
    assert not set(results["tree"].predicted) & set(HALF)


def test_shadow_free_rules_need_no_shadows(grid: dict) -> None:
    # Without youden and tree the attacker need not build (costly) shadow runs at all.
    no_shadows = knowledge(grid, grid["targets"]["retrain"], shadows=None)
    results = run_attack("param-diff", no_shadows, {"rules": ["top", "kmeans", "gap"]})
    assert [r.rule for r in results] == ["top", "kmeans", "gap"]
    assert by_rule(results)["kmeans"].predicted == FORGOTTEN
    assert by_rule(results)["gap"].predicted == FORGOTTEN
    with pytest.raises(LabelleakError, match="shadows"):
        run_attack("param-diff", no_shadows)
    with pytest.raises(LabelleakError, match="param-diff rule 'median'"):
        run_attack("param-diff", no_shadows, {"rules": ["median"]})


def test_kmeans_names_nothing_on_the_original(grid: dict) -> None:
    results = by_rule(run_attack("param-diff", knowledge(grid, grid["original"])))
    assert results["kmeans"].predicted == ()


def test_fitted_rules_read_only_shadow_labels(grid: dict) -> None:
    target = grid["targets"]["neg-grad"]
    # The same knowledge with different "truth" attached must give identical answers.
    first = run_attack("param-diff", knowledge(grid, target, extra={"forgotten": (3,)}))
    second = run_attack("param-diff", knowledge(grid, target, extra={"forgotten": (7,)}))
    assert [r.predicted for r in first] == [r.predicted for r in second]
    # Relabelling the shadows (the only labels) moves the fitted threshold.
    relabelled = [
        dataclasses.replace(run, forgotten=((run.forgotten[0] + 1) % 10,))
        for run in grid["shadows_all"]
        if run.forgotten
    ]
    moved = run_attack("param-diff", knowledge(grid, target, shadows=lambda: relabelled))
    assert (
        by_rule(moved)["youden"].details["threshold"]
        != by_rule(first)["youden"].details["threshold"]
    )


def test_shadow_runs_cover_every_method_and_set(grid: dict) -> None:
    runs = grid["shadows_all"]
    assert runs[0].forgotten == () and runs[0].method == "original"
    assert {(r.method, r.forgotten) for r in runs[1:]} == {
        (m, s) for m in ("retrain", "neg-grad") for s in [(1,), (5,), (2, 8)]
    }
    x, y = grid["splits"].attacker_data(HALF)
    with pytest.raises(LabelleakError, match="shadow forget set"):
        make_shadow_runs(x, y, lambda: None, None, ("retrain",), [(9,)], seed=1)  # type: ignore[arg-type]


def test_bad_knowledge_gives_one_line_errors(grid: dict) -> None:
    target = grid["targets"]["retrain"]
    wrong_shape = knowledge(grid, target, unrelated_data=torch.rand(10, 1, 28, 28))
    with pytest.raises(LabelleakError, match="shape"):
        run_attack("param-diff", wrong_shape)
    with pytest.raises(LabelleakError, match="needs unrelated_data"):
        run_attack("param-diff", knowledge(grid, target, unrelated_data=None))
    headless = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(LabelleakError, match=r"named .classifier."):
        run_attack("param-diff", knowledge(grid, headless))
    empty = (torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long))
    with pytest.raises(LabelleakError, match="empty"):
        run_attack("param-dot", knowledge(grid, target, attacker_data=empty))
    with pytest.raises(LabelleakError, match="bad parameter"):
        run_attack("param-dot", knowledge(grid, target), {"score": 3})
    with pytest.raises(LabelleakError, match="unknown score"):
        run_attack("param-dot", knowledge(grid, target, HALF), {"score": "nope"})


def test_baselines(grid: dict) -> None:
    k = knowledge(grid, grid["targets"]["retrain"])
    assert by_rule(run_attack("absent-class", k))["set"].predicted == FORGOTTEN
    half = by_rule(run_attack("absent-class", knowledge(grid, grid["original"], HALF)))
    assert len(half["set"].predicted) == 5 and len(half["top"].predicted) == 1
    histogram = run_attack("unrelated-histogram", k)
    assert histogram[0].queries == 500
    assert by_rule(histogram)["top"].predicted == FORGOTTEN
    # data-peak decides among the classes the attacker lacks; with none lacking, it names nothing.
    everything = knowledge(grid, grid["targets"]["retrain"], tuple(range(10)))
    assert all(not r.predicted for r in run_attack("data-peak", everything))
    peak = by_rule(run_attack("data-peak", knowledge(grid, grid["targets"]["retrain"], HALF)))
    assert peak["top"].predicted == FORGOTTEN
    assert peak["top"].queries == len(grid["splits"].attacker_data(HALF)[1])
    assert set(np.flatnonzero(np.isfinite(peak["top"].scores))) >= set(FORGOTTEN)
    for name in ("chance", "head-bias", "head-norm"):
        for result in run_attack(name, k):
            assert result.scores.shape == (10,) and np.isfinite(result.scores).all()


def test_diverged_shadows_are_skipped_and_scores_compose(grid: dict) -> None:
    target = grid["targets"]["retrain"]
    broken = [copy.deepcopy(run) for run in grid["shadows_all"][:2]]
    with torch.no_grad():
        broken[1].target.classifier.weight.fill_(float("nan"))
    runs = broken + list(grid["shadows_all"][2:])
    results = by_rule(
        run_attack(
            "param-diff",
            knowledge(grid, target, shadows=lambda: runs),
            {"score": ["-aux_norm", "-cos"]},
        )
    )
    assert results["top"].predicted == FORGOTTEN
    assert results["tree"].details["shadow_runs"] == len(runs) - 1


def test_batched_heads_equal_single_fits() -> None:
    from labelleak.attacks.parameter.auxiliary import fit_head, fit_heads

    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(n, 16, generator=generator) for n in (60, 25, 40)]
    labels = [torch.randint(0, 5, (len(f),), generator=generator) for f in features]
    labels[1][labels[1] == 3] = 4  # a class without samples in one problem
    soft = torch.softmax(torch.randn(40, 5, generator=generator), dim=1)
    targets = [labels[0], labels[1], soft]
    batched = fit_heads(features, targets, 5, steps=50)
    for f, t, (weight, bias) in zip(features, targets, batched, strict=True):
        single_weight, single_bias = fit_head(f, t, 5, steps=50)
        np.testing.assert_allclose(weight, single_weight, atol=1e-5)
        np.testing.assert_allclose(bias, single_bias, atol=1e-5)
    # The row of the class without samples is pushed below the others' bias.
    assert batched[1][1][3] < np.median(batched[1][1])


class _TableModel(nn.Module):
    """Outputs row ``i`` of a fixed logit table for an image whose first pixel is ``i``."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0, 0, 0].round().long()]


def table_knowledge(table: torch.Tensor) -> AttackerKnowledge:
    """Query access to :class:`_TableModel` and the images that index its rows."""
    images = torch.arange(len(table), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    model = _TableModel(table)
    return AttackerKnowledge(
        num_classes=table.shape[1],
        input_shape=(1, 2, 2),
        query=QueryFunction(probabilities_of(model), (1, 2, 2), table.shape[1]),
        unrelated_data=images.contiguous(),
    )


def test_unrelated_histogram_ranks_count_runner_up_places() -> None:
    # Class 3 wins a few images outright but is never anyone's runner-up; class 0 wins none but
    # is runner-up everywhere. Top-1 counts blame class 0; counting two ranks blames class 3.
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(200, 6, generator=generator)
    table[:, 3] = -10.0
    table[:10, 3] = 10.0
    table[:, 0] = table[:, [1, 2, 4, 5]].amax(dim=1) - 0.1
    table[:10, 0] = 9.0
    plain = by_rule(run_attack("unrelated-histogram", table_knowledge(table)))
    assert plain["top"].predicted != (3,) and plain["top"].queries == 200
    ranked = by_rule(run_attack("unrelated-histogram", table_knowledge(table), {"ranks": 2}))
    assert ranked["top"].predicted == (3,)
    with pytest.raises(LabelleakError, match="ranks must be below"):
        run_attack("unrelated-histogram", table_knowledge(table), {"ranks": 6})


def test_data_peak_tells_confident_classes_apart() -> None:
    # The lacking classes 2, 3 and 4 each win one image by 30, 25 and 20 nats: in float32 all
    # three probabilities round to 1, yet class 4, the least confident, is named.
    table = torch.zeros(3, 5)
    for image, (cls, margin) in enumerate([(2, 30.0), (3, 25.0), (4, 20.0)]):
        table[image, cls] = margin
    knowledge = table_knowledge(table)
    labels = torch.tensor([0, 1, 0])  # the attacker's labels: only classes 0 and 1
    knowledge = dataclasses.replace(knowledge, attacker_data=(knowledge.unrelated_data, labels))
    peak = by_rule(run_attack("data-peak", knowledge))
    assert peak["top"].predicted == (4,)
    assert peak["top"].scores[4] == pytest.approx(-20.0 + np.log(4.0), abs=1e-3)


def test_param_diff_evaluates_the_target_rows_on_every_unrelated_image() -> None:
    from labelleak.attacks.parameter.auxiliary import AuxiliaryHead
    from labelleak.attacks.parameter.features import FEATURE_NAMES, raw_features

    generator = torch.Generator().manual_seed(1)
    features = torch.randn(300, 8, generator=generator).double().numpy()
    weight = torch.randn(5, 8, generator=generator).double().numpy()
    bias = np.zeros(5)
    bias[2] = -50.0  # row 2 never reaches the top two on any image
    aux = AuxiliaryHead(weight.copy(), bias.copy(), np.full(5, 60), features)
    table = raw_features(weight, bias, aux)
    column = {name: table[:, i] for i, name in enumerate(FEATURE_NAMES)}
    logits = features @ weight.T + bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(column["target_share"], probs.mean(axis=0))
    assert column["target_top2"][2] == 0 and column["target_top2"].sum() == pytest.approx(2.0)
    assert np.argmin(column["target_peak"]) == 2
    # The log-odds does not saturate where the probability rounds to 1.
    odds = np.log(probs / (1 - probs)).max(axis=0)
    finite = np.isfinite(odds)
    np.testing.assert_allclose(column["target_peak"][finite], odds[finite], rtol=1e-6)
