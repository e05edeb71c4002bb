"""What the benchmark scripts share: where data and results live, and how they skip."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from labelleak.data.registry import get_spec
from labelleak.experiment.attacking import NOTHING
from labelleak.experiment.config import ExperimentConfig, parse_config
from labelleak.experiment.runner import ExperimentRunner
from labelleak.report import format_rate

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"


def grid_parser(
    description: str, out_name: str, datasets: Iterable[str]
) -> argparse.ArgumentParser:
    """A parser with the options every grid benchmark takes: ``--data-dir``, ``--out`` (default
    ``results/<out_name>``), ``--cache-dir`` (the benchmarks' shared model cache), ``--only``
    (one of ``datasets``, repeatable) and ``-q`` (no progress bars)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / out_name)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "results" / "bench-cache")
    parser.add_argument("--only", choices=sorted(datasets), action="append")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def forget_sets(pairs: int, classes: Iterable[int] | None = None) -> list[object]:
    """The grid's ``forget`` entry: every single class (or ``classes``) and ``pairs`` random
    pairs per seed (none when 0)."""
    singles: list[object] = ["each"] if classes is None else [[c] for c in classes]
    return [*singles, *([{"random_pairs": pairs}] if pairs else [])]


def data_missing(data_dir: Path) -> bool:
    """True, after saying so, when the real-data folder is absent (the benchmark then skips)."""
    if data_dir.is_dir():
        return False
    print(f"skipped: data folder {data_dir} not found (needs ../shared/data)")
    return True


def with_sizes(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (rows of ``attacks.csv`` or alike) with ``size``: how many classes its target
    forgot (0 for the never-unlearned original)."""
    sizes = frame["forgotten"].map(lambda s: 0 if s == NOTHING else len(s.split("+")))
    return frame.assign(size=sizes)


def queries_per_class(rows: pd.DataFrame) -> pd.Series:
    """Each attack row's ``queries`` (per target) divided by its dataset's number of classes."""
    return rows["queries"] / rows["dataset"].map(lambda name: get_spec(name).num_classes)


def rates_by_size(group: pd.DataFrame, sizes: tuple[int, ...] = (1, 2, 0)) -> list[str]:
    """Exact-identification rate with its Wilson interval and n, per forget-set size of
    ``group`` (a :func:`with_sizes` frame); ``-`` where it has no such target."""
    cells = []
    for size in sizes:
        picked = group[group["size"] == size]["success"]
        cells.append(format_rate(int(picked.sum()), len(picked)) if len(picked) else "-")
    return cells


def grid_config(
    settings: dict[str, dict[str, object]],
    name: str,
    args: argparse.Namespace,
    **grid: object,
) -> ExperimentConfig:
    """Dataset ``name``'s grid: ``settings[name]`` on ``args.seeds`` and ``args.subsample``
    images per class from ``args.data_dir``, plus ``grid`` (forget sets, attacks and so on)."""
    return parse_config(
        {
            **settings[name],
            "data_dir": str(args.data_dir.resolve()),
            "subsample_per_class": args.subsample,
            "seeds": args.seeds,
            **grid,
        }
    )


def loaded_runner(
    settings: dict[str, dict[str, object]],
    name: str,
    args: argparse.Namespace,
    *,
    progress: bool = False,
    **grid: object,
) -> ExperimentRunner:
    """The runner of :func:`grid_config`'s grid, its models trained or loaded from the
    benchmarks' cache, no attack run."""
    config = grid_config(settings, name, args, **grid)
    runner = ExperimentRunner(config, args.out / name, args.cache_dir, progress=progress)
    runner.run()
    return runner
