"""``calibrate-logit`` (output side): the forgotten class's logit rescaled to look like a
retained class's.

Unlearning leaves a forgotten logit at a tell-tale level: far below every other class on every
input (retrain, random-label), or just below the winner (neg-grad). Here each forgotten row and
bias are mapped ``z -> a z + b`` (one scale and one shift per class, nothing else changes) so
that, on the unlearner's retained training images, the forgotten class's margin to the winning
class ``z_c - max_{k != c} z_k`` has the median and the ``upper`` quantile that a median
retained class has on the images of OTHER classes: it peaks on a few look-alikes as a real
class does. The shift is then lowered if needed so that the class wins on at most
``forget_limit`` of the forgotten training images (the data itself stays forgotten), and on
uniform noise no more often than the median retained class (matched on the data alone, a flat
rescaled logit can win on most noise images).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from labelleak.defences.base import Defence, DefenceConfig, DefenceTask, register_defence
from labelleak.defences.head import logits_of, sample_rows, uniform_noise
from labelleak.models.base import ImageClassifier


class CalibrateConfig(DefenceConfig):
    """Settings of ``calibrate-logit``."""

    samples: int = Field(5000, ge=10, description="retained training images it calibrates on")
    upper: float = Field(
        0.995, gt=0.5, lt=1, description="the upper quantile matched (besides the median)"
    )
    forget_limit: float = Field(
        0.01, ge=0, lt=1, description="most forgotten training images the class may win"
    )
    scales: int = Field(41, ge=2, description="scales tried, log-spaced over [0.01, 10]")
    noise: int = Field(
        1000,
        ge=0,
        description="uniform-noise images on which the class may win no more often than the "
        "median retained class does",
    )


def margins(logits: torch.Tensor, cls: int) -> np.ndarray:
    """``z_cls - max_{k != cls} z_k`` per image ``(N,)``, in nats."""
    others = logits.clone()
    others[:, cls] = float("-inf")
    return (logits[:, cls] - others.max(dim=1).values).double().numpy()


@register_defence("calibrate-logit")
class CalibrateLogit(Defence):
    Config = CalibrateConfig
    summary = "the forgotten logits rescaled to a median retained class's margins"

    def defend(self, task: DefenceTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, CalibrateConfig)
        model = task.copy_model()
        picks = sample_rows(len(task.retain_x), config.samples, task.seed)
        images, labels = task.retain_x[picks], task.retain_y[picks]
        logits = logits_of(model, images)
        quantiles = [0.5, config.upper]
        reference = np.median(
            [
                np.quantile(margins(logits[labels != c], c), quantiles)
                for c in task.retained_classes
            ],
            axis=0,
        )
        forget_logits = logits_of(model, task.forget_x) if len(task.forget_x) else None
        noise_logits, noise_rate = None, 0.0
        if config.noise:
            noise_logits = logits_of(model, uniform_noise(task, config.noise))
            wins = torch.bincount(noise_logits.argmax(dim=1), minlength=task.num_classes)
            noise_rate = float(wins[list(task.retained_classes)].double().median()) / config.noise
        layer = model.classifier
        with torch.no_grad():
            for cls in task.forget_classes:
                own = logits[:, cls].double().numpy()
                best = margins(logits, cls) - own  # minus the winning other class's logit
                scale, shift = _fit(own, best, reference, quantiles, config.scales)
                if forget_logits is not None and config.forget_limit < 1:
                    f_own = forget_logits[:, cls].double().numpy()
                    f_best = margins(forget_logits, cls) - f_own
                    # Largest shift at which at most forget_limit of the forget images win.
                    ceiling = np.quantile(-(scale * f_own + f_best), config.forget_limit)
                    shift = min(shift, float(ceiling))
                if noise_logits is not None:
                    n_own = noise_logits[:, cls].double().numpy()
                    n_best = margins(noise_logits, cls) - n_own
                    ceiling = np.quantile(-(scale * n_own + n_best), noise_rate)
                    shift = min(shift, float(ceiling))
                layer.weight[cls] *= scale
                if layer.bias is not None:
                    layer.bias[cls] = layer.bias[cls] * scale + shift
        return model.eval()


def _fit(
    own: np.ndarray,
    best: np.ndarray,
    reference: np.ndarray,
    quantiles: list[float],
    count: int,
) -> tuple[float, float]:
    """The scale ``a`` and shift ``b`` whose margins ``a own + b + best`` best match the
    reference quantiles: ``b`` meets the upper one exactly, ``a`` the median as near as it
    can (``best`` is the winning other logit, negated)."""
    chosen = (1.0, 0.0)
    error = float("inf")
    for scale in np.logspace(-2, 1, count):
        base = scale * own + best
        shift = reference[1] - np.quantile(base, quantiles[1])
        miss = abs(np.quantile(base, quantiles[0]) + shift - reference[0])
        if miss < error:
            chosen, error = (float(scale), float(shift)), miss
    return chosen
