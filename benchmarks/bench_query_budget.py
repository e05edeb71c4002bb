"""Benchmark: black-box success against the query budget, invert-black beside noise-histogram.

For MNIST and Fashion-MNIST (LeNet-5; models from the attack benchmark's cache, trained when
missing), every distinct target (each seed's original, and the five paper methods' unlearned
models for every single class and ``--pairs`` random pairs) is attacked once per budget:
invert-black with ``queries_per_class`` in ``--budgets``, and noise-histogram with the same total
number of queries (budget x classes). Prints, per budget, the exact-identification rate of every
rule on one and two forgotten classes and how often the original is rightly left alone, with the
queries actually spent; writes every outcome to ``OUT/<dataset>.csv`` (written once, atomically).

    .venv/bin/python benchmarks/bench_query_budget.py [--only mnist] [--seeds 0 1 2]
        [--pairs 10] [--budgets 50 100 250 500 1000] [--subsample 1000]

The original is one model per seed here (the attack benchmark attacks it once per knowledge
setting, with identical answers for these attacks), so its ``n`` is the number of seeds.
Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import pandas as pd
from bench_attacks import SETTINGS as ATTACK_SETTINGS
from common import (
    data_missing,
    forget_sets,
    grid_parser,
    loaded_runner,
    queries_per_class,
    rates_by_size,
    with_sizes,
)
from tqdm.auto import tqdm

from labelleak.attacks import get_attack_class, make_attack_config, restrict
from labelleak.experiment.attacking import AttackCell, format_set
from labelleak.experiment.runner import ExperimentRunner, expand_grid
from labelleak.utils import atomic_path

#: The attack benchmark's LeNet-5 settings, so the targets are its models (from its cache).
SETTINGS = {name: ATTACK_SETTINGS[name] for name in ("mnist", "fashion_mnist")}


def distinct_targets(runner: ExperimentRunner) -> list[AttackCell]:
    """Each model of the grid once: the attack cells differ only in the attacker's knowledge,
    which neither attack here uses."""
    cells = expand_grid(runner.config, runner.pipeline)
    unique: dict[tuple[object, ...], AttackCell] = {}
    for cell in runner.attack_cells(cells):
        unique.setdefault((cell.seed, cell.method, cell.truth), cell)
    return list(unique.values())


def attack_at_budgets(
    runner: ExperimentRunner, cell: AttackCell, budgets: list[int]
) -> list[dict[str, object]]:
    """Outcome rows of invert-black and noise-histogram on one target at every budget."""
    attacker = runner.attacker
    target = attacker.target_model(cell)
    knowledge = attacker.knowledge(cell, target)
    rows = []
    for budget in budgets:
        runs = {
            "invert-black": {"queries_per_class": budget},
            "noise-histogram": {"queries": budget * knowledge.num_classes},
        }
        for name, params in runs.items():
            attack = get_attack_class(name)(make_attack_config(name, params))
            # A fresh counter per run, so ``queries`` is what this run spent.
            counted = replace(knowledge, query=attacker.query_function(cell.dataset, target))
            view = restrict(counted, attack.needs())
            started = time.perf_counter()
            results = attack.run(view, seed=cell.seed)
            seconds = time.perf_counter() - started
            for result in results:
                rows.append(
                    {
                        "dataset": cell.dataset,
                        "seed": cell.seed,
                        "method": cell.method,
                        "forgotten": format_set(cell.truth),
                        "budget_per_class": budget,
                        "attack": name,
                        "rule": result.rule,
                        "predicted": format_set(result.predicted),
                        "success": set(result.predicted) == set(cell.truth),
                        "queries": result.queries,
                        "seconds": seconds,
                    }
                )
    return rows


def summary(frame: pd.DataFrame) -> str:
    """Per (budget, attack, rule): success on one and two classes, originals left alone,
    median queries per class spent."""
    frame = with_sizes(frame)
    rows = []
    for (budget, attack, rule), group in frame.groupby(
        ["budget_per_class", "attack", "rule"], sort=True
    ):
        rows.append(
            [budget, attack, rule, *rates_by_size(group),
             f"{queries_per_class(group).median():.0f}", f"{group['seconds'].mean():.2f}"]
        )  # fmt: skip
    headers = ["budget / class", "attack", "rule", "1 class", "2 classes",
               "original: names nothing", "queries / class (median)", "s / target"]  # fmt: skip
    return pd.DataFrame(rows, columns=headers).to_markdown(index=False)


def budget_table(frame: pd.DataFrame) -> str:
    """One row per budget: invert-black's queries spent, its ``top`` and ``gap`` on one and two
    classes, how often ``gap`` leaves the originals alone, and noise-histogram's ``top``."""
    frame = with_sizes(frame)
    rows = []
    for budget, group in frame.groupby("budget_per_class", sort=True):
        black = group[group["attack"] == "invert-black"]
        top, gap = black[black["rule"] == "top"], black[black["rule"] == "gap"]
        noise = group[(group["attack"] == "noise-histogram") & (group["rule"] == "top")]
        queries = queries_per_class(top)
        originals = gap[gap["size"] == 0]["success"]
        rows.append(
            [budget, f"{queries.median():.0f} / {queries.max():.0f}",
             *rates_by_size(top, (1, 2)), *rates_by_size(gap, (1, 2)),
             f"{int(originals.sum())} of {len(originals)}", *rates_by_size(noise, (1, 2))]
        )  # fmt: skip
    headers = ["budget / class", "invert-black queries / class (med / max)",
               "invert-black top, 1 class", "top, 2 classes", "gap, 1 class", "gap, 2 classes",
               "gap: originals left alone", "noise-histogram top (same budget), 1 class",
               "2 classes"]  # fmt: skip
    return pd.DataFrame(rows, columns=headers).to_markdown(index=False)


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "bench-query-budget", SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--subsample", type=int, default=1000, help="training images per class")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 250, 500, 1000])
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    for name in args.only or list(SETTINGS):
        # Trains the models the cache lacks (no attacks configured: none run here).
        runner = loaded_runner(
            SETTINGS,
            name,
            args,
            progress=not args.quiet,
            forget=forget_sets(args.pairs),
        )
        started = time.perf_counter()
        rows = []
        targets = distinct_targets(runner)
        for cell in tqdm(targets, desc=f"{name}: budgets", unit="target", disable=args.quiet):
            rows.extend(attack_at_budgets(runner, cell, sorted(args.budgets)))
        frame = pd.DataFrame(rows)
        with atomic_path(args.out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        print(f"\n{name}: {len(targets)} targets, {time.perf_counter() - started:.0f} s")
        print(budget_table(frame))
        print(summary(frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
