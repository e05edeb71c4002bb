"""The model cache, reproducibility, forget-set resolution, data splits and the grid runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import (
    DATASET,
    DIGITS_CONFIG,
    SEED,
    assert_same_state,
    make_pipeline,
    state_of,
)

import labelleak.experiment.pipeline as pipeline_module
from labelleak.data import load_dataset, make_splits
from labelleak.errors import LabelleakError
from labelleak.evaluation import class_accuracies
from labelleak.experiment.attacking import format_set
from labelleak.experiment.config import parse_config
from labelleak.experiment.runner import UNLEARNING_COLUMNS, ExperimentRunner
from labelleak.unlearning import METHODS

# ---------------------------------------------------------------------------------------------
# The cache


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any training of an original or any unlearning run fail the test."""

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("trained although the model is cached")

    def no_unlearning(self, task):  # type: ignore[no-untyped-def]
        raise AssertionError(f"ran {self.name} although the unlearned model is cached")

    monkeypatch.setattr(pipeline_module, "train_model", no_training)
    for cls in METHODS.values():
        monkeypatch.setattr(cls, "unlearn", no_unlearning)


def test_cache_returns_the_identical_models_without_training(
    monkeypatch, session_cache, digits_pipeline, digits_original
) -> None:
    unlearned = {
        method: digits_pipeline.unlearned(DATASET, SEED, method, (3,))
        for method in ("finetune", "amnesiac")
    }
    forbid_training(monkeypatch)
    again = make_pipeline(DIGITS_CONFIG, session_cache)
    original = again.original(DATASET, SEED)
    assert original.key == digits_original.key
    assert original.model is not digits_original.model
    assert_same_state(state_of(original.model), state_of(digits_original.model))
    assert original.seconds == pytest.approx(digits_original.seconds)
    # Amnesiac's training record comes back from the cache too.
    assert original.record is not None
    assert_same_state(original.record, digits_original.record)
    for method, first in unlearned.items():
        cached = again.unlearned(DATASET, SEED, method, (3,))
        assert cached.key == first.key
        assert_same_state(state_of(cached.model), state_of(first.model))
    assert not original.model.training


def test_cache_keys_separate_what_differs(monkeypatch, tmp_path, digits_pipeline) -> None:
    keys = {
        digits_pipeline.unlearned(DATASET, SEED, method, forget).key
        for method in ("finetune", "random-label")
        for forget in [(3,), (2, 7)]
    }
    assert len(keys) == 4
    small = {"dataset": DATASET, "forget": [[3]], "train": {"epochs": 3}}
    plain = make_pipeline({**small, "methods": ["retrain"]}, tmp_path)
    recorded = make_pipeline({**small, "methods": ["retrain", "amnesiac"]}, tmp_path)
    longer = make_pipeline({**small, "methods": ["retrain"], "train": {"epochs": 4}}, tmp_path)
    # Recording amnesiac's updates or changing the recipe makes a different original ...
    originals = {p.original(DATASET, SEED).key for p in (plain, recorded, longer)}
    assert len(originals) == 3
    retrain_key = plain.unlearned(DATASET, SEED, "retrain", (3,)).key
    assert longer.unlearned(DATASET, SEED, "retrain", (3,)).key != retrain_key
    # ... but retrain never reads the original, so its cached model serves both configs.
    forbid_training(monkeypatch)
    assert recorded.unlearned(DATASET, SEED, "retrain", (3,)).key == retrain_key


def test_a_method_version_bump_invalidates_only_that_methods_models(
    monkeypatch, digits_pipeline
) -> None:
    finetune = digits_pipeline.unlearned(DATASET, SEED, "finetune", (3,)).key
    first = digits_pipeline.unlearned(DATASET, SEED, "random-label", (3,)).key
    # A change that alters the models a method makes bumps its version: its cached models are
    # not reused, while every other method keeps its cache.
    monkeypatch.setattr(METHODS.get_class("random-label"), "version", 2)
    assert digits_pipeline.unlearned(DATASET, SEED, "random-label", (3,)).key != first
    assert digits_pipeline.unlearned(DATASET, SEED, "finetune", (3,)).key == finetune


