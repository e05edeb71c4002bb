"""Build (or fetch from the cache) the models of a grid: originals, unlearned targets, shadows.

Every model is addressed by the hash of what determines it, so one grid never trains the same model
twice and a rerun trains nothing. The attacker's shadow models go through the same two steps as
the targets (train an original, unlearn it), on the attacker's own data and seeds.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from labelleak.data import DataSplits, load_dataset, make_splits
from labelleak.defences import NO_DEFENCE, Defence, DefenceTask, build_defence, defence_stages
from labelleak.experiment.config import ExperimentConfig
from labelleak.experiment.store import ArtifactStore
from labelleak.models import build_model
from labelleak.models.base import ImageClassifier
from labelleak.training import TrainConfig, train_model
from labelleak.unlearning import UnlearningMethod, UnlearningTask, build_method, get_method_class
from labelleak.utils import content_hash, seed_everything

#: Bump when a change to training, model or method code makes cached models stale.
ARTIFACT_VERSION = 3
RECORD = "training_record"


@dataclass
class BuiltModel:
    """A model with the cache key it is stored under and the seconds it took to compute."""

    model: ImageClassifier
    key: str
    seconds: float
    record: dict[str, torch.Tensor] | None = None


def tensor_digest(*tensors: torch.Tensor) -> str:
    """A short hash of tensors' contents (for cache keys of data sets)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:20]


def _needing_record(methods: Sequence[str]) -> str | None:
    """The first of ``methods`` whose original must be trained with a recorder, if any.

    One recorder serves every such method; today only amnesiac needs one.
    """
    return next((m for m in methods if get_method_class(m).needs_training_record), None)


