"""Inversion-based label-leakage attacks: ``invert-white`` (A3) and ``invert-black`` (A4).

Importing this package registers both attacks; the decision rules live in
:mod:`labelleak.attacks.inversion.criteria`.
"""

from labelleak.attacks.inversion.black_box import (
    BlackBoxConfig,
    BlackBoxInversion,
    GeneticInversion,
    genetic_inversion,
    query_probabilities,
)
from labelleak.attacks.inversion.criteria import (
    ALL_RULES,
    RULES,
    CriteriaConfig,
    FittedLevels,
    fit_level,
)
from labelleak.attacks.inversion.shadow_levels import InversionAttack, shadow_levels
from labelleak.attacks.inversion.white_box import (
    GradientInversionConfig,
    Inversion,
    WhiteBoxConfig,
    WhiteBoxInversion,
    invert_classes,
)

__all__ = [
    "ALL_RULES",
    "RULES",
    "BlackBoxConfig",
    "BlackBoxInversion",
    "CriteriaConfig",
    "FittedLevels",
    "GeneticInversion",
    "GradientInversionConfig",
    "Inversion",
    "InversionAttack",
    "WhiteBoxConfig",
    "WhiteBoxInversion",
    "fit_level",
    "genetic_inversion",
    "invert_classes",
    "query_probabilities",
    "shadow_levels",
]