def test_same_config_and_seed_give_identical_weights(tmp_path) -> None:
    config = {
        "dataset": DATASET,
        "methods": ["finetune", "amnesiac"],
        "forget": [[3]],
        "train": {"epochs": 5},
    }
    built = []
    for name in ("one", "two"):
        torch.rand(17)  # different global random state before each run
        np.random.rand(3)
        pipeline = make_pipeline(config, tmp_path / name)
        original = pipeline.original(DATASET, SEED)
        unlearned = [pipeline.unlearned(DATASET, SEED, m, (3,)) for m in ("finetune", "amnesiac")]
        built.append((original, unlearned))
    (first, first_unlearned), (second, second_unlearned) = built
    assert first.key == second.key
    assert_same_state(state_of(first.model), state_of(second.model))
    assert_same_state(first.record, second.record)
    for a, b in zip(first_unlearned, second_unlearned, strict=True):
        assert a.key == b.key
        assert_same_state(state_of(a.model), state_of(b.model))
    # A different seed is a different model.
    other = make_pipeline(config, tmp_path / "one").original(DATASET, SEED + 1)
    assert other.key != first.key
    assert not torch.equal(other.model.classifier.weight, first.model.classifier.weight)


# ---------------------------------------------------------------------------------------------
# Forget sets


def forget_sets(forget, **extra):  # type: ignore[no-untyped-def]
    return parse_config({"dataset": DATASET, "forget": forget, **extra}).forget_sets(10)


def test_forget_each_is_every_singleton() -> None:
    assert forget_sets("each") == [(c,) for c in range(10)]


def test_forget_explicit_sets_are_sorted_and_deduplicated() -> None:
    assert forget_sets([[3], [2, 7]]) == [(3,), (2, 7)]
    assert forget_sets([[3], [7, 2], [2, 7], [3]]) == [(3,), (2, 7)]
    assert forget_sets([4, 1]) == [(1, 4)]  # a flat list of ids is one set
    assert forget_sets(5) == [(5,)]


def test_forget_random_pairs_are_distinct_sorted_and_deterministic() -> None:
    pairs = forget_sets({"random_pairs": 4})
    assert len(pairs) == 4
    assert len(set(pairs)) == 4
    for pair in pairs:
        assert len(pair) == 2
        assert pair[0] < pair[1]
        assert all(0 <= c < 10 for c in pair)
    assert forget_sets({"random_pairs": 4}) == pairs
    config = parse_config({"dataset": DATASET, "forget": {"random_pairs": 4}})
    assert config.forget_sets(10) == config.forget_sets(10) == pairs
    # The split seed chooses them.
    assert any(forget_sets({"random_pairs": 4}, split_seed=s) != pairs for s in range(1, 6))


def test_forget_random_sets_of_a_given_size() -> None:
    sets = forget_sets({"random_sets": {"size": 3, "count": 5}})
    assert len(set(sets)) == 5
    assert all(len(s) == 3 and list(s) == sorted(s) for s in sets)


def test_forget_mixed_list() -> None:
    sets = forget_sets(["each", {"random_pairs": 2}])
    assert sets[:10] == [(c,) for c in range(10)]
    assert len(sets) == 12
    assert all(len(s) == 2 for s in sets[10:])
    assert sets[10:] == forget_sets({"random_pairs": 2})


@pytest.mark.parametrize(
    ("forget", "words"),
    [
        ([[12]], "out of range"),
        ([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], "cannot forget all"),
        ({"random_pairs": 46}, "45 distinct"),
        ({"random_pairs": 0}, "count >= 1"),
        ({"something": 2}, "bad forget entry"),
    ],
)
def test_bad_forget_sets_are_user_errors(forget, words) -> None:
    with pytest.raises(LabelleakError, match=words):
        forget_sets(forget)


# ---------------------------------------------------------------------------------------------
# Splits


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset(DATASET)


def class_counts(labels: torch.Tensor) -> np.ndarray:
    return np.bincount(labels.numpy(), minlength=10)


