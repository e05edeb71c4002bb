"""Unlearning methods, registered by name (see :mod:`labelleak.unlearning.base`)."""

from labelleak.unlearning import amnesiac, finetune, neg_grad, random_label, retrain  # noqa: F401
from labelleak.unlearning.base import (
    METHODS,
    MethodConfig,
    UnlearningMethod,
    UnlearningTask,
    build_method,
    get_method_class,
    make_config,
    register,
)

#: The five methods of the paper, in its order.
PAPER_METHODS = ("retrain", "finetune", "random-label", "amnesiac", "neg-grad")

__all__ = [
    "METHODS",
    "PAPER_METHODS",
    "MethodConfig",
    "UnlearningMethod",
    "UnlearningTask",
    "build_method",
    "get_method_class",
    "make_config",
    "register",
]
