"""The report's figures: success heatmaps, success against forget-set size, ROC curves."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from labelleak.evaluation import wilson_interval
from labelleak.report.tables import (
    CONTROL,
    best_rule,
    chance_level,
    is_baseline,
    method_label,
    ordered_attacks,
    ordered_methods,
)
from labelleak.utils import atomic_path

DPI = 120
#: Sequential, perceptually uniform and readable in grey: dark = the attack fails, bright = leaks.
HEATMAP_CMAP = "viridis"
MISSING_COLOUR = "#dddddd"
#: Beyond this many knowledge settings the thin per-setting ROC curves only add clutter.
MAX_SETTING_CURVES = 40


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG atomically (nothing clipped: tight bounding box) and close it."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return target


def _size_label(k: int) -> str:
    return "1 forgotten class" if k == 1 else f"{k} forgotten classes"


def success_heatmap(attacks: pd.DataFrame, attack: str, path: str | os.PathLike[str]) -> Path:
    """Heatmap of one attack's exact-identification rate, method x dataset, one panel per
    forget-set size, for the attack's best rule (averaged over the sizes' unlearned targets). Cells
    show the rate in %, its 95% Wilson interval and the number of targets."""
    frame = attacks[attacks["attack"] == attack]
    rule = best_rule(frame, balance_sizes=True)
    frame = frame[(frame["rule"] == rule) & (frame["k"] > 0)]
    sizes = sorted(set(frame["k"]))
    datasets = list(dict.fromkeys(frame["dataset"]))
    methods = ordered_methods(frame["method"])
    # Panels are stacked so the figure keeps a page's width however many sizes there are.
    fig, axes = plt.subplots(
        len(sizes),
        1,
        figsize=(3.6 + 1.55 * len(datasets), (0.55 * len(methods) + 1.0) * len(sizes) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap(HEATMAP_CMAP).with_extremes(bad=MISSING_COLOUR)
    image = None
    for ax, k in zip(axes[:, 0], sizes, strict=True):
        of_size = frame[frame["k"] == k]
        counts = of_size.groupby(["method", "dataset"])["success"].agg(["sum", "size"])
        rates = np.full((len(methods), len(datasets)), np.nan)
        for i, method in enumerate(methods):
            for j, dataset in enumerate(datasets):
                if (method, dataset) not in counts.index:
                    ax.text(j, i, "no targets", ha="center", va="center", fontsize=8)
                    continue
                hits, n = (int(v) for v in counts.loc[(method, dataset)])
                rates[i, j] = 100 * hits / n
                low, high = wilson_interval(hits, n)
                colour = "white" if rates[i, j] < 55 else "black"
                ax.text(
                    j,
                    i,
                    f"{rates[i, j]:.1f}%\n[{100 * low:.0f}, {100 * high:.0f}]  n={n}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
        image = ax.imshow(np.ma.masked_invalid(rates), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(datasets)), datasets, fontsize=9)
        ticks = [method_label(m, wrap=True) for m in methods]
        ax.set_yticks(range(len(methods)), ticks, fontsize=9)
        ax.tick_params(length=0)
        if CONTROL in methods and len(methods) > 1:
            # The control answers another question (false alarms): set its row apart.
            ax.axhline(len(methods) - 1.5, color="white", linewidth=4)
        ax.set_title(_size_label(k), fontsize=10)
    if image is not None:
        bar = fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.9, pad=0.02)
        bar.set_label("exact identification, % of targets", fontsize=9)
    fig.suptitle(f"{attack}, rule {rule}: cells are % [95% CI] and number of targets", fontsize=10)
    return save_figure(fig, path)


def success_by_size(
    attacks: pd.DataFrame, dataset: str, num_classes: int, path: str | os.PathLike[str]
) -> Path:
    """Exact identification against the number of forgotten classes for one dataset: a line per
    attack (its best rule on this dataset), all unlearned targets pooled, 95% Wilson intervals,
    and the rate of guessing a set of that size at random."""
    frame = attacks[(attacks["dataset"] == dataset) & ~attacks["control"] & (attacks["k"] > 0)]
    sizes = sorted(set(frame["k"]))
    names = ordered_attacks(frame["attack"])
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(sizes) + 4.5), 5.0), layout="constrained")
    main_colours = iter(plt.get_cmap("tab10").colors[:4])
    other_colours = iter([*plt.get_cmap("tab10").colors[4:], "#444444", "#999933", "#882255"])
    offsets = np.linspace(-0.18, 0.18, len(names)) if len(names) > 1 else np.zeros(1)
    for offset, attack in zip(offsets, names, strict=True):
        rows = frame[frame["attack"] == attack]
        rule = best_rule(rows, balance_sizes=True)
        rows = rows[rows["rule"] == rule]
        stats = rows.groupby("k")["success"].agg(["sum", "size"]).reindex(sizes)
        stats = stats.dropna()
        if stats.empty:
            continue
        xs = np.array(stats.index, dtype=float) + offset
        rate = 100 * stats["sum"] / stats["size"]
        counts = zip(stats["sum"], stats["size"], strict=True)
        bounds = 100 * np.array([wilson_interval(int(s), int(n)) for s, n in counts])
        low, high = rate - bounds[:, 0], bounds[:, 1] - rate
        baseline = is_baseline(attack)
        colour = next(other_colours if baseline else main_colours, "#777777")
        ax.errorbar(
            xs,
            rate,
            yerr=[low, high],
            label=f"{attack} · {rule}" + (" (baseline)" if baseline else ""),
            color=colour,
            linestyle="--" if baseline else "-",
            linewidth=1.2 if baseline else 2.2,
            marker="s" if baseline else "o",
            markersize=4 if baseline else 6,
            capsize=3,
            alpha=0.85 if baseline else 1.0,
        )
    chance = [100 * chance_level(num_classes, k) for k in sizes]
    ax.plot(sizes, chance, "k:", marker="x", label=f"random set of k of {num_classes} classes")
    counts = frame.drop_duplicates(["method", "forgotten", "seed", "attacker_classes"])
    per_size = counts.groupby("k").size()
    ax.set_xticks(sizes, [f"{k}\n(n={per_size.get(k, 0)})" for k in sizes])
    ax.set_xlim(min(sizes, default=1) - 0.5, max(sizes, default=1) + 0.5)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("forgotten classes k (n = unlearned targets)")
    ax.set_ylabel("exact identification, % of targets")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(
        f"{dataset}: success against the number of forgotten classes\n"
        "(best rule per attack; all unlearning methods pooled; bars: 95% Wilson CI)",
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, path)


def roc_curves(calibration: pd.DataFrame, dataset: str, path: str | os.PathLike[str]) -> Path:
    """ROC curves of the attacker's shadow-run scores for one dataset, a panel per attack: the
    curve pooled over knowledge settings (AUC in the legend) with its Youden point, and a thin
    curve per setting (the Youden thresholds are fit per setting)."""
    from sklearn.metrics import auc, roc_curve

    frame = calibration[calibration["dataset"] == dataset]
    names = ordered_attacks(frame["attack"])
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 4.3 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, attack in zip(axes.flat, names, strict=False):
        rows_of = frame[frame["attack"] == attack]
        labels, scores = rows_of["forgotten"].to_numpy(), rows_of["score"].to_numpy()
        settings = list(dict.fromkeys(rows_of["knowledge"]))
        ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
        ax.set_aspect("equal")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("false-positive rate (retained classes named)", fontsize=9)
        ax.set_ylabel("true-positive rate (forgotten classes named)", fontsize=9)
        ax.set_title(f"{attack} ({len(settings)} knowledge settings)", fontsize=10)
        if len(set(labels)) < 2:
            ax.text(0.5, 0.5, "needs forgotten and\nretained classes", ha="center", va="center")
            continue
        if len(settings) <= MAX_SETTING_CURVES:
            for setting in settings:
                one = rows_of[rows_of["knowledge"] == setting]
                if len(set(one["forgotten"])) == 2:
                    fpr, tpr, _ = roc_curve(one["forgotten"], one["score"])
                    ax.plot(fpr, tpr, color="#bbbbbb", linewidth=0.8)
            ax.plot([], [], color="#bbbbbb", linewidth=0.8, label="one knowledge setting")
        fpr, tpr, thresholds = roc_curve(labels, scores)
        area = auc(fpr, tpr)
        positives = int(labels.sum())
        ax.plot(
            fpr,
            tpr,
            color="tab:blue",
            linewidth=2.2,
            label=f"pooled: AUC {area:.3f}\n(n={len(labels)} classes, {positives} forgotten)",
        )
        best = int(np.argmax(tpr - fpr))
        ax.plot(
            fpr[best],
            tpr[best],
            "o",
            color="tab:red",
            markersize=8,
            label=f"Youden point: TPR {tpr[best]:.2f}, FPR {fpr[best]:.2f}\n"
            f"(score ≥ {thresholds[best]:.3g})",
        )
        ax.legend(loc="lower right", fontsize=7.5)
    fig.suptitle(
        f"{dataset}: ROC of the attacker's shadow-run scores "
        "(higher score = more likely forgotten)",
        fontsize=10,
    )
    return save_figure(fig, path)