def test_target_and_attacker_are_disjoint_and_cover_the_training_set(digits) -> None:
    splits = make_splits(digits)
    target = set(splits.target_idx.tolist())
    attacker = set(splits.attacker_idx.tolist())
    assert not target & attacker
    assert target | attacker == set(range(len(digits.y_train)))
    # About 10% of every class is kept back for the attacker.
    total = class_counts(digits.y_train)
    _, attacker_y = splits.attacker_data()
    reserve = class_counts(attacker_y)
    assert np.array_equal(reserve, np.round(total * 0.1).astype(int))
    assert np.all(np.abs(reserve / total - 0.1) < 0.02)
    x, y = splits.attacker_data([2, 7])
    assert set(y.tolist()) == {2, 7}
    assert len(x) == len(y) == reserve[2] + reserve[7]


def test_splits_are_deterministic_and_seeded(digits) -> None:
    first, second = make_splits(digits), make_splits(digits)
    assert torch.equal(first.target_idx, second.target_idx)
    assert torch.equal(first.attacker_idx, second.attacker_idx)
    assert first.fingerprint() == second.fingerprint()
    other = make_splits(digits, split_seed=1)
    assert not torch.equal(first.attacker_idx, other.attacker_idx)
    assert other.fingerprint() != first.fingerprint()


def test_forget_and_retain_partition_the_target_data_by_class(digits) -> None:
    splits = make_splits(digits)
    target_x, target_y = splits.target_data()
    forget_x, forget_y = splits.forget_data([7, 2])
    retain_x, retain_y = splits.retain_data([7, 2])
    assert set(forget_y.tolist()) == {2, 7}
    assert not torch.isin(retain_y, torch.tensor([2, 7])).any()
    assert set(retain_y.tolist()) == set(range(10)) - {2, 7}
    assert len(forget_y) + len(retain_y) == len(target_y)
    assert np.array_equal(class_counts(forget_y) + class_counts(retain_y), class_counts(target_y))
    assert forget_x.shape[1:] == retain_x.shape[1:] == target_x.shape[1:]
    # Every forget image really is a target image of that class.
    images = target_x.flatten(1).tolist()
    rows = {tuple(row): label for row, label in zip(images, target_y.tolist(), strict=True)}
    assert all(rows[tuple(row.tolist())] in (2, 7) for row in forget_x.flatten(1))


def test_subsample_and_test_caps(digits) -> None:
    splits = make_splits(digits, subsample_per_class=20, test_per_class=7)
    _, target_y = splits.target_data()
    _, attacker_y = splits.attacker_data()
    _, test_y = splits.test_data()
    assert np.array_equal(class_counts(target_y) + class_counts(attacker_y), np.full(10, 20))
    assert np.array_equal(class_counts(attacker_y), np.full(10, 2))
    assert np.array_equal(class_counts(test_y), np.full(10, 7))
    full = make_splits(digits)
    assert full.fingerprint() != splits.fingerprint()
    assert len(full.test_data()[1]) == len(digits.y_test)


def test_bad_split_settings_are_user_errors(digits) -> None:
    with pytest.raises(LabelleakError, match="attacker_fraction"):
        make_splits(digits, attacker_fraction=1.0)
    with pytest.raises(LabelleakError, match="subsample_per_class"):
        make_splits(digits, subsample_per_class=1)
    with pytest.raises(LabelleakError, match="out of range"):
        make_splits(digits).retain_data([10])


# ---------------------------------------------------------------------------------------------
# The grid runner

RUNNER_CONFIG = {
    "dataset": DATASET,
    "methods": ["retrain", "amnesiac"],
    "forget": [[3], [2, 7]],
    "seeds": [0, 1],
    "train": {"epochs": 10},
}
FIRST_NINE = [
    "dataset", "arch", "method", "forgotten", "seed",
    "forget_acc", "retain_acc", "test_acc", "seconds",
]  # fmt: skip


