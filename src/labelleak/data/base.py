"""The in-memory dataset every later stage works on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labelleak.errors import LabelleakError


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image classification dataset held in memory.

    Images are float32 tensors of shape ``(N, C, H, W)`` with pixel values in ``[0, 1]``; models
    normalise internally with :attr:`mean` and :attr:`std`, so attacks that synthesise inputs
    (model inversion) work in this same ``[0, 1]`` box. Labels are int64 class ids ``0..K-1``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        channels, height, width = self.x_train.shape[1:]
        return int(channels), int(height), int(width)


def from_uint8_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: tuple[str, ...],
    scale: float = 255.0,
) -> ImageDataset:
    """Build an :class:`ImageDataset` from raw arrays as the official formats store them.

    ``x_*`` are ``(N, H, W)`` (grey) or ``(N, H, W, C)`` (channels last) arrays of pixel values in
    ``[0, scale]``; ``y_*`` are ``(N,)`` integer class ids. Channel statistics come from the
    training images only.
    """
    num_classes = len(class_names)
    tensors = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = np.asarray(x)
        y = np.asarray(y).reshape(-1)
        if x.ndim == 3:
            x = x[:, None, :, :]
        elif x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        else:
            raise LabelleakError(
                f"{name} {split} images have shape {x.shape}; expected (N, H, W) or (N, H, W, C)"
            )
        if len(x) != len(y):
            raise LabelleakError(
                f"{name} {split} has {len(x)} images but {len(y)} labels; the files do not match"
            )
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise LabelleakError(
                f"{name} {split} labels span {y.min()}..{y.max()}; expected 0..{num_classes - 1}"
            )
        images = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(scale)
        tensors += [images, torch.from_numpy(y.astype(np.int64))]
    xtr, ytr, xte, yte = tensors
    mean = tuple(float(v) for v in xtr.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in xtr.std(dim=(0, 2, 3)).clamp_min(1e-3))
    return ImageDataset(name, xtr, ytr, xte, yte, tuple(class_names), mean, std)
