"""Attack the grid's targets: assemble each attacker's knowledge, run attacks, shadow runs.

Every target (an unlearned model, or the never-unlearned original as a control) is attacked under
one knowledge setting per forget set: the attacker's data is the reserved slice restricted to
retained classes (``attacker_classes``), the unrelated data is the dataset's sibling, and shadow
runs are the attacker's own models trained on its own data with seeds disjoint from the target's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from labelleak.attacks import (
    Attack,
    AttackerKnowledge,
    AttackResult,
    QueryFunction,
    ShadowRun,
    get_attack_class,
    make_attack_config,
    probabilities_of,
    restrict,
)
from labelleak.data.unrelated import unrelated_images
from labelleak.defences import NO_DEFENCE
from labelleak.experiment.config import ExperimentConfig
from labelleak.experiment.pipeline import Pipeline
from labelleak.models.base import ImageClassifier
from labelleak.report.prototypes import save_prototype_grid
from labelleak.utils import atomic_path, content_hash

#: Shadow seeds are offset so they never coincide with a target's seed.
SHADOW_SEED_OFFSET = 100_000

#: design.md's contract columns first, in its order; later additions go at the end so tools
#: that read by position keep working.
ATTACK_COLUMNS = [
    "dataset", "arch", "method", "forgotten", "seed", "attack", "rule",
    "predicted", "success", "queries", "seconds", "attacker_classes", "defence",
]  # fmt: skip

#: Knowledge that is the same for every target of one (dataset, seed): an attack needing only
#: these gives the same answer on the same model whatever forget set the target is paired with.
SHARED_KNOWLEDGE = frozenset({"white_box", "query", "original", "unrelated_data"})

#: Bump when a change to the attacks or their rules makes stored attack results stale (2: ``top``
#: names as many classes as the target forgot, not one; 3: param-diff's feature table gained the
#: target's rows evaluated on every unrelated image, which its shadow-fit rules read).
RESULTS_VERSION = 3

#: How the CSVs spell an empty class set (the truth for the never-unlearned original).
NOTHING = "none"


def format_set(classes: tuple[int, ...] | list[int]) -> str:
    """Class ids as the CSVs spell them: sorted, joined by ``+`` (``(2, 7)`` -> ``"2+7"``);
    the empty set is ``none``."""
    return "+".join(str(c) for c in sorted(classes)) if len(classes) else NOTHING


@dataclass(frozen=True)
class AttackCell:
    """One attacked target: ``method`` is ``original`` for the control, whose truth is empty.

    ``gap`` is the forget set the attacker's knowledge is built for: the target's truth for an
    unlearned model; for the control, the set the matching unlearned targets forgot, so the
    control holds exactly the same knowledge (including the same gap in the attacker's data).
    """

    dataset: str
    seed: int
    method: str
    gap: tuple[int, ...]
    #: The defence the released target went through (``none``: as the method left it).
    defence: str = NO_DEFENCE

    def __repr__(self) -> str:
        # The repr enters cache keys: an undefended target keeps the key it had before defences.
        tail = "" if self.defence == NO_DEFENCE else f", defence={self.defence!r}"
        return (
            f"AttackCell(dataset={self.dataset!r}, seed={self.seed!r}, method={self.method!r}, "
            f"gap={self.gap!r}{tail})"
        )

    @property
    def truth(self) -> tuple[int, ...]:
        return () if self.method == "original" else self.gap


def _write_once(path: Path, frame: pd.DataFrame, dataset: str, attack: str, knowledge: str) -> None:
    """``frame`` behind ``dataset, attack, knowledge`` columns, written atomically unless
    ``path`` exists (the same knowledge setting always fits the same)."""
    if path.exists():
        return
    frame.insert(0, "knowledge", knowledge)
    frame.insert(0, "attack", attack)
    frame.insert(0, "dataset", dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


class AttackRunner:
    """Builds knowledge and runs the configured attacks on one target at a time."""

    def __init__(self, config: ExperimentConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline
        self._unrelated: dict[str, torch.Tensor] = {}
        self._shadows: dict[tuple[Any, ...], list[ShadowRun]] = {}
        self._attacks: dict[str, Attack] = {}
        self._reused: dict[tuple[Any, ...], tuple[list[AttackResult], float]] = {}

    def attacker_classes(self, dataset: str, seed: int, gap: tuple[int, ...]) -> tuple[int, ...]:
        """The retained classes the attacker's data covers for a target with forget set ``gap``."""
        num_classes = self.pipeline.splits(dataset).num_classes
        retained = [c for c in range(num_classes) if c not in gap]
        wanted = self.config.attacker_classes
        if wanted == "all":
            return tuple(retained)
        if isinstance(wanted, list):
            return tuple(sorted(c for c in wanted if c in retained))
        rng = np.random.default_rng([self.config.split_seed, seed, *gap])
        count = min(int(wanted), len(retained))
        return tuple(sorted(int(c) for c in rng.choice(retained, size=count, replace=False)))

    def unrelated(self, dataset: str) -> torch.Tensor:
        if dataset not in self._unrelated:
            self._unrelated[dataset] = unrelated_images(
                self.config.unrelated_for(dataset),
                self.pipeline.splits(dataset).dataset,
                count=self.config.unrelated_count,
                seed=self.config.split_seed,
                data_dir=self.config.data_dir,
            )
        return self._unrelated[dataset]

    def shadow_methods(self, target_method: str) -> list[str]:
        chosen = self.config.shadow_methods
        if chosen == "same" and target_method != "original":
            return [target_method]
        if isinstance(chosen, list):
            return list(chosen)
        return list(self.config.methods)

    def shadow_jobs(
        self, classes: tuple[int, ...], methods: list[str], seed: int
    ) -> list[tuple[str, tuple[int, ...]]]:
        """(method, forget set) pairs the attacker unlearns itself, among its own classes."""
        rng = np.random.default_rng([self.config.split_seed, SHADOW_SEED_OFFSET + seed])
        pool = list(classes)
        singles = [
            (int(c),)
            for c in rng.choice(
                pool, size=min(self.config.shadow_singles, len(pool)), replace=False
            )
        ]
        pairs: list[tuple[int, ...]] = []
        if len(pool) >= 3:
            while len(pairs) < self.config.shadow_pairs:
                pair = tuple(sorted(int(c) for c in rng.choice(pool, size=2, replace=False)))
                if pair not in pairs:
                    pairs.append(pair)
        jobs = [("original", ())]
        jobs += [(method, forget) for method in methods for forget in singles + pairs]
        return jobs

    def shadow_defence(self, target_defence: str) -> str:
        """The defence the attacker applies to its shadows: the target's when it is adaptive."""
        return target_defence if self.config.shadow_defence == "same" else NO_DEFENCE

    def shadows(
        self,
        dataset: str,
        seed: int,
        classes: tuple[int, ...],
        target_method: str,
        target_defence: str = NO_DEFENCE,
    ) -> list[ShadowRun]:
        """The attacker's shadow runs, built (or loaded) once per knowledge setting."""
        methods = self.shadow_methods(target_method)
        defence = self.shadow_defence(target_defence)
        key = (dataset, seed, classes, tuple(methods), defence)
        if key not in self._shadows:
            x, y = self.pipeline.splits(dataset).attacker_data(classes)
            jobs = self.shadow_jobs(classes, methods, seed)
            built = self.pipeline.shadow_models(
                dataset, SHADOW_SEED_OFFSET + seed, x, y, jobs, defence
            )
            self._shadows[key] = [
                ShadowRun(target.model, forget, original.model, method, trained_classes=classes)
                for method, forget, original, target in built
            ]
        return self._shadows[key]

    def knowledge(self, cell: AttackCell, target: ImageClassifier) -> AttackerKnowledge:
        """Everything any attacker could hold about ``target``; each attack gets its share."""
        splits = self.pipeline.splits(cell.dataset)
        data = splits.dataset
        classes = self.attacker_classes(cell.dataset, cell.seed, cell.gap)
        return AttackerKnowledge(
            num_classes=data.num_classes,
            input_shape=data.input_shape,
            white_box=target,
            query=self.query_function(cell.dataset, target),
            attacker_data=splits.attacker_data(classes),
            attacker_classes=classes,
            unrelated_data=self.unrelated(cell.dataset),
            original=self.pipeline.original(cell.dataset, cell.seed).model,
            shadows=lambda: self.shadows(
                cell.dataset, cell.seed, classes, cell.method, cell.defence
            ),
            # The control is told the count of the targets it stands beside, as it gets their
            # attacker data.
            forget_count=len(cell.gap),
            extra={"trial": repr(cell)},
        )

    def attack(self, name: str) -> Attack:
        """One instance per attack for the whole grid, so shadow calibrations are reused."""
        if name not in self._attacks:
            cls = get_attack_class(name)
            self._attacks[name] = cls(make_attack_config(name, self.config.attack_params.get(name)))
        return self._attacks[name]

    def query_function(self, dataset: str, target: ImageClassifier) -> QueryFunction:
        """Black-box access to ``target`` with a query counter starting at zero."""
        data = self.pipeline.splits(dataset).dataset
        return QueryFunction(
            probabilities_of(target),
            data.input_shape,
            data.num_classes,
            device=self.pipeline.device,
        )

    def reuse_key(self, cell: AttackCell, name: str) -> tuple[Any, ...] | None:
        """Where one attack's results on one model can be reused across targets, or ``None``.

        The never-unlearned original is attacked once per forget set (as the control of each);
        an attack that needs only :data:`SHARED_KNOWLEDGE` and draws nothing per trial answers
        the same every time it is told the same forget count, so it runs once per (dataset,
        seed, count) original.
        """
        attack = self.attack(name)
        if cell.method != "original" or attack.per_trial or not attack.needs() <= SHARED_KNOWLEDGE:
            return None
        return (cell.dataset, cell.seed, name, len(cell.gap), cell.defence)

    def target_model(self, cell: AttackCell) -> ImageClassifier:
        return self.pipeline.released(
            cell.dataset, cell.seed, cell.method, cell.gap, cell.defence
        ).model

    def save_prototypes(
        self,
        folder: Path,
        cell: AttackCell,
        attack: str,
        results: list[AttackResult],
        per_target: bool = False,
    ) -> None:
        """A picture of one target's prototypes: named by (dataset, method), or with
        ``per_target`` by the forget set and seed too (the original, one model per seed, once)."""
        method = cell.method if cell.defence == NO_DEFENCE else f"{cell.method}-{cell.defence}"
        if not per_target:
            name = f"{cell.dataset}-{method}"
        elif cell.method == "original":
            name = f"{cell.dataset}-{method}-seed{cell.seed}"
        else:
            name = f"{cell.dataset}-{method}-{format_set(cell.truth)}-seed{cell.seed}"
        path = folder / f"{name}-{attack}.png"
        with_prototypes = [r for r in results if {"prototypes", "profiles"} <= r.details.keys()]
        if path.exists() or not with_prototypes:
            return
        result = with_prototypes[0]
        data = self.pipeline.splits(cell.dataset).dataset
        save_prototype_grid(
            path,
            result.details["prototypes"],
            result.details["profiles"],
            forgotten=cell.truth,
            predicted=result.predicted,
            class_names=data.class_names,
            title=f"{attack} on {cell.dataset} / {method}, forgotten "
            f"{format_set(cell.truth)}, named ({result.rule}) {format_set(result.predicted)}",
        )

    def save_calibration(
        self, folder: Path, cell: AttackCell, attack: str, results: list[AttackResult]
    ) -> None:
        """What an attack fit on the attacker's shadow runs, once per knowledge setting.

        The shadow scores behind a Youden threshold: one CSV per (dataset, attack, knowledge) with
        columns ``dataset, attack, knowledge, score, forgotten``, from which the report draws its
        ROC curves. The inversions' fitted levels: one CSV per (dataset, attack, knowledge) in
        ``folder / "levels"`` with columns ``dataset, attack, knowledge, rule, level, shadows``.
        """
        classes = self.attacker_classes(cell.dataset, cell.seed, cell.gap)
        knowledge = (
            f"seed {cell.seed}, attacker classes {format_set(classes)}, "
            f"shadows {'+'.join(self.shadow_methods(cell.method))}"
        )
        shadow_defence = self.shadow_defence(cell.defence)
        if shadow_defence != NO_DEFENCE:
            knowledge += f" defended by {shadow_defence}"
        name = f"{content_hash([cell.dataset, attack, knowledge])}.csv"
        roc = next((r.details["roc"] for r in results if "roc" in r.details), None)
        if roc is not None and len(roc["score"]) > 0:
            frame = pd.DataFrame({"score": roc["score"], "forgotten": roc["forgotten"]})
            _write_once(folder / name, frame, cell.dataset, attack, knowledge)
        levels = next(
            (r.details["fitted_levels"] for r in results if "fitted_levels" in r.details), None
        )
        if levels is not None:
            frame = pd.DataFrame(
                {
                    "rule": ["threshold-fit", "entropy-fit"],
                    "level": [levels.alpha, levels.entropy_alpha],
                    "shadows": levels.shadows,
                }
            )
            _write_once(folder / "levels" / name, frame, cell.dataset, attack, knowledge)

    def _attack_once(
        self,
        attack: Attack,
        cell: AttackCell,
        knowledge: AttackerKnowledge,
        target: ImageClassifier,
    ) -> tuple[list[AttackResult], float]:
        """One attack on one target, with a fresh query counter; its results and seconds."""
        counted = replace(knowledge, query=self.query_function(cell.dataset, target))
        view = restrict(counted, attack.needs())
        attack.prepare(view, seed=cell.seed)
        started = time.perf_counter()
        results = attack.run(view, seed=cell.seed)
        return results, time.perf_counter() - started

    def run(
        self,
        cell: AttackCell,
        attacks: Sequence[str] | None = None,
        picture_dir: Path | None = None,
        calibration_dir: Path | None = None,
        every_picture_dir: Path | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """``attacks`` (default: every configured one) on one target: per attack, one row per
        rule.

        Inversion attacks' prototypes are drawn into ``picture_dir`` once per (dataset, method),
        and into ``every_picture_dir`` for every target; the shadow scores behind Youden
        thresholds go to ``calibration_dir``.
        """
        names = list(self.config.attacks if attacks is None else attacks)
        target = self.target_model(cell)
        knowledge = self.knowledge(cell, target)
        if any("shadows" in self.attack(name).needs() for name in names):
            # Shadows are built once per knowledge setting and shared by every attack and
            # target; their training is not charged to the first attack that asks.
            assert knowledge.shadows is not None
            knowledge.shadows()
        rows: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            reuse = self.reuse_key(cell, name)
            if reuse is not None and reuse in self._reused:
                # The row keeps the seconds the one real run took: the cost of the attack.
                results, seconds = self._reused[reuse]
            else:
                results, seconds = self._attack_once(self.attack(name), cell, knowledge, target)
                if reuse is not None:
                    self._reused[reuse] = (results, seconds)
            if picture_dir is not None:
                self.save_prototypes(picture_dir, cell, name, results)
            if every_picture_dir is not None:
                self.save_prototypes(every_picture_dir, cell, name, results, per_target=True)
            if calibration_dir is not None:
                self.save_calibration(calibration_dir, cell, name, results)
            rows[name] = [
                {
                    "dataset": cell.dataset,
                    "arch": self.config.arch_for(cell.dataset),
                    "method": cell.method,
                    "defence": cell.defence,
                    "forgotten": format_set(cell.truth),
                    "seed": cell.seed,
                    "attack": name,
                    "rule": result.rule,
                    "predicted": format_set(result.predicted),
                    "success": int(result.success(cell.truth)),
                    "queries": int(result.queries),
                    "seconds": round(seconds, 4),
                    "attacker_classes": format_set(knowledge.attacker_classes or ()),
                }
                for result in results
            ]
        return rows
