"""Boundary Shrink (Chen, Gao, Zhou, Xu and Yuan, "Boundary Unlearning: Rapid Forgetting of Deep
Networks via Shifting the Decision Space", CVPR 2023, arXiv:2303.11570).

Each forget sample gets a neighbour label: the class the original model gives it after a small
adversarial step (FGSM within an L-inf ball of ``eps`` in pixel units, or ``steps``-step PGD);
the model is then fine-tuned on the forget samples with those labels, which pulls the forgotten
classes' decision region into their nearest neighbours'.

Adaptation to removing whole classes and choices made:

* The neighbour is the best *retained* class of the original's logits at the perturbed input.
  The paper takes the plain argmax, which is the true class whenever the step does not cross the
  boundary (then the fine-tune reinforces the class it should remove) and, with several forgotten
  classes, may be another forgotten class; masking the forgotten classes' logits gives the
  nearest wrong class that will survive.
* As in the paper, the search runs on the frozen original, once: its labels do not change while
  the copy is fine-tuned (the authors' loop recomputes the same deterministic FGSM every batch).
* The paper fine-tunes 10 epochs of SGD at 1e-5 (momentum 0.9). At that rate the forgotten class
  barely moves here, so the rate is ``lr_scale`` times the recipe's peak (momentum 0.9, no decay,
  constant) and the fine-tune stops after the first epoch at which a probe of the forget data is
  at most ``stop_accuracy`` correct, within ``max_epochs``: brief and small, but reliable.
  The fine-tune sees only forget samples, so a larger rate over-grows the neighbour classes: on
  MNIST LeNet-5 (forgetting 3 / 7 / 2 and 9) ``lr_scale`` 0.1 lost 0.049 / 0.084 / 0.020 retained
  test accuracy, 0.02 lost 0.013 / 0.005 / 0.004, 0.01 (default) 0.007 / 0.003 / 0.003, 0.004
  0.005 / 0.002 / -0.003 but on digits left 0.045 of class 7 (0.0 at 0.01).

Measured (seed 0, default config, one CPU thread): MNIST LeNet-5, 1,000 images per class,
forgetting [3], [7], [2, 9]: forget test accuracy 0.0 / 0.0 / 0.006, retained 0.9682 / 0.9735 /
0.9758 against the original's 0.9754 / 0.9764 / 0.9785, 0.6-1.2 s; digits MLP: see
tests/test_boundary_shrink.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from labelleak.models.base import ImageClassifier
from labelleak.training import iterate_batches
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register

SEED_OFFSET = 12


class BoundaryShrinkConfig(MethodConfig):
    eps: float = Field(
        0.1,
        gt=0,
        le=1,
        description="L-inf bound of the neighbour search, in pixel units of [0, 1] images; 0.1 "
        "is the paper's",
    )
    steps: int = Field(
        1, ge=1, description="attack steps; 1 is FGSM (the paper's), more is PGD of step 2.5 eps/n"
    )
    lr_scale: float = Field(
        0.01,
        gt=0,
        description="constant fine-tune learning rate as a multiple of the recipe's peak rate",
    )
    batch_size: int = Field(64, ge=1, description="forget samples per fine-tune step")
    max_epochs: int = Field(20, ge=1, description="upper bound on passes over the forget data")
    stop_accuracy: float = Field(
        0.02,
        ge=0,
        le=1,
        description="stop after the first epoch that leaves a probe of the forget data at most "
        "this accurate; more fine-tuning only costs retained accuracy",
    )


def neighbour_labels(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    retained: torch.Tensor,
    eps: float,
    steps: int,
    device: torch.device,
    chunk: int = 512,
) -> torch.Tensor:
    """For each image, the retained class ``model`` prefers after an untargeted L-inf attack of
    radius ``eps`` (``steps`` sign-gradient steps on the cross-entropy of the true label ``y``).

    ``retained`` is a 1-D tensor of class ids; the result ``(N,)`` on the CPU only holds those.
    ``model`` is left untouched (input gradients are taken with :func:`torch.autograd.grad`).
    """
    was_training = model.training
    model.eval()
    step_size = eps if steps == 1 else 2.5 * eps / steps
    blocked = torch.ones(model(x[:1].to(device)).shape[1], dtype=torch.bool, device=device)
    blocked[retained.to(device)] = False
    labels = []
    for start in range(0, len(y), chunk):
        clean = x[start : start + chunk].to(device)
        yb = y[start : start + chunk].to(device)
        adv = clean.clone()
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv), yb, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = adv + step_size * grad.sign()
                adv = torch.minimum(torch.maximum(adv, clean - eps), clean + eps).clamp(0, 1)
        with torch.no_grad():
            logits = model(adv).masked_fill(blocked, float("-inf"))
        labels.append(logits.argmax(dim=1).cpu())
    model.train(was_training)
    return torch.cat(labels)


@register("boundary-shrink")
class BoundaryShrink(UnlearningMethod):
    Config = BoundaryShrinkConfig
    summary = "fine-tune the forget data towards the nearest wrong class found adversarially"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, BoundaryShrinkConfig)
        retained = torch.tensor(
            [c for c in range(task.num_classes) if c not in task.forget_classes]
        )
        model = task.copy_original()
        # The search reads the copy before any update, i.e. the original, on task.device.
        targets = neighbour_labels(
            model,
            task.forget_x,
            task.forget_y,
            retained,
            config.eps,
            config.steps,
            task.device,
        )
        generator = torch.Generator().manual_seed(task.seed + SEED_OFFSET)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=task.train_config.lr * config.lr_scale, momentum=0.9
        )
        forgotten = task.forgotten_enough(config.stop_accuracy)
        for _ in range(config.max_epochs):
            model.train()
            for batch in iterate_batches(len(targets), config.batch_size, generator):
                xb = task.forget_x[batch].to(task.device)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb), targets[batch].to(task.device)).backward()
                optimizer.step()
            if forgotten(model):
                break
        return model.eval()
