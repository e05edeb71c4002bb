"""``decoy-row`` (parameter side): each forgotten row re-initialised with a retained row's
statistics, in directions the data never excites.

The parameter attacks and head baselines read the forgotten row and bias: a small norm, a low
bias, a direction an auxiliary head trained to stay low would also take. Here the row is
replaced by a random direction (seeded by the unlearner) in the span of the features'
``directions`` least-excited principal directions (the uncentred second moment of the features
of the unlearner's training images), scaled to the median retained row's norm, with the median
retained bias. Since the data hardly excites that span, the class still wins on no image; the
bias is lowered only as far as needed for it to win on at most ``forget_limit`` of the
forgotten and ``retain_limit`` of the retained training images.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from labelleak.defences.base import Defence, DefenceConfig, DefenceTask, register_defence
from labelleak.defences.calibrate import margins
from labelleak.defences.head import features_of, sample_rows
from labelleak.models.base import ImageClassifier


class DecoyConfig(DefenceConfig):
    """Settings of ``decoy-row``."""

    samples: int = Field(5000, ge=10, description="training images its statistics come from")
    directions: int = Field(
        16, ge=1, description="least-excited principal feature directions the row is drawn in"
    )
    forget_limit: float = Field(
        0.01, ge=0, lt=1, description="most forgotten training images the class may win"
    )
    retain_limit: float = Field(
        0.001, ge=0, lt=1, description="most retained training images the class may win"
    )


@register_defence("decoy-row")
class DecoyRow(Defence):
    Config = DecoyConfig
    summary = "the forgotten rows re-drawn with a retained row's norm and bias, off the data"

    def defend(self, task: DefenceTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, DecoyConfig)
        model = task.copy_model()
        images = torch.cat([task.retain_x, task.forget_x])
        images = images[sample_rows(len(images), config.samples, task.seed)]
        features = features_of(model, images).double()
        # Eigenvectors of the uncentred second moment, least excited first.
        _, vectors = torch.linalg.eigh(features.T @ features / len(features))
        span = vectors[:, : min(config.directions, vectors.shape[1])]
        layer = model.classifier
        retained = list(task.retained_classes)
        weight = layer.weight.detach().double()
        norm = float(weight[retained].norm(dim=1).median())
        bias = float(layer.bias.detach()[retained].median()) if layer.bias is not None else 0.0
        generator = torch.Generator().manual_seed(task.seed + 17)
        with torch.no_grad():
            for cls in task.forget_classes:
                mix = torch.randn(span.shape[1], generator=generator, dtype=torch.float64)
                row = span @ mix
                layer.weight[cls] = (row * norm / row.norm()).to(layer.weight.dtype)
                if layer.bias is not None:
                    layer.bias[cls] = bias
            for cls in task.forget_classes:
                if layer.bias is None:
                    break
                ceiling = min(
                    _ceiling(model, task.forget_x, cls, config.forget_limit),
                    _ceiling(model, task.retain_x, cls, config.retain_limit),
                )
                layer.bias[cls] = min(float(layer.bias[cls]), float(layer.bias[cls]) + ceiling)
        return model.eval()


def _ceiling(model: ImageClassifier, images: torch.Tensor, cls: int, limit: float) -> float:
    """How far class ``cls``'s bias may rise (nats; negative: must fall) before it wins on more
    than ``limit`` of ``images``."""
    if len(images) == 0:
        return float("inf")
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in images.split(1024)])
    return float(np.quantile(-margins(logits, cls), limit))
