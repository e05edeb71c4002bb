"""labelleak: can an attacker tell which class a machine-unlearned classifier forgot?

The pipeline, one sub-package per stage: :mod:`labelleak.data` (datasets and splits),
:mod:`labelleak.models` (architectures exposing ``features`` and ``classifier``),
:mod:`labelleak.training` (seeded train/evaluate loops), :mod:`labelleak.unlearning` (a registry of
unlearning methods), :mod:`labelleak.experiment` (configs, grids, the artifact cache) and
:mod:`labelleak.cli` (the command line).
"""

from typing import Any

from labelleak.errors import LabelleakError

__version__ = "0.1.0"

__all__ = ["LabelleakError", "__version__", "audit"]


def audit(*args: Any, **kwargs: Any) -> Any:
    """Audit a model: see :func:`labelleak.auditing.audit` (imported on first use, so that
    ``import labelleak`` stays light)."""
    from labelleak.auditing import audit as run_audit

    return run_audit(*args, **kwargs)
