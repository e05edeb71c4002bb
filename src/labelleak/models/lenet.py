"""LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, as commonly used for MNIST."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from labelleak.models.base import ImageClassifier


class LeNet5(ImageClassifier):
    """conv(6,5x5) - pool - conv(16,5x5) - pool - fc120 - fc84 - classifier.

    Inputs smaller than 32x32 are zero-padded to 32x32 by the first convolution, as the original
    LeNet-5 padded 28x28 MNIST digits; 1- and 3-channel inputs are both accepted.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__(mean, std)
        channels, height, width = input_shape
        padding = max(0, (32 - min(height, width) + 1) // 2)
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *input_shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.classifier = nn.Linear(84, num_classes)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))
