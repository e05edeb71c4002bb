"""The one exception type for user errors.

Anything a user can get wrong (an unknown name, a missing directory, a malformed config) raises
:class:`LabelleakError` with one line that says what is wrong and what to do. The CLI prints that
line and exits with status 2; programming errors keep their tracebacks.
"""

from __future__ import annotations

from collections.abc import Iterable


class LabelleakError(Exception):
    """A user error: its message is one line, printed as is by the CLI (exit status 2)."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> LabelleakError:
    """Build the error for a name that is not registered, listing the valid choices."""
    valid = ", ".join(sorted(choices))
    return LabelleakError(f"unknown {kind} {value!r}; choose one of: {valid}")
