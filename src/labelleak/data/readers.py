"""Readers for the official on-disk formats of MNIST, Fashion-MNIST, CIFAR-10 and SVHN.

Every loader returns raw numpy arrays ``(x_train, y_train, x_test, y_test)``: ``x`` is uint8 of
shape ``(N, H, W)`` (grey) or ``(N, H, W, C)`` (colour, channels last) and ``y`` is int64 of shape
``(N,)`` with class ids ``0..9``. Each loader first looks for ``<name>.npz`` in the data directory
(the four arrays under those names), then for the files the dataset's authors distribute.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelleak.errors import LabelleakError, unknown_choice

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_HINT = "pass --data-dir or set data_dir in the config"

# IDX type codes from the format's specification; multi-byte values are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_SUBDIRS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),
}
_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or not) into an array of the shape its header declares.

    ``*-images-idx3-ubyte`` give uint8 ``(N, H, W)``; ``*-labels-idx1-ubyte`` give uint8 ``(N,)``.
    Multi-byte types come back in native byte order.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise LabelleakError(f"cannot read IDX file {path}: {_one_line(exc)}") from exc
    if len(raw) < 4 or raw[0:2] != b"\x00\x00":
        raise LabelleakError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
            "replace it with the official download"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise LabelleakError(
            f"{path} has unknown IDX type code 0x{code:02X}; expected one of "
            + ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise LabelleakError(f"{path} has a truncated or empty IDX header; re-download the file")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise LabelleakError(
            f"{path} holds {len(raw) - header} bytes of data but its header {shape} needs "
            f"{expected}; the file is truncated or corrupt, re-download it"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def load_npz(path: Path) -> Arrays:
    """Load ``x_train, y_train, x_test, y_test`` from an ``.npz`` file (no pickled objects).

    ``x`` must be uint8 ``(N, H, W)`` or ``(N, H, W, C)``; labels come back as int64 ``(N,)``.
    """
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # numpy would blame pickles for any junk
        raise LabelleakError(f"{path} is not an .npz (zip) archive; save it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            arrays = [npz[k] for k in NPZ_KEYS if k not in missing]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LabelleakError(
            f"cannot read {path} as .npz without pickle: {_one_line(exc)}"
        ) from exc
    if missing:
        raise LabelleakError(
            f"{path} lacks array(s) {', '.join(missing)}; an .npz dataset needs "
            f"{', '.join(NPZ_KEYS)}"
        )
    return _checked(str(path), *arrays)


def load_mnist_like(data_dir: Path, name: str) -> Arrays:
    """Load MNIST or Fashion-MNIST (``name`` is ``"mnist"`` or ``"fashion_mnist"``).

    Returns uint8 images ``(60000, 28, 28)`` / ``(10000, 28, 28)`` and int64 labels for the
    official data. Reads ``<data_dir>/<name>.npz`` if present, else the four IDX files (raw or
    ``.gz``) from the dataset's usual sub-folders, then from ``data_dir`` itself.
    """
    if name not in _IDX_SUBDIRS:
        raise unknown_choice("IDX dataset", name, _IDX_SUBDIRS)
    data_dir = _existing_dir(data_dir)
    npz = data_dir / f"{name}.npz"
    if npz.is_file():
        return load_npz(npz)
    # Name-specific folders come first so that a data_dir holding MNIST's files at its top level
    # and Fashion-MNIST in a sub-folder never hands MNIST out as Fashion-MNIST.
    folders = [data_dir / sub for sub in _IDX_SUBDIRS[name]] + [data_dir]
    partial = ""
    for folder in folders:
        found = [_first_file(folder, (f, f + ".gz")) for f in IDX_FILES]
        if all(found):
            x_tr, y_tr, x_te, y_te = (read_idx(p) for p in found if p)
            return _checked(str(folder), x_tr, y_tr, x_te, y_te)
        if any(found) and not partial:
            lacking = [f for f, p in zip(IDX_FILES, found, strict=True) if p is None]
            partial = f" ({folder} lacks {', '.join(f + '[.gz]' for f in lacking)})"
    where = ", ".join(str(f) for f in folders)
    raise LabelleakError(
        f"no {_TITLES[name]} data in {data_dir}: expected {name}.npz or the four IDX files "
        f"({', '.join(f + '[.gz]' for f in IDX_FILES)}) in one of {where}{partial}; {_HINT}"
    )


def load_cifar10(data_dir: Path) -> Arrays:
    """Load CIFAR-10: uint8 images ``(N, 32, 32, 3)`` (HWC, RGB) and int64 labels ``(N,)``.

    Reads ``<data_dir>/cifar10.npz`` if present, else the official python batches
    (``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, 10000 images each) from
    ``<data_dir>/cifar-10-batches-py`` or from ``data_dir`` itself. The batches are unpickled with
    a loader that only rebuilds numpy arrays and plain containers.
    """
    data_dir = _existing_dir(data_dir)
    npz = data_dir / "cifar10.npz"
    if npz.is_file():
        return load_npz(npz)
    for folder in (data_dir / CIFAR_FOLDER, data_dir):
        if all((folder / b).is_file() for b in CIFAR_BATCHES):
            train = [_read_cifar_batch(folder / b) for b in CIFAR_BATCHES[:-1]]
            x_te, y_te = _read_cifar_batch(folder / CIFAR_BATCHES[-1])
            x_tr = np.concatenate([x for x, _ in train])
            y_tr = np.concatenate([y for _, y in train])
            return _checked(str(folder), x_tr, y_tr, x_te, y_te)
    raise LabelleakError(
        f"no CIFAR-10 data in {data_dir}: expected cifar10.npz or the folder {CIFAR_FOLDER} "
        f"({', '.join(CIFAR_BATCHES)}) there or those files in it directly; {_HINT}"
    )


def load_svhn(data_dir: Path) -> Arrays:
    """Load SVHN (cropped digits): uint8 images ``(N, 32, 32, 3)`` and int64 labels ``0..9``.

    Reads ``<data_dir>/svhn.npz`` if present, else the official MATLAB files ``train_32x32.mat``
    and ``test_32x32.mat`` from ``data_dir`` or ``data_dir/svhn``. Those store ``X`` as
    ``(32, 32, 3, N)`` and ``y`` as ``(N, 1)`` in ``1..10``, where 10 is the digit 0.
    """
    data_dir = _existing_dir(data_dir)
    npz = data_dir / "svhn.npz"
    if npz.is_file():
        return load_npz(npz)
    for folder in (data_dir, data_dir / "svhn"):
        if all((folder / f).is_file() for f in SVHN_FILES):
            (x_tr, y_tr), (x_te, y_te) = (_read_svhn_mat(folder / f) for f in SVHN_FILES)
            return _checked(str(folder), x_tr, y_tr, x_te, y_te)
    raise LabelleakError(
        f"no SVHN data in {data_dir}: expected svhn.npz or {' and '.join(SVHN_FILES)} there or "
        f"in {data_dir / 'svhn'}; {_HINT}"
    )


# --- helpers -------------------------------------------------------------------------------------


def _existing_dir(data_dir: Path) -> Path:
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise LabelleakError(f"data directory {data_dir} does not exist; {_HINT}")
    if not data_dir.is_dir():
        raise LabelleakError(f"data directory {data_dir} is not a directory; {_HINT}")
    return data_dir


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _first_file(folder: Path, names: Sequence[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _checked(source: str, x_train: Any, y_train: Any, x_test: Any, y_test: Any) -> Arrays:
    """Enforce the common contract (uint8 images, matching counts, int64 labels 0..9)."""
    out: list[np.ndarray] = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise LabelleakError(
                f"{source}: {split} images are {x.dtype} of shape {x.shape}; expected uint8 "
                "(N, H, W) or (N, H, W, C)"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise LabelleakError(
                f"{source}: {split} labels are {y.dtype} of shape {y.shape}; expected integers (N,)"
            )
        if len(x) != len(y):
            raise LabelleakError(
                f"{source}: {len(x)} {split} images but {len(y)} {split} labels; the files do "
                "not belong together, re-download them"
            )
        if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise LabelleakError(
                f"{source}: {split} labels span {y.min()}..{y.max()}; expected 0..{NUM_CLASSES - 1}"
            )
        out += [x, y.astype(np.int64)]
    return out[0], out[1], out[2], out[3]


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals a pickled numpy array may name, under numpy 1.x and 2.x module paths."""
    # numpy 2 moved numpy.core to numpy._core; pickles from either era name either path.
    core = importlib.import_module("numpy._core" if np.__version__[:2] != "1." else "numpy.core")
    multiarray, numeric = core.multiarray, core.numeric
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _empty_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
    }
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 pickles bytes at protocol < 3 as _codecs.encode(text, "latin1"); allow only that.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected _codecs.encode call with {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # ... and empty bytes as bytes(); any argument (bytes(10**12)) would be an allocation bomb.
    if args:
        raise pickle.UnpicklingError("unexpected bytes() call with arguments")
    return b""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; any other global is refused."""

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="bytes")  # the batches were pickled by Python 2
        self._source = source
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise LabelleakError(
                f"refusing to load {self._source}: it asks for {module}.{name}, which a CIFAR-10 "
                "batch never needs; replace it with the official download"
            ) from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch -> uint8 images ``(N, 32, 32, 3)`` and labels ``(N,)``."""
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, path).load()
    except LabelleakError:
        raise
    except Exception as exc:  # a corrupt pickle can fail in many ways; all mean the same here
        raise LabelleakError(f"cannot read CIFAR-10 batch {path}: {_one_line(exc)}") from exc
    if not isinstance(batch, dict):
        raise LabelleakError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise LabelleakError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise LabelleakError(
            f"{path}: data is {data.dtype} of shape {data.shape}; expected uint8 (N, 3072)"
        )
    # Each row is a 3x32x32 image stored channel by channel (CHW); the package wants HWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(labels).reshape(-1)


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``*_32x32.mat`` -> uint8 images ``(N, 32, 32, 3)`` and labels ``0..9``."""
    from scipy.io import loadmat  # scipy is slow to import and only SVHN needs it

    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as exc:  # scipy raises ValueError, TypeError, NotImplementedError (v7.3)...
        raise LabelleakError(
            f"cannot read SVHN file {path} as MATLAB v5: {_one_line(exc)}"
        ) from exc
    if "X" not in mat or "y" not in mat:
        raise LabelleakError(f"{path} lacks the variable X or y of an SVHN *_32x32.mat file")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise LabelleakError(
            f"{path}: X is {x.dtype} of shape {x.shape}; expected uint8 (32, 32, 3, N)"
        )
    if y.ndim not in (1, 2) or y.size != x.shape[3] or (y.ndim == 2 and y.shape[1] != 1):
        raise LabelleakError(f"{path}: y has shape {y.shape}; expected ({x.shape[3]}, 1)")
    y = y.reshape(-1).astype(np.int64)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise LabelleakError(f"{path}: labels span {y.min()}..{y.max()}; SVHN uses 1..10")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y % 10  # label 10 is the digit 0
