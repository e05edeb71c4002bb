"""Architectures, registered by name. Every model is an :class:`ImageClassifier`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from labelleak.errors import unknown_choice
from labelleak.models.base import ImageClassifier
from labelleak.models.lenet import LeNet5
from labelleak.models.mlp import MLP
from labelleak.models.resnet import ResNet, resnet8, resnet18

ModelFactory = Callable[
    [tuple[int, int, int], int, Sequence[float], Sequence[float]], ImageClassifier
]

ARCHITECTURES: dict[str, ModelFactory] = {
    "mlp": MLP,
    "lenet": LeNet5,
    "resnet18": resnet18,
    "resnet8": resnet8,
}

ARCHITECTURE_NOTES: dict[str, str] = {
    "mlp": "two hidden ReLU layers (128, 64); default for digits",
    "lenet": "LeNet-5; default for MNIST and Fashion-MNIST (the paper's choice)",
    "resnet18": "CIFAR-style ResNet-18; default for CIFAR-10 and SVHN (the paper's choice)",
    "resnet8": "CIFAR-style ResNet-8, 78k parameters; the CPU-sized stand-in for ResNet-18",
}


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> ImageClassifier:
    """Instantiate architecture ``arch`` for images of ``input_shape`` = ``(C, H, W)``."""
    if arch not in ARCHITECTURES:
        raise unknown_choice("architecture", arch, ARCHITECTURES)
    return ARCHITECTURES[arch](input_shape, num_classes, mean, std)


__all__ = [
    "ARCHITECTURES",
    "MLP",
    "ImageClassifier",
    "LeNet5",
    "ResNet",
    "build_model",
    "resnet8",
    "resnet18",
]
