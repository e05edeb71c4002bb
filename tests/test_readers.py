"""Readers for the official dataset formats, on tiny files the tests write themselves."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import scipy.io

from labelleak.data.readers import (
    load_cifar10,
    load_mnist_like,
    load_npz,
    load_svhn,
    read_idx,
)
from labelleak.errors import LabelleakError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file: 0x0000, type code, ndim, big-endian dims, big-endian data."""
    header = struct.pack(">HBB", 0, IDX_CODES[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def fake_arrays(seed: int, shape: tuple[int, ...], n_train: int = 7, n_test: int = 4):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.int64),
        rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.int64),
    )


def write_mnist(folder: Path, arrays, *, gz: bool = False) -> None:
    x_tr, y_tr, x_te, y_te = arrays
    write_idx(folder / "train-images-idx3-ubyte", x_tr, gz=gz)
    write_idx(folder / "train-labels-idx1-ubyte", y_tr.astype(np.uint8), gz=gz)
    write_idx(folder / "t10k-images-idx3-ubyte", x_te, gz=gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_te.astype(np.uint8), gz=gz)


def assert_arrays_equal(got, expected) -> None:
    assert len(got) == 4
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


def one_line_error(excinfo: pytest.ExceptionInfo[LabelleakError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- IDX -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array, gz=gz))
    assert got.dtype == np.dtype(dtype)  # native byte order
    assert got.flags.writeable
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "bad magic number"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated or empty IDX header"),
        (b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + bytes(20), "holds 20 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + bytes(3), "holds 3 bytes"),
        (b"", "bad magic number"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, content, expected):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(LabelleakError, match=expected) as excinfo:
        read_idx(path)
    assert str(path) in one_line_error(excinfo)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((5, 4, 4), np.uint8), gz=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(LabelleakError, match="cannot read IDX file") as excinfo:
        read_idx(path)
    assert str(path) in one_line_error(excinfo)


@pytest.mark.parametrize(
    ("name", "sub"),
    [
        ("mnist", ""),
        ("mnist", "mnist"),
        ("mnist", "MNIST/raw"),
        ("fashion_mnist", ""),
        ("fashion_mnist", "fashion_mnist"),
        ("fashion_mnist", "fashion-mnist"),
        ("fashion_mnist", "FashionMNIST/raw"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_like_reads_idx_files(tmp_path, name, sub, gz):
    arrays = fake_arrays(1, (28, 28))
    write_mnist(tmp_path / sub, arrays, gz=gz)
    assert_arrays_equal(load_mnist_like(tmp_path, name), arrays)


def test_fashion_sub_folder_wins_over_top_level_files(tmp_path):
    write_mnist(tmp_path, fake_arrays(1, (28, 28)))
    fashion = fake_arrays(2, (28, 28))
    write_mnist(tmp_path / "fashion-mnist", fashion)
    assert_arrays_equal(load_mnist_like(tmp_path, "fashion_mnist"), fashion)


def test_load_mnist_like_prefers_npz(tmp_path):
    arrays = fake_arrays(3, (28, 28))
    np.savez(
        tmp_path / "mnist.npz",
        **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays, strict=True)),
    )
    write_mnist(tmp_path, fake_arrays(4, (28, 28)))
    assert_arrays_equal(load_mnist_like(tmp_path, "mnist"), arrays)


def test_mismatched_idx_counts_are_an_error(tmp_path):
    x_tr, y_tr, x_te, y_te = fake_arrays(5, (28, 28))
    write_mnist(tmp_path, (x_tr, y_tr[:-2], x_te, y_te))
    with pytest.raises(LabelleakError, match="7 train images but 5 train labels") as excinfo:
        load_mnist_like(tmp_path, "mnist")
    one_line_error(excinfo)


def test_missing_mnist_files_name_what_was_expected(tmp_path):
    with pytest.raises(LabelleakError) as excinfo:
        load_mnist_like(tmp_path, "mnist")
    message = one_line_error(excinfo)
    assert f"no MNIST data in {tmp_path}" in message
    assert "mnist.npz" in message and "--data-dir" in message
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert f"{f}[.gz]" in message


def test_partial_idx_set_says_which_files_lack(tmp_path):
    x_tr, _, _, _ = fake_arrays(6, (28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte", x_tr, gz=True)
    with pytest.raises(LabelleakError, match=r"lacks train-labels-idx1-ubyte\[\.gz\]"):
        load_mnist_like(tmp_path, "mnist")


def test_unknown_mnist_like_name(tmp_path):
    with pytest.raises(LabelleakError, match="choose one of: fashion_mnist, mnist"):
        load_mnist_like(tmp_path, "kmnist")


# --- npz -----------------------------------------------------------------------------------------


def test_load_npz_lists_missing_keys(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((2, 3, 3), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(LabelleakError, match="lacks array\\(s\\) y_train, x_test") as excinfo:
        load_npz(path)
    assert str(path) in one_line_error(excinfo)


def test_load_npz_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    objects = np.array([{"a": 1}], dtype=object)
    np.savez(path, x_train=objects, y_train=objects, x_test=objects, y_test=objects)
    with pytest.raises(LabelleakError, match="without pickle"):
        load_npz(path)


@pytest.mark.parametrize("content", ["npy", "junk"])
def test_load_npz_rejects_other_files(tmp_path, content):
    path = tmp_path / "mnist.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        path.write_bytes(b"junk")
    with pytest.raises(LabelleakError, match=r"is not an \.npz \(zip\) archive") as excinfo:
        load_npz(path)
    assert str(path) in one_line_error(excinfo)


def test_load_npz_rejects_non_uint8_images(tmp_path):
    x_tr, y_tr, x_te, y_te = fake_arrays(7, (4, 4))
    path = tmp_path / "x.npz"
    np.savez(path, x_train=x_tr / 255.0, y_train=y_tr, x_test=x_te, y_test=y_te)
    with pytest.raises(LabelleakError, match="train images are float64"):
        load_npz(path)


# --- CIFAR-10 ------------------------------------------------------------------------------------


class _Python2StylePickler(pickle._Pickler):
    """Writes bytes and str as Python 2 ``str`` opcodes, as in the official batches."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:  # numpy's dtype args such as "u1" were py2 str too
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def python2_style_dumps(obj: object) -> bytes:
    import io

    buffer = io.BytesIO()
    _Python2StylePickler(buffer, protocol=2).dump(obj)
    # numpy 1.x (and every Python 2 era pickle) names numpy.core, not numpy._core.
    return buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")


DUMPS = {
    "protocol2": lambda obj: pickle.dumps(obj, protocol=2),
    "protocol5": lambda obj: pickle.dumps(obj, protocol=5),
    "python2-style": python2_style_dumps,
}


def write_cifar(folder: Path, arrays, dumps=DUMPS["protocol2"]) -> None:
    """Write CHW-row batches: five training batches (split from x_train) and test_batch."""
    x_tr, y_tr, x_te, y_te = arrays
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(len(x_tr)), 5)
    batches = {f"data_batch_{i + 1}": (x_tr[p], y_tr[p]) for i, p in enumerate(parts)}
    batches["test_batch"] = (x_te, y_te)
    for name, (x, y) in batches.items():
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # HWC -> CHW rows, as distributed
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": rows}
        (folder / name).write_bytes(dumps(batch))


@pytest.mark.parametrize("dumps", DUMPS.values(), ids=DUMPS.keys())
@pytest.mark.parametrize("sub", ["cifar-10-batches-py", ""])
def test_load_cifar10_reads_python_batches(tmp_path, dumps, sub):
    arrays = fake_arrays(8, (32, 32, 3), n_train=11, n_test=3)
    write_cifar(tmp_path / sub, arrays, dumps)
    assert_arrays_equal(load_cifar10(tmp_path), arrays)


def test_cifar_chw_rows_become_hwc(tmp_path):
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[0, 1, 2, :] = (10, 20, 30)  # pixel (row 1, col 2) in R, G, B
    write_cifar(tmp_path, (np.repeat(x, 5, axis=0), np.zeros(5, np.int64), x, np.zeros(1)))
    rows = pickle.loads((tmp_path / "test_batch").read_bytes())[b"data"]
    assert [rows[0, c * 1024 + 1 * 32 + 2] for c in range(3)] == [10, 20, 30]
    assert load_cifar10(tmp_path)[2][0, 1, 2].tolist() == [10, 20, 30]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_cifar_batch_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    write_cifar(tmp_path, fake_arrays(9, (32, 32, 3), n_train=5, n_test=1))
    evil = {b"data": _Exploit(marker), b"labels": [0]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(LabelleakError, match=r"refusing to load .*data_batch_3: it asks for") as ei:
        load_cifar10(tmp_path)
    assert "system" in one_line_error(ei)
    assert not marker.exists()


def test_cifar_batch_with_other_globals_is_refused(tmp_path):
    write_cifar(tmp_path, fake_arrays(9, (32, 32, 3), n_train=5, n_test=1))
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Path("x")}, protocol=2))
    with pytest.raises(LabelleakError, match="it asks for pathlib"):
        load_cifar10(tmp_path)


def test_corrupt_cifar_batch(tmp_path):
    write_cifar(tmp_path, fake_arrays(9, (32, 32, 3), n_train=5, n_test=1))
    (tmp_path / "test_batch").write_bytes(b"\x80\x02}q\x00(")
    with pytest.raises(LabelleakError, match=r"cannot read CIFAR-10 batch .*test_batch"):
        load_cifar10(tmp_path)


def test_cifar_label_count_mismatch(tmp_path):
    write_cifar(tmp_path, fake_arrays(9, (32, 32, 3), n_train=5, n_test=2))
    rows = np.zeros((2, 3072), np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": rows, b"labels": [1]}))
    with pytest.raises(LabelleakError, match="2 test images but 1 test labels"):
        load_cifar10(tmp_path)


def test_missing_cifar_files_name_what_was_expected(tmp_path):
    write_cifar(tmp_path, fake_arrays(9, (32, 32, 3), n_train=5, n_test=1))
    (tmp_path / "data_batch_5").unlink()
    with pytest.raises(LabelleakError) as excinfo:
        load_cifar10(tmp_path)
    message = one_line_error(excinfo)
    assert f"no CIFAR-10 data in {tmp_path}" in message
    for name in ("cifar10.npz", "cifar-10-batches-py", "data_batch_1", "test_batch"):
        assert name in message


# --- SVHN ----------------------------------------------------------------------------------------


def write_svhn_mat(path: Path, x_hwc: np.ndarray, digits: np.ndarray) -> None:
    """Official layout: X is 32x32x3xN, y is Nx1 in 1..10 with 10 for the digit 0."""
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x_hwc.transpose(1, 2, 3, 0), "y": y})


@pytest.mark.parametrize("sub", ["", "svhn"])
def test_load_svhn_reads_mat_files(tmp_path, sub):
    x_tr, y_tr, x_te, y_te = fake_arrays(10, (32, 32, 3), n_train=6, n_test=3)
    y_tr[:2] = 0  # stored as 10
    write_svhn_mat(tmp_path / sub / "train_32x32.mat", x_tr, y_tr)
    write_svhn_mat(tmp_path / sub / "test_32x32.mat", x_te, y_te)
    raw = scipy.io.loadmat(tmp_path / sub / "train_32x32.mat")
    assert raw["X"].shape == (32, 32, 3, 6) and raw["y"].shape == (6, 1) and raw["y"].max() == 10
    assert_arrays_equal(load_svhn(tmp_path), (x_tr, y_tr, x_te, y_te))


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (np.zeros((32, 32, 3, 2), np.uint8), np.array([[1], [11]]), "labels span 1..11"),
        (np.zeros((32, 32, 3, 2), np.uint8), np.array([[0], [5]]), "labels span 0..5"),
        (
            np.zeros((3, 32, 32, 2), np.uint8),
            np.array([[1], [2]]),
            r"expected uint8 \(32, 32, 3, N\)",
        ),
        (np.zeros((32, 32, 3, 2), np.uint8), np.array([[1], [2], [3]]), r"expected \(2, 1\)"),
    ],
)
def test_load_svhn_validates(tmp_path, x, y, expected):
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    write_svhn_mat(tmp_path / "test_32x32.mat", np.zeros((1, 32, 32, 3), np.uint8), np.ones(1))
    with pytest.raises(LabelleakError, match=expected) as excinfo:
        load_svhn(tmp_path)
    assert "train_32x32.mat" in one_line_error(excinfo)


def test_load_svhn_rejects_non_mat_file(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"not a matlab file")
    (tmp_path / "test_32x32.mat").write_bytes(b"not a matlab file")
    with pytest.raises(LabelleakError, match="cannot read SVHN file"):
        load_svhn(tmp_path)


def test_missing_svhn_files_name_what_was_expected(tmp_path):
    with pytest.raises(LabelleakError) as excinfo:
        load_svhn(tmp_path)
    message = one_line_error(excinfo)
    assert f"no SVHN data in {tmp_path}" in message
    assert "svhn.npz" in message and "train_32x32.mat" in message and "test_32x32.mat" in message


# --- data directory ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "load",
    [
        lambda d: load_mnist_like(d, "mnist"),
        lambda d: load_mnist_like(d, "fashion_mnist"),
        load_cifar10,
        load_svhn,
    ],
)
def test_missing_data_dir(tmp_path, load):
    missing = tmp_path / "nowhere"
    with pytest.raises(LabelleakError) as excinfo:
        load(missing)
    message = one_line_error(excinfo)
    assert message.startswith(f"data directory {missing} does not exist;")
    assert "--data-dir" in message


# --- real data (../shared/data beside the repository) --------------------------------------------


def _shared(file: str) -> Path:
    if not (SHARED_DATA / file).is_file():
        pytest.skip(f"../shared/data/{file} not found: real-data test skipped")
    return SHARED_DATA


def _assert_real(arrays, train_shape, n_test) -> None:
    x_tr, y_tr, x_te, y_te = arrays
    assert x_tr.shape == train_shape and x_te.shape == (n_test, *train_shape[1:])
    assert x_tr.dtype == x_te.dtype == np.uint8
    assert y_tr.shape == (train_shape[0],) and y_te.shape == (n_test,)
    assert y_tr.dtype == y_te.dtype == np.int64
    for y in (y_tr, y_te):
        assert y.min() == 0 and y.max() == 9


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_mnist_like(name):
    data_dir = _shared(f"{name}.npz")
    _assert_real(load_mnist_like(data_dir, name), (60000, 28, 28), 10000)


def test_real_cifar10():
    _assert_real(load_cifar10(_shared("cifar10.npz")), (25000, 32, 32, 3), 10000)
