"""labelleak: can an attacker tell which class a machine-unlearned classifier forgot?

The pipeline, one sub-package per stage: :mod:`labelleak.data` (datasets and splits),
:mod:`labelleak.models` (architectures exposing ``features`` and ``classifier``),
:mod:`labelleak.training` (seeded train/evaluate loops), :mod:`labelleak.unlearning` (a registry of
unlearning methods), :mod:`labelleak.experiment` (configs, grids, the artifact cache) and
:mod:`labelleak.cli` (the command line).
"""

from labelleak.errors import LabelleakError

__version__ = "0.1.0"

__all__ = ["LabelleakError", "__version__"]
