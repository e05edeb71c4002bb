"""The experiment config: a YAML file validated in one place.

Keys (see ``configs/`` for examples)::

    dataset: mnist                 # or a list of datasets
    data_dir: ../shared/data       # where real datasets are read from (not needed for digits)
    arch: lenet                    # optional: each dataset has a default architecture
    subsample_per_class: 500       # optional: fast runs on part of the training data
    methods: [retrain, finetune, random-label, amnesiac, neg-grad]
    plugins: {}                    # your own methods: {name: "my_package.module:Class"}
    forget: each                   # every single class; or [[3], [2, 7]]; or {random_pairs: 10}
    seeds: [0]
    attacks: []                    # label-leakage attacks and baselines by name
    defences: [none]               # defences applied to every unlearned model (none = control)

``forget`` also accepts a list mixing those forms, e.g. ``[each, {random_pairs: 10}]``, and
``{random_sets: {size: 3, count: 5}}``; a flat list of class ids such as ``[2, 7]`` is ONE set.
A relative ``data_dir`` is resolved against the current working directory (run from the
repository root, ``../shared/data`` is the shared data folder).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from labelleak.attacks import get_attack_class, make_attack_config
from labelleak.data.registry import DATASETS, get_spec
from labelleak.data.splits import validate_forget_classes
from labelleak.data.unrelated import unrelated_sources
from labelleak.defences import NO_DEFENCE, defence_stages, make_defence_config
from labelleak.errors import LabelleakError, unknown_choice
from labelleak.models import ARCHITECTURES
from labelleak.registry import first_error
from labelleak.training import DEFAULT_TRAIN, TrainConfig
from labelleak.unlearning import PAPER_METHODS, get_method_class, make_config
from labelleak.unlearning.plugins import register_plugins

ForgetItem = Literal["each"] | StrictInt | list[StrictInt] | dict[str, Any]


class ExperimentConfig(BaseModel):
    """A grid: datasets x methods x forgotten class sets x seeds (plus attacks on each target)."""

    model_config = ConfigDict(extra="forbid")

    dataset: list[str] = Field(
        ["digits"], min_length=1, description="dataset names (a single name is allowed)"
    )
    data_dir: str | None = Field(None, description="folder holding the real datasets' files")
    arch: str | None = Field(None, description="architecture; None = each dataset's default")
    subsample_per_class: int | None = Field(None, ge=2, description="training images per class")
    test_per_class: int | None = Field(None, ge=2, description="test images per class")
    attacker_fraction: float = Field(
        0.1, ge=0, lt=1, description="training data kept back for the attacker, per class"
    )
    split_seed: int = Field(0, ge=0, description="seed of the data splits and random forget sets")
    methods: list[str] = Field(list(PAPER_METHODS), min_length=1, description="unlearning methods")
    plugins: dict[str, str] = Field(
        {},
        description="methods from outside labelleak: name -> 'module:Class' (see "
        "labelleak.unlearning.plugins); installed packages can declare them as entry points",
    )
    method_params: dict[str, dict[str, Any]] = Field({}, description="per-method hyperparameters")
    forget: ForgetItem | list[ForgetItem] = Field("each", description="forgotten class sets")
    seeds: list[int] = Field([0], min_length=1, description="training seeds (trials)")
    attacks: list[str] = Field([], description="attacks and baselines, by name")
    attack_params: dict[str, dict[str, Any]] = Field({}, description="per-attack settings")
    attacker_classes: Literal["all"] | int | list[int] = Field(
        "all",
        description="retained classes the attacker's data covers: all, how many (drawn at "
        "random per target), or which (forgotten ones are dropped)",
    )
    unrelated: str | None = Field(
        None,
        description="unrelated data: a dataset name, patches, noise, or several joined by '+' "
        "(e.g. mnist+patches, images split evenly); None = the dataset's sibling",
    )
    unrelated_count: int = Field(2000, ge=1, description="unrelated images the attacker holds")
    shadow_methods: Literal["all", "same"] | list[str] = Field(
        "all",
        description="methods the attacker's shadows use: all = the grid's methods (it does not "
        "know the target's), same = the target's method, or a list",
    )
    shadow_singles: int = Field(3, ge=0, description="single-class forget sets per shadow method")
    shadow_pairs: int = Field(1, ge=0, description="two-class forget sets per shadow method")
    controls: bool = Field(True, description="also attack the never-unlearned original")
    defences: list[str] = Field(
        [NO_DEFENCE],
        min_length=1,
        description="defences applied to every unlearned model, each a separate target "
        "(none = the model as the method left it; a+b = b applied to a's output); see "
        "labelleak.defences",
    )
    defence_params: dict[str, dict[str, Any]] = Field({}, description="per-defence settings")
    shadow_defence: Literal["none", "same"] = Field(
        "none",
        description="what the attacker's shadows are: none = undefended, same = defended like "
        "the target (the adaptive attacker, who knows the defence)",
    )
    prototypes: Literal["first", "all", "none"] = Field(
        "first",
        description="inversion prototype pictures: the first target of each (dataset, method) "
        "in DIR/prototypes/ (the report shows these), also every target in "
        "DIR/prototypes/all/, or none",
    )
    train: dict[str, Any] = Field({}, description="overrides of the architecture's recipe")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")

    @field_validator("dataset", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def unrelated_for(self, dataset: str) -> str:
        return self.unrelated or get_spec(dataset).unrelated

    def arch_for(self, dataset: str) -> str:
        return self.arch or get_spec(dataset).default_arch

    def train_config(self, dataset: str) -> TrainConfig:
        """The architecture's default recipe with this config's ``train`` overrides applied."""
        arch = self.arch_for(dataset)
        base = DEFAULT_TRAIN[arch].model_dump()
        # Colour natural images benefit from shifts and flips; digits must not be mirrored.
        base["augment"] = dataset == "cifar10"
        return TrainConfig(**{**base, **self.train})

    def forget_sets(self, num_classes: int) -> list[tuple[int, ...]]:
        """The resolved forgotten class sets, in config order, without duplicates."""
        items = (
            self.forget
            if isinstance(self.forget, list) and not _is_class_set(self.forget)
            else [self.forget]
        )
        sets: list[tuple[int, ...]] = []
        rng = np.random.default_rng(self.split_seed)
        for item in items:
            for classes in _expand_forget_item(item, num_classes, rng):
                resolved = validate_forget_classes(classes, num_classes)
                if resolved not in sets:
                    sets.append(resolved)
        return sets


def _is_class_set(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, int) for v in value)


def _expand_forget_item(item: Any, num_classes: int, rng: np.random.Generator) -> list[list[int]]:
    if item == "each":
        return [[c] for c in range(num_classes)]
    if isinstance(item, int):
        return [[item]]
    if isinstance(item, list) and all(isinstance(v, int) for v in item):
        return [item]
    if isinstance(item, dict) and len(item) == 1:
        ((kind, value),) = item.items()
        if kind == "random_pairs":
            return _random_sets(2, value, num_classes, rng)
        if kind == "random_sets" and isinstance(value, dict) and set(value) == {"size", "count"}:
            return _random_sets(value["size"], value["count"], num_classes, rng)
    raise LabelleakError(
        f"bad forget entry {item!r}; use 'each', a class id, a list of class ids, "
        "{random_pairs: N} or {random_sets: {size: K, count: N}}"
    )


def _random_sets(size: Any, count: Any, num_classes: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    if not isinstance(size, int) or not isinstance(count, int) or count < 1:
        raise LabelleakError("random forget sets need whole numbers: size >= 1 and count >= 1")
    if not 1 <= size < num_classes:
        raise LabelleakError(f"random forget set size must be 1..{num_classes - 1}, got {size}")
    combos = list(itertools.combinations(range(num_classes), size))
    if count > len(combos):
        raise LabelleakError(
            f"only {len(combos)} distinct sets of {size} classes exist; asked for {count}"
        )
    chosen = rng.choice(len(combos), size=count, replace=False)
    return [list(combos[i]) for i in sorted(chosen)]


def validate_config(config: ExperimentConfig, known_attacks: set[str] | None = None) -> None:
    """Check every name and value against the registries before anything runs."""
    for name in config.dataset:
        spec = get_spec(name)
        if spec.needs_data_dir:
            if config.data_dir is None:
                raise LabelleakError(
                    f"dataset {name!r} is read from disk: set data_dir in the config or pass "
                    "--data-dir"
                )
            if not Path(config.data_dir).is_dir():
                raise LabelleakError(
                    f"data directory {config.data_dir} does not exist; set data_dir to the folder "
                    "holding the dataset files"
                )
        if not config.forget_sets(spec.num_classes):
            raise LabelleakError("forget names no class set; use each, [[3], [2, 7]] or similar")
    if config.arch is not None and config.arch not in ARCHITECTURES:
        raise unknown_choice("architecture", config.arch, ARCHITECTURES)
    register_plugins(config.plugins)
    for method in config.methods:
        get_method_class(method)
    for method, params in config.method_params.items():
        make_config(method, params)
    if config.attacks and known_attacks is not None:
        for attack in config.attacks:
            if attack not in known_attacks:
                raise unknown_choice("attack", attack, known_attacks)
    for attack, params in config.attack_params.items():
        if known_attacks is not None and attack in known_attacks:
            # Building the attack checks the settings that span fields (e.g. its rules).
            get_attack_class(attack)(make_attack_config(attack, params))
        else:
            make_attack_config(attack, params)
    if isinstance(config.attacker_classes, int) and config.attacker_classes < 1:
        raise LabelleakError("attacker_classes must be 'all', a count >= 1, or a list of class ids")
    if isinstance(config.attacker_classes, list):
        for name in config.dataset:
            num_classes = get_spec(name).num_classes
            bad = [c for c in config.attacker_classes if not 0 <= c < num_classes]
            if bad or not config.attacker_classes:
                raise LabelleakError(
                    f"attacker_classes must list class ids 0..{num_classes - 1}, got "
                    f"{config.attacker_classes}"
                )
    if len(set(config.defences)) != len(config.defences):
        raise LabelleakError(f"defences lists a defence twice: {config.defences}")
    for defence in config.defences:
        defence_stages(defence)
    for defence, params in config.defence_params.items():
        make_defence_config(defence, params)
    if isinstance(config.shadow_methods, list):
        for method in config.shadow_methods:
            get_method_class(method)
    if config.unrelated is not None:
        unrelated_sources(config.unrelated, config.unrelated_count)
    try:
        for name in config.dataset:
            config.train_config(name)
    except ValidationError as error:
        raise LabelleakError(f"bad train setting: {first_error(error)}") from None


def parse_config(raw: Any) -> ExperimentConfig:
    """Validate a parsed YAML mapping into an :class:`ExperimentConfig` (one-line errors)."""
    if not isinstance(raw, dict):
        raise LabelleakError("the config must be a YAML mapping of keys to values (see configs/)")
    try:
        config = ExperimentConfig(**raw)
    except ValidationError as error:
        raise LabelleakError(f"bad config: {first_error(error)}") from None
    if config.data_dir is not None:
        data_dir = Path(config.data_dir).expanduser().resolve()
        config = config.model_copy(update={"data_dir": str(data_dir)})
    return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate a YAML config file; ``overrides`` replace top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise LabelleakError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise LabelleakError(f"config file {path} is not valid YAML{where}") from None
    if isinstance(raw, dict) and overrides:
        raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    return parse_config(raw)


def known_datasets() -> list[str]:
    return list(DATASETS)
