"""What the benchmark scripts share: where data and results live, and how they skip."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"


def grid_parser(
    description: str, out_name: str, datasets: Iterable[str]
) -> argparse.ArgumentParser:
    """A parser with the options every grid benchmark takes: ``--data-dir``, ``--out`` (default
    ``results/<out_name>``), ``--cache-dir`` (the benchmarks' shared model cache) and ``--only``
    (one of ``datasets``, repeatable)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / out_name)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "results" / "bench-cache")
    parser.add_argument("--only", choices=sorted(datasets), action="append")
    return parser


def data_missing(data_dir: Path) -> bool:
    """True, after saying so, when the real-data folder is absent (the benchmark then skips)."""
    if data_dir.is_dir():
        return False
    print(f"skipped: data folder {data_dir} not found (needs ../shared/data)")
    return True
