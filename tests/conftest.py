"""Shared fixtures: the bundled ``digits`` data and one original model trained once per session.

Everything here runs on the CPU with scikit-learn's ``digits`` (no download); the default digits
recipe (MLP, 30 epochs) trains in about a second, so tests use the defaults a user gets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from labelleak.experiment.config import ExperimentConfig, parse_config
from labelleak.experiment.pipeline import BuiltModel, Pipeline
from labelleak.experiment.store import ArtifactStore
from labelleak.unlearning import PAPER_METHODS, UnlearningTask

# The models here are tiny: one intra-op thread is as fast on an idle machine and many times faster
# when the cores are shared (oversubscribed OpenMP threads spin). Subprocesses get the same via
# ``OMP_NUM_THREADS`` (see ``subprocess_env``). Results are deterministic either way.
torch.set_num_threads(1)

CPU = torch.device("cpu")
SRC = Path(__file__).resolve().parents[1] / "src"
DATASET = "digits"
SEED = 0

#: Every paper method with its default config; listing amnesiac makes the original record updates.
DIGITS_CONFIG: dict[str, Any] = {
    "dataset": DATASET,
    "methods": list(PAPER_METHODS),
    "forget": [[3], [2, 7]],
    "seeds": [SEED],
}


def subprocess_env() -> dict[str, str]:
    """The environment for running ``python -m labelleak.cli`` from the source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    env.pop("LABELLEAK_CACHE", None)
    return env


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state dict."""
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def assert_same_state(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    """Bit-for-bit equality of two state dicts (same names, shapes, dtypes and values)."""
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert torch.equal(left[name], right[name]), f"tensor {name} differs"


def make_pipeline(config: dict[str, Any] | ExperimentConfig, cache: Path) -> Pipeline:
    parsed = config if isinstance(config, ExperimentConfig) else parse_config(config)
    return Pipeline(parsed, ArtifactStore(cache), CPU)


def make_task(pipeline: Pipeline, original: BuiltModel, forget: tuple[int, ...]) -> UnlearningTask:
    """The task :meth:`Pipeline.unlearned` would hand a method, built without the cache."""
    splits = pipeline.splits(DATASET)
    retain_x, retain_y = splits.retain_data(forget)
    forget_x, forget_y = splits.forget_data(forget)
    return UnlearningTask(
        original=original.model,
        new_model=lambda: pipeline.new_model(DATASET, SEED),
        train_config=pipeline.config.train_config(DATASET),
        retain_x=retain_x,
        retain_y=retain_y,
        forget_x=forget_x,
        forget_y=forget_y,
        forget_classes=forget,
        num_classes=splits.num_classes,
        seed=SEED,
        device=CPU,
        training_record=original.record,
    )


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def digits_pipeline(session_cache: Path) -> Pipeline:
    return make_pipeline(DIGITS_CONFIG, session_cache)


@pytest.fixture(scope="session")
def _digits_original_and_state(
    digits_pipeline: Pipeline,
) -> tuple[BuiltModel, dict[str, torch.Tensor]]:
    built = digits_pipeline.original(DATASET, SEED)
    return built, state_of(built.model)


@pytest.fixture(scope="session")
def digits_original(_digits_original_and_state) -> BuiltModel:  # type: ignore[no-untyped-def]
    """The digits original (seed 0, default recipe, with amnesiac's training record)."""
    return _digits_original_and_state[0]


@pytest.fixture(scope="session")
def digits_original_state(_digits_original_and_state) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """The original's weights taken right after training, to detect later modification."""
    return _digits_original_and_state[1]


@pytest.fixture(scope="session")
def digits_test(digits_pipeline: Pipeline) -> tuple[torch.Tensor, torch.Tensor]:
    return digits_pipeline.splits(DATASET).test_data()
