"""Image grids of reconstructed class prototypes with the target's top predictions on them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed

import matplotlib.pyplot as plt
import numpy as np
import torch

from labelleak.errors import LabelleakError
from labelleak.utils import atomic_path

FORGOTTEN_COLOUR = "#c0392b"
NAMED_COLOUR = "#2471a3"


def save_prototype_grid(
    path: str | os.PathLike[str],
    prototypes: torch.Tensor | np.ndarray,
    profiles: torch.Tensor | np.ndarray,
    *,
    forgotten: Sequence[int] = (),
    predicted: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "",
    top: int = 2,
    columns: int = 5,
) -> Path:
    """Render one target's prototypes as a PNG grid and write it atomically to ``path``.

    ``prototypes`` ``(K, C, H, W)`` are images in ``[0, 1]`` (C = 1 or 3); ``profiles``
    ``(K, K)`` the target's probabilities on them. Each panel shows class ``k``'s prototype and
    the ``top`` classes the target gives it, with probabilities. Truly ``forgotten`` classes get
    a red frame and the word "forgotten"; classes the attack named (``predicted``) a blue
    "named" tag, so hits and misses read at a glance. Returns the written path.
    """
    images = _as_array(prototypes)
    probs = _as_array(profiles).astype(np.float64)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise LabelleakError(f"prototypes must be (K, 1 or 3, H, W); got {images.shape}")
    k = images.shape[0]
    if probs.shape != (k, k):
        raise LabelleakError(f"profiles must be ({k}, {k}) for {k} prototypes; got {probs.shape}")
    names = [str(c) for c in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise LabelleakError(f"need {k} class names, got {len(names)}")
    forgotten_set, named_set = set(forgotten), set(predicted or ())
    columns = max(1, min(columns, k))
    rows = -(-k // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.3 * columns, 2.75 * rows + 0.6), squeeze=False
    )
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= k:
            ax.axis("off")
            continue
        picture = np.clip(images[index].transpose(1, 2, 0), 0.0, 1.0)
        if picture.shape[2] == 1:
            ax.imshow(picture[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(picture, interpolation="nearest")
        tags = []
        if index in forgotten_set:
            tags.append("forgotten")
        if index in named_set:
            tags.append("named")
        heading = f"class {names[index]}" + (f" ({', '.join(tags)})" if tags else "")
        colour = FORGOTTEN_COLOUR if index in forgotten_set else "black"
        ax.set_title(heading, fontsize=9, color=colour)
        order = np.argsort(-probs[index], kind="stable")[:top]
        ax.set_xlabel(
            "\n".join(f"{names[j]}: {_format_prob(probs[index], j)}" for j in order), fontsize=8
        )
        frame = FORGOTTEN_COLOUR if index in forgotten_set else None
        frame = frame or (NAMED_COLOUR if index in named_set else None)
        for spine in ax.spines.values():
            spine.set_edgecolor(frame or "#888888")
            spine.set_linewidth(3.0 if frame else 0.8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return target


def _as_array(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().float().numpy()
    return np.asarray(values)


def _format_prob(row: np.ndarray, j: int) -> str:
    """Probability ``row[j]``; near 1 as ``1 - (sum of the others)``, which keeps its digits."""
    p = float(row[j])
    if p >= 0.999:
        rest = float(np.delete(row, j).sum())
        return f"1 - {rest:.0e}" if rest > 0 else "1 - <1e-300"
    if p < 0.001:
        return f"{p:.0e}"
    return f"{p:.3f}"
