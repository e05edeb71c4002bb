"""SCRUB (Kurmanji, Triantafillou, Hayes and Triantafillou, "Towards Unbounded Machine Unlearning",
NeurIPS 2023, arXiv:2302.09880).

A student, initialised as the original, is distilled from the frozen original (the teacher) with
alternating steps: "max" steps raise the KL divergence from the teacher to the student on forget
data, "min" steps lower it on retained data while also fitting the retained labels
(``gamma * CE + alpha * KL``). Each epoch runs a pass of max steps (only in the first
``max_epochs`` epochs) and then a pass of min steps.

Whole-class removal needs nothing class-specific: the forget set is every training sample of the
forgotten classes, and the retained labels never name them. Defaults follow the authors' large-
scale (CIFAR-10, SGD) setting: learning rate 5e-4, momentum 0.9, weight decay 5e-4, temperature 4,
``alpha = 0.001``, ``gamma = 0.99``, 3 epochs of which 2 have max steps, forget batches of 32 and
retained batches of 128 (their learning-rate decay starts after epoch 3, so never applies).

Our additions. (1) The max objective is unbounded: once a forget sample leaves its class, raising
its KL further only makes the student more extreme and costs retained accuracy (on digits, 2+7,
it took retained training accuracy to 0.52). As neg-grad does, max steps count only the forget
samples the student still classifies as their own, and a max pass stops once a probe of the forget
data is at most ``stop_accuracy`` accurate (``task.forgotten_enough``). (2) The max steps start at
a saddle (student = teacher, zero KL gradient) and their number scales with the forget set: on
MNIST (900 forget images, 28 max steps an epoch) the paper's 3 epochs remove the class, on digits
(about 90, 3 steps) they leave it at 100%. While the probe is still known after ``epochs``, up to
``extra_epochs`` further max+min epochs run (digits needed 5-6).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from labelleak.models.base import ImageClassifier
from labelleak.training import iterate_batches
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register


def distill_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per-sample KL(teacher || student) of the tempered softmaxes, times T^2 (Hinton et al.'s
    scaling, which keeps gradients comparable across temperatures); ``(N, K), (N, K) -> (N,)``."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1) * temperature**2


class ScrubConfig(MethodConfig):
    epochs: int = Field(3, ge=1, description="epochs of min steps (the paper's sgda_epochs, 3)")
    max_epochs: int = Field(
        2, ge=0, description="the first this many epochs also run max steps (the paper's msteps)"
    )
    lr: float = Field(5e-4, gt=0, description="SGD learning rate (the paper's large-scale 5e-4)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (the paper's)")
    weight_decay: float = Field(5e-4, ge=0, description="L2 penalty (the paper's)")
    temperature: float = Field(4.0, gt=0, description="distillation temperature (the paper's 4)")
    alpha: float = Field(
        0.001, ge=0, description="weight of the KL term in min steps (the paper's 0.001)"
    )
    gamma: float = Field(
        0.99, ge=0, description="weight of the retained cross-entropy in min steps (the paper's)"
    )
    forget_batch_size: int = Field(32, ge=1, description="forget samples per max step (paper's)")
    retain_batch_size: int = Field(128, ge=1, description="retained samples per min step (paper's)")
    stop_accuracy: float = Field(
        0.03,
        ge=0,
        le=1,
        description="max steps stop once a probe of the forget data is at most this accurate "
        "(as neg-grad's); the max objective is unbounded, past that it only costs retained "
        "accuracy",
    )
    extra_epochs: int = Field(
        20,
        ge=0,
        description="further max+min epochs while the probe still exceeds stop_accuracy; digits "
        "needed 5-6, MNIST none",
    )


@register("scrub")
class Scrub(UnlearningMethod):
    Config = ScrubConfig
    summary = "distil from the original: away from it on forget data, towards it on retained data"

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, ScrubConfig)
        teacher = task.copy_original().eval()
        for param in teacher.parameters():
            param.requires_grad_(False)
        student = task.copy_original()
        generator = torch.Generator().manual_seed(task.seed + 11)
        optimizer = torch.optim.SGD(
            student.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        forgotten = task.forgotten_enough(config.stop_accuracy)
        for epoch in range(config.epochs + config.extra_epochs):
            extra = epoch >= config.epochs
            if extra and forgotten(student):
                break
            if epoch < config.max_epochs or extra:
                self._max_pass(task, config, teacher, student, optimizer, generator, forgotten)
            self._min_pass(task, config, teacher, student, optimizer, generator)
        return student.eval()

    @staticmethod
    def _max_pass(
        task: UnlearningTask,
        config: ScrubConfig,
        teacher: nn.Module,
        student: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        forgotten: Callable[[nn.Module], bool],
    ) -> None:
        """One pass of max steps over the forget data, ascending KL on samples still known."""
        for batch in iterate_batches(len(task.forget_y), config.forget_batch_size, generator):
            student.train()
            xb = task.forget_x[batch].to(task.device)
            yb = task.forget_y[batch].to(task.device)
            logits = student(xb)
            known = logits.detach().argmax(dim=1) == yb
            # The full probe is only worth a forward pass once this batch is mostly forgotten.
            if float(known.float().mean()) <= 0.25 and forgotten(student):
                return
            if not bool(known.any()):
                continue
            with torch.no_grad():
                target = teacher(xb)
            optimizer.zero_grad(set_to_none=True)
            kl = distill_kl(logits, target, config.temperature)
            (-(kl * known).sum() / len(yb)).backward()
            optimizer.step()

    @staticmethod
    def _min_pass(
        task: UnlearningTask,
        config: ScrubConfig,
        teacher: nn.Module,
        student: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> None:
        """One pass of min steps over the retained data: CE plus KL towards the teacher."""
        student.train()
        for batch in iterate_batches(len(task.retain_y), config.retain_batch_size, generator):
            xb = task.retain_x[batch].to(task.device)
            yb = task.retain_y[batch].to(task.device)
            with torch.no_grad():
                target = teacher(xb)
            logits = student(xb)
            loss = (
                config.gamma * F.cross_entropy(logits, yb)
                + config.alpha * distill_kl(logits, target, config.temperature).mean()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
