"""Exploration: how should invert-white's shadow-fit levels (threshold-fit, entropy-fit) be chosen?

For every attacked target of the attack benchmark's grid (``--shadow-rules``' shadows: an
untouched shadow and 3 single classes and 1 pair unlearned by each of the five methods, trained
on the attacker's own data), this inverts the shadows and the target with invert-white's search
(the default, or ``--resolution r --steps n``) and records each one's own-class log-odds. Then,
offline, it fits the relative level on the shadows under several choices and counts how often
each names the target's forgotten classes exactly (n targets; the never-unlearned original's
rows count as "names nothing"):

* ``floored``: the set rule's form (``p < 0.5`` always named), levels 0.05-0.95, middle of ties;
* ``floored, set level where uninformative``: the same, but the set level (0.6) where every
  level names the shadows equally well (what the attack does);
* ``unfloored``: no floor, levels -1 to 0.95, middle of ties (``top of ties``: the highest);
* ``either, floored on ties``: both forms, the floored one where they tie.

    .venv/bin/python benchmarks/explore_fitted_levels.py --only mnist --seeds 0 --pairs 3 \
        [--resolution 8 --steps 10]

Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from bench_attacks import SETTINGS
from common import data_missing, forget_sets, grid_config, grid_parser, rates_by_size

from labelleak.attacks.inversion.shadow_levels import shadow_measures
from labelleak.experiment.runner import ExperimentRunner, expand_grid

#: (floor, level) pairs: the set rules' floored form (levels 0.05-0.95) and an unfloored one
#: (levels -1 to 0.95).
RELATIVE_LEVELS = tuple((True, round(float(a), 2)) for a in np.arange(0.05, 0.96, 0.05)) + tuple(
    (False, round(float(a), 2)) for a in np.arange(-1.0, 0.96, 0.05)
)


def relative_decision(
    values: np.ndarray, level: float, cap: float = 25.0, floor: bool = False
) -> tuple[int, ...]:
    """Classes below ``level`` x the median class's capped log-odds, or with ``floor`` below 0
    (with ``floor`` and ``0 < level < 1``: invert-white's threshold rule)."""
    v = np.asarray(values, dtype=np.float64)
    threshold = level * float(np.median(np.minimum(v, cap)))
    return tuple(int(k) for k in np.flatnonzero((v < threshold) | (floor & (v < 0))))


Choice = Callable[[list[tuple[bool, float]], int], tuple[bool, float]]


def middle(best: list[tuple[bool, float]], _: int = 0) -> tuple[bool, float]:
    return best[len(best) // 2]


def set_level_unless_informative(best: list[tuple[bool, float]], tried: int) -> tuple[bool, float]:
    """The attack's choice: the middle of the best levels, or the set level (0.6) when every
    level named the shadows equally well."""
    return (True, 0.6) if len(best) == tried else middle(best)


FLOORED = [c for c in RELATIVE_LEVELS if c[0]]
UNFLOORED = [c for c in RELATIVE_LEVELS if not c[0]]
CHOICES: dict[str, tuple[Sequence[tuple[bool, float]], Choice]] = {
    "floored": (FLOORED, middle),
    "floored, set level where uninformative (the attack's)": (
        FLOORED,
        set_level_unless_informative,
    ),
    "unfloored": (UNFLOORED, middle),
    "unfloored, top of ties": (UNFLOORED, lambda best, _: best[-1]),
    "either, floored on ties": (
        RELATIVE_LEVELS,
        lambda best, _: middle([c for c in best if c[0]] or best),
    ),
}


def fit(
    measures: list[np.ndarray],
    truths: list[tuple[int, ...]],
    candidates: Sequence[tuple[bool, float]],
    choose: Choice,
) -> tuple[bool, float]:
    hits = [
        sum(
            relative_decision(m, level, 25.0, floor) == t
            for m, t in zip(measures, truths, strict=True)
        )
        for floor, level in candidates
    ]
    best = [c for c, h in zip(candidates, hits, strict=True) if h == max(hits)]
    return choose(best, len(candidates))


def outcomes(runner: ExperimentRunner, name: str) -> list[dict[str, object]]:
    """One row per (target, choice): whether the level fit that way names the target right."""
    attack = runner.attacker.attack("invert-white")
    data = runner.pipeline.splits(name).dataset
    fitted: dict[int, tuple[list[np.ndarray], list[tuple[int, ...]]]] = {}
    rows = []
    for cell in runner.attack_cells(expand_grid(runner.config, runner.pipeline)):
        target = runner.attacker.target_model(cell)
        knowledge = runner.attacker.knowledge(cell, target)

        def invert(
            model: torch.nn.Module, seed: int = cell.seed
        ) -> tuple[torch.Tensor, torch.Tensor]:
            _, profiles, log_odds = attack.invert(model, data.num_classes, data.input_shape, seed)
            return profiles, log_odds

        assert knowledge.shadows is not None
        runs = knowledge.shadows()
        if id(runs) not in fitted:
            measures, _, truths = shadow_measures(runs, invert, 25.0)
            fitted[id(runs)] = (measures, truths)
        measures, truths = fitted[id(runs)]
        values = invert(target)[1].numpy()
        truth = () if cell.method == "original" else cell.truth
        for choice, (candidates, choose) in CHOICES.items():
            floor, level = fit(measures, truths, candidates, choose)
            rows.append(
                {
                    "choice": choice,
                    "size": len(truth),
                    "success": int(relative_decision(values, level, 25.0, floor) == truth),
                    "level": f"{'floored ' if floor else ''}{level:+.2f}",
                }
            )
    return rows


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "explore-fitted-levels", SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--subsample", type=int, default=1000, help="training images per class")
    parser.add_argument("--attacker-classes", type=int, default=5)
    parser.add_argument("--resolution", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    torch.set_num_threads(1)
    params = {"resolution": args.resolution, "steps": args.steps, "rules": ["threshold-fit"]}
    for name in args.only or list(SETTINGS):
        config = grid_config(
            SETTINGS,
            name,
            args,
            forget=forget_sets(args.pairs),
            attacks=["invert-white"],
            attack_params={"invert-white": params},
            attacker_classes=args.attacker_classes,
        )
        runner = ExperimentRunner(config, args.out / name, args.cache_dir, progress=False)
        frame = pd.DataFrame(outcomes(runner, name))
        print(f"\n{name}, seeds {args.seeds}, invert-white {params}")
        table = []
        for choice, group in frame.groupby("choice", sort=False):
            one, two, original = rates_by_size(group)
            levels = group["level"].value_counts().head(3).to_dict()
            table.append(
                {
                    "choice": choice,
                    "1 class": one,
                    "2 classes": two,
                    "original": original,
                    "levels (most used)": levels,
                }
            )
        print(pd.DataFrame(table).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
