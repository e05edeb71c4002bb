"""The report's defence section: what each defence costs and what it leaves to every attack.

For each dataset and defence: the forget and retained test accuracy of the defended models, the
retained accuracy's change against the same models undefended (paired by method, forget set and
seed), and for every attack its best rule's exact-identification rate on single forgotten
classes. "Best" is picked per defence on the targets' truth (the attacker's most favourable
rule), so each rate is an upper bound on what that attack achieves against that defence. The
plot puts the worst attack's rate against the retained accuracy, one point per (defence,
method), so a defence's cost and protection read off one picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from labelleak.defences import NO_DEFENCE
from labelleak.evaluation import wilson_interval
from labelleak.report.tables import format_rate, markdown_table, ordered_attacks, ordered_methods

PAIRING = ["method", "forgotten", "seed"]


def defences_of(frame: pd.DataFrame) -> list[str]:
    """The defences in ``frame`` (a ``defence`` column), the control first."""
    names = list(dict.fromkeys(frame["defence"])) if "defence" in frame else [NO_DEFENCE]
    return sorted(names, key=lambda name: name != NO_DEFENCE)


def best_rates(attacks: pd.DataFrame, k: int = 1) -> pd.DataFrame:
    """Per (dataset, defence, attack): the best rule on the unlearned targets with ``k``
    forgotten classes, its successes and trials. Columns ``dataset, defence, attack, rule,
    successes, trials, rate``."""
    frame = attacks[~attacks["control"] & (attacks["k"] == k)]
    stats = (
        frame.groupby(["dataset", "defence", "attack", "rule"], sort=False)["success"]
        .agg(successes="sum", trials="size")
        .reset_index()
    )
    stats["rate"] = stats["successes"] / stats["trials"]
    best = stats.sort_values("rate", ascending=False, kind="stable").drop_duplicates(
        ["dataset", "defence", "attack"]
    )
    return best.reset_index(drop=True)


def defence_table(attacks: pd.DataFrame, unlearning: pd.DataFrame, dataset: str) -> str:
    """One row per defence: forget and retained accuracy (%), the retained accuracy's change
    against the undefended models (points), each attack's best-rule rate on one forgotten
    class, and the worst of them."""
    models = unlearning[unlearning["dataset"] == dataset]
    rates = best_rates(attacks[attacks["dataset"] == dataset])
    names = ordered_attacks(rates["attack"])
    undefended = models[models["defence"] == NO_DEFENCE].set_index(PAIRING)["retain_acc"]
    rows = []
    for defence in defences_of(models if len(models) else rates):
        own = models[models["defence"] == defence]
        paired = own.set_index(PAIRING)["retain_acc"]
        common = paired.index.intersection(undefended.index)
        change = (
            f"{100 * float((paired[common] - undefended[common]).mean()):+.2f}"
            if len(common)
            else "–"
        )
        row: list[object] = [
            defence,
            f"{100 * own['forget_acc'].mean():.1f}" if len(own) else "–",
            f"{100 * own['retain_acc'].mean():.1f}" if len(own) else "–",
            change,
        ]
        mine = rates[rates["defence"] == defence].set_index("attack")
        worst = None
        for attack in names:
            if attack not in mine.index:
                row.append("–")
                continue
            entry = mine.loc[attack]
            row.append(
                f"{format_rate(int(entry['successes']), int(entry['trials']))} ({entry['rule']})"
            )
            if attack != "chance" and (worst is None or entry["rate"] > worst[1]):
                worst = (attack, float(entry["rate"]))
        row.append(f"{100 * worst[1]:.1f} ({worst[0]})" if worst else "–")
        rows.append(row)
    headers = ["defence", "forget %", "retain %", "Δ retain (points)", *names, "worst attack %"]
    return markdown_table(headers, rows)


def tradeoff_points(attacks: pd.DataFrame, unlearning: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per (defence, method): mean retained accuracy (%), and the worst attack's best-rule rate
    on one forgotten class (%), with its successes and trials."""
    frame = attacks[(attacks["dataset"] == dataset) & ~attacks["control"] & (attacks["k"] == 1)]
    frame = frame[frame["attack"] != "chance"]
    points = []
    models = unlearning[unlearning["dataset"] == dataset]
    for (defence, method), rows in frame.groupby(["defence", "method"], sort=False):
        stats = rows.groupby(["attack", "rule"])["success"].agg(["sum", "size"])
        stats["rate"] = stats["sum"] / stats["size"]
        top = stats.sort_values("rate", ascending=False).iloc[0]
        own = models[(models["defence"] == defence) & (models["method"] == method)]
        points.append(
            {
                "defence": defence,
                "method": method,
                "retain": 100 * float(own["retain_acc"].mean()) if len(own) else np.nan,
                "worst": 100 * float(top["rate"]),
                "successes": int(top["sum"]),
                "trials": int(top["size"]),
                "attack": f"{stats.sort_values('rate', ascending=False).index[0][0]}",
            }
        )
    return pd.DataFrame(points)


def tradeoff_plot(
    attacks: pd.DataFrame,
    unlearning: pd.DataFrame,
    dataset: str,
    num_classes: int,
    path: str | os.PathLike[str],
) -> Path:
    """The worst attack's success on one forgotten class against the retained test accuracy:
    a line per defence through its methods' points (95% Wilson intervals), chance dotted."""
    import matplotlib.pyplot as plt

    from labelleak.report.plots import save_figure

    points = tradeoff_points(attacks, unlearning, dataset)
    fig, ax = plt.subplots(figsize=(7.5, 5.0), layout="constrained")
    colours = iter(plt.get_cmap("tab10").colors)
    for defence in defences_of(points):
        own = points[points["defence"] == defence].dropna(subset=["retain"])
        order = ordered_methods(own["method"], with_control=False)
        own = own.set_index("method").loc[order].reset_index()
        bounds = 100 * np.array(
            [wilson_interval(s, n) for s, n in zip(own["successes"], own["trials"], strict=True)]
        ).reshape(-1, 2)
        colour = next(colours)
        ax.errorbar(
            own["retain"],
            own["worst"],
            yerr=[own["worst"] - bounds[:, 0], bounds[:, 1] - own["worst"]],
            color=colour,
            marker="o",
            linestyle="-" if defence != NO_DEFENCE else "--",
            capsize=3,
            label=defence,
        )
        for _, point in own.iterrows():
            ax.annotate(
                point["method"], (point["retain"], point["worst"]), fontsize=7, color=colour,
                xytext=(3, 3), textcoords="offset points",
            )  # fmt: skip
    ax.axhline(100 / max(num_classes, 2), color="k", linestyle=":", label="chance (one class)")
    ax.set_xlabel("retained test accuracy, % (mean over the defended models)")
    ax.set_ylabel("worst attack's exact identification, % (best rule)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.set_title(f"{dataset}: what each defence costs and what it leaves (one forgotten class)",
                 fontsize=10)  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, path)
