"""A small multilayer perceptron: the default model for the bundled 8x8 ``digits``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from labelleak.models.base import ImageClassifier


class MLP(ImageClassifier):
    """Flatten, then ``hidden`` ReLU layers, then the linear classifier."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        hidden: Sequence[int] = (128, 64),
    ) -> None:
        super().__init__(mean, std)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
