"""Negative gradient: gradient ascent on the forget data's loss until the model stops predicting
the forgotten classes on it (or, with ``margin``, until they trail another class by that much).

Each step ascends only on the forget samples the model still classifies correctly, and the ascent
stops once a probe of the forget data is (almost) all misclassified. The probe is checked only
when the step's own batch (already computed) is mostly misclassified: checking it before every
step cost a forward pass of ``probe_size`` samples per step, most of neg-grad's time on digits.

Plain ascent on every sample keeps raising the loss of samples already forgotten, which is
unbounded, and past that point costs retained accuracy fast; with several forgotten classes it
wrecked the model in our measurements. ``margin`` is the controlled way to ascend further: a
sample keeps being ascended on until its own logit trails the best other class's by ``margin``
nats, which trades retained accuracy for a deeper removal (``benchmarks/bench_neg_grad_margin.py``
measures what that does to the attacks).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import iterate_batches
from labelleak.unlearning.base import (
    MethodConfig,
    UnlearningMethod,
    UnlearningTask,
    register,
    still_known,
)


class NegGradConfig(MethodConfig):
    added_later: ClassVar[dict[str, object]] = {"margin": 0.0}

    lr: float = Field(1e-3, gt=0, description="SGD learning rate of the ascent (no momentum)")
    batch_size: int = Field(64, ge=1, description="forget samples per ascent step")
    max_steps: int = Field(2000, ge=1, description="upper bound on ascent steps")
    stop_accuracy: float = Field(
        0.03,
        ge=0,
        le=1,
        description="stop once the fraction of a probe of the forget data still known (see "
        "margin; at margin 0, its accuracy) is at most this; ascent past that point only costs "
        "retained accuracy",
    )
    margin: float = Field(
        0.0,
        ge=0,
        description="nats: a forget sample counts as still known while its own logit is above "
        "the best other class's minus this; 0 ascends until misclassified, more removes the "
        "class deeper at a cost in retained accuracy",
    )
    probe_size: int = Field(512, ge=1, description="forget samples in the stopping probe")
    check_below: float = Field(
        0.25,
        ge=0,
        le=1,
        description="the probe is checked only before steps whose batch accuracy is at most "
        "this; a batch of 64 above 0.25 while the probe is at 0.03 is vanishingly unlikely",
    )


@register("neg-grad")
class NegGrad(UnlearningMethod):
    Config = NegGradConfig
    summary = "gradient ascent on the forget data, stopped once it is misclassified"
    # 2: the stopping probe is checked only when the step's batch is mostly misclassified.
    version = 2

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, NegGradConfig)
        model = task.copy_original()
        generator = torch.Generator().manual_seed(task.seed + 3)
        forgotten = task.forgotten_enough(config.stop_accuracy, config.probe_size, config.margin)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        steps = 0
        while steps < config.max_steps:
            for batch in iterate_batches(len(task.forget_y), config.batch_size, generator):
                if steps == config.max_steps:
                    return model.eval()
                model.train()
                xb = task.forget_x[batch].to(task.device)
                yb = task.forget_y[batch].to(task.device)
                logits = model(xb)
                # Ascent on samples already misclassified only raises an unbounded loss and
                # wrecks the network (the cliff); ascend on those still known (see margin).
                known = still_known(logits.detach(), yb, config.margin)
                if float(known.float().mean()) <= config.check_below and forgotten(model):
                    return model.eval()
                if not bool(known.any()):
                    continue
                losses = F.cross_entropy(logits, yb, reduction="none")
                optimizer.zero_grad(set_to_none=True)
                (-(losses * known).sum() / len(yb)).backward()
                optimizer.step()
                steps += 1
        return model.eval()
