"""Fine-tune: keep training the original on the retained data only (catastrophic forgetting)."""

from __future__ import annotations

from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import train_model
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


class FinetuneConfig(MethodConfig):
    epochs: int | None = Field(
        None, ge=1, description="passes over the retained data; None = the original recipe's"
    )
    lr_scale: float = Field(
        3.0,
        gt=0,
        description="peak learning rate as a multiple of the original recipe's (the schedule is "
        "the recipe's); at the rate the original ended with, the forgotten class survives",
    )


@register("finetune")
class Finetune(UnlearningMethod):
    Config = FinetuneConfig
    summary = "continue training on the retained data only"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, FinetuneConfig)
        return train_model(
            task.copy_original(),
            task.retain_x,
            task.retain_y,
            task.train_config,
            seed=task.seed + 1,
            device=task.device,
            lr=task.train_config.lr * config.lr_scale,
            epochs=config.epochs,
            progress=task.progress,
            desc="finetune",
        )
