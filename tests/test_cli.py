"""The ``labelleak`` command line: listings, one-line user errors, a run that survives SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env

from labelleak.cli import main
from labelleak.data import DATASETS
from labelleak.unlearning import MODERN_METHODS, PAPER_METHODS

ALL_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "svhn")


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit status, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_config(folder: Path, text: str, name: str = "config.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# Listings


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_commands(flag, capsys) -> None:
    code, out, _ = invoke([flag], capsys)
    assert code == 0
    commands = out.split("Commands:")[1]
    listed = {line.split()[0] for line in commands.strip().splitlines()}
    assert {"run", "demo", "datasets", "methods"} <= listed


def test_module_entry_point_runs(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "labelleak.cli", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "datasets" in result.stdout


def test_datasets_lists_all_five(capsys) -> None:
    code, out, _ = invoke(["datasets"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.strip().splitlines()]
    assert sorted(listed) == sorted(ALL_DATASETS) == sorted(DATASETS)
    digits_line = next(line for line in out.splitlines() if line.startswith("digits"))
    assert "bundled" in digits_line and "arch=mlp" in digits_line


def test_methods_lists_every_method_with_its_parameters(capsys) -> None:
    code, out, _ = invoke(["methods"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    assert sorted(names) == sorted(PAPER_METHODS + MODERN_METHODS)
    assert "lr_scale = 3.0" in out  # finetune's documented default
    assert "stop_accuracy = 0.03" in out


def test_defences_lists_every_defence_with_its_settings(capsys) -> None:
    from labelleak.defences import DEFENCES

    code, out, _ = invoke(["defences"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    assert names == list(DEFENCES)
    assert "epochs = 8" in out  # distil's documented default
    assert "always on" in next(line for line in out.splitlines() if line.startswith("refit-head"))


# ---------------------------------------------------------------------------------------------
# User errors: exit status 2, one line on stderr, nothing written


BAD_CONFIGS = {
    "unknown-dataset": (
        "dataset: imagenet\n",
        ["unknown dataset 'imagenet'", *ALL_DATASETS],
    ),
    "unknown-defence": (
        "dataset: digits\ndefences: [none, cloak]\n",
        ["unknown defence 'cloak'", "distil", "calibrate-logit"],
    ),
    "unknown-method": (
        "dataset: digits\nmethods: [retrain, forgetme]\n",
        ["unknown unlearning method 'forgetme'", *PAPER_METHODS],
    ),
    "unknown-arch": ("dataset: digits\narch: vgg\n", ["unknown architecture 'vgg'", "lenet"]),
    "class-out-of-range": ("forget: [[12]]\n", ["class id 12", "out of range", "0..9"]),
    "forget-every-class": (
        "forget: [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]\n",
        ["cannot forget all 10 classes"],
    ),
    "missing-data-dir": (
        "dataset: mnist\ndata_dir: /nonexistent\n",
        ["/nonexistent", "does not exist"],
    ),
    "no-data-dir": ("dataset: mnist\n", ["'mnist'", "data_dir"]),
    "malformed-yaml": ("dataset: [mnist\n", ["not valid YAML", "line"]),
    "not-a-mapping": ("- digits\n- mnist\n", ["YAML mapping"]),
    "empty-file": ("", ["YAML mapping"]),
    "unknown-key": ("dataset: digits\nepochs: 3\n", ["bad config", "epochs", "not permitted"]),
    "bad-train-setting": ("train: {epochs: 0}\n", ["bad train setting", "epochs"]),
    "bad-method-param": (
        "method_params: {finetune: {speed: 2}}\n",
        ["method 'finetune'", "speed", "valid parameters"],
    ),
    "bad-forget-entry": ("forget: {random_pairs: 99}\n", ["45 distinct", "99"]),
}


def assert_user_error(code: int, out: str, err: str, words: list[str]) -> str:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    message = lines[0]
    assert message.startswith("error: ")
    for word in words:
        assert word in message, (word, message)
    return message


def assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.rglob("*"))


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_a_one_line_error(case, tmp_path, capsys) -> None:
    text, words = BAD_CONFIGS[case]
    config = write_config(tmp_path / "configs", text)
    out_dir = tmp_path / "out"
    code, out, err = invoke(
        ["run", str(config), "--out", str(out_dir), "--cache-dir", str(tmp_path / "cache"), "-q"],
        capsys,
    )
    assert_user_error(code, out, err, words)
    assert_nothing_written(out_dir)


def test_missing_config_file(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = invoke(["run", str(missing), "--out", str(tmp_path / "out")], capsys)
    assert_user_error(code, out, err, [str(missing), "does not exist"])
    assert_nothing_written(tmp_path / "out")


def test_relative_data_dir_is_resolved_against_the_working_directory(
    tmp_path, monkeypatch, capsys
) -> None:
    config = write_config(tmp_path / "configs", "dataset: mnist\ndata_dir: data\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, err = invoke(
        ["run", str(config), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")],
        capsys,
    )
    expected = (tmp_path / "elsewhere").resolve() / "data"
    assert_user_error(code, out, err, [str(expected), "does not exist"])


def test_data_dir_option_overrides_the_config(tmp_path, capsys) -> None:
    (tmp_path / "real").mkdir()
    config = write_config(tmp_path / "configs", f"dataset: mnist\ndata_dir: {tmp_path}/real\n")
    code, out, err = invoke(
        ["run", str(config), "--out", str(tmp_path / "out"), "--data-dir", "/nonexistent"],
        capsys,
    )
    assert_user_error(code, out, err, ["/nonexistent", "does not exist"])
    assert_nothing_written(tmp_path / "out")


def test_bad_device_is_a_one_line_error(tmp_path, capsys) -> None:
    config = write_config(tmp_path / "configs", "dataset: digits\nforget: [[3]]\n")
    out_dir = tmp_path / "out"
    argv = ["run", str(config), "--out", str(out_dir), "--device", "bogus", "-q"]
    code, out, err = invoke([*argv, "--cache-dir", str(tmp_path / "c")], capsys)
    assert_user_error(code, out, err, ["bogus"])
    assert_nothing_written(out_dir)


@pytest.mark.parametrize("text", ["dataset: []\n", "forget: []\n"])
def test_empty_grid_is_a_user_error(text, tmp_path, capsys) -> None:
    config = write_config(tmp_path / "configs", text)
    argv = ["run", str(config), "--out", str(tmp_path / "out"), "-q"]
    code, out, err = invoke([*argv, "--cache-dir", str(tmp_path / "c")], capsys)
    assert_user_error(code, out, err, [])


def test_missing_out_option_is_a_usage_error(tmp_path, capsys) -> None:
    config = write_config(tmp_path, "dataset: digits\n")
    code, _, err = invoke(["run", str(config)], capsys)
    assert code == 2
    assert "--out" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# A small successful run, and a run killed with SIGKILL then resumed

GRID_YAML = """\
dataset: digits
methods: [retrain, finetune]
forget: [[1], [3], [5], [8], [2, 7]]
seeds: [0]
train: {epochs: 15}
"""
GRID_CELLS = 2 * 5


def test_run_writes_results_and_prints_a_summary(tmp_path, capsys) -> None:
    config = write_config(
        tmp_path, "dataset: digits\nmethods: [retrain]\nforget: [[3]]\ntrain: {epochs: 3}\n"
    )
    out_dir = tmp_path / "out"
    argv = ["run", str(config), "--out", str(out_dir), "--cache-dir", str(tmp_path / "c"), "-q"]
    code, out, err = invoke(argv, capsys)
    assert code == 0, err
    assert "results written to" in out
    assert f"report: {out_dir / 'report.md'}" in out
    assert "retrain" in out
    assert (out_dir / "unlearning.csv").is_file()
    assert (out_dir / "config.resolved.yaml").is_file()
    assert "Traceback" not in err


def cli_run(config: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-m", "labelleak.cli", "run", str(config),
        "--out", str(out), "--cache-dir", str(cache), "-q",
    ]  # fmt: skip


def csv_rows(path: Path) -> int:
    try:
        return len(path.read_text().strip().splitlines()) - 1
    except FileNotFoundError:
        return 0


def test_killed_run_resumes_to_the_same_results(tmp_path) -> None:
    config = write_config(tmp_path, GRID_YAML)
    out, cache = tmp_path / "out", tmp_path / "cache"
    cells = out / "cells" / "unlearning"
    env = subprocess_env()
    proc = subprocess.Popen(
        cli_run(config, out, cache),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            done = len(list(cells.glob("*.json"))) if cells.is_dir() else 0
            # Kill between cells: the CSV already lists every finished cell, so the process is
            # computing the next one (not inside an atomic write).
            if 1 <= done < GRID_CELLS and csv_rows(out / "unlearning.csv") == done:
                break
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"run ended (status {proc.returncode}) before it was killed: {stderr}")
            if time.monotonic() > deadline:
                pytest.fail("no grid cell finished within the deadline")
            time.sleep(0.005)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -9  # SIGKILL, not a normal exit
    finished = {path.name: path.stat().st_mtime_ns for path in cells.glob("*.json")}
    assert 1 <= len(finished) < GRID_CELLS

    resumed = subprocess.run(
        cli_run(config, out, cache),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "results written to" in resumed.stdout

    table = pd.read_csv(out / "unlearning.csv", dtype={"forgotten": str})
    assert len(table) == GRID_CELLS
    assert not table.duplicated(["method", "forgotten", "seed"]).any()
    assert set(table["forgotten"]) == {"1", "3", "5", "8", "2+7"}
    assert len(list(cells.glob("*.json"))) == GRID_CELLS
    # Cells finished before the kill were kept, not recomputed.
    for name, mtime in finished.items():
        assert (cells / name).stat().st_mtime_ns == mtime, name
    for path in cells.glob("*.json"):
        json.loads(path.read_text())  # every cell file is complete
    temporary = [p.relative_to(out) for p in out.rglob(".*")]
    assert not temporary, temporary

    # An uninterrupted run over the same cache gives the same table, value for value.
    fresh = tmp_path / "fresh"
    subprocess.run(
        cli_run(config, fresh, cache), env=env, cwd=tmp_path, timeout=300, check=True,
        capture_output=True,
    )  # fmt: skip
    assert (fresh / "unlearning.csv").read_text() == (out / "unlearning.csv").read_text()


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parent.parent / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_configs_are_valid(path: Path, tmp_path: Path) -> None:
    from labelleak.attacks import ATTACKS
    from labelleak.experiment.config import load_config, validate_config

    # Validated as `labelleak run` does, with an existing folder standing in for the data.
    config = load_config(path, {"data_dir": str(tmp_path)})
    validate_config(config, {name for name, _ in ATTACKS.items()})
