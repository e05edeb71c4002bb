"""Benchmark: does neg-grad hide the forgotten class because it stops early?

Our neg-grad stops as soon as the forget data is misclassified, the least removal that passes
the forget-accuracy check; neg-grad is also where every attack without the original falls short.
This runs neg-grad with ``margin`` 0 (the default), 2 and 5 nats (a forget sample is ascended on
until its own logit trails the best other class's by that much) on LeNet-5 with 1,000 images per
class, and prints, per margin, what the unlearning cost (retained and test accuracy) and each
attack's success on one and two forgotten classes, with 95% Wilson intervals. The attacks use
the attack benchmark's settings. The grid lists neg-grad alone, so its originals are trained
without amnesiac's recorder: separate cached models of the same recipe and seed whose weights
differ slightly, so the margin-0 rows are close to, not equal to, that benchmark's neg-grad rows.

    .venv/bin/python benchmarks/bench_neg_grad_margin.py [--only mnist] [--seeds 0 1 2]
        [--pairs 10] [--margins 0 2 5]

Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import sys

import pandas as pd
from bench_attacks import SETTINGS as ATTACK_SETTINGS
from bench_attacks import attack_params
from common import data_missing, forget_sets, grid_config, grid_parser, rates_by_size, with_sizes

from labelleak.experiment.runner import ExperimentRunner

SETTINGS = {name: ATTACK_SETTINGS[name] for name in ("mnist", "fashion_mnist")}
ATTACKS = [
    "invert-white", "invert-black", "param-diff", "data-peak", "unrelated-histogram",
    "noise-histogram", "probe-drop",
]  # fmt: skip
ATTACK_COLUMNS = ["1 class", "2 classes", "original"]


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "bench-neg-grad-margin", SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 2.0, 5.0])
    parser.add_argument("--subsample", type=int, default=1000, help="training images per class")
    parser.add_argument("--attacks", nargs="+", default=ATTACKS)
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    for name in args.only or list(SETTINGS):
        costs, rates = {}, {}
        for margin in args.margins:
            config = grid_config(
                SETTINGS,
                name,
                args,
                methods=["neg-grad"],
                method_params={"neg-grad": {"margin": margin}},
                forget=forget_sets(args.pairs),
                attacks=args.attacks,
                attack_params=attack_params({}, shadow_rules=False),
                attacker_classes=5,
            )
            out = args.out / name / f"margin-{margin:g}"
            unlearning = ExperimentRunner(
                config, out, args.cache_dir, progress=not args.quiet
            ).run()
            label = f"margin {margin:g}"
            costs[label] = unlearning_costs(unlearning)
            attacks = pd.read_csv(out / "attacks.csv", dtype={"forgotten": str, "predicted": str})
            rates[label] = attack_rates(attacks)
        print(f"\n{name}: neg-grad, seeds {args.seeds}, {args.pairs} pairs per seed")
        print(pd.DataFrame(costs).to_markdown())
        for column in ATTACK_COLUMNS[:2]:
            table = pd.DataFrame({label: frame[column] for label, frame in rates.items()})
            # The original is the same model at every margin: its column is printed once.
            table["original: names nothing"] = next(iter(rates.values()))[ATTACK_COLUMNS[2]]
            print(f"\n{name}, {column} forgotten by neg-grad:")
            print(table.to_markdown())
    return 0


def unlearning_costs(unlearning: pd.DataFrame) -> pd.Series:
    """Mean forget / retained / test accuracy (%) and seconds of the neg-grad targets."""
    frame = unlearning[unlearning["method"] == "neg-grad"]
    return pd.Series(
        {
            "forget acc": f"{100 * frame['forget_acc'].mean():.1f}",
            "retain acc": f"{100 * frame['retain_acc'].mean():.1f}",
            "retain acc, original": f"{100 * frame['original_retain_acc'].mean():.1f}",
            "test acc": f"{100 * frame['test_acc'].mean():.1f}",
            "seconds": f"{frame['seconds'].mean():.1f}",
            "targets": str(len(frame)),
        }
    )


def attack_rates(attacks: pd.DataFrame) -> pd.DataFrame:
    """Per (attack, rule): success on one / two forgotten classes, and how often the original is
    rightly left alone (rate, 95% Wilson interval, n)."""
    frame = with_sizes(attacks)
    rows = {
        f"{attack} {rule}": rates_by_size(group)
        for (attack, rule), group in frame.groupby(["attack", "rule"], sort=False)
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=ATTACK_COLUMNS)


if __name__ == "__main__":
    sys.exit(main())
