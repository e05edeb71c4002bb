"""Measures of unlearning quality and of attack success."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from labelleak.training import predict_logits


def class_accuracies(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    forget_classes: Sequence[int],
    *,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Accuracy of ``model`` on ``x``, ``y`` split by whether the label was forgotten.

    Returns ``forget_acc`` (samples of forgotten classes), ``retain_acc`` (the others) and
    ``test_acc`` (all), each in ``[0, 1]``; ``nan`` where a part is empty.
    """
    correct = predict_logits(model, x, device=device).argmax(dim=1) == y
    return split_accuracies(correct, y, forget_classes)


def split_accuracies(
    correct: torch.Tensor, y: torch.Tensor, forget_classes: Sequence[int]
) -> dict[str, float]:
    """:func:`class_accuracies` from per-sample hits ``correct`` ``(N,)`` (bool) and labels
    ``y`` ``(N,)``, for callers that reuse one model's predictions across forget sets."""
    forgotten = torch.isin(y, torch.tensor(list(forget_classes), dtype=y.dtype))

    def mean(mask: torch.Tensor) -> float:
        return float(correct[mask].float().mean()) if bool(mask.any()) else float("nan")

    return {
        "forget_acc": mean(forgotten),
        "retain_acc": mean(~forgotten),
        "test_acc": float(correct.float().mean()),
    }


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for ``z = 1.96``), in ``[0, 1]``."""
    if trials == 0:
        return (float("nan"), float("nan"))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
