"""Seeded, device-agnostic training and evaluation loops.

Data live in memory as tensors, so batches are cut by index from a seeded permutation instead of
going through a ``DataLoader``: cheaper on a CPU and reproducible by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from tqdm.auto import tqdm

from labelleak.errors import LabelleakError


class TrainConfig(BaseModel):
    """How a model is trained from scratch (the original, the retrain oracle, shadow models)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="passes over the training data")
    batch_size: int = Field(128, ge=1, description="samples per optimisation step")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimiser")
    lr: float = Field(0.05, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, description="L2 penalty")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="learning-rate schedule")
    augment: bool = Field(False, description="random 4-pixel shifts and horizontal flips")


#: Recipes measured to train each architecture well on its default datasets (see README).
DEFAULT_TRAIN: dict[str, TrainConfig] = {
    "mlp": TrainConfig(epochs=30, batch_size=64, lr=0.05),
    "lenet": TrainConfig(epochs=5, batch_size=128, lr=0.05),
    "resnet8": TrainConfig(epochs=15, batch_size=128, lr=0.1),
    "resnet18": TrainConfig(epochs=15, batch_size=128, lr=0.1),
}


class GradientRecorder(Protocol):
    """Replaces ``loss.backward()`` in the training loop, e.g. to record per-class updates."""

    def backward(
        self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, lr: float
    ) -> None: ...


def make_optimizer(
    params: list[nn.Parameter], config: TrainConfig, lr: float | None = None
) -> torch.optim.Optimizer:
    """The optimiser ``config`` names, at learning rate ``lr`` (default: ``config.lr``)."""
    rate = config.lr if lr is None else lr
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=rate, momentum=config.momentum, weight_decay=config.weight_decay
    )


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 4 pixels (zero padded) and horizontal flips, per sample."""
    n, _, height, width = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(height))[:, :, None]
    cols = (dx[:, None] + torch.arange(width))[:, None, :]
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    batch_index = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_index, rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


def iterate_batches(
    n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True
) -> list[torch.Tensor]:
    """Index batches covering ``range(n)`` once, in a seeded random order."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return list(order.split(batch_size))


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    lr: float | None = None,
    epochs: int | None = None,
    recorder: GradientRecorder | None = None,
    stop_after_epoch: Callable[[nn.Module], bool] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> nn.Module:
    """Train ``model`` in place on images ``x`` ``(N, C, H, W)`` and labels ``y`` ``(N,)``.

    ``lr`` and ``epochs`` override the recipe (fine-tuning uses them); ``recorder`` replaces the
    backward pass; ``stop_after_epoch(model)`` is asked after every epoch whether to stop early
    (the learning-rate schedule keeps the length of all ``epochs``). The same model, data, config
    and ``seed`` give the same weights.
    """
    if len(x) == 0:
        raise LabelleakError("cannot train on an empty dataset")
    device = torch.device(device)
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(list(model.parameters()), config, lr)
    total_epochs = config.epochs if epochs is None else epochs
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    total_steps = total_epochs * steps_per_epoch
    base_lr = optimizer.param_groups[0]["lr"]
    step = 0
    bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=False, unit="step")
    for _ in range(total_epochs):
        for batch in iterate_batches(len(x), config.batch_size, generator):
            rate = _scheduled_lr(base_lr, step, total_steps, config.schedule)
            for group in optimizer.param_groups:
                group["lr"] = rate
            xb = x[batch]
            if config.augment:
                xb = augment_batch(xb, generator)
            xb, yb = xb.to(device), y[batch].to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            if recorder is None:
                F.cross_entropy(logits, yb).backward()
            else:
                recorder.backward(model, logits, yb, rate)
            optimizer.step()
            step += 1
            bar.update()
        if stop_after_epoch is not None and stop_after_epoch(model):
            break
        model.train()
    bar.close()
    model.eval()
    return model


def _scheduled_lr(base: float, step: int, total: int, schedule: str) -> float:
    if schedule == "constant" or total <= 1:
        return base
    return 0.5 * base * (1.0 + math.cos(math.pi * step / total))


@torch.no_grad()
def predict_logits(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits ``(N, K)`` on the CPU for images ``x`` ``(N, C, H, W)``, in evaluation mode."""
    if isinstance(model, nn.Module):
        model.eval()
    outputs = [model(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device | str = "cpu"
) -> float:
    """Top-1 accuracy in ``[0, 1]``; ``nan`` for an empty set."""
    if len(y) == 0:
        return float("nan")
    predictions = predict_logits(model, x, device=device).argmax(dim=1)
    return float((predictions == y).float().mean())
