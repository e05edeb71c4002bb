"""Tables and plots built from the result CSVs."""

from labelleak.report.tables import unlearning_summary

__all__ = ["unlearning_summary"]
