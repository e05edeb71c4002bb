"""A content-addressed store for trained and unlearned models.

Each artifact lives in ``ROOT/KIND/KEY[:2]/KEY/`` where ``KEY`` is the hash of everything that
determines it (data fingerprint, architecture, recipe, seed, method and its config, forgotten
classes). An artifact folder is built under a temporary name and renamed into place in one step,
so a killed process leaves either nothing or a complete artifact. Weights are stored as
safetensors: loading them runs no code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from labelleak.errors import LabelleakError

WEIGHTS = "model.safetensors"
META = "meta.json"


def default_cache_dir() -> Path:
    """``$LABELLEAK_CACHE``, else ``$XDG_CACHE_HOME/labelleak``, else ``~/.cache/labelleak``."""
    if os.environ.get("LABELLEAK_CACHE"):
        return Path(os.environ["LABELLEAK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labelleak"


def state_to_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """A model's state dict as contiguous CPU tensors that safetensors can write."""
    return {name: t.detach().cpu().contiguous().clone() for name, t in model.state_dict().items()}


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load safetensors weights from ``path`` into ``model`` (shapes must match exactly)."""
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors raises several types for a corrupt file
        raise LabelleakError(f"cannot read model weights {path}: {error}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        summary = str(error).splitlines()[0]
        raise LabelleakError(f"weights in {path} do not fit this architecture: {summary}") from None
    return model


class ArtifactStore:
    """Models and their side files, addressed by ``(kind, key)``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LabelleakError(f"cannot create cache directory {self.root}: {error}") from None

    def folder(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def has(self, kind: str, key: str) -> bool:
        return (self.folder(kind, key) / META).is_file()

    def meta(self, kind: str, key: str) -> dict[str, Any]:
        return json.loads((self.folder(kind, key) / META).read_text())

    def load_model(self, kind: str, key: str, model: nn.Module) -> nn.Module:
        """Fill ``model`` (built with the right architecture) with the stored weights."""
        return load_weights(model, self.folder(kind, key) / WEIGHTS)

    def load_tensors(self, kind: str, key: str, name: str) -> dict[str, torch.Tensor] | None:
        path = self.folder(kind, key) / f"{name}.safetensors"
        if not path.is_file():
            return None
        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises several types for a corrupt file
            raise LabelleakError(
                f"cannot read {path}: {error}; delete that cache folder to rebuild it"
            ) from None

    def save(
        self,
        kind: str,
        key: str,
        model: nn.Module,
        meta: dict[str, Any],
        extra: dict[str, dict[str, torch.Tensor]] | None = None,
    ) -> Path:
        """Store ``model``'s weights, ``meta`` and named tensor files atomically; return the folder.

        If another process stored the same key first, its artifact is kept (it is identical by
        construction) and this one is discarded.
        """
        final = self.folder(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}."))
        try:
            save_file(state_to_tensors(model), str(staging / WEIGHTS))
            for name, tensors in (extra or {}).items():
                contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
                save_file(contiguous, str(staging / f"{name}.safetensors"))
            (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
            if not self.has(kind, key):
                os.rename(staging, final)
        except OSError:
            if self.has(kind, key):
                return final
            raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return final
