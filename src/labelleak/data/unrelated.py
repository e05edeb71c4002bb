"""Unrelated data: images of the target's input shape from another distribution.

The parameter-difference attack and some baselines need images the target was not trained on.
Sources:

* a registered dataset of the same input shape (``fashion_mnist`` for ``mnist`` and vice versa,
  ``svhn`` for ``cifar10`` and vice versa): its test images;
* ``patches``: random crops of scikit-learn's two bundled photographs, area-resized to the input
  shape (grey when the target is grey) -- natural-image statistics with nothing to download;
* ``noise``: uniform noise in ``[0, 1]``, the default for the bundled ``digits`` (it measured
  better than patches for param-diff there);
* a mixture of several of these joined by ``+`` (``mnist+patches``): the images split evenly
  among the sources. More varied unrelated images reach more of the target's classes, which is
  what param-diff's auxiliary head needs (README, "The unrelated data param-diff needs").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from labelleak.data.base import ImageDataset
from labelleak.data.registry import DATASETS, load_dataset
from labelleak.errors import LabelleakError, unknown_choice

GENERATED = ("noise", "patches")

#: Joins the sources of a mixture.
MIX = "+"


def unrelated_choices() -> list[str]:
    return [*GENERATED, *DATASETS]


def unrelated_sources(source: str, count: int) -> list[str]:
    """The sources ``source`` names (one, or a ``+``-joined mixture) to draw ``count`` images
    from in all, or a clear error."""
    if count < 1:
        raise LabelleakError(f"unrelated_count must be at least 1, got {count}")
    parts = source.split(MIX)
    if any(not part for part in parts) or len(set(parts)) != len(parts):
        raise LabelleakError(
            f"unrelated data {source!r}: join distinct sources with '+', e.g. 'mnist+patches'"
        )
    for part in parts:
        if part not in unrelated_choices():
            raise unknown_choice("unrelated data", part, unrelated_choices())
    if count < len(parts):
        raise LabelleakError(f"unrelated_count {count} is too small to mix {len(parts)} sources")
    return parts


def photo_patch_images(
    count: int, shape: tuple[int, int, int], generator: torch.Generator
) -> torch.Tensor:
    """``count`` random crops ``(count, C, H, W)`` in ``[0, 1]`` of scikit-learn's two bundled
    photographs, area-resized to ``shape`` (grey for one channel)."""
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(np.asarray(p, dtype=np.float32) / 255.0).permute(2, 0, 1)
              for p in load_sample_images().images]  # fmt: skip
    channels, height, width = shape
    patches = []
    picks = torch.randint(0, len(photos), (count,), generator=generator)
    # Crops between 2x and 8x the target size keep some structure after downsampling.
    scales = torch.randint(2, 9, (count,), generator=generator)
    for photo_index, scale in zip(picks.tolist(), scales.tolist(), strict=True):
        photo = photos[photo_index]
        crop_h, crop_w = min(height * scale, photo.shape[1]), min(width * scale, photo.shape[2])
        top = int(torch.randint(0, photo.shape[1] - crop_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, photo.shape[2] - crop_w + 1, (1,), generator=generator))
        crop = photo[:, top : top + crop_h, left : left + crop_w]
        patches.append(F.interpolate(crop[None], size=(height, width), mode="area")[0])
    images = torch.stack(patches)
    if channels == 1:
        images = images.mean(dim=1, keepdim=True)
    elif channels != 3:
        raise LabelleakError(f"photo patches come in 1 or 3 channels, not {channels}")
    return images.clamp_(0.0, 1.0)


def unrelated_images(
    source: str,
    target: ImageDataset,
    *,
    count: int = 2000,
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> torch.Tensor:
    """``count`` images ``(count, C, H, W)`` in ``[0, 1]`` from ``source`` for ``target``'s shape.

    A dataset source must have exactly the target's input shape; it may not be the target's own
    dataset (that would not be unrelated). A mixture (``a+b``) holds ``count`` images in all,
    split evenly in the order named (the first sources take the remainder), each part drawn as
    that source alone would draw it with the same seed.
    """
    parts = unrelated_sources(source, count)
    if len(parts) > 1:
        shares = [count // len(parts) + (i < count % len(parts)) for i in range(len(parts))]
        return torch.cat(
            [
                unrelated_images(part, target, count=share, seed=seed, data_dir=data_dir)
                for part, share in zip(parts, shares, strict=True)
            ]
        )
    generator = torch.Generator().manual_seed(seed)
    shape = target.input_shape
    if source == "noise":
        return torch.rand((count, *shape), generator=generator)
    if source == "patches":
        return photo_patch_images(count, shape, generator)
    if source == target.name:
        raise LabelleakError(f"unrelated data must come from another dataset than {source!r}")
    other = load_dataset(source, data_dir)
    if other.input_shape != shape:
        raise LabelleakError(
            f"unrelated dataset {source!r} has images of shape {other.input_shape} but "
            f"{target.name!r} has {shape}; choose a dataset of the same shape, patches or noise"
        )
    picks = torch.randperm(len(other.x_test), generator=generator)[:count]
    return other.x_test[picks]
