"""Tables and plots built from the result CSVs."""

from labelleak.report.tables import attack_summary, format_rate, unlearning_summary

__all__ = ["attack_summary", "format_rate", "unlearning_summary"]
