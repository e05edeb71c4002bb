"""The interface every defence implements, and the registry that names them.

A defence is applied to a model the unlearner is about to release, after (or as the last step
of) any unlearning method, to hide WHICH classes were forgotten. It edits a copy of the model and
returns it; the architecture stays the same, so every attack (white box included) reads the
defended model exactly as it reads an undefended one.

Defences compose: ``"distil+calibrate-logit"`` releases what ``calibrate-logit`` makes of what
``distil`` made (:func:`defence_stages`); each stage reads its own ``defence_params`` entry.

Adding a defence is one file: subclass :class:`Defence`, give it a pydantic ``Config`` whose
defaults are documented, implement :meth:`Defence.defend`, and decorate the class with
``@register_defence("name")``.

What a defence may read is what the unlearner holds (:class:`DefenceTask`): the model it
releases, the classes it forgot, and its own training data. Never the attacker's data, its
shadows or its seeds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from labelleak.errors import LabelleakError
from labelleak.models.base import ImageClassifier
from labelleak.registry import ComponentConfig, Registry

#: The name of the control: the model released as it is.
NO_DEFENCE = "none"


class DefenceConfig(ComponentConfig):
    """Base of every defence's settings (see :class:`ComponentConfig`)."""


@dataclass
class DefenceTask:
    """What a defence may use. ``model`` must not be modified (defend a copy).

    ``forget_classes`` is empty when the model forgot nothing (an always-on defence is applied to
    every released model, the never-unlearned original included). Images are ``(N, C, H, W)``
    float tensors in ``[0, 1]``, labels ``(N,)`` int64, on the CPU: ``retain_*`` the training
    samples of the classes kept, ``forget_*`` those of the forgotten classes (empty when none).
    """

    model: ImageClassifier
    #: The model before unlearning (the unlearner trained it); ``model`` itself when the model
    #: forgot nothing.
    original: ImageClassifier
    forget_classes: tuple[int, ...]
    retain_x: torch.Tensor
    retain_y: torch.Tensor
    forget_x: torch.Tensor
    num_classes: int
    seed: int
    device: torch.device

    @property
    def retained_classes(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.num_classes) if c not in self.forget_classes)

    def copy_model(self) -> ImageClassifier:
        """A deep copy of the model to edit, in eval mode, on the CPU."""
        return copy.deepcopy(self.model).cpu().eval()


class Defence:
    """Hides which classes a released model forgot; see :class:`DefenceTask`."""

    name: ClassVar[str]
    Config: ClassVar[type[DefenceConfig]] = DefenceConfig
    summary: ClassVar[str] = ""
    #: True when the defence is applied to every released model, so that one that forgot
    #: nothing looks like one that did (the original control is then defended too).
    always_on: ClassVar[bool] = False
    #: Bumped when a change alters the models the defence makes, so cached ones are not reused;
    #: it enters the cache key from 2 on.
    version: ClassVar[int] = 1

    def __init__(self, config: DefenceConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config object or keyword parameters, not both")
        self.config = config if config is not None else make_defence_config(self.name, params)

    def applies_to(self, forget_classes: tuple[int, ...]) -> bool:
        """Whether a model that forgot ``forget_classes`` is defended (else released as is)."""
        return bool(forget_classes) or self.always_on

    def defend(self, task: DefenceTask) -> ImageClassifier:
        """Return a defended copy of ``task.model``."""
        raise NotImplementedError


#: Every defence by name.
DEFENCES: Registry[Defence] = Registry("defence")
register_defence = DEFENCES.register
get_defence_class = DEFENCES.get_class


#: Joins the stages of a composed defence, applied left to right.
CHAIN = "+"


def defence_stages(name: str) -> tuple[str, ...]:
    """The registered defences ``name`` applies, in order: ``("distil", "calibrate-logit")``
    for ``"distil+calibrate-logit"``, ``(name,)`` for a single one. Raises a one-line
    :class:`~labelleak.errors.LabelleakError` for an unknown stage, a repeated one, or ``none``
    inside a chain."""
    stages = tuple(name.split(CHAIN))
    for stage in stages:
        get_defence_class(stage)
    if len(stages) > 1 and NO_DEFENCE in stages:
        raise LabelleakError(f"defence {name!r}: '{NO_DEFENCE}' cannot be part of a chain")
    if len(set(stages)) != len(stages):
        raise LabelleakError(f"defence {name!r} applies the same stage twice")
    return stages


def make_defence_config(name: str, params: dict[str, Any] | None) -> DefenceConfig:
    """Validate ``params`` against defence ``name``'s config, with a one-line error."""
    return DEFENCES.make_config(name, params)


def build_defence(name: str, params: dict[str, Any] | None = None) -> Defence:
    """Instantiate defence ``name`` with its config built from ``params``."""
    return get_defence_class(name)(make_defence_config(name, params))


@register_defence(NO_DEFENCE)
class NoDefence(Defence):
    """The control: the model is released as the unlearning method left it."""

    summary = "the model as the unlearning method left it (the control)"

    def applies_to(self, forget_classes: tuple[int, ...]) -> bool:
        return False

    def defend(self, task: DefenceTask) -> ImageClassifier:
        return task.model
