"""The interface every unlearning method implements, and the registry that names them.

Adding a method is one file: subclass :class:`UnlearningMethod`, give it a pydantic ``Config`` whose
defaults are documented, implement :meth:`UnlearningMethod.unlearn`, and decorate the class with
``@register("name")``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from labelleak.models.base import ImageClassifier
from labelleak.registry import ComponentConfig, Registry
from labelleak.training import GradientRecorder, TrainConfig, predict_logits


class MethodConfig(ComponentConfig):
    """Base of every method's hyperparameters (see :class:`ComponentConfig`)."""


def still_known(logits: torch.Tensor, labels: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Which samples the model still places in their own class, ``(N, K), (N,) -> (N,)`` bool:
    own logit above the best other class's minus ``margin`` (nats); at 0, predicted right."""
    if margin == 0:
        return logits.argmax(dim=1) == labels
    own = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf")).max(dim=1).values
    return own > others - margin


@dataclass
class UnlearningTask:
    """Everything an unlearning method may use. Methods must not modify ``original``.

    Images are ``(N, C, H, W)`` float tensors in ``[0, 1]``, labels ``(N,)`` int64, all on the CPU;
    ``device`` is where to compute.
    """

    original: ImageClassifier
    new_model: Callable[[], ImageClassifier]
    train_config: TrainConfig
    retain_x: torch.Tensor
    retain_y: torch.Tensor
    forget_x: torch.Tensor
    forget_y: torch.Tensor
    forget_classes: tuple[int, ...]
    num_classes: int
    seed: int
    device: torch.device
    #: What the original's training recorded, for methods with ``needs_training_record``.
    training_record: dict[str, torch.Tensor] | None = None
    progress: bool = False

    def forget_probe(self, size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed random sample of at most ``size`` forget samples, for stopping criteria."""
        generator = torch.Generator().manual_seed(self.seed)
        picks = torch.randperm(len(self.forget_y), generator=generator)[:size]
        return self.forget_x[picks], self.forget_y[picks]

    def forgotten_enough(
        self, level: float, size: int = 512, margin: float = 0.0
    ) -> Callable[[torch.nn.Module], bool]:
        """A stopping rule: true once the fraction of :meth:`forget_probe` the model still knows
        (:func:`still_known` with ``margin`` nats; at 0, its accuracy) is at most ``level``."""
        probe_x, probe_y = self.forget_probe(size)

        def check(model: torch.nn.Module) -> bool:
            logits = predict_logits(model, probe_x, device=self.device)
            return float(still_known(logits, probe_y, margin).float().mean()) <= level

        return check

    def copy_original(self) -> ImageClassifier:
        """A trainable deep copy of the original model on ``device``."""
        return copy.deepcopy(self.original).to(self.device)


class UnlearningMethod:
    """Removes the forgotten classes from a trained model; see :class:`UnlearningTask`."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    summary: ClassVar[str] = ""
    #: True when the original's training run must use :meth:`recorder` (amnesiac unlearning).
    needs_training_record: ClassVar[bool] = False
    #: Bumped when a change to the method alters the models it makes, so cached ones are not
    #: reused; it enters the cache key from 2 on (models made at version 1 keep their keys).
    version: ClassVar[int] = 1

    def __init__(self, config: MethodConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config object or keyword parameters, not both")
        self.config = config if config is not None else make_config(self.name, params)

    @classmethod
    def recorder(cls, model: ImageClassifier, num_classes: int) -> GradientRecorder | None:
        """A recorder the ORIGINAL training run must use for this method, or ``None``.

        Methods that need information only available during training (amnesiac unlearning) return
        one; its ``record()`` becomes :attr:`UnlearningTask.training_record`.
        """
        return None

    def unlearn(self, task: UnlearningTask) -> ImageClassifier:
        """Return a new model with ``task.forget_classes`` removed."""
        raise NotImplementedError


def _discover(name: str) -> None:
    # Imported here: the plugins module registers into METHODS, defined below.
    from labelleak.unlearning.plugins import discover

    discover(name)


#: Every method by name: the built-in ones, and plugins as they are first asked for (see
#: :mod:`labelleak.unlearning.plugins`).
METHODS: Registry[UnlearningMethod] = Registry("unlearning method", discover=_discover)
register = METHODS.register
get_method_class = METHODS.get_class


def make_config(name: str, params: dict[str, Any] | None) -> MethodConfig:
    """Validate ``params`` against method ``name``'s config, with a one-line error."""
    return METHODS.make_config(name, params)


def build_method(name: str, params: dict[str, Any] | None = None) -> UnlearningMethod:
    """Instantiate method ``name`` with its config built from ``params``."""
    return get_method_class(name)(make_config(name, params))
