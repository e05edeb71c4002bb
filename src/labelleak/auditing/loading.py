"""A user's model, read as data and seen through labelleak's two names.

A weights file is data, not code: safetensors files are read as they are, ``.pt`` / ``.pth`` state
dicts only through ``torch.load(weights_only=True)`` (which refuses any pickled object other than
tensors and plain containers), and nothing else is opened. Attacks read a model through
``features(x)`` and a final ``nn.Linear`` named ``classifier`` (see
:class:`~labelleak.models.base.ImageClassifier`); :func:`as_classifier` gives any logits module
those names when its output is a final linear layer of its own.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from labelleak.data.base import ImageDataset
from labelleak.errors import LabelleakError
from labelleak.models import build_model
from labelleak.models.base import ImageClassifier

#: File endings read as a torch state dict (through ``weights_only=True``).
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
#: Keys under which training scripts commonly nest a state dict in a checkpoint.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
#: Buffers a labelleak architecture holds that a user's own training code need not have saved:
#: when absent they take the dataset's statistics, as labelleak's own training does.
STATISTICS = ("input_mean", "input_std")


def _as_state_dict(content: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(content, dict):
        for key in NESTED_KEYS:
            if isinstance(content.get(key), dict):
                content = content[key]
                break
    if (
        isinstance(content, dict)
        and content
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items())
    ):
        return dict(content)
    raise LabelleakError(
        f"{path} does not hold a state dict (names mapped to tensors); save "
        "model.state_dict() with torch.save or safetensors.torch.save_file"
    )


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``.safetensors``, or a state dict in ``.pt`` / ``.pth``
    (``weights_only=True``); any other file, or a pickle holding more than tensors, is refused
    with one line, without running anything it holds."""
    path = Path(path)
    if not path.is_file():
        raise LabelleakError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises several types for a corrupt file
            raise LabelleakError(f"cannot read safetensors file {path}: {error}") from None
    if suffix in TORCH_SUFFIXES:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # UnpicklingError, RuntimeError, EOFError, ...
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise LabelleakError(
                f"refused {path}: it is not a plain state dict, and labelleak never unpickles "
                f"arbitrary objects (torch.load with weights_only=True said: {reason}); save "
                "model.state_dict() instead"
            ) from None
        return _as_state_dict(content, path)
    raise LabelleakError(
        f"unsupported model file {path.name!r}: give a .safetensors file or a .pt / .pth state "
        "dict (pickles and other formats are not opened)"
    )


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def load_model_file(path: str | Path, arch: str, data: ImageDataset) -> ImageClassifier:
    """Architecture ``arch`` for ``data``'s images, filled with the weights in ``path``.

    Every parameter must be in the file with the architecture's shape (a ``module.`` prefix,
    as ``DataParallel`` writes, is dropped); a mismatch names the tensors concerned.
    """
    model = build_model(arch, data.input_shape, data.num_classes, data.mean, data.std)
    expected = model.state_dict()
    given = load_state_file(path)
    if all(key.startswith("module.") for key in given):
        given = {key.removeprefix("module."): value for key, value in given.items()}
    where = (
        f"{arch} on {data.name} ({'x'.join(map(str, data.input_shape))} images, "
        f"{data.num_classes} classes)"
    )
    wrong = [
        f"{key} is {tuple(given[key].shape)} in the file, {tuple(value.shape)} for {where}"
        for key, value in expected.items()
        if key in given and given[key].shape != value.shape
    ]
    if wrong:
        raise LabelleakError(
            f"weights in {path} do not fit {where}: {wrong[0]}"
            + (f" (and {len(wrong) - 1} more mismatches)" if len(wrong) > 1 else "")
            + "; check --arch and --dataset"
        )
    missing = [k for k in expected if k not in given and k not in STATISTICS]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = [f"missing {_names(missing)}"] if missing else []
        parts += [f"unexpected {_names(unexpected)}"] if unexpected else []
        raise LabelleakError(
            f"weights in {path} do not fit {where}: {'; '.join(parts)}; check --arch"
        )
    state = {key: given.get(key, value).to(value.dtype) for key, value in expected.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


class LogitsModule(nn.Module):
    """A user's module seen as an image classifier: ``forward`` is the module's own;
    ``features(x)`` is the input of its final linear layer ``classifier`` (read by a hook)."""

    def __init__(self, module: nn.Module, classifier: nn.Linear | None) -> None:
        super().__init__()
        self.module = module
        if classifier is not None:
            self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, D)``: what the final linear layer receives."""
        captured: list[torch.Tensor] = []
        handle = self.classifier.register_forward_hook(
            lambda _layer, inputs, _output: captured.append(inputs[0])
        )
        try:
            self.module(x)
        finally:
            handle.remove()
        return captured[-1].flatten(1)


def final_linear(module: nn.Module, probe: torch.Tensor) -> nn.Linear | None:
    """The ``nn.Linear`` whose output is ``module``'s output on ``probe``, or ``None``."""
    candidates = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    if not candidates:
        return None
    last = candidates[-1]
    outputs: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda _layer, _inputs, output: outputs.append(output))
    try:
        with torch.no_grad():
            logits = module(probe)
    finally:
        handle.remove()
    if outputs and outputs[-1].shape == logits.shape and torch.equal(outputs[-1], logits):
        return last
    return None


def as_classifier(
    module: nn.Module, probe: torch.Tensor, num_classes: int
) -> tuple[nn.Module, str | None]:
    """``module`` as attacks read it, and why the white-box parameter attacks cannot run on it
    (``None`` when they can).

    ``probe`` is a small batch of the dataset's images ``(N, C, H, W)`` in ``[0, 1]``; the module
    must map it to logits ``(N, num_classes)``.
    """
    module.eval()
    try:
        with torch.no_grad():
            logits = module(probe)
    except Exception as error:  # a foreign module fails in its own ways on the wrong input
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LabelleakError(
            f"the model fails on this dataset's images {tuple(probe.shape[1:])}: {first}"
        ) from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(probe), num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise LabelleakError(
            f"the model returns {shape} for {len(probe)} images; expected logits of shape "
            f"({len(probe)}, {num_classes})"
        )
    if isinstance(module, ImageClassifier):
        return module, None
    layer = final_linear(module, probe)
    if layer is None:
        return LogitsModule(module, None), (
            "needs a final nn.Linear layer whose output is the model's logits"
        )
    return LogitsModule(module, layer), None
