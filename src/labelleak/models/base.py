"""The interface every architecture implements, so attacks can read any model the same way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from labelleak.errors import LabelleakError


def is_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (a shadow that diverged while unlearning
    is not)."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class ImageClassifier(nn.Module):
    """A classifier split into a feature extractor and one final linear layer.

    ``forward(x)`` takes images in ``[0, 1]`` of shape ``(N, C, H, W)``, normalises them with the
    dataset statistics held as buffers, and returns logits ``(N, K)``. Attacks rely on two stable
    names: :meth:`features` (``(N, C, H, W) -> (N, D)``, the input of the last layer) and
    :attr:`classifier` (an ``nn.Linear(D, K)`` whose row ``k`` scores class ``k``).
    """

    classifier: nn.Linear

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images ``(N, C, H, W)`` to features ``(N, D)``."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, D)`` of images ``(N, C, H, W)`` in ``[0, 1]``."""
        return self.backbone((x - self.input_mean) / self.input_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    @property
    def feature_dim(self) -> int:
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features


def linear_head(model: nn.Module, what: str = "this attack") -> tuple[np.ndarray, np.ndarray]:
    """The final layer's ``weight`` ``(K, D)`` and ``bias`` ``(K,)`` as float64 arrays.

    Raises a one-line error naming ``what`` needs it when ``model.classifier`` is not an
    ``nn.Linear`` (a missing bias reads as zeros).
    """
    layer = getattr(model, "classifier", None)
    if not isinstance(layer, nn.Linear):
        raise LabelleakError(
            f"{what} needs a model whose final layer is an nn.Linear named 'classifier'; "
            f"got {type(model).__name__}"
        )
    weight = layer.weight.detach().cpu().double().numpy()
    bias = (
        layer.bias.detach().cpu().double().numpy()
        if layer.bias is not None
        else np.zeros(weight.shape[0])
    )
    return weight, bias
