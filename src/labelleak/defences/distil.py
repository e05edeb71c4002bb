"""``distil``: the whole released network trained to answer like the original except on the
forgotten classes' own data.

:mod:`.refit` does this with the final layer alone, on the released model's frozen features;
where those features no longer tell apart the inputs on which the original named the forgotten
class (retrain's never saw it), a layer cannot put the answers back. Here every weight moves:
the released model is trained for ``epochs`` passes, by logit matching (up to a per-sample
shift), towards

* on the retained classes' training images, the released model's own logits with each
  forgotten class's set where the original had it against the best retained class
  (:func:`~labelleak.defences.refit.grafted`: the retained answers stay those of the method),
* the original's logits on uniform noise and on the original's own inversion prototypes
  (crafted by the unlearner, see :func:`~labelleak.defences.head.inversion_probes`), and, when
  asked, on crops of scikit-learn's photographs and on mixed, thickened or inverted retained
  images (``patches``, ``mixes``); with ``flat_off`` noise, crops and mixes are answered with
  equal logits for every class instead, so no class, forgotten or not, owns the space off the
  data,
* the released model's own logits on the forgotten classes' training images, each forgotten
  class's pushed ``margin`` nats below the best retained class.

``match_row`` also holds each forgotten class's bias and row norm inside the retained classes'
range after every step. Each of the three kinds of input gets a fixed share of every batch
(``forget_share`` for the forgotten images, ``off_share`` for everything off the data, the rest
for the retained images), whatever their counts.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from pydantic import Field

from labelleak.defences.base import Defence, DefenceConfig, DefenceTask, register_defence
from labelleak.defences.head import (
    inversion_probes,
    logits_of,
    photo_patches,
    retained_mixes,
    uniform_noise,
)
from labelleak.defences.refit import grafted, kept_forgotten
from labelleak.models.base import ImageClassifier

#: The off-data settings' descriptions, shared with :class:`~labelleak.defences.graft.GraftConfig`
#: (which turns them on).
PATCHES = "crops of scikit-learn's photographs among the off-data inputs"
MIXES = "mixed, thickened or inverted retained images among the off-data inputs"
FLAT_OFF = (
    "answer noise, patches and mixes with equal logits for every class instead of the original's"
)
MATCH_ROW = (
    "after every step, hold each forgotten class's bias and row norm at a quantile of the "
    "retained classes' (drawn between the quartiles by the unlearner's seed): retrain leaves "
    "both lowest, which head-bias and head-norm read"
)


class DistilConfig(DefenceConfig):
    """Settings of ``distil``. The defaults were chosen on MNIST (LeNet-5, 1,000 images per
    class, retrain and neg-grad, every class, seed 0) over epochs 3 and 8, batch shares 0.15
    and 0.3, 32 and 64 prototypes: the larger ones took invert-white's ``top`` from 40% to 5%
    at the same forget and retained accuracy; about 15 s per model on one CPU thread."""

    # The off-data settings came later; at these values distil is what it was, so its cached
    # models keep their keys.
    added_later: ClassVar[dict[str, object]] = {
        "patches": 0, "mixes": 0, "flat_off": False, "match_row": False
    }  # fmt: skip

    epochs: int = Field(8, ge=1, description="passes over the retained training images")
    batch_size: int = Field(256, ge=8, description="images per step")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    noise: int = Field(4000, ge=0, description="uniform-noise images the original is imitated on")
    patches: int = Field(0, ge=0, description=PATCHES)
    mixes: int = Field(0, ge=0, description=MIXES)
    flat_off: bool = Field(False, description=FLAT_OFF)
    match_row: bool = Field(False, description=MATCH_ROW)
    probes_per_class: int = Field(
        64, ge=0, description="inversion prototypes of the original per class and depth"
    )
    probe_steps: int = Field(200, ge=1, description="gradient steps of the deeper prototypes")
    margin: float = Field(
        5.0,
        ge=0,
        description="nats by which a forgotten image's own class must trail its best other class",
    )
    forget_share: float = Field(
        0.25, gt=0, lt=1, description="share of each batch drawn from the forgotten images"
    )
    off_share: float = Field(
        0.3, gt=0, lt=1, description="share of each batch drawn from the noise and prototypes"
    )


class Grafts(NamedTuple):
    """Retained training images a subclass answers otherwise (see :meth:`Distil.grafts`)."""

    #: ``(G,)`` indices into ``task.retain_x``.
    indices: torch.Tensor
    #: ``(G, K)`` their target logits.
    targets: torch.Tensor
    #: Their share of each batch.
    share: float


@register_defence("distil")
class Distil(Defence):
    Config = DistilConfig
    summary = "the whole network trained to answer like the original except on forgotten data"

    def grafts(self, task: DefenceTask, original: ImageClassifier) -> Grafts | None:
        """Retained training images answered otherwise than the retained pool answers them;
        ``None`` (here) for none. :class:`~labelleak.defences.graft.Graft` overrides this."""
        return None

    def defend(self, task: DefenceTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, DistilConfig)
        original = task.original.cpu().eval()
        model = task.copy_model().to(task.device)
        off = [uniform_noise(task, config.noise)] if config.noise else []
        if config.patches:
            off.append(photo_patches(task, config.patches))
        if config.mixes:
            off.append(retained_mixes(task, config.mixes))
        generic = sum(len(images) for images in off)
        if config.probes_per_class:
            off.append(
                inversion_probes(original, task, config.probes_per_class, config.probe_steps)
            )
        # (images, target logits, share of each batch): retained, off-manifold, forgotten,
        # grafted.
        pools: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        forgetting = bool(task.forget_classes) and len(task.forget_x) > 0
        forget_share = config.forget_share if forgetting else 0.0
        off_share = config.off_share if off else 0.0
        grafts = self.grafts(task, original) if forgetting else None
        graft_share = grafts.share if grafts is not None else 0.0
        retain_x = task.retain_x
        if grafts is not None:
            # A grafted image is answered one way only, or the two targets would average out.
            kept = torch.ones(len(retain_x), dtype=torch.bool)
            kept[grafts.indices] = False
            retain_x = retain_x[kept]
        retained = grafted(
            logits_of(task.model, retain_x),
            logits_of(original, retain_x),
            list(task.forget_classes),
        )
        pools.append((retain_x, retained, 1 - forget_share - off_share - graft_share))
        if off:
            images = torch.cat(off)
            off_targets = logits_of(original, images)
            if config.flat_off:
                off_targets[:generic] = 0.0
            pools.append((images, off_targets, off_share))
        if forgetting:
            targets = kept_forgotten(
                logits_of(task.model, task.forget_x), list(task.forget_classes), config.margin
            )
            pools.append((task.forget_x, targets, forget_share))
        if grafts is not None:
            pools.append((task.retain_x[grafts.indices], grafts.targets, graft_share))
        generator = torch.Generator().manual_seed(task.seed + 29)
        counts = [max(1, round(share * config.batch_size)) for _, _, share in pools]
        steps = config.epochs * max(1, len(task.retain_x) // config.batch_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        quantiles = row_quantiles(task) if config.match_row and forgetting else None
        model.train()
        for _ in range(steps):
            xs, ts = [], []
            for (images, targets, _), count in zip(pools, counts, strict=True):
                picks = torch.randint(len(images), (count,), generator=generator)
                xs.append(images[picks])
                ts.append(targets[picks])
            x, t = torch.cat(xs).to(task.device), torch.cat(ts).to(task.device)
            difference = model(x) - t
            loss = (difference - difference.mean(dim=1, keepdim=True)).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if quantiles is not None:
                hold_row(model, task, quantiles)
        return model.cpu().eval()


def row_quantiles(task: DefenceTask) -> torch.Tensor:
    """``(2, F)`` quantiles in ``[0.25, 0.75]`` (bias, norm per forgotten class) for
    :func:`hold_row`, drawn from the unlearner's seed and the forget set, so that targets of one
    seed do not all land on the same rank."""
    mask = sum(1 << c for c in task.forget_classes)
    generator = torch.Generator().manual_seed(task.seed * 1_000_003 + mask)
    return 0.25 + 0.5 * torch.rand((2, len(task.forget_classes)), generator=generator)


def hold_row(model: ImageClassifier, task: DefenceTask, quantiles: torch.Tensor) -> None:
    """Set each forgotten class's classifier bias and row norm, in place, to quantiles of the
    retained classes' (``quantiles`` ``(2, F)``: bias, norm per forgotten class, in ``[0, 1]``).
    A quantile, not the median: the median of nine is one retained class's value, and a tie
    would itself be a tell."""
    forgotten, retained = list(task.forget_classes), list(task.retained_classes)
    weight, bias = model.classifier.weight, model.classifier.bias
    with torch.no_grad():
        norms = weight.norm(dim=1)
        wanted = torch.quantile(norms[retained], quantiles[1])
        weight[forgotten] *= (wanted / norms[forgotten].clamp_min(1e-12)).unsqueeze(1)
        if bias is not None:
            bias[forgotten] = torch.quantile(bias[retained], quantiles[0])
