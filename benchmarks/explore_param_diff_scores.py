"""Exploration: which per-class score should param-diff (or param-dot) decide on?

The parameter attacks compute a table of standardised per-class features
(``features.FEATURE_NAMES``) once per target; their ``score`` sums some of them. This script
computes the tables of every distinct target of the attack benchmark's grid (LeNet-5, 1,000
images per class, five methods, every single class and ten random pairs, the never-unlearned
originals) once, then decides with ``top`` (told the count), ``gap`` and ``kmeans`` under each
candidate score, and prints the success per split of seeds: choose on the first split, check on
the second.

    .venv/bin/python benchmarks/explore_param_diff_scores.py --only mnist --seeds 0 1 2 \
        --choose 0 [--attack param-dot]

param-dot is told the attacker's data of each target (five retained classes) and decides among
the classes that data lacks, as in the benchmark.

Skips (exit 0, with a message) when the data folder is missing.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np
import pandas as pd
import torch
from bench_attacks import SETTINGS as ATTACK_SETTINGS
from common import data_missing, grid_parser, loaded_runner

from labelleak.attacks import get_attack_class, make_attack_config
from labelleak.attacks.parameter.features import parse_score
from labelleak.attacks.rules import ClassFeatures, decide
from labelleak.experiment.runner import ExperimentRunner, expand_grid

SETTINGS = dict(ATTACK_SETTINGS)
#: Without --only (CIFAR-10's grid is slow to load and needs its own models in the cache).
DEFAULT_DATASETS = ("mnist", "fashion_mnist")
RULES = ["top", "gap", "kmeans"]
CANDIDATES = {
    "param-diff": [
        ("-cos", "-target_logit"),
        ("-target_top2",),
        ("-target_peak",),
        ("-target_share",),
        ("-cos", "-target_logit", "-target_top2"),
        ("-cos", "-target_logit", "-target_peak"),
        ("-cos", "-target_logit", "-target_top2", "-target_peak"),
    ],
    "param-dot": [
        ("cos", "-diff_norm"),
        ("-target_top2",),
        ("-target_peak",),
        ("cos", "-diff_norm", "-target_top2"),
        ("cos", "-diff_norm", "-target_peak"),
        ("cos", "-diff_norm", "-target_top2", "-target_peak"),
    ],
}


def feature_tables(
    runner: ExperimentRunner, name: str, attack_name: str
) -> list[tuple[int, str, tuple, object]]:
    """(seed, method, truth, ClassFeatures) of every distinct attacked target, with the attack's
    defaults (param-dot: one per knowledge setting; its features depend on the attacker's data)."""
    cells = expand_grid(runner.config, runner.pipeline)
    distinct = {}
    for cell in runner.attack_cells(cells):
        key = (cell.seed, cell.method, cell.truth)
        distinct.setdefault(key if attack_name == "param-diff" else (*key, cell.gap), cell)
    attack = get_attack_class(attack_name)(make_attack_config(attack_name, {"rules": ["top"]}))
    x = runner.attacker.unrelated(name).float()
    tables = []
    for cell in distinct.values():
        model = runner.attacker.target_model(cell)
        if attack_name == "param-diff":
            features = attack.features(model, x, cell.seed)
        else:
            knowledge = runner.attacker.knowledge(cell, model)
            data_x, data_y = knowledge.attacker_data
            lacking = ~np.isin(np.arange(knowledge.num_classes), data_y.numpy())
            features = attack.features(model, data_x, data_y, lacking, cell.seed)
        tables.append((cell.seed, cell.method, cell.truth, features))
    return tables


def evaluate(
    tables: list, attack_name: str, score: tuple[str, ...], seeds: set[int]
) -> dict[str, float]:
    """Success (%) per rule and forget-set size, and how often the originals are left alone."""
    config = make_attack_config(attack_name, {"rules": RULES})
    outcomes: dict[str, list[bool]] = defaultdict(list)
    for seed, method, truth, features in tables:
        if seed not in seeds:
            continue
        values, names = features.values, list(features.names)
        primary = sum(sign * values[:, names.index(n)] for n, sign in parse_score(score))
        rescored = ClassFeatures(
            values, features.names, np.asarray(primary, float), features.candidates
        )
        decisions = decide(
            RULES, rescored, [], kmeans_columns=config.kmeans_columns, settings=config,
            seed=seed, count=max(len(truth), 1),
        )  # fmt: skip
        for rule, decision in decisions.items():
            if method == "original":
                if rule != "top":
                    outcomes[f"{rule} original"].append(not decision.predicted)
                continue
            outcomes[f"{rule} {len(truth)}"].append(set(decision.predicted) == set(truth))
            if method == "neg-grad" and len(truth) == 1:
                outcomes[f"{rule} neg-grad 1"].append(set(decision.predicted) == set(truth))
    return {key: 100 * float(np.mean(v)) for key, v in sorted(outcomes.items())}


def main() -> int:
    parser = grid_parser(__doc__.splitlines()[0], "explore-param-diff", SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--choose", type=int, nargs="+", default=[0], help="seeds to choose on")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--subsample", type=int, default=1000, help="training images per class")
    parser.add_argument("--attack", choices=sorted(CANDIDATES), default="param-diff")
    args = parser.parse_args()
    if data_missing(args.data_dir):
        return 0
    torch.set_num_threads(1)
    for name in args.only or DEFAULT_DATASETS:
        runner = loaded_runner(
            SETTINGS,
            name,
            args,
            forget=["each", {"random_pairs": args.pairs}],
            attacker_classes=5,
        )
        tables = feature_tables(runner, name, args.attack)
        splits = {
            f"seeds {' '.join(map(str, args.choose))}": set(args.choose),
            "other seeds": set(args.seeds) - set(args.choose),
        }
        rows = []
        for score in CANDIDATES[args.attack]:
            for split, seeds in splits.items():
                if seeds:
                    rows.append(
                        {
                            "score": " ".join(score),
                            "split": split,
                            **evaluate(tables, args.attack, score, seeds),
                        }
                    )
        frame = pd.DataFrame(rows).round(1)
        print(f"\n{name}, {args.attack}: {len(tables)} distinct targets, seeds {args.seeds}")
        print(frame.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
