"""Audit a model someone else trained and unlearned: ``labelleak audit`` and :func:`audit`."""

from labelleak.auditing.audit import AuditResult, Verdict, audit
from labelleak.auditing.loading import as_classifier, load_model_file, load_state_file

__all__ = ["AuditResult", "Verdict", "as_classifier", "audit", "load_model_file", "load_state_file"]
