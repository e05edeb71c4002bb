"""Selective Synaptic Dampening (Foster, Schoepf and Brintrup, "Fast Machine Unlearning Without
Retraining Through Selective Synaptic Dampening", AAAI 2024; arXiv:2308.07707).

SSD estimates each parameter's importance as the diagonal of the Fisher information, once on the
full training data ``D`` (retained plus forget) and once on the forget data ``D_f``. A parameter
whose forget importance exceeds ``alpha`` times its global importance is specialised in the
forget data; it is multiplied by ``min(lambda * I_D / I_Df, 1)``, so it shrinks and never grows.
Nothing is trained.

Whole-class removal is the setting SSD was evaluated on (full-class forgetting on CIFAR). With
several forgotten classes the forget importance is computed per class and each parameter takes
the strongest dampening any class asks for: pooled, each class holds only part of the forget data
and its parameters look less specialised (MNIST, classes 2 and 9: pooled importances forgot them
only at alpha 0.9, losing 0.21 of retained accuracy; per class at alpha 9.8, losing none).

Importances are batched, as in the authors' code: the squared gradient of each batch's mean loss,
averaged over batches (a coarse empirical Fisher). A per-sample Fisher is the textbook diagonal,
but it selected no better on MNIST (class 7 forgotten at 0.929 retained accuracy against 0.934
batched, for twice the time), and the paper's alpha and lambda were set with the batched one.

The paper sets alpha per setting (10 with lambda 1 on ResNet18 / CIFAR); on LeNet / MNIST the
alpha that removes a class ranges from 6.5 (class 3) to 17 (class 7), and the transition is
sharp (class 3: forget accuracy 0.98 at alpha 9, 0.00 at 6.5), while too small an alpha costs
retained accuracy fast (class 7 at alpha 10: 0.15). So by default alpha is searched from
``alpha_max`` down in steps of ``search_ratio`` (weak to strong dampening), stopping at the first
that brings a probe of the forget data to ``stop_accuracy``; below ``lambda``, where nothing more
would be dampened (the factor is then 1), ``lambda`` follows alpha. Importances are computed once;
each try is a rescaling and a probe forward pass. The unlearner holds the forget data, as
neg-grad's stopping rule does. lambda itself matters little: selected parameters' forget
importance is tens of times their global one, so their factor is near 0 whatever lambda is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from labelleak.models.base import ImageClassifier
from labelleak.training import iterate_batches
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


class SSDConfig(MethodConfig):
    alpha: float | None = Field(
        None,
        gt=0,
        description="selection threshold: dampen where forget importance > alpha x global "
        "importance; None = search alpha from alpha_max down to alpha_min (weak to strong) "
        "until the forget probe is forgotten",
    )
    alpha_max: float = Field(
        100.0,
        gt=0,
        description="first alpha the search tries; 10 (the paper's CIFAR value) already "
        "overshoots for MNIST class 7, 100 selects almost nothing",
    )
    alpha_min: float = Field(
        0.01, gt=0, description="last alpha the search tries (near-total dampening)"
    )
    search_ratio: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="each try's alpha is the previous one times this; coarser steps overshoot: "
        "on digits class 3, alpha 8 forgets at a 0.0025 retained-accuracy cost, 5 costs 0.05",
    )
    dampening: float = Field(
        1.0,
        gt=0,
        description="lambda: a selected parameter is multiplied by min(lambda x global / forget "
        "importance, 1); 1 is the paper's value",
    )
    stop_accuracy: float = Field(
        0.03, ge=0, le=1, description="forget-probe accuracy at which the search stops"
    )
    probe_size: int = Field(512, ge=1, description="forget samples in the stopping probe")
    batch_size: int = Field(
        64, ge=1, description="samples per importance batch; 64 as the authors' code"
    )


def batched_fisher(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of each batch's mean cross-entropy."""
    params = dict(model.named_parameters())
    totals = {name: torch.zeros_like(p) for name, p in params.items()}
    model.eval()
    batches = iterate_batches(len(y), batch_size, torch.Generator(), shuffle=False)
    for batch in batches:
        loss = F.cross_entropy(model(x[batch].to(device)), y[batch].to(device))
        grads = torch.autograd.grad(loss, list(params.values()))
        for name, grad in zip(params, grads, strict=True):
            totals[name].add_(grad.square())
    return {name: total / len(batches) for name, total in totals.items()}


def dampening_factors(
    full: dict[str, torch.Tensor], forget: dict[str, torch.Tensor], alpha: float, lam: float
) -> dict[str, torch.Tensor]:
    """Per-parameter multipliers in ``(0, 1]``: ``min(lam * full / forget, 1)`` where
    ``forget > alpha * full``, 1 elsewhere."""
    factors = {}
    for name, global_imp in full.items():
        forget_imp = forget[name]
        selected = forget_imp > alpha * global_imp
        ratio = lam * global_imp / forget_imp.clamp_min(torch.finfo(forget_imp.dtype).tiny)
        factors[name] = torch.where(selected, ratio.clamp(max=1.0), torch.ones_like(ratio))
    return factors


@register("ssd")
class SSD(UnlearningMethod):
    Config = SSDConfig
    summary = "shrink parameters far more important to the forget data than to all data (Fisher)"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, SSDConfig)
        model = task.copy_original()
        full = batched_fisher(
            model,
            torch.cat([task.retain_x, task.forget_x]),
            torch.cat([task.retain_y, task.forget_y]),
            config.batch_size,
            task.device,
        )
        # One forget importance per class: pooling the classes halves each one's share of it, and
        # on MNIST classes 2 and 9 pooled needed alpha 0.9 (0.21 retained-accuracy drop) where
        # separate importances forgot both at alpha 9.8 with none.
        per_class = []
        for label in task.forget_classes:
            rows = task.forget_y == label
            per_class.append(
                batched_fisher(
                    model, task.forget_x[rows], task.forget_y[rows], config.batch_size, task.device
                )
            )
        if config.alpha is not None:
            settings = [(config.alpha, config.dampening)]
        else:
            settings = []
            alpha = config.alpha_max
            while alpha >= config.alpha_min * (1 - 1e-9):
                settings.append((alpha, min(config.dampening, alpha)))
                alpha *= config.search_ratio
        forgotten = task.forgotten_enough(config.stop_accuracy, config.probe_size)
        originals = {name: p.detach().clone() for name, p in model.named_parameters()}
        for alpha, lam in settings:
            # The strongest dampening any forgotten class asks for, as if each were forgotten alone.
            factors = {
                name: torch.stack(
                    [dampening_factors(full, forget, alpha, lam)[name] for forget in per_class]
                ).amin(dim=0)
                for name in full
            }
            with torch.no_grad():
                for name, param in model.named_parameters():
                    param.copy_(originals[name] * factors[name])
            if forgotten(model):
                break
        return model.eval()
