"""Negative gradient: gradient ascent on the forget data's loss until the model stops predicting
the forgotten classes on it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import accuracy, iterate_batches
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


class NegGradConfig(MethodConfig):
    lr: float = Field(1e-3, gt=0, description="SGD learning rate of the ascent (no momentum)")
    batch_size: int = Field(64, ge=1, description="forget samples per ascent step")
    max_epochs: int = Field(5, ge=1, description="upper bound on passes over the forget data")
    stop_accuracy: float = Field(
        0.0,
        ge=0,
        le=1,
        description="stop once accuracy on a probe of the forget data is at most this; ascent "
        "past that point only costs retained accuracy",
    )
    probe_size: int = Field(512, ge=1, description="forget samples checked after every step")


@register("neg-grad")
class NegGrad(UnlearningMethod):
    Config = NegGradConfig
    summary = "gradient ascent on the forget data, stopped once it is misclassified"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, NegGradConfig)
        model = task.copy_original()
        generator = torch.Generator().manual_seed(task.seed + 3)
        probe = torch.randperm(len(task.forget_y), generator=generator)[: config.probe_size]
        probe_x, probe_y = task.forget_x[probe], task.forget_y[probe]
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        for _ in range(config.max_epochs):
            for batch in iterate_batches(len(task.forget_y), config.batch_size, generator):
                if accuracy(model, probe_x, probe_y, device=task.device) <= config.stop_accuracy:
                    return model.eval()
                model.train()
                xb = task.forget_x[batch].to(task.device)
                yb = task.forget_y[batch].to(task.device)
                optimizer.zero_grad(set_to_none=True)
                (-F.cross_entropy(model(xb), yb)).backward()
                optimizer.step()
        return model.eval()
