"""invert-white, invert-black, noise-histogram and probe-drop on small digits targets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import labelleak.attacks.inversion  # registers invert-white and invert-black
import labelleak.attacks.probes  # registers noise-histogram and probe-drop
from labelleak.attacks.base import (
    AttackerKnowledge,
    QueryFunction,
    get_attack_class,
    probabilities_of,
    run_attack,
)
from labelleak.attacks.inversion.images import upsample
from labelleak.errors import LabelleakError
from labelleak.experiment.config import parse_config
from labelleak.experiment.pipeline import Pipeline
from labelleak.experiment.store import ArtifactStore
from labelleak.models.base import ImageClassifier
from labelleak.report.prototypes import save_prototype_grid

SHAPE = (1, 8, 8)
FORGOTTEN = (3,)
#: Small GA settings: about 300 queries per class keep each run well under a second.
SMALL_GA = {"queries_per_class": 300, "population": 24}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageClassifier]:
    """The digits original and its retrain and neg-grad targets with class 3 forgotten."""
    torch.set_num_threads(1)
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    config = parse_config({"dataset": "digits", "methods": ["retrain", "neg-grad"]})
    pipeline = Pipeline(config, store, torch.device("cpu"))
    built = {m: pipeline.unlearned("digits", 0, m, FORGOTTEN).model for m in config.methods}
    return {"original": pipeline.original("digits", 0).model, **built}


class CountingModel:
    """A probability function that tallies every input it sees, to audit the QueryFunction."""

    def __init__(self, model: ImageClassifier) -> None:
        self.inner = probabilities_of(model)
        self.seen = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.inner(x)


def knowledge_for(
    model: ImageClassifier, budget: int | None = None, original: ImageClassifier | None = None
) -> AttackerKnowledge:
    query = QueryFunction(probabilities_of(model), SHAPE, 10, budget=budget)
    return AttackerKnowledge(
        num_classes=10, input_shape=SHAPE, white_box=model, query=query, original=original
    )


@pytest.mark.parametrize("method", ["retrain", "neg-grad"])
def test_white_box_inversion_names_the_forgotten_class(
    models: dict[str, ImageClassifier], method: str
) -> None:
    results = run_attack("invert-white", knowledge_for(models[method]), {"steps": 120}, seed=0)
    by_rule = {r.rule: r for r in results}
    assert set(by_rule) == {"threshold", "entropy", "gap", "top"}
    assert by_rule["threshold"].predicted == FORGOTTEN
    assert by_rule["gap"].predicted == FORGOTTEN
    assert by_rule["entropy"].predicted == FORGOTTEN
    assert by_rule["top"].predicted == FORGOTTEN
    assert by_rule["threshold"].queries == 0
    assert by_rule["top"].details["prototypes"].shape == (10, *SHAPE)
    assert by_rule["top"].details["profiles"].shape == (10, 10)


@pytest.mark.parametrize("method", ["retrain", "neg-grad"])
def test_black_box_inversion_names_the_forgotten_class(
    models: dict[str, ImageClassifier], method: str
) -> None:
    counter = CountingModel(models[method])
    query = QueryFunction(counter, SHAPE, 10, budget=3000)
    knowledge = AttackerKnowledge(num_classes=10, input_shape=SHAPE, query=query)
    results = run_attack("invert-black", knowledge, SMALL_GA, seed=0)
    top = next(r for r in results if r.rule == "top")
    assert top.predicted == FORGOTTEN
    assert next(r for r in results if r.rule == "threshold").predicted == FORGOTTEN
    assert next(r for r in results if r.rule == "gap").predicted == FORGOTTEN
    # Every input is counted once, batched or not, and the budget holds per class and in total.
    assert counter.seen == query.queries == top.queries <= 3000
    per_class = top.details["queries_per_class"]
    assert int(per_class.sum()) == top.queries
    assert int(per_class.max()) <= SMALL_GA["queries_per_class"]


@pytest.mark.parametrize("method", ["retrain", "neg-grad"])
def test_low_resolution_white_box_inversion_names_the_forgotten_class(
    models: dict[str, ImageClassifier], method: str
) -> None:
    results = run_attack(
        "invert-white", knowledge_for(models[method]), {"resolution": 6, "steps": 10}, seed=0
    )
    top = next(r for r in results if r.rule == "top")
    assert top.predicted == FORGOTTEN
    assert top.details["prototypes"].shape == (10, *SHAPE)


def test_low_resolution_prototypes_are_upsampled_images(
    models: dict[str, ImageClassifier],
) -> None:
    knowledge = knowledge_for(models["retrain"])

    def prototypes(settings: dict[str, int]) -> torch.Tensor:
        results = run_attack("invert-white", knowledge, {"steps": 10, **settings}, seed=0)
        return results[0].details["prototypes"]

    def off_4x4(images: torch.Tensor) -> float:
        # A 4x4 image upsampled to 8x8 survives averaging 2x2 blocks and upsampling again
        # (up to the clamp); a free 8x8 search's prototypes do not.
        blocks = torch.nn.functional.avg_pool2d(images, 2)
        return float((upsample(blocks, SHAPE[1:]) - images).abs().mean())

    assert off_4x4(prototypes({"resolution": 4})) < 0.5 * off_4x4(prototypes({}))
    with pytest.raises(LabelleakError, match="resolution 9 is larger than the input"):
        run_attack("invert-white", knowledge, {"resolution": 9})


def test_forget_count_is_validated() -> None:
    for count in (0, 10):
        with pytest.raises(LabelleakError, match=r"forget_count must lie in 1\.\.9"):
            AttackerKnowledge(num_classes=10, input_shape=SHAPE, forget_count=count)


def test_genetic_algorithm_is_deterministic_for_a_seed(
    models: dict[str, ImageClassifier],
) -> None:
    runs = [
        run_attack("invert-black", knowledge_for(models["neg-grad"]), SMALL_GA, seed=7)
        for _ in range(2)
    ]
    first, second = (run[0] for run in runs)
    assert torch.equal(first.details["prototypes"], second.details["prototypes"])
    assert torch.equal(first.details["profiles"], second.details["profiles"])
    assert [r.predicted for r in runs[0]] == [r.predicted for r in runs[1]]
    assert first.queries == second.queries
    other = run_attack("invert-black", knowledge_for(models["neg-grad"]), SMALL_GA, seed=8)
    assert not torch.equal(first.details["prototypes"], other[0].details["prototypes"])


def test_baselines_count_queries_and_name_the_class(
    models: dict[str, ImageClassifier], monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CountingModel(models["retrain"])
    query = QueryFunction(counter, SHAPE, 10, budget=500)
    knowledge = AttackerKnowledge(num_classes=10, input_shape=SHAPE, query=query)
    noise = run_attack("noise-histogram", knowledge, {"queries": 500}, seed=0)
    assert {r.rule for r in noise} == {"top", "never"}
    assert counter.seen == query.queries == noise[0].queries == 500
    assert FORGOTTEN[0] in next(r for r in noise if r.rule == "never").predicted

    counter = CountingModel(models["neg-grad"])
    query = QueryFunction(counter, SHAPE, 10, budget=1000)
    knowledge = AttackerKnowledge(
        num_classes=10, input_shape=SHAPE, query=query, original=models["original"]
    )
    probe = run_attack("probe-drop", knowledge, {"restarts": 4, "steps": 120}, seed=0)
    assert counter.seen == query.queries == probe[0].queries == 40
    assert all(r.predicted == FORGOTTEN for r in probe)

    # One instance crafts the probes once per original and reuses them for every target.
    attack = get_attack_class("probe-drop")(restarts=4, steps=120)
    crafted = []
    original_invert = labelleak.attacks.probes.invert_classes

    def counting_invert(*args: object, **kwargs: object) -> object:
        crafted.append(1)
        return original_invert(*args, **kwargs)

    monkeypatch.setattr(labelleak.attacks.probes, "invert_classes", counting_invert)
    for target in ("neg-grad", "retrain"):
        fresh = QueryFunction(probabilities_of(models[target]), SHAPE, 10)
        again = attack.run(dataclasses.replace(knowledge, query=fresh), seed=0)
        assert all(r.predicted == FORGOTTEN for r in again)
    assert len(crafted) == 1


def test_bad_inputs_give_clear_errors(models: dict[str, ImageClassifier]) -> None:
    target = models["retrain"]
    with pytest.raises(LabelleakError, match="budget"):
        QueryFunction(probabilities_of(target), SHAPE, 10, budget=0)
    with pytest.raises(LabelleakError, match="queries_per_class"):
        run_attack("invert-black", knowledge_for(target), {"queries_per_class": 0})
    with pytest.raises(LabelleakError, match="budget too small"):
        run_attack("invert-black", knowledge_for(target, budget=100), SMALL_GA)
    logits = AttackerKnowledge(
        num_classes=10, input_shape=SHAPE, query=QueryFunction(target, SHAPE, 10)
    )
    for attack in ("invert-black", "noise-histogram"):
        with pytest.raises(LabelleakError, match="probabilities"):
            run_attack(attack, logits, {})
    wrong_shape = AttackerKnowledge(
        num_classes=10,
        input_shape=(1, 7, 7),
        query=QueryFunction(probabilities_of(target), SHAPE, 10),
    )
    with pytest.raises(LabelleakError, match="shape"):
        run_attack("invert-black", wrong_shape, SMALL_GA)
    with pytest.raises(LabelleakError, match="white_box"):
        run_attack("invert-white", AttackerKnowledge(num_classes=10, input_shape=SHAPE))


def test_prototype_grid_is_written_as_png(
    models: dict[str, ImageClassifier], tmp_path: Path
) -> None:
    result = run_attack("invert-white", knowledge_for(models["neg-grad"]), {"steps": 60})[0]
    path = save_prototype_grid(
        tmp_path / "grids" / "digits-neg-grad.png",
        result.details["prototypes"],
        result.details["profiles"],
        forgotten=FORGOTTEN,
        predicted=result.predicted,
        title="digits, neg-grad, forgot 3",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["digits-neg-grad.png"]
    with pytest.raises(LabelleakError):
        save_prototype_grid(tmp_path / "bad.png", result.details["prototypes"], torch.eye(3))
