"""UNSIR (Tarun, Chundawat, Mandal and Kankanhalli, "Fast Yet Effective Machine Unlearning",
IEEE Transactions on Neural Networks and Learning Systems, 2023; arXiv:2111.08947).

For every forgotten class UNSIR learns a batch of error-maximising noise: images that maximise the
frozen original's cross-entropy on that class's label, with an L2 penalty on the noise that keeps
it bounded. "Impair": one pass, at a high learning rate, over the noise labelled with its class
mixed with a subset of the retained data, which wrecks what the network knew of the forgotten
classes. "Repair": one pass over the same retained subset at a lower rate, which restores the
retained classes. It never reads a forget image: only which classes were forgotten.

The method is designed for whole classes, so it needs no adaptation. The noise lives in the
model's input space (``[0, 1]`` pixels, which the model normalises) and is not clipped, as in the
paper; it is replicated ``noise_copies`` times in the impair pass, as the paper's code replicates
its noise batch, so that noise outweighs the retained samples of a class.

The paper's penalty, 0.1 x the squared L2 norm, let the noise grow to norm 55 on digits' 8x8
images (pixels of norm 4, loss 650): its impair pass then wrecked the network (retained accuracy
0.64 forgetting 3, 0.0 forgetting 2 and 7). The penalty here is the mean squared pixel, so one
weight fits inputs of any size: the sum-form weight that worked was 10 on digits (64 pixels) and 1
on MNIST (784), both about 700 per pixel, hence the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import iterate_batches, make_optimizer
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


class UNSIRConfig(MethodConfig):
    noise_size: int = Field(64, ge=1, description="noise images learned per forgotten class")
    noise_steps: int = Field(
        200, ge=1, description="Adam steps maximising the original's loss on each noise batch"
    )
    noise_lr: float = Field(0.1, gt=0, description="Adam learning rate of the noise (as the paper)")
    noise_l2: float = Field(
        700.0,
        ge=0,
        description="weight of the noise's mean squared pixel value in its loss (the paper "
        "penalises the squared L2 norm, a sum over pixels); see the module docstring",
    )
    noise_copies: int = Field(
        10,
        ge=1,
        description="times each noise batch appears in the impair pass; 10 x 64 = 640 noise "
        "images per forgotten class, about a retained class's share",
    )
    retain_per_class: int | None = Field(
        None,
        ge=1,
        description="retained samples per class in the impair and repair passes (drawn at "
        "random); None = all of them",
    )
    impair_lr_scale: float = Field(
        1.0, gt=0, description="impair learning rate as a multiple of the recipe's peak rate"
    )
    repair_lr_scale: float = Field(
        0.5, gt=0, description="repair learning rate as a multiple of the recipe's peak rate"
    )


def error_maximising_noise(
    model: torch.nn.Module,
    label: int,
    shape: tuple[int, ...],
    config: UNSIRConfig,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """``(noise_size, *shape)`` inputs on which ``model`` (left unchanged) misses ``label``."""
    noise = torch.randn((config.noise_size, *shape), generator=generator).to(device)
    noise.requires_grad_(True)
    optimizer = torch.optim.Adam([noise], lr=config.noise_lr)
    labels = torch.full((config.noise_size,), label, dtype=torch.long, device=device)
    model.eval()
    for _ in range(config.noise_steps):
        loss = -F.cross_entropy(model(noise), labels)
        loss = loss + config.noise_l2 * noise.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return noise.detach().cpu()


@register("unsir")
class UNSIR(UnlearningMethod):
    Config = UNSIRConfig
    summary = "impair on error-maximising noise for the forgotten classes, then repair"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, UNSIRConfig)
        generator = torch.Generator().manual_seed(task.seed + 13)
        model = task.copy_original()
        for p in model.parameters():
            p.requires_grad_(False)
        shape = tuple(task.retain_x.shape[1:])
        noise_x, noise_y = [], []
        for label in task.forget_classes:
            noise = error_maximising_noise(model, label, shape, config, generator, task.device)
            noise_x.append(noise.repeat(config.noise_copies, *([1] * len(shape))))
            noise_y.append(torch.full((len(noise_x[-1]),), label, dtype=torch.long))
        for p in model.parameters():
            p.requires_grad_(True)
        keep = self._retained_subset(task.retain_y, config.retain_per_class, generator)
        sub_x, sub_y = task.retain_x[keep], task.retain_y[keep]
        recipe = task.train_config
        self._one_pass(
            model,
            torch.cat([sub_x, *noise_x]),
            torch.cat([sub_y, *noise_y]),
            task,
            recipe.lr * config.impair_lr_scale,
            generator,
        )
        self._one_pass(model, sub_x, sub_y, task, recipe.lr * config.repair_lr_scale, generator)
        return model.eval()

    @staticmethod
    def _retained_subset(
        labels: torch.Tensor, per_class: int | None, generator: torch.Generator
    ) -> torch.Tensor:
        if per_class is None:
            return torch.arange(len(labels))
        picks = []
        for label in labels.unique().tolist():
            members = (labels == label).nonzero()[:, 0]
            order = torch.randperm(len(members), generator=generator)[:per_class]
            picks.append(members[order])
        return torch.cat(picks).sort().values

    @staticmethod
    def _one_pass(
        model: ImageClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        task: UnlearningTask,
        lr: float,
        generator: torch.Generator,
    ) -> None:
        # A fresh optimiser per phase: the impair pass's momentum must not carry into repair.
        optimizer = make_optimizer(list(model.parameters()), task.train_config, lr)
        model.train()
        for batch in iterate_batches(len(y), task.train_config.batch_size, generator):
            loss = F.cross_entropy(model(x[batch].to(task.device)), y[batch].to(task.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
