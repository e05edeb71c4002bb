"""Label-leakage attacks and baselines, registered by name (see :mod:`labelleak.attacks.base`)."""

# Importing the attack modules registers them.
from labelleak.attacks import baselines, inversion, parameter, probes  # noqa: F401
from labelleak.attacks.base import (
    ATTACKS,
    Attack,
    AttackConfig,
    AttackerKnowledge,
    AttackResult,
    QueryBudgetExceeded,
    QueryFunction,
    ShadowRun,
    get_attack_class,
    make_attack_config,
    probabilities_of,
    register_attack,
    restrict,
    run_attack,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackResult",
    "AttackerKnowledge",
    "QueryBudgetExceeded",
    "QueryFunction",
    "ShadowRun",
    "get_attack_class",
    "make_attack_config",
    "probabilities_of",
    "register_attack",
    "restrict",
    "run_attack",
]
