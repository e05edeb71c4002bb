"""Defences against forgotten-label inference, registered by name (see :mod:`.base`)."""

from labelleak.defences import calibrate, decoy, distil, graft, refit  # noqa: F401
from labelleak.defences.base import (
    DEFENCES,
    NO_DEFENCE,
    Defence,
    DefenceConfig,
    DefenceTask,
    build_defence,
    defence_stages,
    get_defence_class,
    make_defence_config,
    register_defence,
)

__all__ = [
    "DEFENCES",
    "NO_DEFENCE",
    "Defence",
    "DefenceConfig",
    "DefenceTask",
    "build_defence",
    "defence_stages",
    "get_defence_class",
    "make_defence_config",
    "register_defence",
]
