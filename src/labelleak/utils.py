"""Small shared helpers: seeding, devices, content hashes and atomic file writes."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelleak.errors import LabelleakError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way.

    Code that draws random numbers should prefer the returned generator (or one derived from the
    seed) over global state, so that results do not depend on what ran before.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """Map ``"auto"`` to CUDA when present, else CPU; check any other torch device string."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise LabelleakError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LabelleakError(
            f"device {device!r} asked for, but this torch sees no CUDA GPU; use auto or cpu"
        )
    return resolved


def canonical_json(value: Any) -> str:
    """Serialise ``value`` to JSON with sorted keys and no whitespace, for stable hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot hash a value of type {type(value).__name__}")


def content_hash(value: Any, length: int = 20) -> str:
    """Hex SHA-256 of the canonical JSON of ``value``, truncated to ``length`` characters."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Readers therefore see either the old file or the complete new one, never a partial write,
    even if the process is killed mid-write.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> None:
    """Delete temporary files :func:`atomic_path` left in ``folder`` (and below) when killed.

    Only safe while no other process writes into ``folder``: one run owns its output folder.
    """
    root = Path(folder)
    if root.is_dir():
        for leftover in root.rglob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


#: Seconds between rebuilds of a results table while a grid runs. Each rebuild reads every
#: finished cell file, so rebuilding after every cell cost O(cells^2) (4 s of the demo's 60).
TABLE_REFRESH_SECONDS = 5.0


class Every:
    """``due()`` is true on its first call and then at most once per ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.seconds:
            return False
        self._last = now
        return True


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    # The symbols already loaded into this process, libc's among them: no library search
    # (ctypes.util.find_library would run ldconfig in a subprocess).
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def release_free_memory() -> None:
    """Hand memory the allocator holds but no longer uses back to the OS (glibc only).

    Every grid cell copies part of a dataset (a forget or retain split, tens of MB on MNIST);
    glibc keeps such freed blocks in fragmented heaps, and a 300-cell MNIST grid grew by ~45 MB
    per cell until it was killed for memory (12.9 GB). Trimming after each cell keeps the
    process flat for a few milliseconds; a fixed mmap threshold did too, but cost 50% more time
    in page faults.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
