"""White-box parameter attacks (A1 ``param-dot``, A2 ``param-diff``) and their building blocks.

Importing this package registers both attacks.
"""

from labelleak.attacks.parameter import diff, dot
from labelleak.attacks.parameter.auxiliary import (
    AuxiliaryHead,
    build_auxiliary,
    classifier_params,
    default_shadow_forget_sets,
    make_shadow_runs,
)
from labelleak.attacks.parameter.diff import ParamDiff, ParamDiffConfig
from labelleak.attacks.parameter.dot import ParamDot, ParamDotConfig
from labelleak.attacks.parameter.features import FEATURE_NAMES, class_features, raw_features

__all__ = [
    "FEATURE_NAMES",
    "AuxiliaryHead",
    "ParamDiff",
    "ParamDiffConfig",
    "ParamDot",
    "ParamDotConfig",
    "build_auxiliary",
    "class_features",
    "classifier_params",
    "default_shadow_forget_sets",
    "diff",
    "dot",
    "make_shadow_runs",
    "raw_features",
]
