"""Parallel grids: worker processes and Ray give the serial run's tables, and survive kills.

One tiny digits grid (40 images per class, 2 epochs, three methods, three forget sets) with cheap
attacks, one of which (param-diff's youden rule) needs shadow models, so attack cells are grouped
by knowledge setting as on a real grid. Every run uses a fresh cache so models are really trained
in the workers. The test process and the workers run one torch thread each (see conftest), so
tables must match bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import subprocess_env

from labelleak.cli import main
from labelleak.errors import LabelleakError
from labelleak.experiment.config import parse_config
from labelleak.experiment.parallel import (
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    make_executor,
    run_phases,
)
from labelleak.experiment.runner import ExperimentRunner, expand_grid
from labelleak.experiment.store import ArtifactStore

GRID = {
    "dataset": "digits",
    "subsample_per_class": 40,
    "methods": ["retrain", "finetune", "neg-grad"],
    "forget": [[3], [5], [2, 7]],
    "seeds": [0],
    "train": {"epochs": 2},
    "attacks": ["chance", "head-bias", "noise-histogram", "invert-white", "param-diff"],
    "attack_params": {
        "invert-white": {"steps": 10, "restarts": 1},
        "noise-histogram": {"queries": 100},
        "param-diff": {"rules": ["top", "youden"], "head_steps": 20},
    },
    "shadow_singles": 1,
    "shadow_pairs": 0,
    "unrelated": "noise",
    "unrelated_count": 100,
}
UNLEARNING_CELLS = 3 * 3
ATTACK_TARGETS = 3 * 3 + 3  # every unlearned model, plus the original once per forget set
ATTACK_CELLS = ATTACK_TARGETS * len(GRID["attacks"])  # one file per (target, attack)
KEYS = {
    "unlearning.csv": ["method", "forgotten", "seed"],
    # The controls all read forgotten "none"; the attacker's classes tell them apart.
    "attacks.csv": ["method", "forgotten", "seed", "attack", "rule", "attacker_classes"],
}


def tables(out: Path) -> dict[str, pd.DataFrame]:
    """Both CSVs of a run without the wall-time column (the only one allowed to differ)."""
    return {
        name: pd.read_csv(out / name, dtype={"forgotten": str, "predicted": str}).drop(
            columns="seconds"
        )
        for name in KEYS
    }


def assert_same_tables(out: Path, reference: Path) -> None:
    got, expected = tables(out), tables(reference)
    for name, keys in KEYS.items():
        assert not got[name].duplicated(keys).any(), f"{name} repeats a row"
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True, obj=name)


def run_grid(root: Path, executor=None) -> Path:  # type: ignore[no-untyped-def]
    out = root / "out"
    ExperimentRunner(parse_config(GRID), out, root / "cache", progress=False).run(executor)
    return out


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid run in this process, the way every run went before executors existed."""
    out = run_grid(tmp_path_factory.mktemp("serial"))
    unlearning, attacks = tables(out).values()
    assert len(unlearning) == UNLEARNING_CELLS
    assert len(attacks) > ATTACK_TARGETS
    return out


@pytest.fixture(scope="module")
def two_workers() -> Iterator[ProcessExecutor]:
    """Two worker processes shared by the tests, so each pays the workers' start-up once."""
    with ProcessExecutor(workers=2) as executor:
        yield executor


def test_two_workers_give_the_serial_rows(tmp_path, serial_run, two_workers) -> None:
    out = run_grid(tmp_path, two_workers)
    assert_same_tables(out, serial_run)
    # The first target of each method drew its prototypes, as in the serial run.
    drawn = sorted(p.name for p in (out / "prototypes").glob("*.png"))
    assert drawn == sorted(p.name for p in (serial_run / "prototypes").glob("*.png"))


def test_phases_train_every_model_once(monkeypatch, tmp_path, serial_run) -> None:
    # The phase plan run in this process: every model (originals, unlearned targets, shadows)
    # is stored once, i.e. no two tasks computed the same one.
    stored: list[tuple[str, str]] = []
    save = ArtifactStore.save

    def counting_save(self, kind, key, *args, **kwargs):  # type: ignore[no-untyped-def]
        stored.append((kind, key))
        return save(self, kind, key, *args, **kwargs)

    monkeypatch.setattr(ArtifactStore, "save", counting_save)
    run_grid(tmp_path / "serial", SerialExecutor())  # the serial loop
    first = list(stored)
    stored.clear()
    # The phases over a fresh output folder and cache store exactly the serial run's models.
    fresh = ExperimentRunner(parse_config(GRID), tmp_path / "out", tmp_path / "cache", False)
    fresh.out_dir.mkdir()
    run_phases(fresh, expand_grid(fresh.config, fresh.pipeline), SerialExecutor())
    assert len(stored) == len(set(stored)), "a model was computed twice"
    assert sorted(stored) == sorted(first)
    assert_same_tables(tmp_path / "out", serial_run)


