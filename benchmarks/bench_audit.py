"""Benchmark: ``labelleak audit`` on LeNet-5 weight files, one per unlearning method.

For each method, the seed-0 MNIST LeNet-5 (1,000 images per class, as in bench_attacks.py) with
``--forget`` removed is written to a safetensors file, as a user would hand one over, and audited
with the command line in a fresh process (``--null-models`` never-unlearned models, trained once
and then read from the cache with the attacks' outcomes on them). The never-unlearned original is
audited too: its right verdict is "no class". Prints per file the verdict, whether it is right,
the ranking consensus and its false alarms on the null models, what the calibrated set rules
name, and the audit's wall time; the original is also audited once from an empty cache, where the
audit itself trains and attacks the null models (``cold.csv``).

    .venv/bin/python benchmarks/bench_audit.py [--methods retrain neg-grad ...] [--forget 7]
        [--null-models 20] [--data-dir ../shared/data] [--out DIR] [--cache-dir DIR]

Models come from the benchmarks' cache (trained when missing). An audit whose audit.json exists
is not rerun. Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import ROOT, data_missing, grid_config, grid_parser
from safetensors.torch import save_file

from labelleak.auditing import AuditResult
from labelleak.experiment.pipeline import Pipeline
from labelleak.experiment.store import ArtifactStore, state_to_tensors
from labelleak.unlearning import METHODS
from labelleak.utils import resolve_device

SETTINGS = {"mnist": {"dataset": "mnist", "arch": "lenet"}}


def export(pipeline: Pipeline, method: str, forget: tuple[int, ...], folder: Path) -> Path:
    """The seed-0 model of ``method`` (``original``: never unlearned) as a safetensors file."""
    path = folder / f"{method}.safetensors"
    if not path.is_file():
        if method == "original":
            model = pipeline.original("mnist", 0).model
        else:
            model = pipeline.unlearned("mnist", 0, method, forget).model
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state_to_tensors(model), str(path))
    return path


def audit(
    path: Path, out: Path, args: argparse.Namespace, cache: Path | None = None
) -> tuple[dict, float]:
    """The audit command on ``path`` in its own process (with ``cache``, default the
    benchmarks' cache): its audit.json and wall seconds."""
    report = out / "audit.json"
    timing = out / "seconds.txt"
    if report.is_file() and timing.is_file():
        return json.loads(report.read_text()), float(timing.read_text())
    command = [
        str(ROOT / ".venv" / "bin" / "labelleak"), "audit", str(path), "--arch", "lenet",
        "--dataset", "mnist", "--data-dir", str(args.data_dir), "--subsample", "1000",
        "--null-models", str(args.null_models), "--out", str(out),
        "--cache-dir", str(cache or args.cache_dir), "-q",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    timing.write_text(f"{seconds:.1f}")
    return json.loads(report.read_text()), seconds


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "bench-audit", SETTINGS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--forget", type=int, nargs="+", default=[7])
    parser.add_argument("--null-models", type=int, default=20)
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    args.seeds, args.subsample = [0], 1000
    forget = tuple(sorted(args.forget))
    methods = [m for m in args.methods if m != "original"]
    # The grid's own settings, so the models are the ones bench_attacks.py trained and cached.
    config = grid_config(SETTINGS, "mnist", args, forget=[list(forget)], methods=methods)
    pipeline = Pipeline(config, ArtifactStore(args.cache_dir), resolve_device("auto"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as empty:
        # Once from an empty cache: the null models are trained and attacked in this audit.
        path = export(pipeline, "original", forget, args.out / "models")
        _, cold = audit(path, args.out / "original-cold", args, Path(empty))
    print(f"original, empty cache: {cold:.1f} s", flush=True)
    for method in ["original", *methods]:
        path = export(pipeline, method, forget, args.out / "models")
        content, seconds = audit(path, args.out / method, args)
        truth = () if method == "original" else forget
        result = AuditResult.from_dict(content)
        named, _ = result.verdict()
        leader, count = result.leading()
        ranked, ranked_count, ranking, alarms = result.consensus()
        rows.append(
            {
                "model": method,
                "truth": "+".join(map(str, truth)) or "none",
                "verdict": "+".join(map(str, named)) or "none",
                "right": named == truth,
                "ranked first": f"{'+'.join(map(str, ranked))} by {ranked_count}/{ranking}",
                "null models as unanimous": f"{alarms}/{len(result.null_agreement)}",
                "calibrated set rules": f"{'+'.join(map(str, leader)) or 'none'} by "
                f"{count}/{len(result.evidence())}",
                "wall s": round(seconds, 1),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "audits.csv", index=False)
    pd.DataFrame([{"audit": "original, empty cache", "wall s": round(cold, 1)}]).to_csv(
        args.out / "cold.csv", index=False
    )
    print(table.to_markdown(index=False))
    right = int(table["right"].sum())
    print(f"right verdicts: {right}/{len(table)}; median wall time {table['wall s'].median()} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
