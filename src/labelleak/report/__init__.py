"""Tables, plots and the Markdown report built from the result CSVs."""

from labelleak.report.markdown import build_report, headline, render_markdown, write_report
from labelleak.report.tables import (
    Results,
    attack_summary,
    format_rate,
    load_results,
    unlearning_summary,
)

__all__ = [
    "Results",
    "attack_summary",
    "build_report",
    "format_rate",
    "headline",
    "load_results",
    "render_markdown",
    "unlearning_summary",
    "write_report",
]
