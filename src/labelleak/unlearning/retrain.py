"""Retrain: train a fresh model on the retained data only. The exact-unlearning oracle."""

from __future__ import annotations

from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import train_model
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


class RetrainConfig(MethodConfig):
    epochs: int | None = Field(None, ge=1, description="epochs; None = the original's recipe")


@register("retrain")
class Retrain(UnlearningMethod):
    """Same architecture, recipe and seed as the original, trained without the forgotten classes."""

    Config = RetrainConfig
    summary = "train from scratch on the retained data (the exact oracle)"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, RetrainConfig)
        model = task.new_model().to(task.device)
        return train_model(
            model,
            task.retain_x,
            task.retain_y,
            task.train_config,
            seed=task.seed,
            device=task.device,
            epochs=config.epochs,
            progress=task.progress,
            desc="retrain",
        )
