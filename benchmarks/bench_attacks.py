"""Benchmark: every attack, rule and baseline on real data, with controls, on this machine.

For each dataset (MNIST and Fashion-MNIST with LeNet-5, CIFAR-10 with ResNet-8), the five paper
methods unlearn every single class and ``--pairs`` random pairs for each seed; every attack runs
on every target and on the never-unlearned original. Prints the exact-identification table (rate,
95% Wilson interval, n), the wall time per target and the black-box queries per class.

    .venv/bin/python benchmarks/bench_attacks.py [--only mnist] [--seeds 0 1 2] [--pairs 10]
        [--subsample 1000] [--attacker-classes 5] [--data-dir ../shared/data] [--out DIR]
        [--attack-params '{"param-diff": {"label_source": "target"}}'] [--workers 2]
        [--methods retrain finetune ... ssd salun]   (default: the paper's five)

Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
import torch
from common import (
    data_missing,
    forget_sets,
    grid_config,
    grid_parser,
    queries_per_class,
    rates_by_size,
    with_sizes,
)

from labelleak.attacks.inversion import ALL_RULES
from labelleak.experiment.parallel import make_executor
from labelleak.experiment.runner import ExperimentRunner
from labelleak.report import attack_summary, unlearning_summary
from labelleak.unlearning import METHODS, PAPER_METHODS

#: What issue 18 asks of every method: forget test accuracy at most this ...
FORGET_TARGET = 0.05
#: ... and retained test accuracy at most this far below the original's.
RETAIN_TARGET = 0.03

ATTACKS = [
    "param-dot", "param-diff", "invert-white", "invert-black",
    "chance", "head-bias", "head-norm", "absent-class", "data-peak", "unrelated-histogram",
    "noise-histogram", "probe-drop",
]  # fmt: skip

#: The parameter attacks' shadow-free rules (no shadow models to train).
SHADOW_FREE = {name: {"rules": ["top", "kmeans", "gap"]} for name in ("param-dot", "param-diff")}

#: With --shadow-rules the inversions also report threshold and entropy with levels fit on the
#: shadow runs (their default rules are shadow-free).
FITTED_LEVELS = {name: {"rules": list(ALL_RULES)} for name in ("invert-white", "invert-black")}

#: noise-histogram gets invert-black's whole budget (1,000 queries per class, 10 classes), so
#: the two black-box attacks are compared at equal cost.
EQUAL_BUDGET = {"noise-histogram": {"queries": 10_000}}

SETTINGS = {
    "mnist": {"dataset": "mnist", "arch": "lenet"},
    "fashion_mnist": {"dataset": "fashion_mnist", "arch": "lenet"},
    # SVHN, CIFAR-10's sibling, is not available here: crops of scikit-learn's two sample
    # photographs stand in as unrelated data (natural-image statistics). Uniform noise stood in
    # before; it is the worse stand-in (README, CIFAR-10: param-diff `top` 34 against 90% on
    # seed 0; `--unrelated noise` reproduces those rows).
    "cifar10": {"dataset": "cifar10", "arch": "resnet8", "unrelated": "patches"},
}


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "bench-attacks", SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument(
        "--classes", type=int, nargs="+", default=None, help="single classes (default: every one)"
    )
    parser.add_argument("--subsample", type=int, default=None, help="training images per class")
    parser.add_argument("--attacker-classes", default="all", help="all, or how many classes")
    parser.add_argument(
        "--shadow-rules",
        action="store_true",
        help="also fit youden and tree, and the inversions' threshold-fit and entropy-fit levels, "
        "on shadow runs (trains about 20 shadow models per forget set; without it the parameter "
        "attacks report top, kmeans and gap only, the inversions their set levels)",
    )
    parser.add_argument(
        "--attacks", nargs="*", default=ATTACKS, help="attacks (none: train, unlearn)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(PAPER_METHODS),
        help="unlearning methods (default: the paper's five; 'all' = every built-in one)",
    )
    parser.add_argument(
        "--attack-params",
        type=json.loads,
        default={},
        help='settings per attack as JSON, e.g. \'{"param-diff": {"label_source": "target"}}\'',
    )
    parser.add_argument(
        "--unrelated",
        default=None,
        help="unrelated data for every dataset (a dataset name, patches, noise or a '+'-joined "
        "mixture; default: each dataset's setting above)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, one torch thread each (the tables do not depend on it; the "
        "attacks' s / target are then per worker)",
    )
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    coverage = (
        args.attacker_classes if args.attacker_classes == "all" else int(args.attacker_classes)
    )
    for name in args.only or list(SETTINGS):
        config = grid_config(
            SETTINGS,
            name,
            args,
            forget=forget_sets(args.pairs, args.classes),
            attacks=args.attacks,
            attack_params=attack_params(args.attack_params, args.shadow_rules),
            attacker_classes=coverage,
            methods=list(METHODS) if args.methods == ["all"] else args.methods,
            **({"unrelated": args.unrelated} if args.unrelated else {}),
        )
        runner = ExperimentRunner(config, args.out / name, args.cache_dir, progress=not args.quiet)
        started = time.perf_counter()
        if args.workers > 1:
            with make_executor(workers=args.workers, threads=1) as executor:
                unlearning = runner.run(executor)
        else:
            unlearning = runner.run()
        print(
            f"\n{name}: wall time {time.perf_counter() - started:.0f} s, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        print(unlearning_summary(unlearning))
        print(unlearning_targets(unlearning))
        if not args.attacks:
            continue
        attacks = pd.read_csv(
            args.out / name / "attacks.csv", dtype={"forgotten": str, "predicted": str}
        )
        print(attack_summary(attacks))
        print(compact_table(attacks))
    return 0


def attack_params(given: dict[str, dict], shadow_rules: bool) -> dict[str, dict]:
    """The benchmark's settings (equal budgets; shadow-free rules unless ``shadow_rules``) with
    ``given`` laid over them, attack by attack."""
    params: dict[str, dict] = {**EQUAL_BUDGET, **(FITTED_LEVELS if shadow_rules else SHADOW_FREE)}
    for name, settings in given.items():
        params[name] = {**params.get(name, {}), **settings}
    return params


def unlearning_targets(unlearning: pd.DataFrame) -> str:
    """Per method: worst forget accuracy, mean and worst retained-accuracy drop against the
    original, and how many targets meet both FORGET_TARGET and RETAIN_TARGET."""
    frame = unlearning.assign(drop=unlearning["original_retain_acc"] - unlearning["retain_acc"])
    met = (frame["forget_acc"] <= FORGET_TARGET) & (frame["drop"] <= RETAIN_TARGET)
    rows = []
    for method, group in frame.assign(met=met).groupby("method", sort=False):
        rows.append(
            [method, len(group), f"{100 * group['forget_acc'].max():.1f}",
             f"{100 * group['drop'].mean():.2f}", f"{100 * group['drop'].max():.2f}",
             f"{int(group['met'].sum())}/{len(group)}", f"{group['seconds'].mean():.1f}"]
        )  # fmt: skip
    headers = ["method", "n", "worst forget acc %", "retain drop % (mean)",
               "retain drop % (worst)", f"forget <= {100 * FORGET_TARGET:.0f}% and drop <= "
               f"{100 * RETAIN_TARGET:.0f} pts", "s / model"]  # fmt: skip
    return pd.DataFrame(rows, columns=headers).to_markdown(index=False)


def worst_method(rates: pd.Series) -> str:
    """The method with the lowest rate (a fraction per method) and that rate in %; ``all`` when
    every method has the same rate, so a tie does not single one out."""
    if rates.empty:
        return "-"
    lowest = f"{100 * rates.min():.0f}"
    return f"all {lowest}" if rates.nunique() == 1 else f"{rates.idxmin()} {lowest}"


def compact_table(attacks: pd.DataFrame) -> str:
    """Per (attack, rule): success on one and on two forgotten classes, the worst method on one,
    how often the original is rightly left alone, seconds per target and queries per class."""
    frame = with_sizes(attacks)
    rows = []
    for (attack, rule), group in frame.groupby(["attack", "rule"], sort=False):
        cells = rates_by_size(group)
        singles = group[group["size"] == 1].groupby("method")["success"].mean()
        queries = queries_per_class(group)
        rows.append(
            [attack, rule, *cells[:2], worst_method(singles), cells[2],
             f"{group['seconds'].mean():.2f}", f"{queries.median():.0f} / {queries.max():.0f}"]
        )  # fmt: skip
    headers = ["attack", "rule", "1 class", "2 classes", "worst method, 1 class (%)",
               "original: names nothing", "s / target", "queries / class (med / max)"]  # fmt: skip
    return pd.DataFrame(rows, columns=headers).to_markdown(index=False)


if __name__ == "__main__":
    sys.exit(main())
