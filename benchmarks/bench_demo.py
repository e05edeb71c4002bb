"""Benchmark: the wall time of ``labelleak demo``, from an empty cache and rerun warm.

Each cold run gets a fresh output folder and an empty model cache; the warm run reruns the last
cold run's command into the same folders (everything is found, nothing recomputed). Writes the
runs to ``OUT/runs.csv`` (default ``results/bench-demo``) and prints them.

    .venv/bin/python benchmarks/bench_demo.py [--cold 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import ROOT

from labelleak.utils import atomic_path


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=2, help="runs from an empty cache")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench-demo")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as scratch:
        command: list[str] = []
        for index in range(args.cold):
            folder = Path(scratch) / f"run{index}"
            command = [
                str(ROOT / ".venv" / "bin" / "labelleak"), "demo", "--out", str(folder / "out"),
                "--cache-dir", str(folder / "cache"), "-q",
            ]  # fmt: skip
            rows.append(["cold cache", index + 1, f"{timed(command):.1f}"])
            print(rows[-1], flush=True)
        rows.append(["warm rerun into the same folder", 1, f"{timed(command):.1f}"])
    table = pd.DataFrame(rows, columns=["run", "#", "wall s"])
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "runs.csv") as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
