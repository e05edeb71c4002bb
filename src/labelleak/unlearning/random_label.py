"""Random-label: train on the forget data relabelled at random (never its true class), mixed with
the retained data, so the model unlearns the forgotten classes while keeping the others."""

from __future__ import annotations

import torch
from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import train_model
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


class RandomLabelConfig(MethodConfig):
    epochs: int = Field(2, ge=1, description="passes over retained plus relabelled forget data")
    lr_scale: float = Field(
        0.5, gt=0, description="learning rate as a multiple of the original recipe's peak rate"
    )


def random_wrong_labels(
    labels: torch.Tensor, allowed: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """For each label, a class drawn uniformly from ``allowed`` (a 1-D tensor of retained ids).

    The retained classes never include a forgotten label, so every new label is wrong.
    """
    picks = torch.randint(0, len(allowed), labels.shape, generator=generator)
    return allowed[picks]


@register("random-label")
class RandomLabel(UnlearningMethod):
    Config = RandomLabelConfig
    summary = "train the forget data with random wrong labels, alongside the retained data"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, RandomLabelConfig)
        generator = torch.Generator().manual_seed(task.seed + 2)
        retained = torch.tensor(
            [c for c in range(task.num_classes) if c not in task.forget_classes]
        )
        wrong = random_wrong_labels(task.forget_y, retained, generator)
        x = torch.cat([task.retain_x, task.forget_x])
        y = torch.cat([task.retain_y, wrong])
        return train_model(
            task.copy_original(),
            x,
            y,
            task.train_config,
            seed=task.seed + 2,
            device=task.device,
            lr=task.train_config.lr * config.lr_scale,
            epochs=config.epochs,
            progress=task.progress,
            desc="random-label",
        )
