"""CIFAR-style residual networks (He et al. 2016): ResNet-18 as in the paper, ResNet-8 for CPUs.

The CIFAR variant starts with a 3x3 convolution at stride 1 and no max pooling, so 32x32 inputs keep
their resolution into the first stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from labelleak.models.base import ImageClassifier


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(ImageClassifier):
    """Stem, then one stage of ``blocks[i]`` basic blocks of width ``widths[i]`` per entry (stride 2
    from the second stage on), global average pooling, then the linear classifier."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        blocks: Sequence[int],
        widths: Sequence[int],
    ) -> None:
        super().__init__(mean, std)
        channels = input_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for index, (count, planes) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if index == 0 else 2
            for block in range(count):
                stages.append(BasicBlock(in_planes, planes, stride if block == 0 else 1))
                in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(in_planes, num_classes)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def resnet18(input_shape, num_classes, mean, std) -> ResNet:  # type: ignore[no-untyped-def]
    """ResNet-18: four stages of two blocks, widths 64-128-256-512 (11.2M parameters)."""
    return ResNet(input_shape, num_classes, mean, std, (2, 2, 2, 2), (64, 128, 256, 512))


def resnet8(input_shape, num_classes, mean, std) -> ResNet:  # type: ignore[no-untyped-def]
    """ResNet-8: three stages of one block, widths 16-32-64 (78k parameters), for CPU runs."""
    return ResNet(input_shape, num_classes, mean, std, (1, 1, 1), (16, 32, 64))
