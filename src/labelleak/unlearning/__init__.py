"""Unlearning methods, registered by name (see :mod:`labelleak.unlearning.base`)."""

from labelleak.unlearning import (  # noqa: F401
    amnesiac,
    bad_teacher,
    boundary_shrink,
    finetune,
    l1_sparse,
    neg_grad,
    random_label,
    retrain,
    salun,
    scrub,
    ssd,
    unsir,
)
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
#: Methods the field uses since, each citing its paper in its module.
MODERN_METHODS = (
    "ssd", "salun", "scrub", "bad-teacher", "unsir", "l1-sparse", "boundary-shrink",
)  # fmt: skip

__all__ = [
    "METHODS",
    "MODERN_METHODS",
    "PAPER_METHODS",
    "MethodConfig",
    "UnlearningMethod",
    "UnlearningTask",
    "build_method",
    "get_method_class",
    "make_config",
    "register",
]
