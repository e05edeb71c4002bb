"""Deterministic splits of a dataset into the parts the experiments need.

The official training set is divided, per class and with a fixed ``split_seed``, into

* the **target's training data** (what the original model is trained on); for a set of forgotten
  classes it falls into the **forget set** (every sample of those classes) and the **retain set**;
* the **attacker's reserve**, a disjoint slice (``attacker_fraction`` of each class, 10% by default)
  drawn from the same distribution, which only attacks may read.

The official test set (optionally capped per class) measures forget, retain and test accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from labelleak.data.base import ImageDataset
from labelleak.errors import LabelleakError


def _per_class_take(
    labels: np.ndarray, cap: int | None, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled indices of each class, at most ``cap`` of each."""
    groups = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        groups.append(members[:cap] if cap is not None else members)
    return groups


def validate_forget_classes(forget_classes: Iterable[int], num_classes: int) -> tuple[int, ...]:
    """Sorted, de-duplicated class ids; raise for an id out of range or forgetting every class."""
    classes = tuple(sorted({int(c) for c in forget_classes}))
    if not classes:
        raise LabelleakError("the set of classes to forget is empty; name at least one class")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise LabelleakError(
            f"class id {bad[0]} is out of range; this dataset has classes 0..{num_classes - 1}"
        )
    if len(classes) >= num_classes:
        raise LabelleakError(
            f"cannot forget all {num_classes} classes: at least one class must be retained"
        )
    return classes


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Index sets into one :class:`ImageDataset` (see the module docstring)."""

    dataset: ImageDataset
    target_idx: torch.Tensor
    attacker_idx: torch.Tensor
    test_idx: torch.Tensor
    settings: dict[str, object] = field(default_factory=dict)
    # Hashing the target's images costs ~0.4 s on full MNIST; every model load asks for it.
    _fingerprint: str | None = field(default=None, init=False, repr=False)
    # Gathering the target's images copies ~170 MB on full MNIST; every model load needs them.
    _target: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def fingerprint(self) -> str:
        """A hash of the data and indices that determine every model trained on these splits.

        Computed once per object: the splits are immutable.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        digest = hashlib.sha256()
        digest.update(self.dataset.name.encode())
        for tensor in (
            *self.target_data(),
            self.dataset.y_train[self.attacker_idx],
        ):
            digest.update(tensor.contiguous().numpy().tobytes())
        object.__setattr__(self, "_fingerprint", digest.hexdigest()[:20])
        return self._fingerprint

    def target_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The target's whole training set: images ``(N, C, H, W)``, labels ``(N,)``.

        The same tensors on every call (gathered once): callers must not modify them in place.
        """
        if self._target is None:
            target = self.dataset.x_train[self.target_idx], self.dataset.y_train[self.target_idx]
            object.__setattr__(self, "_target", target)
        assert self._target is not None
        return self._target

    def _target_split(self, forget_classes: Sequence[int], forget: bool):  # type: ignore[no-untyped-def]
        classes = validate_forget_classes(forget_classes, self.num_classes)
        x, y = self.target_data()
        mask = torch.isin(y, torch.tensor(classes))
        keep = mask if forget else ~mask
        return x[keep], y[keep]

    def forget_data(self, forget_classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every target training sample of the forgotten classes."""
        return self._target_split(forget_classes, forget=True)

    def retain_data(self, forget_classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every target training sample of the retained classes."""
        return self._target_split(forget_classes, forget=False)

    def test_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (possibly capped) official test set."""
        return self.dataset.x_test[self.test_idx], self.dataset.y_test[self.test_idx]

    def attacker_data(
        self, classes: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attacker's reserve, restricted to ``classes`` when given."""
        x = self.dataset.x_train[self.attacker_idx]
        y = self.dataset.y_train[self.attacker_idx]
        if classes is None:
            return x, y
        keep = torch.isin(y, torch.tensor(sorted(classes), dtype=torch.long))
        return x[keep], y[keep]


def make_splits(
    dataset: ImageDataset,
    *,
    subsample_per_class: int | None = None,
    test_per_class: int | None = None,
    attacker_fraction: float = 0.1,
    split_seed: int = 0,
) -> DataSplits:
    """Split ``dataset`` deterministically (same arguments, same indices).

    ``subsample_per_class`` caps the training images of each class before the attacker's reserve is
    taken (for fast runs); ``test_per_class`` caps the test images of each class.
    """
    if not 0.0 <= attacker_fraction < 1.0:
        raise LabelleakError(f"attacker_fraction must be in [0, 1), got {attacker_fraction}")
    for label, cap in (
        ("subsample_per_class", subsample_per_class),
        ("test_per_class", test_per_class),
    ):
        if cap is not None and cap < 2:
            raise LabelleakError(f"{label} must be at least 2, got {cap}")
    rng = np.random.default_rng(split_seed)
    target, attacker = [], []
    for members in _per_class_take(dataset.y_train.numpy(), subsample_per_class, rng):
        reserve = round(len(members) * attacker_fraction)
        attacker.append(members[:reserve])
        target.append(members[reserve:])
    test = _per_class_take(dataset.y_test.numpy(), test_per_class, rng)

    def as_index(groups: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.sort(np.concatenate(groups)).astype(np.int64))

    settings = {
        "subsample_per_class": subsample_per_class,
        "test_per_class": test_per_class,
        "attacker_fraction": attacker_fraction,
        "split_seed": split_seed,
    }
    return DataSplits(dataset, as_index(target), as_index(attacker), as_index(test), settings)
