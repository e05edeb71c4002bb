"""``graft``: :mod:`.distil`, with each forgotten class grafted onto a small patch of every
retained class, so that it wins on a few natural images as a retained class does.

A retained class the attacker has no data of still wins, confidently, on a few of the attacker's
images of other classes: the original's errors, which come from how it generalises. A forgotten
class wins on none (distil imitates the original on its training images, which it got right),
and data-peak, param-dot and param-diff read exactly that: the class that peaks lowest on natural
images. Here, for each forgotten class and each retained class, one compact patch of the retained
class's training images (``share`` of them: a seed image drawn, by the unlearner's seed, from
the half the original finds least like the forgotten class, and its nearest neighbours in the
original's penultimate features) is answered as the forgotten class, its logit raised to the
best retained one plus ``graft_margin``. A patch, not scattered images: scattered ones are
memorised and the forgotten class still wins on no held-out image; a patch is a region that
unseen images of that retained class fall into too. The price is those images: retained accuracy
drops by about ``share`` per forgotten class. Seeds far from the forgotten class keep its own
images out of the patches (forget accuracy stays where distil leaves it).

Version 2 turns on distil's off-data settings: photo crops and mixed retained images beside the
noise, all three answered flat (equal logits), and the forgotten row's bias and norm held among
the retained rows'. Unrelated images (another dataset) then fall in no class's favour, where the
released model starved the forgotten class: on MNIST (retrain, every class, seed 0;
docs/choices.md) it was the class least often among the two most probable on Fashion-MNIST
images for 1 target in 10 instead of 5, and never the lowest bias or norm (10 and 8 before).
"""

from __future__ import annotations

import torch
from pydantic import Field

from labelleak.defences.base import DefenceTask, register_defence
from labelleak.defences.distil import (
    FLAT_OFF,
    MATCH_ROW,
    MIXES,
    PATCHES,
    Distil,
    DistilConfig,
    Grafts,
)
from labelleak.defences.head import features_of, logits_of
from labelleak.defences.refit import grafted
from labelleak.models.base import ImageClassifier


class GraftConfig(DistilConfig):
    """Settings of ``graft`` (distil's, and the patches'). The defaults were chosen on MNIST
    (LeNet-5, 1,000 images per class, seed 0; docs/choices.md): a 0.5-1% patch with a 2-4 nat
    margin made the forgotten class peak above most classes, 1% at margin 0 among them."""

    share: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="share of each retained class's training images grafted per forgotten class",
    )
    graft_margin: float = Field(
        0.0,
        description="nats by which a grafted image's forgotten class beats its best retained one",
    )
    graft_batch_share: float = Field(
        0.15, gt=0, lt=1, description="share of each batch drawn from the grafted images"
    )
    # Distil's off-manifold settings, on by default here (docs/choices.md, graft v2): with them
    # the forgotten class stops being the one that wins least on unrelated images.
    patches: int = Field(2000, ge=0, description=PATCHES)
    mixes: int = Field(2000, ge=0, description=MIXES)
    flat_off: bool = Field(True, description=FLAT_OFF)
    match_row: bool = Field(True, description=MATCH_ROW)


@register_defence("graft")
class Graft(Distil):
    Config = GraftConfig
    summary = "distil, with each forgotten class made to win on a small patch of every retained one"
    version = 2

    def grafts(self, task: DefenceTask, original: ImageClassifier) -> Grafts | None:
        config = self.config
        assert isinstance(config, GraftConfig)
        forgotten = list(task.forget_classes)
        features = features_of(original, task.retain_x)
        original_logits = logits_of(original, task.retain_x)
        generator = torch.Generator().manual_seed(task.seed + 101)
        taken = torch.zeros(len(task.retain_x), dtype=torch.bool)
        picks: list[torch.Tensor] = []
        owners: list[torch.Tensor] = []
        for forgotten_class in forgotten:
            for retained_class in task.retained_classes:
                members = torch.nonzero((task.retain_y == retained_class) & ~taken).squeeze(1)
                if len(members) < 2:
                    continue
                size = max(1, round(config.share * len(members)))
                likeness = original_logits[members, forgotten_class]
                unlike = members[torch.argsort(likeness)[: max(1, len(members) // 2)]]
                seed_image = unlike[torch.randint(len(unlike), (1,), generator=generator)]
                distance = torch.cdist(features[seed_image], features[members]).squeeze(0)
                patch = members[torch.argsort(distance)[:size]]
                taken[patch] = True
                picks.append(patch)
                owners.append(torch.full((len(patch),), forgotten_class))
        if not picks:
            return None
        indices, owner = torch.cat(picks), torch.cat(owners)
        images = task.retain_x[indices]
        targets = grafted(logits_of(task.model, images), original_logits[indices], forgotten)
        retained = torch.tensor(task.retained_classes)
        best = targets[:, retained].max(dim=1).values
        targets[torch.arange(len(indices)), owner] = best + config.graft_margin
        return Grafts(indices, targets, config.graft_batch_share)
