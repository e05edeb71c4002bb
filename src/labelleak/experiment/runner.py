"""Run a grid and write its results: ``unlearning.csv``, ``attacks.csv``, ``config.resolved.yaml``.

Each finished grid cell is written to ``OUT/cells/`` as its own small JSON file (atomically) the
moment it completes, and the CSV is rebuilt from those files. A run killed at any point therefore
loses at most the cell in progress, and a rerun with the same ``OUT`` skips every finished cell.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

import labelleak
from labelleak.attacks import ATTACKS
from labelleak.defences import NO_DEFENCE, defence_stages
from labelleak.evaluation import class_accuracies, split_accuracies
from labelleak.experiment.attacking import (
    ATTACK_COLUMNS,
    RESULTS_VERSION,
    AttackCell,
    AttackRunner,
    format_set,
)
from labelleak.experiment.config import ExperimentConfig, validate_config
from labelleak.experiment.pipeline import ARTIFACT_VERSION, Pipeline
from labelleak.experiment.store import ArtifactStore
from labelleak.training import predict_logits
from labelleak.unlearning import build_method
from labelleak.utils import (
    TABLE_REFRESH_SECONDS,
    Every,
    atomic_path,
    content_hash,
    release_free_memory,
    remove_stale_temporaries,
    resolve_device,
    write_text_atomic,
)

if TYPE_CHECKING:
    from labelleak.experiment.parallel import Executor

#: Config keys that change attacks but not unlearned models.
ATTACK_SETTINGS = (
    "attacks", "attack_params", "attacker_classes", "unrelated", "unrelated_count",
    "shadow_methods", "shadow_singles", "shadow_pairs", "controls", "prototypes",
    "shadow_defence",
)  # fmt: skip

#: Config keys that enter a cell's key only through :meth:`ExperimentRunner._defence_key`, so
#: grids stored before defences existed keep their keys.
DEFENCE_SETTINGS = ("defences", "defence_params", "shadow_defence")

#: Config keys that say which cells a grid holds, not what any one cell computes.
GRID_SHAPE = ("dataset", "seeds", "forget", "controls")

#: design.md's contract columns first, in its order; later additions go at the end so tools
#: that read by position keep working.
UNLEARNING_COLUMNS = [
    "dataset", "arch", "method", "forgotten", "seed",
    "forget_acc", "retain_acc", "test_acc", "seconds",
    "original_forget_acc", "original_retain_acc", "original_test_acc", "defence",
]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One released model of the grid: an unlearned model, defended by ``defence``."""

    dataset: str
    seed: int
    method: str
    forget: tuple[int, ...]
    defence: str = NO_DEFENCE

    def __repr__(self) -> str:
        # The repr enters cache keys: an undefended cell keeps the key it had before defences.
        tail = "" if self.defence == NO_DEFENCE else f", defence={self.defence!r}"
        return (
            f"Cell(dataset={self.dataset!r}, seed={self.seed!r}, method={self.method!r}, "
            f"forget={self.forget!r}{tail})"
        )


def expand_grid(config: ExperimentConfig, pipeline: Pipeline) -> list[Cell]:
    """Datasets x seeds x forget sets x methods x defences, in that nesting (originals train
    once each, and each unlearned model is made once for all its defences)."""
    cells = []
    for dataset in config.dataset:
        sets = config.forget_sets(pipeline.splits(dataset).num_classes)
        for seed in config.seeds:
            for forget in sets:
                for method in config.methods:
                    for defence in config.defences:
                        cells.append(Cell(dataset, seed, method, forget, defence))
    return cells


