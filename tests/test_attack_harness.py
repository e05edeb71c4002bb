"""The attack harness of ``labelleak run``: knowledge, shadows, controls, attacks.csv, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import torch

from labelleak.attacks.base import AttackConfig
from labelleak.errors import LabelleakError
from labelleak.experiment.attacking import ATTACK_COLUMNS, AttackCell, AttackRunner
from labelleak.experiment.config import parse_config
from labelleak.experiment.pipeline import Pipeline
from labelleak.experiment.runner import Cell, ExperimentRunner
from labelleak.experiment.store import ArtifactStore

GRID = {
    "dataset": "digits",
    "train": {"epochs": 10},
    "methods": ["retrain", "neg-grad"],
    "forget": [3, [2, 7]],
    "attacks": ["invert-white", "invert-black", "noise-histogram"],
    "attack_params": {"invert-black": {"queries_per_class": 320}},
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("harness")
    out, cache = root / "out", root / "cache"
    ExperimentRunner(parse_config(GRID), out, cache, progress=False).run()
    return out, cache, pd.read_csv(out / "attacks.csv", dtype={"forgotten": str, "predicted": str})


def test_attacks_csv_has_one_row_per_target_attack_and_rule(finished_run) -> None:
    out, _, table = finished_run
    assert list(table.columns) == ATTACK_COLUMNS
    # 2 forget sets x (2 methods + the original control) targets.
    targets = table[["method", "forgotten", "attacker_classes"]].drop_duplicates()
    assert len(targets) == 6
    assert set(table["method"]) == {"retrain", "neg-grad", "original"}
    # The control's truth is "nothing forgotten", under the same knowledge as its targets.
    control = table[table["method"] == "original"]
    assert set(control["forgotten"]) == {"none"}
    assert set(control["attacker_classes"]) == set(table["attacker_classes"])
    assert not table.duplicated(["method", "forgotten", "attacker_classes", "attack", "rule"]).any()
    # Success is exact identification of the true set.
    assert ((table["predicted"] == table["forgotten"]).astype(int) == table["success"]).all()
    assert (out / "prototypes" / "digits-neg-grad-invert-white.png").is_file()


def test_queries_are_counted_per_attack_within_budget(finished_run) -> None:
    _, _, table = finished_run
    white = table[table["attack"] == "invert-white"]
    black = table[table["attack"] == "invert-black"]
    assert (white["queries"] == 0).all()
    assert (black["queries"] > 0).all()
    assert (black["queries"] <= 320 * 10).all()


def test_inversion_names_the_forgotten_class_of_retrain_and_neg_grad(finished_run) -> None:
    _, _, table = finished_run
    single = table[(table["forgotten"] == "3") & (table["attack"].str.startswith("invert"))]
    best = single.groupby(["attack", "method"])["success"].max()
    assert (best == 1).all(), best


def test_a_rerun_recomputes_nothing(finished_run, monkeypatch: pytest.MonkeyPatch) -> None:
    out, cache, table = finished_run

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an attack ran again")

    monkeypatch.setattr(AttackRunner, "run", refuse)
    ExperimentRunner(parse_config(GRID), out, cache, progress=False).run()
    again = pd.read_csv(out / "attacks.csv", dtype={"forgotten": str, "predicted": str})
    pd.testing.assert_frame_equal(table, again)


def test_a_cell_key_ignores_the_grids_shape(tmp_path: Path) -> None:
    def paths(**changes: object) -> tuple[str, ...]:
        runner = ExperimentRunner(parse_config({**GRID, **changes}), tmp_path, tmp_path)
        target = AttackCell("digits", 0, "retrain", (3,))
        return (
            runner.cell_path(Cell("digits", 0, "retrain", (3,))).name,
            *(runner.attack_cell_path(target, name).name for name in GRID["attacks"]),
        )

    keys = paths()
    assert len(set(keys)) == len(keys)
    assert paths(seeds=[0, 1], forget=[3], controls=False) == keys
    # Neither the unlearned model nor an attack without shadow runs depends on the grid's
    # other methods ...
    assert paths(methods=["retrain"]) == keys
    # ... except through the original: amnesiac in the grid trains it with a recorder.
    assert set(paths(methods=["retrain", "amnesiac"])).isdisjoint(keys)
    # An attack's settings reach its own cells only.
    changed = paths(attack_params={"invert-black": {"queries_per_class": 300}})
    assert [a == b for a, b in zip(changed, keys, strict=True)] == [True, True, False, True]
    # Unrelated data reach only the attacks that use them (none of these).
    assert paths(unrelated="patches") == keys
    # Nor does the list of other attacks.
    assert paths(attacks=["noise-histogram", "invert-white"]) == keys


def test_a_shadow_fit_attacks_key_follows_the_method_list(tmp_path: Path) -> None:
    def key(**changes: object) -> str:
        grid = {**GRID, "attacks": ["param-dot"], **changes}
        runner = ExperimentRunner(parse_config(grid), tmp_path, tmp_path)
        return runner.attack_cell_path(AttackCell("digits", 0, "retrain", (3,)), "param-dot").name

    # Its youden and tree rules are fit on shadow runs unlearned with the grid's methods.
    assert key(methods=["retrain"]) != key()
    # Without those rules it needs no shadows, and the method list no longer matters.
    shadow_free = {"param-dot": {"rules": ["top", "kmeans"]}}
    assert key(attack_params=shadow_free, methods=["retrain"]) == key(attack_params=shadow_free)


def test_inversion_keys_follow_the_method_list_only_with_fitted_levels(tmp_path: Path) -> None:
    def key(**changes: object) -> str:
        grid = {**GRID, "attacks": ["invert-white"], **changes}
        runner = ExperimentRunner(parse_config(grid), tmp_path, tmp_path)
        cell = AttackCell("digits", 0, "retrain", (3,))
        return runner.attack_cell_path(cell, "invert-white").name

    # The default rules need no shadows: listing the default rules keeps the stored key.
    default_rules = {"invert-white": {"rules": ["threshold", "entropy", "gap", "top"]}}
    assert key(attack_params=default_rules) == key()
    assert key(methods=["retrain"]) == key()
    # Fitted levels come from shadow runs unlearned with the grid's methods.
    fitted = {"invert-white": {"rules": ["threshold-fit", "top"]}}
    assert key(attack_params=fitted) != key()
    assert key(attack_params=fitted, methods=["retrain"]) != key(attack_params=fitted)


def test_fitted_inversion_levels_in_a_run(tmp_path: Path) -> None:
    grid = {
        **GRID,
        "methods": ["retrain"],
        "forget": [3],
        "attacks": ["invert-white"],
        "attack_params": {"invert-white": {"steps": 40, "rules": ["threshold-fit", "top"]}},
        "shadow_singles": 1,
        "shadow_pairs": 0,
    }
    out = tmp_path / "out"
    ExperimentRunner(parse_config(grid), out, tmp_path / "cache", progress=False).run()
    table = pd.read_csv(out / "attacks.csv", dtype={"forgotten": str, "predicted": str})
    assert set(table["rule"]) == {"threshold-fit", "top"}
    target = table[(table["method"] == "retrain") & (table["rule"] == "threshold-fit")]
    assert target["predicted"].tolist() == ["3"]
    # The level fit for the knowledge setting is on disk, beside (not among) the ROC scores the
    # report reads.
    (levels,) = sorted((out / "calibration" / "levels").glob("*.csv"))
    fitted = pd.read_csv(levels)
    assert list(fitted.columns) == ["dataset", "attack", "knowledge", "rule", "level", "shadows"]
    assert fitted["rule"].tolist() == ["threshold-fit", "entropy-fit"]
    assert fitted["shadows"].eq(2).all() and fitted["level"].between(0, 1).all()
    assert not list((out / "calibration").glob("*.csv"))
    from labelleak.report import build_report

    build_report([out], out)


def test_an_attack_added_to_a_finished_grid_is_the_only_one_run(
    finished_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, cache, table = finished_run
    copy = shutil.copytree(out, tmp_path / "out")
    ran: list[str] = []
    real = AttackRunner._attack_once

    def recording(self: AttackRunner, attack, *args: object):  # type: ignore[no-untyped-def]
        ran.append(attack.name)
        return real(self, attack, *args)

    monkeypatch.setattr(AttackRunner, "_attack_once", recording)
    grid = {**GRID, "attacks": [*GRID["attacks"], "chance"]}
    ExperimentRunner(parse_config(grid), copy, cache, progress=False).run()
    assert ran and set(ran) == {"chance"}
    again = pd.read_csv(copy / "attacks.csv", dtype={"forgotten": str, "predicted": str})
    pd.testing.assert_frame_equal(again[again["attack"] != "chance"].reset_index(drop=True), table)
    assert (again["attack"] == "chance").sum() == 6


def forbid_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make computing any unlearning or attack cell fail the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cell was computed again")

    monkeypatch.setattr(AttackRunner, "run", refuse)
    monkeypatch.setattr(ExperimentRunner, "run_cell", refuse)


def test_a_smaller_grid_reuses_the_finished_cells(
    finished_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, cache, table = finished_run
    copy = shutil.copytree(out, tmp_path / "out")
    forbid_computing(monkeypatch)
    ExperimentRunner(parse_config({**GRID, "forget": [[2, 7]]}), copy, cache, progress=False).run()
    again = pd.read_csv(copy / "attacks.csv", dtype={"forgotten": str, "predicted": str})
    pair = table[table["attacker_classes"] == again["attacker_classes"].iloc[0]]
    pd.testing.assert_frame_equal(pair.reset_index(drop=True), again)
    assert set(again["forgotten"]) == {"2+7", "none"}


@pytest.mark.parametrize("legacy", ["whole target", "grid shape"])
def test_cells_stored_under_the_legacy_keys_are_adopted(
    finished_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: str
) -> None:
    out, cache, table = finished_run
    copy = shutil.copytree(out, tmp_path / "out")
    runner = ExperimentRunner(parse_config(GRID), copy, cache, progress=False)
    cell, target = Cell("digits", 0, "neg-grad", (3,)), AttackCell("digits", 0, "neg-grad", (3,))
    # As earlier versions stored them: every attack's rows on a target in one file, keyed by
    # the whole config (seed list included) before that.
    if legacy == "grid shape":
        runner.cell_path(cell).replace(
            runner.cells_dir / f"{runner._legacy_keys(cell, False)[0]}.json"
        )
        whole_key = runner._legacy_keys(target, True)[0]
    else:
        whole_key = runner._target_key(target)
    parts = [runner.attack_cell_path(target, name) for name in GRID["attacks"]]
    rows = [row for part in parts for row in json.loads(part.read_text())]
    for part in parts:
        part.unlink()
    whole = runner.attack_cells_dir / f"{whole_key}.json"
    whole.write_text(json.dumps(rows))
    forbid_computing(monkeypatch)
    runner.run()
    assert runner.cell_path(cell).is_file() and all(part.is_file() for part in parts)
    assert not whole.exists()
    again = pd.read_csv(copy / "attacks.csv", dtype={"forgotten": str, "predicted": str})
    pd.testing.assert_frame_equal(table, again)


def test_knowledge_excludes_the_forgotten_classes_and_the_truth(tmp_path: Path) -> None:
    config = parse_config({**GRID, "attacker_classes": 4})
    pipeline = Pipeline(config, ArtifactStore(tmp_path), torch.device("cpu"))
    runner = AttackRunner(config, pipeline)
    for gap in [(3,), (2, 7)]:
        classes = runner.attacker_classes("digits", 0, gap)
        assert len(classes) == 4 and not set(classes) & set(gap)
        # Deterministic: the same target always gets the same attacker.
        assert classes == runner.attacker_classes("digits", 0, gap)
        target = pipeline.unlearned("digits", 0, "retrain", gap).model
        knowledge = runner.knowledge(AttackCell("digits", 0, "retrain", gap), target)
        assert set(knowledge.attacker_data[1].tolist()) == set(classes)
        assert not any(hasattr(knowledge, name) for name in ("truth", "forgotten", "gap"))


def test_shadows_use_only_the_attackers_data_and_classes(tmp_path: Path) -> None:
    config = parse_config({**GRID, "shadow_singles": 2, "shadow_pairs": 1})
    pipeline = Pipeline(config, ArtifactStore(tmp_path), torch.device("cpu"))
    runner = AttackRunner(config, pipeline)
    classes = runner.attacker_classes("digits", 0, (3,))
    shadows = runner.shadows("digits", 0, classes, "retrain")
    splits = pipeline.splits("digits")
    assert not set(splits.attacker_idx.tolist()) & set(splits.target_idx.tolist())
    forgotten = [run.forgotten for run in shadows]
    assert () in forgotten  # one untouched shadow: the "nothing forgotten" example
    assert all(set(f) <= set(classes) for f in forgotten)
    # Every grid method is a shadow method by default (the attacker does not know the target's).
    assert {run.method for run in shadows if run.forgotten} == set(GRID["methods"])
    # Shadow seeds are disjoint from the target's: the shadow original is another model.
    original = pipeline.original("digits", 0).model
    shadow_original = shadows[0].original
    assert not torch.equal(original.classifier.weight, shadow_original.classifier.weight)


def test_bad_attack_settings_are_refused(tmp_path: Path) -> None:
    for bad, message in [
        ({"attacks": ["mind-reading"]}, "unknown attack"),
        ({"attack_params": {"invert-black": {"queries_per_class": 0}}}, "invert-black"),
        ({"attacker_classes": [11]}, "attacker_classes"),
        ({"unrelated": "imagenet"}, "unknown unrelated data"),
        ({"shadow_methods": ["forget-me"]}, "unknown unlearning method"),
    ]:
        with pytest.raises(LabelleakError, match=message):
            ExperimentRunner(parse_config({**GRID, **bad}), tmp_path / "o", tmp_path / "c")
        assert not (tmp_path / "o").exists()


def test_the_control_runs_each_model_only_attack_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelleak.attacks import get_attack_class

    calls: dict[str, int] = {}
    for name in ("invert-white", "head-bias", "chance"):
        cls = get_attack_class(name)
        original_run = cls.run

        def counted(self, knowledge, seed=0, _run=original_run, _name=name):  # type: ignore[no-untyped-def]
            calls[_name] = calls.get(_name, 0) + 1
            return _run(self, knowledge, seed)

        monkeypatch.setattr(cls, "run", counted)
    grid = {
        "dataset": "digits",
        "train": {"epochs": 3},
        "methods": ["retrain"],
        "forget": [3, 5, [2, 7]],
        "attacks": ["invert-white", "head-bias", "chance"],
        "attack_params": {"invert-white": {"steps": 5}},
    }
    out = tmp_path / "out"
    ExperimentRunner(parse_config(grid), out, tmp_path / "cache", progress=False).run()
    # 3 unlearned targets + the original, which controls each of the 3 forget sets: attacks that
    # only read the model answer the same whenever they are told the same forget count (1 for
    # the singles, 2 for the pair), so they run once per count on it; chance draws per trial.
    assert calls == {"invert-white": 5, "head-bias": 5, "chance": 6}
    table = pd.read_csv(out / "attacks.csv", dtype={"forgotten": str, "predicted": str})
    control = table[(table["method"] == "original") & (table["attack"] == "invert-white")]
    assert len(control) == 3 * len(get_attack_class("invert-white")().rules)
    set_rules = control[control["rule"] != "top"]
    assert set_rules.groupby("rule")["predicted"].nunique().eq(1).all()
    # top names as many classes as the targets beside the control forgot.
    named = control[control["rule"] == "top"]["predicted"].str.split("+").map(len)
    assert sorted(named) == [1, 1, 2]
    pair = table[(table["forgotten"] == "2+7") & (table["rule"] == "top")]
    assert pair["predicted"].str.split("+").map(len).eq(2).all()


def test_chance_draws_independently_per_trial() -> None:
    from labelleak.attacks import AttackerKnowledge, run_attack

    def guess(trial: str, seed: int = 0) -> tuple[int, ...]:
        knowledge = AttackerKnowledge(num_classes=10, input_shape=(1, 8, 8), extra={"trial": trial})
        return run_attack("chance", knowledge, seed=seed)[0].predicted

    guesses = [guess(f"target {i}") for i in range(40)]
    # Same trial and seed: the same guess (reproducible); different trials: many classes.
    assert guesses[0] == guess("target 0")
    assert len(set(guesses)) >= 5


def test_youden_calibration_is_saved_for_the_report(tmp_path: Path) -> None:
    from labelleak.report import build_report

    grid = {
        "dataset": "digits",
        "train": {"epochs": 10},
        "methods": ["retrain"],
        "forget": [3],
        "attacks": ["param-diff"],
        "attack_params": {"param-diff": {"rules": ["youden"]}},
        "shadow_methods": "same",
        "shadow_singles": 2,
        "shadow_pairs": 0,
    }
    out = tmp_path / "out"
    ExperimentRunner(parse_config(grid), out, tmp_path / "cache", progress=False).run()
    files = sorted((out / "calibration").glob("*.csv"))
    # One knowledge setting (forget set 3) shared by the target and its control: one file.
    assert len(files) == 1
    points = pd.read_csv(files[0])
    assert list(points.columns) == ["dataset", "attack", "knowledge", "score", "forgotten"]
    # The untouched shadow and two single-class shadows over the 9 classes the attacker holds.
    assert points["forgotten"].sum() == 2 and len(points) == 3 * 9
    build_report([out], out)
    assert (out / "plots" / "roc-digits.png").is_file()


def test_prototype_pictures_first_all_or_none(finished_run, tmp_path: Path) -> None:
    _, cache, _ = finished_run
    quick = {**GRID, "attacks": ["invert-white"], "attack_params": {"invert-white": {"steps": 5}}}

    def runner(prototypes: str, out: str) -> ExperimentRunner:
        config = parse_config({**quick, "prototypes": prototypes})
        return ExperimentRunner(config, tmp_path / out, cache, progress=False)

    every = runner("all", "all")
    every.run()
    first = {p.name for p in (tmp_path / "all" / "prototypes").glob("*.png")}
    assert first == {f"digits-{m}-invert-white.png" for m in ("retrain", "neg-grad", "original")}
    per_target = {p.name for p in (tmp_path / "all" / "prototypes" / "all").glob("*.png")}
    assert per_target == {
        *(
            f"digits-{m}-{s}-seed0-invert-white.png"
            for m in ("retrain", "neg-grad")
            for s in ("3", "2+7")
        ),
        "digits-original-seed0-invert-white.png",
    }
    runner("none", "none").run()
    assert not (tmp_path / "none" / "prototypes").exists()
    # Pictures are presentation: the setting leaves every stored result's key alone.
    cell = AttackCell("digits", 0, "retrain", (3,))
    key = every.attack_cell_path(cell, "invert-white").name
    assert runner("first", "all").attack_cell_path(cell, "invert-white").name == key


def test_bad_prototypes_setting_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LabelleakError, match="prototypes"):
        parse_config({**GRID, "prototypes": "some"})


def test_an_attack_setting_added_later_keeps_earlier_results_keys() -> None:
    class Before(AttackConfig):
        steps: int = 200

    class After(Before):
        added_later: ClassVar[dict[str, object]] = {"resolution": 0}
        resolution: int = 0

    class Child(After):  # inherits the base's list: resolution still counts as added later
        added_later: ClassVar[dict[str, object]] = {"restarts": 1}
        restarts: int = 1

    class NewDefault(After):  # a later default: results at the old value keep their keys
        resolution: int = 8

    assert After().key_params() == Before().key_params() == {"steps": 200}
    assert After(resolution=8).key_params() == {"steps": 200, "resolution": 8}
    assert Child().key_params() == {"steps": 200}
    assert Child(restarts=2, resolution=8).key_params() == {
        "steps": 200,
        "resolution": 8,
        "restarts": 2,
    }
    assert NewDefault().key_params() == {"steps": 200, "resolution": 8}
    assert NewDefault(resolution=0).key_params() == Before().key_params()


@pytest.mark.parametrize("attack", ["invert-white", "invert-black", "probe-drop"])
def test_a_search_space_larger_than_the_input_fails_before_training(
    tmp_path: Path, attack: str
) -> None:
    config = parse_config(
        {**GRID, "attacks": [attack], "attack_params": {attack: {"resolution": 9}}}
    )
    runner = ExperimentRunner(config, tmp_path / "out", tmp_path / "cache", progress=False)
    with pytest.raises(LabelleakError, match=r"resolution 9 is larger than the input \(8x8\)"):
        runner.run()
    assert not any((tmp_path / "cache").rglob("*.safetensors")), "a model was trained first"
    assert not (tmp_path / "out").exists(), "the output folder was written first"


def test_a_methods_version_reaches_its_cells_only(tmp_path: Path, monkeypatch) -> None:
    # Bumping a method's version (its code now makes other models) must not reuse the cells
    # computed from the older models; other methods' cells keep their keys.
    from labelleak.unlearning import get_method_class

    def paths() -> tuple[str, str]:
        grid = {**GRID, "methods": ["retrain", "finetune"]}
        runner = ExperimentRunner(parse_config(grid), tmp_path, tmp_path)
        return (
            runner.cell_path(Cell("digits", 0, "retrain", (3,))).name,
            runner.attack_cell_path(AttackCell("digits", 0, "retrain", (3,)), "invert-white").name,
        ), runner.cell_path(Cell("digits", 0, "finetune", (3,))).name

    before, other = paths()
    monkeypatch.setattr(get_method_class("retrain"), "version", 2)
    after, other_after = paths()
    assert set(after).isdisjoint(before)
    assert other_after == other
