"""Benchmark: one grid run serially, with worker processes, and on a local Ray instance.

Every run starts from an empty output folder and an empty model cache, so each trains every
model. Prints the wall seconds of each run and its speed-up over the serial run, and checks that
``unlearning.csv`` and ``attacks.csv`` are identical to the serial run's apart from the ``seconds``
column (exit status 1 if not). Every run uses ``--threads`` torch threads per process (default 1),
since convolutional models' results change in the last bits with the thread count;
``--baseline-threads`` adds a serial run at another count, reported for speed only.

Default grid: MNIST at 300 training images per class, LeNet-5, the five paper methods, three
random single classes, one seed, the attacks of ``bench_attacks.py``.

    .venv/bin/python benchmarks/bench_parallel.py [--dataset mnist] [--subsample 300]
        [--singles 3] [--workers 2] [--threads 1] [--no-ray] [--baseline-threads 2]
        [--methods ...] [--attacks ...] [--epochs N] [--data-dir ../shared/data] [--out DIR]

The table is also written to ``OUT/runs.csv`` (default ``results/bench-parallel``).

Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from bench_attacks import ATTACKS
from common import DATA_DIR, ROOT, data_missing

from labelleak.experiment.config import parse_config
from labelleak.experiment.parallel import (
    Executor,
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    available_cores,
)
from labelleak.experiment.runner import ExperimentRunner
from labelleak.unlearning import PAPER_METHODS
from labelleak.utils import atomic_path

TABLES = ("unlearning.csv", "attacks.csv")
ARCHS = {"mnist": "lenet", "fashion_mnist": "lenet", "digits": "mlp"}


def grid_config(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmarked grid as a config mapping."""
    config: dict[str, Any] = {
        "dataset": args.dataset,
        "arch": ARCHS[args.dataset],
        "subsample_per_class": args.subsample,
        "methods": args.methods,
        "forget": [{"random_sets": {"size": 1, "count": args.singles}}],
        "seeds": [0],
        "attacks": args.attacks,
    }
    if args.dataset != "digits":
        config["data_dir"] = str(args.data_dir.resolve())
    if args.epochs is not None:
        config["train"] = {"epochs": args.epochs}
    return config


def timed_run(
    config: dict[str, Any], root: Path, executor: Executor
) -> tuple[float, float, dict[str, pd.DataFrame]]:
    """Run the grid into ``root`` with a fresh cache: (start-up s, run s, tables without seconds).

    Start-up (spawning nothing yet for processes; starting Ray) is timed apart from the run,
    which includes the workers' own imports.
    """
    runner = ExperimentRunner(parse_config(config), root / "out", root / "cache", progress=False)
    with executor:
        started = time.perf_counter()
        executor.start()
        ready = time.perf_counter()
        runner.run(executor)
        finished = time.perf_counter()
    tables = {
        name: pd.read_csv(root / "out" / name, dtype={"forgotten": str, "predicted": str}).drop(
            columns="seconds"
        )
        for name in TABLES
        if (root / "out" / name).is_file()
    }
    return ready - started, finished - ready, tables


def same_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> bool:
    return left.keys() == right.keys() and all(left[name].equals(right[name]) for name in left)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(ARCHS), default="mnist")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--subsample", type=int, default=300, help="training images per class")
    parser.add_argument("--singles", type=int, default=3, help="random single-class forget sets")
    parser.add_argument("--methods", nargs="+", default=list(PAPER_METHODS))
    parser.add_argument("--attacks", nargs="*", default=ATTACKS, help="none: train, unlearn")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--baseline-threads", type=int, default=None)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the runs' folders here")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench-parallel")
    args = parser.parse_args()
    if args.dataset != "digits" and data_missing(args.data_dir):
        return 0
    config = grid_config(args)
    executors: list[Executor] = [
        SerialExecutor(args.threads),
        ProcessExecutor(args.workers, args.threads),
    ]
    if not args.no_ray:
        if importlib.util.find_spec("ray") is None:
            print("Ray run skipped: Ray is not installed (pip install 'labelleak[ray]')")
        else:
            executors.append(RayExecutor(None, args.workers, args.threads))
    runs = [(executor.describe(), executor) for executor in executors]
    if args.baseline_threads is not None:
        baseline = SerialExecutor(args.baseline_threads)
        runs.append((f"{baseline.describe()} (speed only)", baseline))
    print(
        f"{args.dataset} ({config['arch']}), {args.subsample} images per class, "
        f"{len(args.methods)} methods x {args.singles} single classes, {len(args.attacks)} "
        f"attacks; {available_cores()} cores, torch {torch.__version__}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as scratch:
        base = args.work_dir or Path(scratch)
        reference: dict[str, pd.DataFrame] | None = None
        for index, (name, executor) in enumerate(runs):
            startup, seconds, tables = timed_run(config, base / f"run{index}", executor)
            if reference is None:
                reference, verdict = tables, "reference"
            else:
                verdict = "identical" if same_tables(tables, reference) else "DIFFERENT"
            results.append((name, startup, seconds, verdict))
            print(f"  {name}: {seconds:.1f} s (+ {startup:.1f} s start-up), tables {verdict}")
    serial_seconds = results[0][2]
    table = pd.DataFrame(
        [
            [name, f"{seconds:.1f}", f"{startup:.1f}", f"{serial_seconds / seconds:.2f}x", verdict]
            for name, startup, seconds, verdict in results
        ],
        columns=["run", "wall s", "start-up s", "speed-up vs serial", "tables"],
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "runs.csv") as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_markdown(index=False))
    # A run at another thread count may differ in the last bits (see the module docstring).
    compared = [r for r in results[1:] if "speed only" not in r[0]]
    return 1 if any(r[3] != "identical" for r in compared) else 0


if __name__ == "__main__":
    sys.exit(main())