class Pipeline:
    """Models for one experiment config, cached in an :class:`ArtifactStore`."""

    def __init__(
        self,
        config: ExperimentConfig,
        store: ArtifactStore,
        device: torch.device,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.device = device
        self.progress = progress
        self._splits: dict[str, DataSplits] = {}
        self._memo: dict[str, BuiltModel] = {}
        self.record_for = _needing_record(config.methods)

    def splits(self, dataset: str) -> DataSplits:
        if dataset not in self._splits:
            data = load_dataset(dataset, self.config.data_dir)
            self._splits[dataset] = make_splits(
                data,
                subsample_per_class=self.config.subsample_per_class,
                test_per_class=self.config.test_per_class,
                attacker_fraction=self.config.attacker_fraction,
                split_seed=self.config.split_seed,
            )
        return self._splits[dataset]

    def new_model(self, dataset: str, seed: int) -> ImageClassifier:
        """A freshly initialised model of the dataset's architecture, seeded by ``seed``."""
        data = self.splits(dataset).dataset
        seed_everything(seed)
        return build_model(
            self.config.arch_for(dataset), data.input_shape, data.num_classes, data.mean, data.std
        )

    # -- the two building blocks -------------------------------------------------------------

    def _trained(
        self,
        dataset: str,
        seed: int,
        x: torch.Tensor,
        y: torch.Tensor,
        data_id: str,
        role: str,
        record_for: str | None,
    ) -> BuiltModel:
        """A model trained from scratch on ``x``, ``y`` with the dataset's recipe, cached.

        ``record_for`` names a method whose recorder the training must use (amnesiac), if any.
        """
        record = record_for is not None
        spec = {**self._recipe_spec(dataset, seed, data_id), "role": role, "recorded": record}
        key = content_hash(spec)
        if key in self._memo:
            return self._memo[key]
        model = self.new_model(dataset, seed)
        if self.store.has("original", key):
            self.store.load_model("original", key, model)
            built = BuiltModel(
                model.eval(),
                key,
                self.store.meta("original", key)["seconds"],
                self.store.load_tensors("original", key, RECORD),
            )
        else:
            recorder = None
            if record_for is not None:
                num_classes = self.splits(dataset).num_classes
                recorder = get_method_class(record_for).recorder(model, num_classes)
            started = time.perf_counter()
            train_model(
                model,
                x,
                y,
                self.config.train_config(dataset),
                seed=seed,
                device=self.device,
                recorder=recorder,
                progress=self.progress,
                desc=f"train {role} {dataset} seed {seed}",
            )
            seconds = time.perf_counter() - started
            trace = recorder.record() if recorder is not None else None  # type: ignore[attr-defined]
            model.cpu().eval()
            extra = {RECORD: trace} if trace is not None else None
            self.store.save("original", key, model, {"spec": spec, "seconds": seconds}, extra)
            built = BuiltModel(model, key, seconds, trace)
        self._memo[key] = built
        return built

    def _unlearned(
        self,
        dataset: str,
        seed: int,
        source: BuiltModel,
        method: UnlearningMethod,
        forget: tuple[int, ...],
        x: torch.Tensor,
        y: torch.Tensor,
        recipe_spec: dict[str, Any],
    ) -> BuiltModel:
        """``source`` with the classes ``forget`` removed from its training data ``x``, ``y``."""
        spec = {
            # Retrain never reads the original, so its key must not depend on how that was made.
            "source": recipe_spec if method.name == "retrain" else source.key,
            "method": method.name,
            "params": method.config.key_params(),
            "forget": list(forget),
        }
        if method.version > 1:
            spec["method_version"] = method.version
        key = content_hash(spec)
        if key in self._memo:
            return self._memo[key]
        model = self.new_model(dataset, seed)
        if self.store.has("unlearned", key):
            self.store.load_model("unlearned", key, model)
            built = BuiltModel(model.eval(), key, self.store.meta("unlearned", key)["seconds"])
            self._memo[key] = built
            return built
        forgotten = torch.isin(y, torch.tensor(forget))
        task = UnlearningTask(
            original=source.model,
            new_model=lambda: self.new_model(dataset, seed),
            train_config=self.config.train_config(dataset),
            retain_x=x[~forgotten],
            retain_y=y[~forgotten],
            forget_x=x[forgotten],
            forget_y=y[forgotten],
            forget_classes=forget,
            num_classes=self.splits(dataset).num_classes,
            seed=seed,
            device=self.device,
            training_record=source.record,
        )
        seed_everything(seed)
        started = time.perf_counter()
        unlearned = method.unlearn(task).cpu().eval()
        seconds = time.perf_counter() - started
        self.store.save("unlearned", key, unlearned, {"spec": spec, "seconds": seconds})
        built = BuiltModel(unlearned, key, seconds)
        self._memo[key] = built
        return built

    def _defended(
        self,
        seed: int,
        source: BuiltModel,
        original: BuiltModel,
        defence: Defence,
        forget: tuple[int, ...],
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> BuiltModel:
        """``source`` (which forgot ``forget`` from ``x``, ``y``) as ``defence`` releases it."""
        if not defence.applies_to(forget):
            return source
        spec: dict[str, Any] = {
            "source": source.key,
            "original": original.key,
            "defence": defence.name,
            "params": defence.config.key_params(),
            "forget": list(forget),
        }
        if defence.version > 1:
            spec["defence_version"] = defence.version
        key = content_hash(spec)
        if key in self._memo:
            return self._memo[key]
        model = copy.deepcopy(source.model)
        if self.store.has("defended", key):
            self.store.load_model("defended", key, model)
            built = BuiltModel(model.eval(), key, self.store.meta("defended", key)["seconds"])
            self._memo[key] = built
            return built
        forgotten = torch.isin(y, torch.tensor(forget, dtype=y.dtype))
        task = DefenceTask(
            model=source.model,
            original=original.model,
            forget_classes=forget,
            retain_x=x[~forgotten],
            retain_y=y[~forgotten],
            forget_x=x[forgotten],
            num_classes=source.model.num_classes,
            seed=seed,
            device=self.device,
        )
        seed_everything(seed)
        started = time.perf_counter()
        defended = defence.defend(task).cpu().eval()
        seconds = time.perf_counter() - started
        self.store.save("defended", key, defended, {"spec": spec, "seconds": seconds})
        built = BuiltModel(defended, key, seconds)
        self._memo[key] = built
        return built

    def _recipe_spec(self, dataset: str, seed: int, data_id: str) -> dict[str, Any]:
        return {
            "version": ARTIFACT_VERSION,
            "data": data_id,
            "arch": self.config.arch_for(dataset),
            "train": self.train_config(dataset).model_dump(),
            "seed": seed,
        }

    def train_config(self, dataset: str) -> TrainConfig:
        return self.config.train_config(dataset)

    # -- the target's models -----------------------------------------------------------------

    def original(self, dataset: str, seed: int) -> BuiltModel:
        """The never-unlearned model trained on the target's whole training set."""
        splits = self.splits(dataset)
        x, y = splits.target_data()
        return self._trained(dataset, seed, x, y, splits.fingerprint(), "original", self.record_for)

    def unlearned(
        self, dataset: str, seed: int, method_name: str, forget: tuple[int, ...]
    ) -> BuiltModel:
        """The original of ``(dataset, seed)`` with the classes ``forget`` removed by a method."""
        method = build_method(method_name, self.config.method_params.get(method_name))
        splits = self.splits(dataset)
        x, y = splits.target_data()
        recipe = {**self._recipe_spec(dataset, seed, splits.fingerprint()), "role": "original"}
        return self._unlearned(
            dataset, seed, self.original(dataset, seed), method, forget, x, y, recipe
        )

    def defence(self, name: str) -> Defence:
        """Defence ``name`` (one stage) with the config's settings for it."""
        return build_defence(name, self.config.defence_params.get(name))

    def defence_chain(self, name: str) -> list[Defence]:
        """The stages of defence ``name`` (``a+b``: ``a`` then ``b``), with their settings."""
        return [self.defence(stage) for stage in defence_stages(name)]

    def _released_as(
        self,
        seed: int,
        source: BuiltModel,
        original: BuiltModel,
        defence_name: str,
        forget: tuple[int, ...],
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> BuiltModel:
        """``source`` through every stage of ``defence_name``; each stage's output is cached
        on its own, so ``a`` and ``a+b`` in one grid train ``a`` once. Seconds add up."""
        built = source
        for defence in self.defence_chain(defence_name):
            stage = self._defended(seed, built, original, defence, forget, x, y)
            if stage is not built and built is not source:
                stage = BuiltModel(stage.model, stage.key, stage.seconds + built.seconds)
            built = stage
        return built

    def released(
        self,
        dataset: str,
        seed: int,
        method_name: str,
        forget: tuple[int, ...],
        defence_name: str = NO_DEFENCE,
    ) -> BuiltModel:
        """The model the unlearner releases: the original (``method_name`` ``original``, which
        forgot nothing) or the unlearned model, with ``defence_name`` applied where it applies
        (an always-on defence also to the original)."""
        original = self.original(dataset, seed)
        if method_name == "original":
            source, forget = original, ()
        else:
            source = self.unlearned(dataset, seed, method_name, forget)
        if defence_name == NO_DEFENCE:
            return source
        x, y = self.splits(dataset).target_data()
        return self._released_as(seed, source, original, defence_name, forget, x, y)

    # -- the attacker's shadow models --------------------------------------------------------

    def shadow_models(
        self,
        dataset: str,
        seed: int,
        x: torch.Tensor,
        y: torch.Tensor,
        jobs: Sequence[tuple[str, tuple[int, ...]]],
        defence_name: str = NO_DEFENCE,
    ) -> list[tuple[str, tuple[int, ...], BuiltModel, BuiltModel]]:
        """Shadow originals trained on the attacker's data ``x``, ``y`` and unlearned per job.

        ``jobs`` are ``(method, forget_classes)`` pairs; an empty ``forget_classes`` keeps the
        shadow original as it is (an "untouched" shadow). Returns ``(method, forget, original,
        target)`` per job. Shadows use the grid's methods' hyperparameters and recipe; with
        ``defence_name`` (the adaptive attacker) each target is defended as the unlearner would
        defend it, with the attacker's data in the unlearner's place.
        """
        data_id = tensor_digest(x, y)
        record_for = _needing_record([method for method, forget in jobs if forget])
        original = self._trained(dataset, seed, x, y, data_id, "shadow", record_for)
        recipe = {**self._recipe_spec(dataset, seed, data_id), "role": "shadow"}
        runs = []
        for method_name, forget in jobs:
            if not forget:
                target = self._released_as(seed, original, original, defence_name, (), x, y)
                runs.append((method_name, forget, original, target))
                continue
            method = build_method(method_name, self.config.method_params.get(method_name))
            target = self._unlearned(dataset, seed, original, method, forget, x, y, recipe)
            target = self._released_as(seed, target, original, defence_name, forget, x, y)
            runs.append((method_name, forget, original, target))
        return runs
