"""Paper-style tables (Markdown) from the tidy result tables."""

from __future__ import annotations

import pandas as pd

from labelleak.evaluation import wilson_interval


def unlearning_summary(table: pd.DataFrame) -> str:
    """Mean forget/retain/test accuracy (in %) and seconds per (dataset, arch, method), Markdown.

    ``table`` has the columns of ``unlearning.csv``; the original model's accuracies are shown as
    their own row so the cost of unlearning is visible.
    """
    if table.empty:
        return "(no unlearned models)"
    grouped = table.groupby(["dataset", "arch", "method"], sort=False)
    summary = grouped.agg(
        n=("forgotten", "size"),
        forget_acc=("forget_acc", "mean"),
        retain_acc=("retain_acc", "mean"),
        test_acc=("test_acc", "mean"),
        seconds=("seconds", "mean"),
    ).reset_index()
    originals = (
        table.groupby(["dataset", "arch"], sort=False)
        .agg(
            n=("forgotten", "size"),
            forget_acc=("original_forget_acc", "mean"),
            retain_acc=("original_retain_acc", "mean"),
            test_acc=("original_test_acc", "mean"),
        )
        .reset_index()
        .assign(method="(original)", seconds=float("nan"))
    )
    summary = pd.concat([originals, summary], ignore_index=True)
    summary = summary.sort_values(["dataset", "arch"], kind="stable")
    for column in ("forget_acc", "retain_acc", "test_acc"):
        summary[column] = (100 * summary[column]).round(1)
    summary["seconds"] = summary["seconds"].round(2)
    summary = summary[["dataset", "arch", "method", "n", "forget_acc", "retain_acc",
                       "test_acc", "seconds"]]  # fmt: skip
    summary.columns = ["dataset", "arch", "method", "n", "forget acc %", "retain acc %",
                       "test acc %", "unlearn s"]  # fmt: skip
    return summary.to_markdown(index=False)


def format_rate(successes: int, trials: int) -> str:
    """``"85.0 [72.1, 92.6] (n=40)"``: success rate in % with its 95% Wilson interval."""
    if trials == 0:
        return "n/a"
    low, high = wilson_interval(successes, trials)
    return f"{100 * successes / trials:.1f} [{100 * low:.1f}, {100 * high:.1f}] (n={trials})"


def attack_summary(table: pd.DataFrame) -> str:
    """Exact-identification rate per (dataset, attack, rule) and target method, Markdown.

    Rows are (dataset, attack, rule); columns are the target methods, with the never-unlearned
    ``original`` last (there, "success" means naming nothing). Cells give the rate in % with its
    95% Wilson interval and the number of targets.
    """
    if table.empty:
        return "(no attack results)"
    methods = [m for m in dict.fromkeys(table["method"]) if m != "original"]
    if "original" in set(table["method"]):
        methods.append("original")
    rows = []
    for (dataset, attack, rule), group in table.groupby(["dataset", "attack", "rule"], sort=False):
        row = {"dataset": dataset, "attack": attack, "rule": rule}
        for method in methods:
            cell = group[group["method"] == method]
            row[method] = format_rate(int(cell["success"].sum()), len(cell))
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)
