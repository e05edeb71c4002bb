"""Build (or fetch from the cache) the models of a grid: originals and unlearned targets.

Every model is addressed by the hash of what determines it, so one grid never trains the same model
twice and a rerun trains nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from labelleak.data import DataSplits, load_dataset, make_splits
from labelleak.experiment.config import ExperimentConfig
from labelleak.experiment.store import ArtifactStore
from labelleak.models import build_model
from labelleak.models.base import ImageClassifier
from labelleak.training import train_model
from labelleak.unlearning import UnlearningTask, build_method, get_method_class
from labelleak.utils import content_hash, seed_everything

#: Bump when a change to training or model code makes cached models stale.
ARTIFACT_VERSION = 2
RECORD = "training_record"


@dataclass
class BuiltModel:
    """A model with the cache key it is stored under and the seconds it took to compute."""

    model: ImageClassifier
    key: str
    seconds: float
    record: dict[str, torch.Tensor] | None = None


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
        self._originals: dict[tuple[str, int], BuiltModel] = {}
        self.needs_record = any(
            get_method_class(name).needs_training_record for name in config.methods
        )

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

    def _base_spec(self, dataset: str, seed: int) -> dict[str, Any]:
        splits = self.splits(dataset)
        return {
            "version": ARTIFACT_VERSION,
            "data": splits.fingerprint(),
            "arch": self.config.arch_for(dataset),
            "train": self.config.train_config(dataset).model_dump(),
            "seed": seed,
        }

    def original(self, dataset: str, seed: int) -> BuiltModel:
        """The never-unlearned model trained on the target's whole training set."""
        if (dataset, seed) in self._originals:
            return self._originals[(dataset, seed)]
        spec = {**self._base_spec(dataset, seed), "recorded": self.needs_record}
        key = content_hash(spec)
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
            built = self._train_original(dataset, seed, model, key, spec)
        self._originals[(dataset, seed)] = built
        return built

    def _train_original(
        self, dataset: str, seed: int, model: ImageClassifier, key: str, spec: dict[str, Any]
    ) -> BuiltModel:
        splits = self.splits(dataset)
        x, y = splits.target_data()
        recorder = None
        if self.needs_record:
            # One recorder serves every method that needs one; today only amnesiac does.
            first = next(
                m for m in self.config.methods if get_method_class(m).needs_training_record
            )
            recorder = get_method_class(first).recorder(model, splits.num_classes)
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
            desc=f"train original {dataset} seed {seed}",
        )
        seconds = time.perf_counter() - started
        record = recorder.record() if recorder is not None else None  # type: ignore[attr-defined]
        model.cpu()
        self.store.save(
            "original",
            key,
            model,
            {"spec": spec, "seconds": seconds},
            {RECORD: record} if record is not None else None,
        )
        return BuiltModel(model.eval(), key, seconds, record)

    def unlearned(
        self, dataset: str, seed: int, method_name: str, forget: tuple[int, ...]
    ) -> BuiltModel:
        """The original of ``(dataset, seed)`` with the classes ``forget`` removed by a method."""
        method = build_method(method_name, self.config.method_params.get(method_name))
        original = self.original(dataset, seed)
        spec = {
            # Retrain never reads the original, so its key must not depend on how that was made.
            "source": self._base_spec(dataset, seed) if method_name == "retrain" else original.key,
            "method": method_name,
            "params": method.config.model_dump(),
            "forget": list(forget),
        }
        key = content_hash(spec)
        model = self.new_model(dataset, seed)
        if self.store.has("unlearned", key):
            self.store.load_model("unlearned", key, model)
            return BuiltModel(model.eval(), key, self.store.meta("unlearned", key)["seconds"])
        splits = self.splits(dataset)
        retain_x, retain_y = splits.retain_data(forget)
        forget_x, forget_y = splits.forget_data(forget)
        task = UnlearningTask(
            original=original.model,
            new_model=lambda: self.new_model(dataset, seed),
            train_config=self.config.train_config(dataset),
            retain_x=retain_x,
            retain_y=retain_y,
            forget_x=forget_x,
            forget_y=forget_y,
            forget_classes=forget,
            num_classes=splits.num_classes,
            seed=seed,
            device=self.device,
            training_record=original.record,
            progress=self.progress,
        )
        seed_everything(seed)
        started = time.perf_counter()
        unlearned = method.unlearn(task).cpu().eval()
        seconds = time.perf_counter() - started
        self.store.save("unlearned", key, unlearned, {"spec": spec, "seconds": seconds})
        return BuiltModel(unlearned, key, seconds)
