"""Architectures, the bundled digits data, datasets that need files, and stored weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from labelleak.data import DATASETS, load_dataset
from labelleak.errors import LabelleakError
from labelleak.experiment.store import WEIGHTS, ArtifactStore, load_weights
from labelleak.models import ARCHITECTURES, build_model

SHAPES = {
    "mnist-like": (1, 28, 28),
    "cifar-like": (3, 32, 32),
    "digits-like": (1, 8, 8),
}
CASES = [
    (arch, shape)
    for arch in ARCHITECTURES
    for shape in SHAPES
    # ResNet-18 is built for 28x28 and 32x32 images only; 8x8 digits get the small models.
    if not (arch == "resnet18" and shape == "digits-like")
]


def make(arch: str, shape: tuple[int, int, int], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    channels = shape[0]
    return build_model(arch, shape, 10, [0.5] * channels, [0.25] * channels).eval()


def test_every_architecture_is_registered() -> None:
    assert set(ARCHITECTURES) == {"mlp", "lenet", "resnet8", "resnet18"}


@pytest.mark.parametrize(("arch", "shape_name"), CASES)
def test_architecture_shapes_and_interface(arch, shape_name) -> None:
    shape = SHAPES[shape_name]
    model = make(arch, shape)
    n = 2 if arch == "resnet18" else 5
    x = torch.rand(n, *shape)
    with torch.no_grad():
        logits = model(x)
        features = model.features(x)
    assert logits.shape == (n, 10)
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.out_features == 10
    assert features.shape == (n, model.classifier.in_features)
    assert torch.allclose(model.classifier(features), logits, atol=1e-5)
    assert torch.isfinite(logits).all()
    # Different inputs give different logits: the model actually looks at the image.
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize("arch", ["mlp", "lenet", "resnet8"])
def test_small_architectures_train_a_step(arch) -> None:
    model = make(arch, SHAPES["digits-like"]).train()
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(LabelleakError, match="unknown architecture 'vgg'") as caught:
        build_model("vgg", (1, 28, 28), 10, [0.5], [0.25])
    for name in ARCHITECTURES:
        assert name in str(caught.value)


def test_models_normalise_inputs_with_the_dataset_statistics() -> None:
    shape = SHAPES["mnist-like"]
    plain = make("mlp", shape)
    torch.manual_seed(0)
    shifted = build_model("mlp", shape, 10, [0.0], [1.0]).eval()
    x = torch.rand(3, *shape)
    with torch.no_grad():
        # Same weights, different statistics: the outputs differ, and normalising by hand agrees.
        assert not torch.allclose(plain(x), shifted(x))
        assert torch.allclose(plain(x), shifted((x - 0.5) / 0.25), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Data


def test_digits_is_bundled_and_normalised() -> None:
    data = load_dataset("digits")
    assert data.num_classes == 10
    assert data.input_shape == (1, 8, 8)
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert x.dtype == torch.float32
        assert x.ndim == 4 and x.shape[1:] == (1, 8, 8)
        assert len(x) == len(y)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert float(x.max()) == 1.0
        assert y.dtype == torch.int64
        assert set(y.tolist()) == set(range(10))
    assert len(data.y_train) + len(data.y_test) == 1797
    # A fixed split: loading again gives the same images.
    again = load_dataset("digits")
    assert torch.equal(again.x_test, data.x_test)
    assert len(data.mean) == len(data.std) == 1


def test_digits_read_directly_match_scikit_learns_loader() -> None:
    from sklearn.datasets import load_digits

    from labelleak.data.registry import _digits_arrays

    images, labels = _digits_arrays()
    bunch = load_digits()
    np.testing.assert_array_equal(images, bunch.images.astype(np.float32))
    np.testing.assert_array_equal(labels, bunch.target)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "svhn"])
def test_datasets_on_disk_need_a_data_dir(name) -> None:
    assert DATASETS[name].needs_data_dir
    with pytest.raises(LabelleakError, match=name):
        load_dataset(name)


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(LabelleakError, match="unknown dataset 'imagenet'") as caught:
        load_dataset("imagenet")
    for name in ("digits", "mnist", "fashion_mnist", "cifar10", "svhn"):
        assert name in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Stored weights


def test_checkpoint_round_trips(tmp_path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    model = make("lenet", SHAPES["mnist-like"], seed=1)
    folder = store.save("original", "abcdef0123", model, {"seconds": 1.5})
    assert folder == store.folder("original", "abcdef0123")
    assert (folder / WEIGHTS).is_file()
    assert store.has("original", "abcdef0123")
    assert store.meta("original", "abcdef0123") == {"seconds": 1.5}
    assert not store.has("original", "abcdef0124")
    # No staging folders are left behind.
    assert not [p for p in (tmp_path / "cache").rglob(".*")]

    fresh = make("lenet", SHAPES["mnist-like"], seed=2)
    assert not torch.equal(fresh.classifier.weight, model.classifier.weight)
    store.load_model("original", "abcdef0123", fresh)
    state, loaded = model.state_dict(), fresh.state_dict()
    assert state.keys() == loaded.keys()
    for name in state:
        assert torch.equal(state[name], loaded[name]), name
    x = torch.rand(2, *SHAPES["mnist-like"])
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_saving_an_existing_key_keeps_the_first(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    first = make("mlp", SHAPES["digits-like"], seed=1)
    store.save("unlearned", "k" * 20, first, {"n": 1})
    store.save("unlearned", "k" * 20, make("mlp", SHAPES["digits-like"], seed=2), {"n": 2})
    assert store.meta("unlearned", "k" * 20) == {"n": 1}
    loaded = store.load_model("unlearned", "k" * 20, make("mlp", SHAPES["digits-like"], seed=3))
    assert torch.equal(loaded.classifier.weight, first.classifier.weight)
    assert not [p for p in tmp_path.rglob(".*")]


@pytest.mark.parametrize(
    ("saved", "loaded"),
    [
        (("mlp", "digits-like"), ("lenet", "digits-like")),  # another architecture
        (("resnet8", "cifar-like"), ("resnet8", "mnist-like")),  # same one, other input
        (("mlp", "mnist-like"), ("mlp", "digits-like")),  # same names, other shapes
    ],
)
def test_checkpoint_of_another_architecture_is_a_user_error(tmp_path, saved, loaded) -> None:
    path = tmp_path / WEIGHTS
    model = make(saved[0], SHAPES[saved[1]])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(LabelleakError, match="do not fit this architecture") as caught:
        load_weights(make(loaded[0], SHAPES[loaded[1]]), path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a safetensors file at all", b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":'],
    ids=["empty", "garbage", "truncated-header"],
)
def test_corrupt_weights_are_a_user_error(tmp_path, content) -> None:
    store = ArtifactStore(tmp_path)
    model = make("mlp", SHAPES["digits-like"])
    folder = store.save("original", "c" * 20, model, {"seconds": 0.0})
    (folder / WEIGHTS).write_bytes(content)
    with pytest.raises(LabelleakError, match="cannot read model weights"):
        store.load_model("original", "c" * 20, make("mlp", SHAPES["digits-like"]))


def test_truncated_weights_are_a_user_error(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    model = make("lenet", SHAPES["mnist-like"])
    folder = store.save("original", "t" * 20, model, {"seconds": 0.0})
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(LabelleakError, match="cannot read model weights"):
        store.load_model("original", "t" * 20, make("lenet", SHAPES["mnist-like"]))


def test_missing_weights_file_is_a_user_error(tmp_path) -> None:
    with pytest.raises(LabelleakError, match="cannot read model weights"):
        load_weights(make("mlp", SHAPES["digits-like"]), tmp_path / "absent.safetensors")


def test_unwritable_cache_is_a_user_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LabelleakError, match="cannot create cache directory"):
        ArtifactStore(blocker / "cache")


def test_corrupt_side_file_is_a_user_error(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    model = make("mlp", SHAPES["digits-like"])
    record = {"class_update.classifier.weight": torch.zeros(10, 10, 64)}
    folder = store.save("original", "r" * 20, model, {"seconds": 0.0}, {"training_record": record})
    loaded = store.load_tensors("original", "r" * 20, "training_record")
    assert loaded is not None and torch.equal(
        loaded["class_update.classifier.weight"], record["class_update.classifier.weight"]
    )
    (folder / "training_record.safetensors").write_bytes(b"garbage")
    with pytest.raises(LabelleakError, match="training_record"):
        store.load_tensors("original", "r" * 20, "training_record")
