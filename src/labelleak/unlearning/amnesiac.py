"""Amnesiac unlearning (Graves, Nagisetty and Ganesh, AAAI 2021).

The original training run records, for every class ``c``, the sum over all steps of the learning
rate times the part of each batch's gradient that class ``c``'s samples contributed,
``U_c = sum_t lr_t * grad_t(c)``. Unlearning undoes ``s * U_c`` for the forgotten classes, then
repairs briefly on the retained data.

The sum collects gradients from the whole trajectory, most of them taken far from the final
weights, so undoing all of it (``s = 1``) overshoots on long trainings: on full MNIST (LeNet-5,
5 epochs) it left 13-87% retained accuracy even after repair. By default the method therefore
searches the smallest ``s`` in ``1/64, 1/32, ..., 1`` that brings a probe of the forget data to at
most ``stop_accuracy`` both after the undo and after the repair (on Fashion-MNIST the repair
brought a barely-removed class back to 26% test accuracy), as neg-grad stops its ascent; the
unlearner holds the forget data.

Whole-class removal: Graves et al. undo the updates of the batches that held sensitive samples;
when a whole class is forgotten nearly every batch holds one, and undoing those batches' whole
updates would rewind the model to its initialisation. Recording each class's share of every update
undoes what the forgotten class contributed and keeps what the retained classes did. The raw
gradient (not the momentum-amplified optimiser step) is recorded: subtracting momentum-amplified
updates overshoots and wrecks the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from labelleak.errors import LabelleakError
from labelleak.models.base import ImageClassifier
from labelleak.training import train_model
from labelleak.unlearning.base import MethodConfig, UnlearningMethod, UnlearningTask, register

RECORD_PREFIX = "class_update."


class ClassUpdateRecorder:
    """Computes per-class gradients in one vectorised backward pass and accumulates them."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        self.num_classes = num_classes
        self.named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.totals = {
            name: torch.zeros((num_classes, *p.shape), dtype=torch.float32)
            for name, p in self.named
        }

    def backward(
        self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, lr: float
    ) -> None:
        losses = F.cross_entropy(logits, labels, reduction="none")
        # Row c weights the samples of class c by 1/B: the rows sum to the mean-loss gradient.
        weights = torch.zeros(self.num_classes, len(labels), device=losses.device)
        weights[labels, torch.arange(len(labels), device=losses.device)] = 1.0 / len(labels)
        params = [p for _, p in self.named]
        per_class = torch.autograd.grad(losses, params, grad_outputs=weights, is_grads_batched=True)
        for (name, param), grads in zip(self.named, per_class, strict=True):
            param.grad = grads.sum(dim=0)
            self.totals[name].add_(grads.detach().cpu(), alpha=lr)

    def record(self) -> dict[str, torch.Tensor]:
        return {RECORD_PREFIX + name: total for name, total in self.totals.items()}


class AmnesiacConfig(MethodConfig):
    scale: float | None = Field(
        None,
        gt=0,
        description="multiple of the recorded updates to undo; None = the smallest of "
        "max_scale x 2^-k (k = 6..0) that brings forget-data accuracy to stop_accuracy",
    )
    max_scale: float = Field(1.0, gt=0, description="largest multiple tried by the search")
    stop_accuracy: float = Field(
        0.05, ge=0, le=1, description="forget-data probe accuracy the search aims for"
    )
    repair_epochs: int = Field(1, ge=0, description="passes over the retained data afterwards")
    repair_lr_scale: float = Field(
        0.2, gt=0, description="repair learning rate as a multiple of the original's peak rate"
    )


@register("amnesiac")
class Amnesiac(UnlearningMethod):
    Config = AmnesiacConfig
    summary = "undo the forgotten classes' recorded updates, then repair on retained data"
    needs_training_record = True

    @classmethod
    def recorder(cls, model: ImageClassifier, num_classes: int) -> ClassUpdateRecorder:
        return ClassUpdateRecorder(model, num_classes)

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        config = self.config
        assert isinstance(config, AmnesiacConfig)
        if task.training_record is None:
            raise LabelleakError(
                "amnesiac unlearning needs the original's training record; train the original "
                "with this method's recorder (labelleak run does so when amnesiac is listed)"
            )
        classes = list(task.forget_classes)
        updates = {
            name: task.training_record[RECORD_PREFIX + name][classes].sum(dim=0)
            for name, _ in task.original.named_parameters()
        }
        if config.scale is not None:
            scales = [config.scale]
        else:
            scales = [config.max_scale * 2.0**-k for k in range(6, -1, -1)]
        forgotten = task.forgotten_enough(config.stop_accuracy)
        for index, scale in enumerate(scales):
            model = self._undo(task, updates, scale)
            last = index == len(scales) - 1
            if not (forgotten(model) or last):
                continue
            model = self._repair(task, model, config)
            # Repair can bring a class back that the undo only just removed: then undo more.
            if forgotten(model) or last:
                break
        return model.eval()

    @staticmethod
    def _undo(
        task: UnlearningTask, updates: dict[str, torch.Tensor], scale: float
    ) -> ImageClassifier:
        model = task.copy_original()
        with torch.no_grad():
            for name, param in model.named_parameters():
                # Training stepped against the gradient; undoing it steps along it.
                param.add_(scale * updates[name].to(param.device))
        return model

    @staticmethod
    def _repair(
        task: UnlearningTask, model: ImageClassifier, config: AmnesiacConfig
    ) -> ImageClassifier:
        if config.repair_epochs == 0:
            return model
        return train_model(
            model,
            task.retain_x,
            task.retain_y,
            task.train_config,
            seed=task.seed + 4,
            device=task.device,
            lr=task.train_config.lr * config.repair_lr_scale,
            epochs=config.repair_epochs,
            progress=task.progress,
            desc="amnesiac repair",
        )