def resolved_config(config: ExperimentConfig, pipeline: Pipeline) -> dict[str, Any]:
    """The config with every default made explicit, plus versions, for ``config.resolved.yaml``."""
    resolved = config.model_dump(mode="json")
    resolved["resolved"] = {
        dataset: {
            "arch": config.arch_for(dataset),
            "train": config.train_config(dataset).model_dump(),
            "forget_sets": [
                format_set(s) for s in config.forget_sets(pipeline.splits(dataset).num_classes)
            ],
            "data_fingerprint": pipeline.splits(dataset).fingerprint(),
        }
        for dataset in config.dataset
    }
    resolved["resolved"]["method_params"] = {
        m: build_method(m, config.method_params.get(m)).config.model_dump() for m in config.methods
    }
    resolved["resolved"]["defence_params"] = {
        stage: pipeline.defence(stage).config.model_dump()
        for name in config.defences
        for stage in defence_stages(name)
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
        validate_config(config, set(ATTACKS))
        self.config = config
        self.out_dir = Path(out_dir)
        self.cells_dir = self.out_dir / "cells" / "unlearning"
        self.attack_cells_dir = self.out_dir / "cells" / "attacks"
        self.pipeline = Pipeline(
            config, ArtifactStore(cache_dir), resolve_device(config.device), progress=progress
        )
        self.attacker = AttackRunner(config, self.pipeline)
        self.progress = progress
        # The CSVs are rebuilt after every finished cell from every cell's path: without this
        # memo each rebuild would re-hash the whole config once per cell of the grid.
        self._keys: dict[tuple[Cell | AttackCell, str | None], str] = {}
        # Each original's per-sample test hits, by model key: every cell reports the original's
        # accuracies beside its own, and predicting the test set costs ~0.7 s on full MNIST.
        self._original_hits: dict[str, torch.Tensor] = {}

    def cell_path(self, cell: Cell) -> Path:
        return self.cells_dir / f"{self._cell_key(cell)}.json"

    def attack_cell_path(self, cell: AttackCell, attack: str) -> Path:
        """Where one attack's rows on one target are stored."""
        return self.attack_cells_dir / f"{self._cell_key(cell, attack)}.json"

    def missing_attacks(self, cell: AttackCell) -> list[str]:
        """The configured attacks not yet run on target ``cell``, in config order."""
        return [
            name for name in self.config.attacks if not self.attack_cell_path(cell, name).is_file()
        ]

    def _cell_key(self, cell: Cell | AttackCell, attack: str | None = None) -> str:
        if (cell, attack) not in self._keys:
            self._keys[cell, attack] = self._compute_key(cell, attack)
        return self._keys[cell, attack]

    def _compute_key(self, cell: Cell | AttackCell, attack: str | None = None) -> str:
        # Resolved settings (defaults included) and the artifact version are part of the key,
        # so a result computed under other defaults or older code is never reused. The grid's
        # shape is not (the cell names its own dataset, seed and forget set): adding a seed or
        # a forget set to a finished grid computes only the new cells. An attack cell holds one
        # attack, keyed by only the settings that reach it: adding an attack to a finished grid,
        # or changing the unrelated data, recomputes only the attacks concerned.
        extra: dict[str, str | None] = {}
        excluded = {"device", "methods", "method_params", *GRID_SHAPE, *DEFENCE_SETTINGS}
        own_method = [] if cell.method == "original" else [cell.method]
        if attack is None:
            excluded |= set(ATTACK_SETTINGS)
            attacks: dict[str, dict[str, Any]] = {}
            methods = self._resolved_methods(own_method)
        else:
            needs = self.attacker.attack(attack).needs()
            excluded |= {"attacks", "attack_params", "prototypes"}
            if "unrelated_data" not in needs:
                excluded |= {"unrelated", "unrelated_count"}
            if "shadows" in needs:
                # Shadow runs unlearn with the grid's methods, so every method counts.
                methods = self._resolved_methods(self.config.methods)
            else:
                excluded |= {"shadow_methods", "shadow_singles", "shadow_pairs"}
                methods = self._resolved_methods(own_method)
            attacks = {attack: self._attack_key_params(attack)}
            extra["attack"] = attack
        # The other methods still shape the original every cell starts from (or reports): it is
        # trained with a recorder when one of them needs it. Keys made with amnesiac's recorder,
        # the case of every grid stored so far, carry no marker.
        if self.pipeline.record_for != "amnesiac":
            extra["original"] = self.pipeline.record_for
        if cell.defence != NO_DEFENCE:
            extra["defence"] = self._defence_key(cell.defence)
        if attack is not None and self.config.shadow_defence != "none" and "shadows" in needs:
            extra["shadow_defence"] = self.config.shadow_defence
        return self._hash_key(cell, attack is not None, methods, excluded, attacks, **extra)

    def _defence_key(self, name: str) -> str:
        stages = self.pipeline.defence_chain(name)
        if len(stages) == 1:  # the form keys had before chains, kept so stored cells match
            return content_hash([name, stages[0].config.key_params(), stages[0].version])
        return content_hash([name, [[d.config.key_params(), d.version] for d in stages]])

    def _attack_key_params(self, name: str) -> dict[str, Any]:
        return self.attacker.attack(name).config.key_params()

    def _every_attack_key_params(self) -> dict[str, dict[str, Any]]:
        """What keys that hashed every configured attack's settings held (legacy keys)."""
        return {name: self._attack_key_params(name) for name in self.config.attacks}

    def _target_key(self, cell: AttackCell) -> str:
        """The key of the file that held every attack's rows on one target before each attack
        got its own (see :meth:`adopt_legacy_cells`)."""
        methods = self._resolved_methods(self.config.methods)
        excluded = {"device", "prototypes", *GRID_SHAPE}
        return self._hash_key(cell, True, methods, excluded, self._every_attack_key_params())

    def _legacy_keys(self, cell: Cell | AttackCell, with_attacks: bool) -> list[str]:
        """Keys this cell had before keys left out the grid's shape: the whole config (seed
        list and forget sets included) was hashed, so a grid run with these seeds, or with this
        cell's seed alone, stored it under one of these (an attacked target: every attack's
        rows in one file)."""
        methods = self._resolved_methods(self.config.methods)
        excluded = {"device", "prototypes"} if with_attacks else {"device", *ATTACK_SETTINGS}
        attacks = self._every_attack_key_params() if with_attacks else {}
        keys = []
        for seeds in (self.config.seeds, [cell.seed]):
            config = self.config.model_copy(update={"seeds": seeds})
            keys.append(self._hash_key(cell, with_attacks, methods, excluded, attacks, config))
        return list(dict.fromkeys(keys))

    def _resolved_methods(self, names: list[str]) -> dict[str, dict[str, Any]]:
        # Methods enter with every field, neg-grad's later `margin` too: cells were keyed so
        # before `key_params` existed, and switching would orphan every stored cell. A setting
        # added to an attack from now on goes in its config's `added_later` instead. A method's
        # `version` enters from 2 on, as in the model cache: a cell computed from a model the
        # older code made is not reused (at version 1 the keys stay as they were).
        resolved = {}
        for name in names:
            method = build_method(name, self.config.method_params.get(name))
            resolved[name] = method.config.model_dump()
            if method.version > 1:
                resolved[name]["method_version"] = method.version
        return resolved

    def _hash_key(
        self,
        cell: Cell | AttackCell,
        with_attacks: bool,
        methods: dict[str, dict[str, Any]],
        excluded: set[str],
        attacks: dict[str, dict[str, Any]],
        config: ExperimentConfig | None = None,
        **extra: str | None,
    ) -> str:
        config = config or self.config
        return content_hash(
            {
                "cell": [repr(cell)],
                # Where a plugin method's class comes from does not change what it computes.
                "config": config.model_dump(mode="json", exclude=excluded | {"plugins"}),
                "resolved": {"methods": methods, "attacks": attacks},
                "version": [
                    ARTIFACT_VERSION,
                    labelleak.__version__,
                    *([RESULTS_VERSION] if with_attacks else []),
                ],
                "splits": self.pipeline.splits(cell.dataset).settings,
                **{name: [value] for name, value in extra.items()},
            }
        )

    def adopt_legacy_cells(self, cells: list[Cell]) -> int:
        """Move finished cells stored under a legacy key to their current key, so a grid
        finished before a key change is not recomputed; returns how many files were adopted.

        An unlearning cell under a key that hashed the grid's shape (see :meth:`_legacy_keys`)
        is renamed, atomically. An attacked target stored whole (every attack's rows in one
        file, under :meth:`_target_key` or a legacy key) is split into one file per attack,
        each written atomically, and removed once every part is in place.
        """
        moved = 0
        for cell in cells:
            path = self.cell_path(cell)
            if path.is_file():
                continue
            for key in self._legacy_keys(cell, False):
                legacy = path.with_name(f"{key}.json")
                if legacy.is_file():
                    legacy.replace(path)
                    moved += 1
                    break
        if not self.config.attacks:
            return moved
        for target in self.attack_cells(cells):
            missing = self.missing_attacks(target)
            if not missing:
                continue
            for key in [self._target_key(target), *self._legacy_keys(target, True)]:
                whole = self.attack_cells_dir / f"{key}.json"
                if whole.is_file():
                    rows = json.loads(whole.read_text())
                    for name in missing:
                        part = [row for row in rows if row["attack"] == name]
                        if part:
                            write_text_atomic(self.attack_cell_path(target, name), json.dumps(part))
                    whole.unlink()
                    moved += 1
                    break
        return moved

    def run(self, executor: Executor | None = None) -> pd.DataFrame:
        """Compute every missing cell and return the unlearning table.

        ``executor`` runs the cells elsewhere (worker processes, a Ray cluster; see
        :mod:`labelleak.experiment.parallel`); ``None`` or a serial executor computes them here,
        one after the other.
        """
        from labelleak.experiment.parallel import SerialExecutor, run_phases

        cells = expand_grid(self.config, self.pipeline)
        # Settings that cannot serve a dataset's inputs fail now, before anything is written,
        # not after hours of unlearning.
        for dataset in dict.fromkeys(cell.dataset for cell in cells):
            input_shape = self.pipeline.splits(dataset).dataset.input_shape
            for name in self.config.attacks:
                self.attacker.attack(name).config.check_input(input_shape)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out_dir)
        resolved = resolved_config(self.config, self.pipeline)
        write_text_atomic(self.out_dir / "config.resolved.yaml", yaml.safe_dump(resolved))
        self.adopt_legacy_cells(cells)
        if executor is not None and not isinstance(executor, SerialExecutor):
            return run_phases(self, cells, executor)
        previous = torch.get_num_threads()
        if executor is not None and executor.threads is not None:
            torch.set_num_threads(executor.threads)
        try:
            return self._run_serial(cells)
        finally:
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)

    def _run_serial(self, cells: list[Cell]) -> pd.DataFrame:
        """Today's loop: every missing cell in grid order in this process, then the attacks."""
        todo = [cell for cell in cells if not self.cell_path(cell).is_file()]
        bar = tqdm(todo, desc="unlearn", unit="model", disable=not self.progress)
        refresh = Every(TABLE_REFRESH_SECONDS)
        for cell in bar:
            forgotten = format_set(cell.forget)
            bar.set_postfix_str(f"{cell.dataset} {cell.method} {cell.defence} forget {forgotten}")
            self.finish_cell(cell)
            if refresh.due():
                self.write_table(cells)
        table = self.write_table(cells)
        if self.config.attacks:
            self.run_attacks(cells)
        return table

    def finish_cell(self, cell: Cell) -> None:
        """Compute one unlearning cell and write its file atomically (a worker's unit of work)."""
        write_text_atomic(self.cell_path(cell), json.dumps(self.run_cell(cell)))
        release_free_memory()

    def finish_attack_cell(self, cell: AttackCell, picture: bool) -> None:
        """Run the attacks not yet run on one target and write each one's rows atomically;
        ``picture`` draws its prototypes into ``DIR/prototypes/`` (with ``prototypes: all``
        every target's go to ``all/``)."""
        folder = self.out_dir / "prototypes"
        rows = self.attacker.run(
            cell,
            self.missing_attacks(cell),
            picture_dir=folder if picture else None,
            calibration_dir=self.out_dir / "calibration",
            every_picture_dir=folder / "all" if self.config.prototypes == "all" else None,
        )
        for name, part in rows.items():
            write_text_atomic(self.attack_cell_path(cell, name), json.dumps(part))
        release_free_memory()

    def attack_cells(self, cells: list[Cell]) -> list[AttackCell]:
        """One attacked target per unlearned model, plus the original per forget set (control)."""
        targets: list[AttackCell] = []
        for cell in cells:
            control = AttackCell(cell.dataset, cell.seed, "original", cell.forget, cell.defence)
            if self.config.controls and control not in targets:
                targets.append(control)
            targets.append(
                AttackCell(cell.dataset, cell.seed, cell.method, cell.forget, cell.defence)
            )
        return targets

    def run_attacks(self, cells: list[Cell]) -> pd.DataFrame:
        """Attack every target not attacked yet, in this process; rebuild ``attacks.csv``."""
        from labelleak.experiment.parallel import prototype_targets

        targets = self.attack_cells(cells)
        todo = [cell for cell in targets if self.missing_attacks(cell)]
        # The first target of each (dataset, method) in grid order draws the prototypes, as in a
        # parallel run, so the pictures do not depend on how the run was split or resumed.
        pictured = prototype_targets(targets, self.config.prototypes)
        bar = tqdm(todo, desc="attack", unit="target", disable=not self.progress)
        refresh = Every(TABLE_REFRESH_SECONDS)
        for cell in bar:
            bar.set_postfix_str(
                f"{cell.dataset} {cell.method} {cell.defence} gap {format_set(cell.gap)}"
            )
            self.finish_attack_cell(cell, picture=cell in pictured)
            if refresh.due():
                self.write_attack_table(targets)
        return self.write_attack_table(targets)

    def write_attack_table(self, targets: list[AttackCell]) -> pd.DataFrame:
        """Rebuild ``attacks.csv`` from the finished attack cells, in grid order."""
        paths = [
            self.attack_cell_path(cell, name) for cell in targets for name in self.config.attacks
        ]
        return self._rebuild_csv(paths, "attacks.csv", ATTACK_COLUMNS)

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        splits = self.pipeline.splits(cell.dataset)
        original = self.pipeline.original(cell.dataset, cell.seed)
        unlearned = self.pipeline.unlearned(cell.dataset, cell.seed, cell.method, cell.forget)
        target = self.pipeline.released(
            cell.dataset, cell.seed, cell.method, cell.forget, cell.defence
        )
        # The time to release the model: unlearning, plus the defence where one applied.
        seconds = unlearned.seconds + (target.seconds if target is not unlearned else 0.0)
        x_test, y_test = splits.test_data()
        after = class_accuracies(
            target.model, x_test, y_test, cell.forget, device=self.pipeline.device
        )
        if original.key not in self._original_hits:
            logits = predict_logits(original.model, x_test, device=self.pipeline.device)
            self._original_hits[original.key] = logits.argmax(dim=1) == y_test
        before = split_accuracies(self._original_hits[original.key], y_test, cell.forget)
        return {
            "dataset": cell.dataset,
            "arch": self.config.arch_for(cell.dataset),
            "method": cell.method,
            "defence": cell.defence,
            "forgotten": format_set(cell.forget),
            "seed": cell.seed,
            **after,
            "seconds": round(seconds, 3),
            **{f"original_{name}": value for name, value in before.items()},
        }

    def write_table(self, cells: list[Cell]) -> pd.DataFrame:
        """Rebuild ``unlearning.csv`` from the finished cells of this grid, in grid order."""
        paths = [self.cell_path(cell) for cell in cells]
        return self._rebuild_csv(paths, "unlearning.csv", UNLEARNING_COLUMNS, "%.4f")

    def _rebuild_csv(
        self, paths: list[Path], name: str, columns: list[str], float_format: str | None = None
    ) -> pd.DataFrame:
        """Write ``OUT/name`` atomically from the finished cell files among ``paths``.

        A cell file holds one row (an unlearning cell) or a list of rows (an attacked target).
        """
        rows: list[dict[str, Any]] = []
        for path in paths:
            if path.is_file():
                content = json.loads(path.read_text())
                rows.extend(content if isinstance(content, list) else [content])
        table = pd.DataFrame(rows, columns=columns)
        with atomic_path(self.out_dir / name) as tmp:
            table.to_csv(tmp, index=False, float_format=float_format)
        return table