def test_killed_parallel_run_resumes_without_loss_or_duplicates(
    tmp_path, serial_run, two_workers
) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(GRID))
    out, cache = tmp_path / "out", tmp_path / "cache"
    attack_cells = out / "cells" / "attacks"
    argv = [
        sys.executable, "-m", "labelleak.cli", "run", str(config), "--out", str(out),
        "--cache-dir", str(cache), "--workers", "2", "-q",
    ]  # fmt: skip
    # Its own process group, so one signal kills the parent and its worker processes together.
    proc = subprocess.Popen(
        argv,
        env=subprocess_env(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        # Kill in the attack phase, while groups of targets are half done.
        while not (attack_cells.is_dir() and any(attack_cells.glob("*.json"))):
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"run ended (status {proc.returncode}) before it was killed: {stderr}")
            if time.monotonic() > deadline:
                pytest.fail("no attack cell finished within the deadline")
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")}
    assert len(finished) < UNLEARNING_CELLS + ATTACK_CELLS, "killed too late to test a resume"

    # The rerun: what `labelleak run` does with the same options, on workers already started.
    run_grid(tmp_path, two_workers)
    assert_same_tables(out, serial_run)
    cells = list((out / "cells").rglob("*.json"))
    assert len(cells) == UNLEARNING_CELLS + ATTACK_CELLS
    for path in cells:
        json.loads(path.read_text())  # complete files only
        if path.name in finished:  # cells finished before the kill were not recomputed
            assert path.stat().st_mtime_ns == finished[path.name], path.name
    leftovers = [p.relative_to(out) for p in out.rglob(".*")]
    assert not leftovers, leftovers


def test_a_dead_worker_stops_the_run_with_a_rerun_hint() -> None:
    # os._exit ends the worker without a word, as SIGKILL or the OOM killer would.
    with (
        ProcessExecutor(workers=1) as executor,
        pytest.raises(LabelleakError, match=r"worker process died.*rerun"),
    ):
        list(executor.map_unordered(os._exit, [3]))  # type: ignore[arg-type]


SLEEPER = """
import os, sys, time
from pathlib import Path
from labelleak.experiment.parallel import ProcessExecutor

def sleep_in_worker(folder):
    Path(folder, str(os.getpid())).touch()
    time.sleep(120)
    return 0

if __name__ == "__main__":
    with ProcessExecutor(workers=2) as executor:
        list(executor.map_unordered(sleep_in_worker, [sys.argv[1]] * 2))
"""


def _running(pid: int) -> bool:
    # A worker whose parent is gone may stay a zombie where nothing reaps orphans.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker states from /proc")
def test_sigterm_to_the_parent_stops_its_workers(tmp_path) -> None:
    script, started = tmp_path / "sleeper.py", tmp_path / "started"
    script.write_text(SLEEPER)
    started.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(started)], env=subprocess_env(), cwd=tmp_path
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(pids) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
            pids = [int(p.name) for p in started.iterdir()]
        proc.terminate()  # SIGTERM to the parent alone, as `kill PID` sends
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(pid) for pid in pids), "a worker outlived its parent"
    finally:
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ray_executor_gives_the_serial_rows(tmp_path, serial_run) -> None:
    pytest.importorskip(
        "ray", reason="Ray is not installed (pip install 'labelleak[ray]'): executor untested"
    )
    with RayExecutor(workers=2) as executor:
        out = run_grid(tmp_path, executor)
    assert_same_tables(out, serial_run)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--workers", "0"], "--workers must be a whole number >= 1, got '0'"),
        (["--workers", "two"], "--workers must be a whole number >= 1, got 'two'"),
        (["--threads", "-1"], "--threads must be a whole number >= 1"),
        (["--executor", "dask"], "unknown executor 'dask'; choose one of: processes, ray"),
        (["--executor", "serial", "--workers", "2"], "drop --executor serial"),
        (["--executor", "processes", "--address", "auto"], "use it with --executor ray"),
    ],
)
def test_bad_parallel_options_are_one_line_errors(tmp_path, capsys, options, message) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(GRID))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(config), "--out", str(tmp_path / "out"), *options])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_make_executor_defaults() -> None:
    assert isinstance(make_executor(), SerialExecutor)
    assert make_executor().threads is None  # a serial run keeps torch's thread setting
    two = make_executor(workers="2")
    assert isinstance(two, ProcessExecutor)
    assert (two.workers, two.threads) == (2, 1)  # one thread per worker, whatever N
    assert make_executor("processes", workers=3, threads=2).threads == 2
