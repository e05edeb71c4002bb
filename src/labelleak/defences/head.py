"""What the defences share: the unlearner's own probe inputs, and refitting a model's final layer.

A defended model keeps its feature extractor and gets a new final linear layer, fit by
distillation on the extractor's frozen features: on the unlearner's natural data it imitates
one teacher per sample, on off-manifold inputs (uniform noise, and the original's own inversion
prototypes) another. Because only the layer is refit, a refit is a convex problem over ``K x D``
numbers: it takes seconds on a CPU whatever the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from labelleak.attacks.inversion.white_box import GradientInversionConfig, invert_classes
from labelleak.data.unrelated import photo_patch_images
from labelleak.defences.base import DefenceTask
from labelleak.training import predict_logits


def features_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Penultimate features ``(N, D)`` of images ``(N, C, H, W)`` (no gradients, on the CPU)."""
    model.eval()
    with torch.no_grad():
        parts = [model.features(chunk).float() for chunk in x.split(batch_size)]  # type: ignore[operator]
    return torch.cat(parts) if parts else torch.empty(0)


def sample_rows(count: int, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` indices of ``range(count)``, a fixed random sample per ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:limit]


def uniform_noise(task: DefenceTask, count: int) -> torch.Tensor:
    """``count`` uniform-noise images ``(count, C, H, W)`` in ``[0, 1]``, seeded by the task."""
    shape = tuple(task.retain_x.shape[1:])
    generator = torch.Generator().manual_seed(task.seed + 1)
    return torch.rand((count, *shape), generator=generator)


def photo_patches(task: DefenceTask, count: int) -> torch.Tensor:
    """``count`` crops of scikit-learn's two bundled photographs ``(count, C, H, W)`` in
    ``[0, 1]``, resized to the task's input shape and seeded by the task: natural-image
    statistics no attacker's data decides."""
    shape = tuple(task.retain_x.shape[1:])
    generator = torch.Generator().manual_seed(task.seed + 3)
    return photo_patch_images(count, shape, generator)  # type: ignore[arg-type]


def retained_mixes(task: DefenceTask, count: int) -> torch.Tensor:
    """``count`` off-manifold images ``(count, C, H, W)`` in ``[0, 1]`` made from the retained
    training images: a random convex mix of two of them, thickened (a 3x3 max filter) for half,
    inverted for a quarter. Shapes like the data's that no class owns."""
    generator = torch.Generator().manual_seed(task.seed + 5)
    first = torch.randint(len(task.retain_x), (count,), generator=generator)
    second = torch.randint(len(task.retain_x), (count,), generator=generator)
    weight = torch.rand((count, 1, 1, 1), generator=generator)
    images = weight * task.retain_x[first] + (1 - weight) * task.retain_x[second]
    thick = torch.rand(count, generator=generator) < 0.5
    images[thick] = F.max_pool2d(images[thick], 3, stride=1, padding=1)
    inverted = torch.rand(count, generator=generator) < 0.25
    images[inverted] = 1 - images[inverted]
    return images


def inversion_probes(
    model: nn.Module,
    task: DefenceTask,
    per_class: int,
    steps: int,
) -> torch.Tensor:
    """Inputs the unlearner crafts the way an inversion attacker would: per class, ``per_class``
    gradient inversions through ``model`` (the original), kept at two depths (after a tenth of
    ``steps`` and at the end), so the refit also sees the way an attack's search passes.

    Returns ``(2 * K * per_class, C, H, W)`` images in ``[0, 1]``. Seeds differ from any
    attacker's (they are the unlearner's own).
    """
    shape = tuple(task.retain_x.shape[1:])
    probes = []
    for depth, offset in ((max(1, steps // 10), 7), (steps, 11)):
        config = GradientInversionConfig(
            restarts=per_class, steps=depth, stop_log_odds=1e9, patience=steps
        )
        inversion = invert_classes(
            model,
            task.num_classes,
            shape,
            config,
            seed=task.seed * 7919 + offset,  # type: ignore[arg-type]
        )
        probes.append(inversion.restarts.flatten(0, 1))
    return torch.cat(probes)


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model``'s logits ``(N, K)`` on images ``x``."""
    return predict_logits(model, x)


@dataclass
class FitGroup:
    """Samples the refit layer must answer for: features ``(N, D)`` and what it must give.

    ``loss`` ``logits``: match ``targets`` (logits ``(N, K)``) up to a per-sample shift, so the
    refit gives the teacher's confidence levels, not just its top class; ``probs``: cross-entropy
    against ``targets`` (probabilities ``(N, K)``).
    """

    features: torch.Tensor
    targets: torch.Tensor
    loss: Literal["logits", "probs"] = "logits"
    weight: float = 1.0

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        if self.loss == "probs":
            loss = -(self.targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        else:
            difference = logits - self.targets
            loss = (difference - difference.mean(dim=1, keepdim=True)).pow(2).mean()
        return self.weight * loss


def refit_head(
    layer: nn.Linear,
    groups: list[FitGroup],
    rows: tuple[int, ...] | None,
    steps: int,
    lr: float,
) -> None:
    """Refit ``layer`` in place so it answers each group as that group asks.

    Each group's mean loss counts by its ``weight`` whatever its size, so a few hundred probes
    weigh as much as thousands of natural images. ``rows`` restricts the refit to those
    classes' rows and biases (``None``: every row). Full-batch Adam from the layer's current
    values, ``steps`` steps.
    """
    weight = layer.weight.detach().clone().requires_grad_(True)
    bias = (
        layer.bias.detach().clone() if layer.bias is not None else torch.zeros(layer.out_features)
    ).requires_grad_(True)
    mask = torch.ones(layer.out_features, 1)
    if rows is not None:
        mask = torch.zeros(layer.out_features, 1)
        mask[list(rows)] = 1.0
    groups = [group for group in groups if len(group.features)]
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = sum(
            (group.value(group.features @ weight.T + bias) for group in groups), torch.zeros(())
        )
        loss.backward()
        assert weight.grad is not None and bias.grad is not None
        weight.grad *= mask
        bias.grad *= mask[:, 0]
        optimizer.step()
    with torch.no_grad():
        layer.weight.copy_(weight)
        if layer.bias is not None:
            layer.bias.copy_(bias)
