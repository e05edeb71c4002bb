"""Paper-style tables (Markdown) from the tidy result tables."""

from __future__ import annotations

import pandas as pd


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
    summary = summary.rename(
        columns={
            "forget_acc": "forget acc %",
            "retain_acc": "retain acc %",
            "test_acc": "test acc %",
            "seconds": "unlearn s",
        }
    )
    return summary.to_markdown(index=False) if _has_tabulate() else summary.to_string(index=False)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
