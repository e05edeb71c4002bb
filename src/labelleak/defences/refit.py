"""``refit-row`` and ``refit-head``: the released model answers like the original everywhere
except on the forgotten classes' own data.

The attacks read what unlearning leaves behind where the unlearner never looked: a forgotten
class that no input can reach any more (inversions, probe-drop), that no image of another class
or no noise image is ever given (data-peak, the histograms), a classifier row trained only to
stay low (param-dot, param-diff). The unlearner still holds the original model, so it can put
those places back: the final layer is refit on the released model's frozen features so that

* on the retained classes' training images it gives the released model's own logits with each
  forgotten class's set where the ORIGINAL had it against the best retained class
  (:func:`grafted`: the retained answers stay, and a forgotten class still peaks on a few
  look-alikes),
* on uniform noise and on the original's own inversion prototypes (crafted by the unlearner
  with its own seeds, see :func:`~labelleak.defences.head.inversion_probes`) it gives the
  original's probabilities, so the class stays reachable off the data manifold,
* on the forgotten classes' training images it gives the unlearned model's logits with each
  forgotten class's pushed ``margin`` nats below the best retained class (weighted
  ``forget_weight`` times a group), so the data itself stays forgotten.

``refit-row`` refits only the forgotten classes' rows and biases; ``refit-head`` (always on)
refits every row the same way, on every released model, the never-unlearned original included,
so a model that forgot nothing went through the same procedure as one that did.
"""

from __future__ import annotations

import torch
from pydantic import Field

from labelleak.defences.base import Defence, DefenceConfig, DefenceTask, register_defence
from labelleak.defences.head import (
    FitGroup,
    features_of,
    inversion_probes,
    logits_of,
    refit_head,
    sample_rows,
    uniform_noise,
)
from labelleak.models.base import ImageClassifier


class RefitConfig(DefenceConfig):
    """Settings of the refit defences (defaults: LeNet-5 on MNIST takes a few seconds)."""

    retain_samples: int = Field(
        5000, ge=1, description="retained training images the refit imitates the original on"
    )
    forget_samples: int = Field(
        2000, ge=0, description="forgotten training images it keeps forgotten"
    )
    noise: int = Field(1000, ge=0, description="uniform-noise images the original is imitated on")
    probes_per_class: int = Field(
        32, ge=0, description="inversion prototypes of the original per class and depth"
    )
    probe_steps: int = Field(200, ge=1, description="gradient steps of the deeper prototypes")
    margin: float = Field(
        5.0,
        ge=0,
        description="nats by which a forgotten image's own class must trail its best other class",
    )
    forget_weight: float = Field(
        10.0, gt=0, description="weight of the forgotten images' loss against each other group's"
    )
    steps: int = Field(300, ge=1, description="full-batch Adam steps of the refit")
    lr: float = Field(0.01, gt=0, description="Adam learning rate of the refit")


class RefitDefence(Defence):
    """The refit; subclasses say which rows it touches."""

    Config = RefitConfig

    def rows(self, task: DefenceTask) -> tuple[int, ...] | None:
        raise NotImplementedError

    def defend(self, task: DefenceTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, RefitConfig)
        model = task.copy_model()
        original = task.original.cpu().eval()
        forgotten = list(task.forget_classes)
        retain = task.retain_x[sample_rows(len(task.retain_x), config.retain_samples, task.seed)]
        forget = task.forget_x[sample_rows(len(task.forget_x), config.forget_samples, task.seed)]
        off_manifold = [uniform_noise(task, config.noise)] if config.noise else []
        if config.probes_per_class:
            off_manifold.append(
                inversion_probes(original, task, config.probes_per_class, config.probe_steps)
            )
        # The original's answers where the attacker looks; the forgotten data's own answer
        # (the released model's, the forgotten classes pushed down) where it must not.
        groups = [
            FitGroup(
                features_of(model, retain),
                grafted(logits_of(task.model, retain), logits_of(original, retain), forgotten),
            )
        ]
        for images in off_manifold:
            groups.append(FitGroup(features_of(model, images), logits_of(original, images)))
        if forgotten and len(forget):
            groups.append(
                FitGroup(
                    features_of(model, forget),
                    kept_forgotten(logits_of(task.model, forget), forgotten, config.margin),
                    weight=config.forget_weight,
                )
            )
        refit_head(model.classifier, groups, self.rows(task), config.steps, config.lr)
        return model.eval()


def kept_forgotten(logits: torch.Tensor, forgotten: list[int], margin: float) -> torch.Tensor:
    """The unlearned model's logits ``(N, K)`` on forgotten images, each forgotten class's
    lowered to at least ``margin`` nats below the best retained class."""
    targets = logits.clone()
    retained = torch.ones(logits.shape[1], dtype=torch.bool)
    retained[forgotten] = False
    best = logits[:, retained].max(dim=1, keepdim=True).values
    targets[:, forgotten] = torch.minimum(targets[:, forgotten], best - margin)
    return targets


def grafted(released: torch.Tensor, original: torch.Tensor, forgotten: list[int]) -> torch.Tensor:
    """Target logits ``(N, K)`` on retained images: the released model's own for the retained
    classes (its predictions, and so its accuracy, stay), and for each forgotten class the
    original's margin to its best retained class, added to the released model's best retained
    logit (the forgotten class trails the winner, and peaks on look-alikes, as it did)."""
    targets = released.clone()
    if not forgotten:
        return targets
    retained = torch.ones(released.shape[1], dtype=torch.bool)
    retained[forgotten] = False
    released_best = released[:, retained].max(dim=1, keepdim=True).values
    original_best = original[:, retained].max(dim=1, keepdim=True).values
    targets[:, forgotten] = released_best + original[:, forgotten] - original_best
    return targets


@register_defence("refit-row")
class RefitRow(RefitDefence):
    summary = "the forgotten rows refit to answer like the original except on forgotten data"

    def rows(self, task: DefenceTask) -> tuple[int, ...] | None:
        return task.forget_classes


@register_defence("refit-head")
class RefitHead(RefitDefence):
    summary = "always on: every row refit the same way, on every released model"
    always_on = True

    def rows(self, task: DefenceTask) -> tuple[int, ...] | None:
        return None