def read_table(path):  # type: ignore[no-untyped-def]
    return pd.read_csv(path, dtype={"forgotten": str})


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One finished run of RUNNER_CONFIG: (out folder, cache folder, returned table)."""
    root = tmp_path_factory.mktemp("grid")
    out, cache = root / "out", root / "cache"
    table = ExperimentRunner(parse_config(RUNNER_CONFIG), out, cache, progress=False).run()
    return out, cache, table


def test_runner_writes_one_row_per_cell(grid_run) -> None:
    out, _, returned = grid_run
    table = read_table(out / "unlearning.csv")
    assert list(table.columns) == UNLEARNING_COLUMNS
    assert UNLEARNING_COLUMNS[:9] == FIRST_NINE
    assert len(table) == 2 * 2 * 2
    cells = set(zip(table["method"], table["forgotten"], table["seed"], strict=True))
    assert cells == {
        (m, f, s) for m in ("retrain", "amnesiac") for f in ("3", "2+7") for s in (0, 1)
    }
    assert set(table["dataset"]) == {"digits"}
    assert set(table["arch"]) == {"mlp"}
    for column in ("forget_acc", "retain_acc", "test_acc", "original_test_acc"):
        assert table[column].between(0, 1).all(), column
    assert (table["seconds"] >= 0).all()
    # Retrain never saw the forgotten classes; the originals did.
    assert (table.loc[table["method"] == "retrain", "forget_acc"] <= 0.05).all()
    assert (table["original_forget_acc"] >= 0.8).all()
    assert len(returned) == len(table)


def test_runner_rows_match_the_models(grid_run) -> None:
    out, cache, _ = grid_run
    table = read_table(out / "unlearning.csv").set_index(["method", "forgotten", "seed"])
    pipeline = make_pipeline(RUNNER_CONFIG, cache)
    x_test, y_test = pipeline.splits(DATASET).test_data()
    built = pipeline.unlearned(DATASET, 1, "amnesiac", (2, 7))
    expected = class_accuracies(built.model, x_test, y_test, (2, 7))
    row = table.loc[("amnesiac", "2+7", 1)]
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, abs=1e-4), name


def test_runner_writes_the_resolved_config(grid_run) -> None:
    out, _, _ = grid_run
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["dataset"] == ["digits"]
    assert resolved["methods"] == ["retrain", "amnesiac"]
    assert resolved["seeds"] == [0, 1]
    digits = resolved["resolved"]["digits"]
    assert digits["arch"] == "mlp"
    assert digits["train"]["epochs"] == 10
    assert digits["forget_sets"] == ["3", "2+7"]
    assert set(resolved["resolved"]["method_params"]) == {"retrain", "amnesiac"}
    assert "torch" in resolved["versions"]


def test_rerun_computes_nothing_and_gives_the_same_csv(monkeypatch, grid_run) -> None:
    out, cache, _ = grid_run
    before = (out / "unlearning.csv").read_bytes()

    def no_cell(self, cell):  # type: ignore[no-untyped-def]
        raise AssertionError(f"recomputed finished cell {cell}")

    monkeypatch.setattr(ExperimentRunner, "run_cell", no_cell)
    forbid_training(monkeypatch)
    table = ExperimentRunner(parse_config(RUNNER_CONFIG), out, cache, progress=False).run()
    assert (out / "unlearning.csv").read_bytes() == before
    assert len(table) == 8


def test_new_out_with_same_cache_trains_nothing_and_gives_the_same_csv(
    monkeypatch, tmp_path, grid_run
) -> None:
    out, cache, _ = grid_run
    forbid_training(monkeypatch)
    ExperimentRunner(parse_config(RUNNER_CONFIG), tmp_path / "out", cache, progress=False).run()
    assert (tmp_path / "out" / "unlearning.csv").read_bytes() == (
        out / "unlearning.csv"
    ).read_bytes()


def test_format_set() -> None:
    assert format_set((2, 7)) == "2+7"
    assert format_set([7, 2]) == "2+7"
    assert format_set((3,)) == "3"


def test_runner_rejects_a_bad_config_before_writing(tmp_path) -> None:
    with pytest.raises(LabelleakError, match="unknown architecture"):
        ExperimentRunner(parse_config({"arch": "vgg"}), tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists()


def test_rerun_removes_temporary_files_left_by_a_killed_run(tmp_path, grid_run) -> None:
    _, cache, _ = grid_run
    out = tmp_path / "out"
    cells = out / "cells" / "unlearning"
    cells.mkdir(parents=True)
    leftovers = [out / ".unlearning.csv.k1ll3d.tmp", cells / ".0123456789abcdef0123.json.x.tmp"]
    for path in leftovers:
        path.write_text("partial")
    ExperimentRunner(parse_config(RUNNER_CONFIG), out, cache, progress=False).run()
    assert not [path for path in leftovers if path.exists()]
