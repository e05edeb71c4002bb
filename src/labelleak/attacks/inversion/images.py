"""The low-resolution search space both inversions can use: an ``r x r`` image per channel,
upsampled bilinearly to the model's input size. Its few smooth degrees of freedom keep an
optimiser away from the high-frequency adversarial patterns a full-resolution search finds."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample low-resolution images ``(N, C, r, r)`` bilinearly to ``(N, C, H, W)`` in
    ``[0, 1]``; differentiable."""
    return F.interpolate(low, size=size, mode="bilinear", align_corners=False).clamp(0.0, 1.0)
