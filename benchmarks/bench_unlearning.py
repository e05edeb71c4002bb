"""Benchmark: train the original and run the five paper methods on real data, on this machine.

Datasets: MNIST and Fashion-MNIST (LeNet-5, full training data) and CIFAR-10 (ResNet-8).

Reports, per dataset and method, the mean forget / retain / test accuracy on the official test set
and the mean wall time of unlearning, plus the original's training time. Usage::

    .venv/bin/python benchmarks/bench_unlearning.py [--data-dir ../shared/data] [--out DIR]
        [--only mnist|fashion_mnist|cifar10] [--cache-dir DIR]

Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import sys
import time

import pandas as pd
import torch
from common import data_missing, grid_parser

from labelleak.experiment.config import parse_config
from labelleak.experiment.runner import ExperimentRunner
from labelleak.report import unlearning_summary

SETTINGS = {
    # LeNet-5 on the full MNIST training set (54,000 images after the attacker's 10%).
    "mnist": {"dataset": "mnist", "forget": [0, 3, 7, [2, 9]]},
    "fashion_mnist": {"dataset": "fashion_mnist", "forget": [0, 3, 7, [2, 9]]},
    # ResNet-8 on 1,000 CIFAR-10 images per class: amnesiac's recorded training costs ~6x plain
    # training on a CPU, so the full 2,500 per class does not fit a benchmark run here.
    "cifar10": {
        "dataset": "cifar10",
        "arch": "resnet8",
        "subsample_per_class": 1000,
        "forget": [3, [2, 9]],
    },
}


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "bench-unlearning", SETTINGS)
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    tables = []
    for name in args.only or list(SETTINGS):
        config = parse_config(
            {**SETTINGS[name], "data_dir": str(args.data_dir.resolve()), "seeds": [0]}
        )
        runner = ExperimentRunner(config, args.out / name, args.cache_dir, progress=not args.quiet)
        started = time.perf_counter()
        table = runner.run()
        original = runner.pipeline.original(name, 0)
        print(
            f"{name}: original trained in {original.seconds:.0f} s "
            f"(with amnesiac's recording), grid wall time {time.perf_counter() - started:.0f} s"
        )
        tables.append(table)
    combined = pd.concat(tables, ignore_index=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(unlearning_summary(combined))
    return 0


if __name__ == "__main__":
    sys.exit(main())
