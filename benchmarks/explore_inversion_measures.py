"""Exploration: do other per-class measures of a gradient inversion expose a forgotten class better?

invert-white keeps each class's best restart and decides on its final own-class log-odds. This
script reruns the same inversion (same settings and seed as the attack) on single-class targets
and records, per class, alternatives an attacker could use instead:

* ``final``: the best restart's log-odds (what invert-white uses);
* ``median restart`` / ``worst restart``: the restarts' median and minimum;
* ``after N steps``: the best log-odds after only N Adam steps (how fast a class is reached);
* ``noise s``: mean log-odds of the prototype under Gaussian pixel noise of std ``s`` (16 draws);
* ``shift``: mean log-odds of the prototype shifted by 1-2 pixels (8 shifts);
* ``blur``: log-odds of the prototype average-pooled 2x and upsampled back.

With ``--resolutions`` the inversion also runs in invert-white's low-resolution space (an r x r
image upsampled, ``resolution: r``), recording ``final`` and ``after N steps`` there as ``r x r:
...``.

For each target method and measure it prints how often the forgotten class is the lowest of all
classes and its relative margin, (lowest retained - forgotten) / median class, measures capped
at 25 nats like the attack's; for the never-unlearned original, its lowest and median class.

    .venv/bin/python benchmarks/explore_inversion_measures.py --only mnist --seeds 0 \
        --methods retrain neg-grad [--resolutions 0 8 4]

Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from bench_attacks import SETTINGS
from common import data_missing, grid_parser, loaded_runner

from labelleak.attacks.inversion.criteria import log_odds_from_logits
from labelleak.attacks.inversion.white_box import WhiteBoxConfig, invert_classes
from labelleak.experiment.attacking import AttackCell
from labelleak.experiment.runner import expand_grid

CHECKPOINTS = (5, 10, 20, 40, 50, 80, 100, 200)
CAP = 25.0


def inversion_measures(
    model: torch.nn.Module, k: int, shape: tuple[int, int, int], seed: int, resolution: int = 0
) -> dict[str, np.ndarray]:
    """Per-class measures ``(K,)`` of invert-white's inversion of ``model`` (see the docstring).

    The attack's own inversion, with its early stops switched off so that every class runs all
    its steps and the best-so-far log-odds can be read at the checkpoints; with ``resolution``
    r > 0, in the r x r space, and only ``final`` and ``after N steps``.
    """
    defaults = WhiteBoxConfig()
    config = defaults.model_copy(
        update={"stop_log_odds": math.inf, "patience": defaults.steps, "resolution": resolution}
    )
    prefix = f"{resolution}x{resolution}: " if resolution else ""
    measures: dict[str, np.ndarray] = {}

    def record(step: int, best_odds: torch.Tensor) -> None:
        if step in CHECKPOINTS:
            measures[f"{prefix}after {step} steps"] = best_odds.max(1).values.numpy().copy()

    inversion = invert_classes(model, k, shape, config, seed, on_step=record)
    final, prototypes = inversion.log_odds, inversion.prototypes
    measures[f"{prefix}final"] = final.max(1).values.numpy()
    if resolution:
        return measures
    with torch.no_grad():
        measures["median restart"] = final.median(1).values.numpy()
        measures["worst restart"] = final.min(1).values.numpy()
        noise_generator = torch.Generator().manual_seed(1)
        for sigma in (0.1, 0.2, 0.3):
            noise = sigma * torch.randn((k, 16, *shape), generator=noise_generator)
            noisy = (prototypes.unsqueeze(1) + noise).clamp(0, 1).flatten(0, 1)
            odds = log_odds_from_logits(model(noisy), torch.arange(k).repeat_interleave(16))
            measures[f"noise {sigma}"] = odds.view(k, 16).mean(1).numpy()
        offsets = [(1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (0, 2), (-2, 0), (0, -2)]
        shifted = torch.stack(
            [torch.roll(prototypes, shifts=(dy, dx), dims=(2, 3)) for dx, dy in offsets], 1
        )
        odds = log_odds_from_logits(
            model(shifted.flatten(0, 1)), torch.arange(k).repeat_interleave(len(offsets))
        )
        measures["shift"] = odds.view(k, len(offsets)).mean(1).numpy()
        blurred = F.interpolate(
            F.avg_pool2d(prototypes, 2), size=shape[1:], mode="bilinear", align_corners=False
        )
        measures["blur"] = log_odds_from_logits(model(blurred), torch.arange(k)).numpy()
    return measures


def summarise(records: list[tuple[str, tuple[int, ...], dict[str, np.ndarray]]]) -> pd.DataFrame:
    """One row per (method, measure): forgotten lowest (fraction), relative margin min / median;
    for the original, its lowest and median class (nats)."""
    by: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for method, truth, measures in records:
        for name, values in measures.items():
            capped = np.minimum(values, CAP)
            median = float(np.median(capped))
            if not truth:
                by[method, name].append((float(capped.min()), median))
                continue
            retained = np.delete(capped, list(truth))
            margin = (retained.min() - capped[list(truth)].max()) / max(abs(median), 1e-9)
            lowest = float(np.argmin(values) in truth)
            by[method, name].append((lowest, float(margin)))
    rows = []
    for (method, name), pairs in by.items():
        a, b = np.array(pairs).T
        if method == "original":
            rows.append([method, name, "-", f"lowest {a.min():.1f}, median {np.median(b):.1f}"])
        else:
            rows.append(
                [method, name, f"{int(a.sum())}/{len(a)}",
                 f"min {b.min():.2f}, median {np.median(b):.2f}"]
            )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["method", "measure", "forgotten is lowest", "relative margin / original"]
    )


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "explore-inversion", SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=["retrain", "neg-grad", "amnesiac"])
    parser.add_argument("--subsample", type=int, default=1000, help="training images per class")
    parser.add_argument(
        "--resolutions",
        type=int,
        nargs="+",
        default=[0],
        help="search spaces: 0 (every pixel, the default) and r for r x r upsampled",
    )
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    torch.set_num_threads(1)
    for name in args.only or list(SETTINGS):
        # All five methods, as in the attack benchmark, so the models come from its cache (the
        # original's cache key depends on whether amnesiac is in the grid).
        runner = loaded_runner(SETTINGS, name, args, forget="each")
        cells = expand_grid(runner.config, runner.pipeline)
        targets = [
            *[AttackCell(name, seed, "original", (0,)) for seed in args.seeds],
            *[
                AttackCell(name, c.seed, c.method, c.forget)
                for c in cells
                if c.method in args.methods
            ],
        ]
        records = []
        for cell in targets:
            model = runner.attacker.target_model(cell).eval()
            data = runner.pipeline.splits(name).dataset
            measures: dict[str, np.ndarray] = {}
            for resolution in args.resolutions:
                measures |= inversion_measures(
                    model, data.num_classes, data.input_shape, cell.seed, resolution
                )
            records.append((cell.method, cell.truth, measures))
        print(f"\n{name}, seeds {args.seeds}, single classes")
        print(summarise(records).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
