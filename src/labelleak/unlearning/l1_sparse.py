"""l1-sparse unlearning (Jia, Liu, Ram, Yao, Liu, Liu, Sharma and Liu, "Model Sparsity Can
Simplify Machine Unlearning", NeurIPS 2023; arXiv:2304.04934).

Fine-tuning on the retained data with an l1 penalty ``gamma_t * ||theta||_1`` on every parameter,
whose weight decays linearly over the run, ``gamma_t = gamma * (1 - t / T)`` for epoch ``t`` of
``T`` (the paper's schedule, as in the authors' code): early epochs push the model towards a
sparse one, which the paper shows brings approximate unlearning closer to retraining, and the
last ones recover accuracy without it. The learning rate follows the original recipe's schedule.

Whole-class removal needs nothing special: the retained data hold no sample of the forgotten
classes. The penalty's gradient, ``gamma_t * sign(theta)``, is added to the loss's gradient
directly instead of back-propagating the norm (same update, no extra graph).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import augment_batch, iterate_batches, make_optimizer
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


class L1SparseConfig(MethodConfig):
    gamma: float = Field(
        5e-4,
        ge=0,
        description="initial l1 weight per parameter (the loss adds gamma x sum |theta|); "
        "decays linearly to 0 at the end of the run",
    )
    epochs: int | None = Field(
        None, ge=1, description="passes over the retained data; None = the original recipe's"
    )
    lr_scale: float = Field(
        3.0,
        gt=0,
        description="peak learning rate as a multiple of the original recipe's (schedule as the "
        "recipe's); the same as finetune's default, so the two differ only by the penalty",
    )


@register("l1-sparse")
class L1Sparse(UnlearningMethod):
    Config = L1SparseConfig
    summary = "fine-tune on the retained data with a linearly decaying l1 penalty"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, L1SparseConfig)
        recipe = task.train_config
        model = task.copy_original().train()
        params = list(model.parameters())
        base_lr = recipe.lr * config.lr_scale
        optimizer = make_optimizer(params, recipe, base_lr)
        generator = torch.Generator().manual_seed(task.seed + 12)
        epochs = recipe.epochs if config.epochs is None else config.epochs
        n = len(task.retain_y)
        total = epochs * math.ceil(n / recipe.batch_size)
        step = 0
        for epoch in range(epochs):
            gamma = config.gamma * (1 - epoch / epochs)
            for batch in iterate_batches(n, recipe.batch_size, generator):
                if recipe.schedule == "cosine" and total > 1:
                    rate = 0.5 * base_lr * (1 + math.cos(math.pi * step / total))
                else:
                    rate = base_lr
                for group in optimizer.param_groups:
                    group["lr"] = rate
                xb = task.retain_x[batch]
                if recipe.augment:
                    xb = augment_batch(xb, generator)
                logits = model(xb.to(task.device))
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(logits, task.retain_y[batch].to(task.device)).backward()
                if gamma > 0:
                    with torch.no_grad():
                        for p in params:
                            if p.grad is not None:
                                p.grad.add_(p.sign(), alpha=gamma)
                optimizer.step()
                step += 1
        return model.eval()
