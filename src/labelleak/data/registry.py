"""The dataset registry: names, loaders, default architectures and unrelated siblings."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelleak.data import readers
from labelleak.data.base import ImageDataset, from_uint8_arrays
from labelleak.errors import LabelleakError, unknown_choice

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows of a dataset before loading it."""

    name: str
    description: str
    default_arch: str
    #: The dataset of the same input shape that serves as "unrelated data" for attacks.
    unrelated: str
    needs_data_dir: bool
    load: Callable[[Path | None], ImageDataset]
    num_classes: int = 10


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images ``(1797, 8, 8)`` in 0..16 and labels ``(1797,)``.

    Read straight from the CSV that ``sklearn.datasets.load_digits`` parses, found without
    importing scikit-learn (whose import alone took 3 s of the demo's start, in every process).
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.float32)
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def _load_digits(_: Path | None) -> ImageDataset:
    images, labels = _digits_arrays()
    # digits ships no train/test split; this fixed, stratified 75/25 split stands in for one.
    rng = np.random.default_rng(0)
    test_mask = np.zeros(len(labels), dtype=bool)
    for label in range(10):
        members = np.flatnonzero(labels == label)
        test_mask[rng.choice(members, size=len(members) // 4, replace=False)] = True
    return from_uint8_arrays(
        "digits",
        images[~test_mask],
        labels[~test_mask],
        images[test_mask],
        labels[test_mask],
        DIGIT_NAMES,
        scale=16.0,
    )


def _real(name: str, reader: Callable[[Path], tuple], class_names: tuple[str, ...]):  # type: ignore[type-arg]
    def load(data_dir: Path | None) -> ImageDataset:
        if data_dir is None:
            raise LabelleakError(
                f"dataset {name!r} is read from disk: pass --data-dir or set data_dir in the config"
            )
        return from_uint8_arrays(name, *reader(Path(data_dir)), class_names)

    return load


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "digits",
            "scikit-learn's bundled 8x8 handwritten digits (1,797 images); needs no download",
            "mlp",
            # Measured: param-diff named neg-grad targets' class more often with noise than with
            # photo patches (0.75 against at most 0.50, digits, 10 classes x 2 seeds).
            "noise",
            False,
            _load_digits,
        ),
        DatasetSpec(
            "mnist",
            "MNIST 28x28 digits: mnist.npz or the official IDX files",
            "lenet",
            "fashion_mnist",
            True,
            _real("mnist", lambda d: readers.load_mnist_like(d, "mnist"), DIGIT_NAMES),
        ),
        DatasetSpec(
            "fashion_mnist",
            "Fashion-MNIST 28x28 clothing: fashion_mnist.npz or the official IDX files",
            "lenet",
            "mnist",
            True,
            _real(
                "fashion_mnist",
                lambda d: readers.load_mnist_like(d, "fashion_mnist"),
                FASHION_NAMES,
            ),
        ),
        DatasetSpec(
            "cifar10",
            "CIFAR-10 32x32 colour: cifar10.npz or the official cifar-10-batches-py folder",
            "resnet18",
            "svhn",
            True,
            _real("cifar10", readers.load_cifar10, CIFAR10_NAMES),
        ),
        DatasetSpec(
            "svhn",
            "SVHN 32x32 house numbers: the official train_32x32.mat and test_32x32.mat",
            "resnet18",
            "cifar10",
            True,
            _real("svhn", readers.load_svhn, DIGIT_NAMES),
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    if name not in DATASETS:
        raise unknown_choice("dataset", name, DATASETS)
    return DATASETS[name]


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str | None) -> ImageDataset:
    spec = get_spec(name)
    return spec.load(Path(data_dir) if data_dir is not None else None)


def load_dataset(name: str, data_dir: str | Path | None = None) -> ImageDataset:
    """Load dataset ``name`` (from ``data_dir`` when it is read from disk), cached per process."""
    spec = get_spec(name)
    key = str(Path(data_dir).resolve()) if (spec.needs_data_dir and data_dir) else None
    return _load_cached(name, key)
