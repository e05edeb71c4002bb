"""Unrelated data: the right shape and range, and clear errors for unusable sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from labelleak.data import from_uint8_arrays, load_dataset
from labelleak.data.unrelated import unrelated_images
from labelleak.errors import LabelleakError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_patches_match_the_target_shape_and_range() -> None:
    digits = load_dataset("digits")
    images = unrelated_images("patches", digits, count=64, seed=1)
    assert images.shape == (64, 1, 8, 8)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    # Natural-image crops, not constants: pixel values vary within most patches.
    assert float((images.flatten(1).std(dim=1) > 0.01).float().mean()) > 0.5


def test_patches_come_in_colour_for_colour_targets() -> None:
    rng = np.random.default_rng(0)
    colour = from_uint8_arrays(
        "tiny-colour",
        rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8),
        np.arange(20) % 10,
        rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8),
        np.arange(10),
        tuple(str(c) for c in range(10)),
    )
    images = unrelated_images("patches", colour, count=8)
    assert images.shape == (8, 3, 32, 32)
    # Real photographs: the three channels differ.
    assert float((images[:, 0] - images[:, 2]).abs().mean()) > 0.01


def test_generated_sources_are_seeded() -> None:
    digits = load_dataset("digits")
    for source in ("noise", "patches"):
        first = unrelated_images(source, digits, count=16, seed=3)
        again = unrelated_images(source, digits, count=16, seed=3)
        other = unrelated_images(source, digits, count=16, seed=4)
        assert torch.equal(first, again)
        assert not torch.equal(first, other)


def test_unusable_sources_are_refused() -> None:
    digits = load_dataset("digits")
    with pytest.raises(LabelleakError, match="unknown unrelated data"):
        unrelated_images("imagenet", digits)
    with pytest.raises(LabelleakError, match="another dataset"):
        unrelated_images("digits", digits)
    with pytest.raises(LabelleakError, match="at least 1"):
        unrelated_images("noise", digits, count=0)


def test_a_mixture_splits_the_images_evenly_among_its_sources() -> None:
    digits = load_dataset("digits")
    mixed = unrelated_images("noise+patches", digits, count=15, seed=2)
    assert mixed.shape == (15, 1, 8, 8)
    # Each part is what its source alone draws; the first source takes the odd image.
    assert torch.equal(mixed[:8], unrelated_images("noise", digits, count=8, seed=2))
    assert torch.equal(mixed[8:], unrelated_images("patches", digits, count=7, seed=2))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("noise+noise", "distinct sources"),
        ("noise+", "distinct sources"),
        ("noise+imagenet", "unknown unrelated data 'imagenet'"),
        ("patches+digits", "another dataset"),
    ],
)
def test_a_bad_mixture_is_one_clear_error(source: str, message: str) -> None:
    with pytest.raises(LabelleakError, match=message):
        unrelated_images(source, load_dataset("digits"), count=10)


def test_a_bad_mixture_fails_when_the_config_is_checked() -> None:
    from labelleak.experiment.config import parse_config, validate_config

    with pytest.raises(LabelleakError, match="distinct sources"):
        validate_config(parse_config({"dataset": "digits", "unrelated": "noise++patches"}))
    # Too few images to give every source one is found here too, not after the unlearning.
    with pytest.raises(LabelleakError, match="too small to mix 2 sources"):
        validate_config(
            parse_config({"dataset": "digits", "unrelated": "noise+patches", "unrelated_count": 1})
        )
    validate_config(parse_config({"dataset": "digits", "unrelated": "noise+patches"}))


def test_a_sibling_dataset_of_another_shape_is_refused() -> None:
    if not (SHARED / "mnist.npz").is_file():
        pytest.skip("../shared/data/mnist.npz not found: real-data test skipped")
    digits = load_dataset("digits")
    with pytest.raises(LabelleakError, match="same shape"):
        unrelated_images("mnist", digits, data_dir=SHARED)


def test_fashion_mnist_is_mnists_unrelated_data() -> None:
    if not (SHARED / "fashion_mnist.npz").is_file():
        pytest.skip("../shared/data/fashion_mnist.npz not found: real-data test skipped")
    mnist = load_dataset("mnist", SHARED)
    images = unrelated_images("fashion_mnist", mnist, count=100, data_dir=SHARED)
    assert images.shape == (100, 1, 28, 28)
