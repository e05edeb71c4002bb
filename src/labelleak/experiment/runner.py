"""Run a grid and write its results: ``unlearning.csv`` and ``config.resolved.yaml``.

Each finished grid cell is written to ``OUT/cells/`` as its own small JSON file (atomically) the
moment it completes, and the CSV is rebuilt from those files. A run killed at any point therefore
loses at most the cell in progress, and a rerun with the same ``OUT`` skips every finished cell.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

import labelleak
from labelleak.evaluation import class_accuracies
from labelleak.experiment.config import ExperimentConfig, validate_config
from labelleak.experiment.pipeline import Pipeline
from labelleak.experiment.store import ArtifactStore
from labelleak.utils import atomic_path, content_hash, resolve_device, write_text_atomic

UNLEARNING_COLUMNS = [
    "dataset", "arch", "method", "forgotten", "seed",
    "forget_acc", "retain_acc", "test_acc", "seconds",
    "original_forget_acc", "original_retain_acc", "original_test_acc",
]  # fmt: skip


def format_classes(classes: tuple[int, ...] | list[int]) -> str:
    """Class ids as the CSVs spell them: sorted, joined by ``+`` (``(2, 7)`` -> ``"2+7"``)."""
    return "+".join(str(c) for c in sorted(classes))


@dataclass(frozen=True)
class Cell:
    """One unlearned model of the grid."""

    dataset: str
    seed: int
    method: str
    forget: tuple[int, ...]


def expand_grid(config: ExperimentConfig, pipeline: Pipeline) -> list[Cell]:
    """Datasets x seeds x forget sets x methods, in that nesting (originals train once each)."""
    cells = []
    for dataset in config.dataset:
        sets = config.forget_sets(pipeline.splits(dataset).num_classes)
        for seed in config.seeds:
            for forget in sets:
                for method in config.methods:
                    cells.append(Cell(dataset, seed, method, forget))
    return cells


def resolved_config(config: ExperimentConfig, pipeline: Pipeline) -> dict[str, Any]:
    """The config with every default made explicit, plus versions, for ``config.resolved.yaml``."""
    resolved = config.model_dump(mode="json")
    resolved["resolved"] = {
        dataset: {
            "arch": config.arch_for(dataset),
            "train": config.train_config(dataset).model_dump(),
            "forget_sets": [format_classes(s) for s in config.forget_sets(10)],
            "data_fingerprint": pipeline.splits(dataset).fingerprint(),
        }
        for dataset in config.dataset
    }
    from labelleak.unlearning import build_method

    resolved["resolved"]["method_params"] = {
        m: build_method(m, config.method_params.get(m)).config.model_dump() for m in config.methods
    }
    resolved["versions"] = {
        "labelleak": labelleak.__version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "device": str(pipeline.device),
    }
    return resolved


class ExperimentRunner:
    """Runs one config into one output folder, resuming whatever a previous run finished."""

    def __init__(
        self,
        config: ExperimentConfig,
        out_dir: str | Path,
        cache_dir: str | Path,
        progress: bool = True,
    ) -> None:
        validate_config(config)
        self.config = config
        self.out_dir = Path(out_dir)
        self.cells_dir = self.out_dir / "cells" / "unlearning"
        self.pipeline = Pipeline(
            config, ArtifactStore(cache_dir), resolve_device(config.device), progress=progress
        )
        self.progress = progress

    def cell_path(self, cell: Cell) -> Path:
        splits = self.pipeline.splits(cell.dataset)
        key = content_hash(
            {
                "cell": [cell.dataset, cell.seed, cell.method, list(cell.forget)],
                "config": self.config.model_dump(mode="json", exclude={"attacks", "device"}),
                "splits": splits.settings,
            }
        )
        return self.cells_dir / f"{key}.json"

    def run(self) -> pd.DataFrame:
        """Compute every missing cell and return the unlearning table."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        cells = expand_grid(self.config, self.pipeline)
        resolved = resolved_config(self.config, self.pipeline)
        write_text_atomic(self.out_dir / "config.resolved.yaml", yaml.safe_dump(resolved))
        todo = [cell for cell in cells if not self.cell_path(cell).is_file()]
        bar = tqdm(todo, desc="grid", unit="model", disable=not self.progress)
        for cell in bar:
            bar.set_postfix_str(
                f"{cell.dataset} {cell.method} forget {format_classes(cell.forget)}"
            )
            row = self.run_cell(cell)
            write_text_atomic(self.cell_path(cell), json.dumps(row))
            self.write_table(cells)
        return self.write_table(cells)

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        splits = self.pipeline.splits(cell.dataset)
        original = self.pipeline.original(cell.dataset, cell.seed)
        target = self.pipeline.unlearned(cell.dataset, cell.seed, cell.method, cell.forget)
        x_test, y_test = splits.test_data()
        after = class_accuracies(
            target.model, x_test, y_test, cell.forget, device=self.pipeline.device
        )
        before = class_accuracies(
            original.model, x_test, y_test, cell.forget, device=self.pipeline.device
        )
        return {
            "dataset": cell.dataset,
            "arch": self.config.arch_for(cell.dataset),
            "method": cell.method,
            "forgotten": format_classes(cell.forget),
            "seed": cell.seed,
            **after,
            "seconds": round(target.seconds, 3),
            **{f"original_{name}": value for name, value in before.items()},
        }

    def write_table(self, cells: list[Cell]) -> pd.DataFrame:
        """Rebuild ``unlearning.csv`` from the finished cells of this grid, in grid order."""
        rows = []
        for cell in cells:
            path = self.cell_path(cell)
            if path.is_file():
                rows.append(json.loads(path.read_text()))
        table = pd.DataFrame(rows, columns=UNLEARNING_COLUMNS)
        with atomic_path(self.out_dir / "unlearning.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.4f")
        return table
