"""Image data sets: ``digits`` (scikit-learn, 8×8, 17 levels), ``mnist``, ``fashion-mnist``,
``cifar10`` (standard files in the data directory), with Glow's optional bit reduction.

``digits`` is scikit-learn's ``load_digits`` (the UCI optdigits test set: 1,797 images of
8×8 with values 0..16), shaped ``(1, 8, 8)``, 17 levels. Its split is fixed and independent
of the job seed: a stratified 1,157 / 280 / 360 train / val / test split, made by ranking the
images of each class in a ``RandomState(0)`` permutation and interleaving the classes by rank
fraction (so every prefix is stratified), then taking the first 360 as test, the next 280 as
validation, the rest as training.

``mnist`` and ``fashion-mnist`` read the IDX files (``{train,t10k}-images-idx3-ubyte.gz``)
from ``<data_dir>/mnist/`` and ``<data_dir>/fashion-mnist/``: 256 levels, shape
(1, 28, 28); train = the first 50,000 training images, validation = the last 10,000 (the
split of ``mnist.pkl.gz`` used by RealNVP, MAF and FFJORD), test = the 10,000 test images.
``cifar10`` reads CIFAR-10's *binary version* (``cifar-10-binary.tar.gz``) from
``<data_dir>/cifar-10-batches-bin/``: ``data_batch_{1..5}.bin`` and ``test_batch.bin``, each a
sequence of 3,073-byte records (one label byte 0..9, then 3,072 pixel bytes in channel-major
order: 1,024 red, 1,024 green, 1,024 blue, each row-major). 256 levels, shape (3, 32, 32);
train = the first 45,000 images of ``data_batch_1..5``, validation = the last 5,000 (MAF's
``datasets/cifar10.py``), test = ``test_batch``. The python version's batches are pickles,
which run code when loaded, so they are not read.

``n_bits`` (Glow, Kingma & Dhariwal 2018, ``openai/glow``): ``x ↦ ⌊x / 2^(8 − n_bits)⌋``,
``2^n_bits`` levels (Glow's 5-bit CelebA/CIFAR results).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import DataSet, register
from .errors import DataError
from .files import Archive, Digest, Source, corrupt, require

__all__ = [
    "DIGITS_SPLIT",
    "SOURCES",
    "read_cifar_bin",
    "read_idx",
    "reduce_bits",
    "stratified_order",
]

DIGITS_SPLIT = {"train": 1157, "val": 280, "test": 360}
DIGITS_SPLIT_SEED = 0


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of ``range(len(labels))`` whose every prefix is stratified by label.

    Each class is shuffled with ``RandomState(seed)``; its ``i``-th member of ``n_c`` gets the
    rank fraction ``(i + ½) / n_c``; the order sorts by (fraction, label).
    """
    rng = np.random.RandomState(seed)
    idx, frac, lab = [], [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        idx.append(members)
        frac.append((np.arange(len(members)) + 0.5) / len(members))
        lab.append(np.full(len(members), c))
    idx_a, frac_a, lab_a = np.concatenate(idx), np.concatenate(frac), np.concatenate(lab)
    return idx_a[np.lexsort((lab_a, frac_a))]


def reduce_bits(x: np.ndarray, n_bits: int, from_bits: int = 8) -> np.ndarray:
    """Glow's bit-depth reduction: ``⌊x / 2^(from_bits − n_bits)⌋``, levels ``2^n_bits``."""
    if not isinstance(n_bits, int) or isinstance(n_bits, bool) or not 1 <= n_bits <= from_bits:
        raise DataError(f"n_bits must be an int in [1, {from_bits}], got {n_bits!r}")
    return np.floor_divide(x, 2 ** (from_bits - n_bits))


@register(
    "digits",
    kind="discrete",
    event_shape=(1, 8, 8),
    levels=17,
    source="scikit-learn load_digits (UCI optdigits), 1,797 images 8x8, values 0..16",
    classes=10,
)
def load_digits(*, seed: int, data_dir: Path, download: bool) -> DataSet:
    """scikit-learn's digits with the fixed stratified 1,157 / 280 / 360 split."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None]  # (1797, 1, 8, 8)
    labels = np.asarray(bunch.target)
    order = stratified_order(labels, DIGITS_SPLIT_SEED)
    n_test, n_val = DIGITS_SPLIT["test"], DIGITS_SPLIT["val"]
    test_i, val_i, train_i = (
        np.sort(order[:n_test]),
        np.sort(order[n_test : n_test + n_val]),
        np.sort(order[n_test + n_val :]),
    )
    return DataSet(
        name="digits",
        kind="discrete",
        event_shape=(1, 8, 8),
        levels=17,
        train=torch.from_numpy(images[train_i]),
        val=torch.from_numpy(images[val_i]),
        test=torch.from_numpy(images[test_i]),
        splits_info={
            "method": "stratified by class, fixed (RandomState(0)), independent of the job seed",
            "split_seed": DIGITS_SPLIT_SEED,
        },
        source="scikit-learn load_digits (UCI optdigits)",
        labels={"train": torch.from_numpy(labels[train_i]).long(),
                "val": torch.from_numpy(labels[val_i]).long(),
                "test": torch.from_numpy(labels[test_i]).long()},
        classes=10,
    )


# ── file-based images ────────────────────────────────────────────────────────────────
_IDX_FILES = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
_CIFAR_DIR = "cifar-10-batches-bin"
_CIFAR_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte + pixels
# Published MD5s: torchvision's MNIST / FashionMNIST resources (Fashion-MNIST's README lists
# the same), the CIFAR page (www.cs.toronto.edu/~kriz/cifar.html) for the binary version.
_IDX_MD5 = {
    "mnist": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3"},
    "fashion-mnist": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                      "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79"},
}
CIFAR_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
SOURCES = {
    "mnist": Source(
        files=tuple(f"mnist/{f}" for f in _IDX_FILES),
        where="LeCun, Cortes & Burges, the MNIST database (yann.lecun.com/exdb/mnist)",
        direct={f"mnist/{f}": tuple(m + f for m in _MNIST_MIRRORS) for f in _IDX_FILES},
        digests={f"mnist/{f}": Digest("md5", _IDX_MD5["mnist"][f]) for f in _IDX_FILES},
    ),
    "fashion-mnist": Source(
        files=tuple(f"fashion-mnist/{f}" for f in _IDX_FILES),
        where="Xiao, Rasul & Vollgraf 2017, Fashion-MNIST (github.com/zalandoresearch/"
        "fashion-mnist)",
        direct={f"fashion-mnist/{f}": tuple(m + f for m in _FASHION_MIRRORS) for f in _IDX_FILES},
        digests={f"fashion-mnist/{f}": Digest("md5", _IDX_MD5["fashion-mnist"][f])
                 for f in _IDX_FILES},
    ),
    "cifar10": Source(
        files=tuple(f"{_CIFAR_DIR}/{b}" for b in _CIFAR_BATCHES),
        where="Krizhevsky 2009, CIFAR-10 binary version (www.cs.toronto.edu/~kriz/cifar.html)",
        archive=Archive(
            ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            "cifar-10-binary.tar.gz",
            {f"{_CIFAR_DIR}/{b}": f"{_CIFAR_DIR}/{b}" for b in _CIFAR_BATCHES},
            Digest("md5", CIFAR_BINARY_MD5),
        ),
    ),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) of unsigned bytes: magic ``0x0000 08 ndim``, big-endian
    int32 sizes, then the data. Anything else is a DataError naming the file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise corrupt(path, err) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise corrupt(path, "not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise corrupt(path, "IDX header cut short")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise corrupt(path, f"IDX header says {shape} but holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch of CIFAR-10's binary version: records of one label byte (0..9) and 3,072
    pixel bytes (channel-major, each channel row-major). Returns the images ``(N, 3, 32, 32)``
    and the labels ``(N,)``, both uint8; anything else is a DataError naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise corrupt(path, err) from None
    if not raw or len(raw) % CIFAR_RECORD:
        raise corrupt(path, f"{len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte "
                      "records (1 label byte + 3,072 pixel bytes)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        row = int(np.argmax(labels > 9))
        raise corrupt(path, f"record {row} has label byte {int(labels[row])}, expected 0..9: "
                      "not a CIFAR-10 binary batch")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _image_dataset(
    name: str,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    n_bits: int,
    info: dict[str, Any],
    source: str,
) -> DataSet:
    if n_bits != 8:
        train, val, test = (reduce_bits(a, n_bits) for a in (train, val, test))
    shape = tuple(train.shape[1:])
    return DataSet(
        name=name,
        kind="discrete",
        event_shape=shape,
        levels=2**n_bits,
        train=torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32)),
        val=torch.from_numpy(np.ascontiguousarray(val, dtype=np.float32)),
        test=torch.from_numpy(np.ascontiguousarray(test, dtype=np.float32)),
        splits_info=info,
        source=source,
        options={"n_bits": n_bits},
    )


def _load_idx_set(name: str, data_dir: Path, download: bool, n_bits: int) -> DataSet:
    reduce_bits(np.zeros(1, dtype=np.uint8), n_bits)  # validate before touching files
    paths = require(name, SOURCES[name], data_dir, download)
    train_all = read_idx(paths[f"{name}/{_IDX_FILES[0]}"])
    test = read_idx(paths[f"{name}/{_IDX_FILES[1]}"])
    for path, arr in (
        (paths[f"{name}/{_IDX_FILES[0]}"], train_all),
        (paths[f"{name}/{_IDX_FILES[1]}"], test),
    ):
        if arr.ndim != 3 or arr.shape[1:] != (28, 28):
            raise corrupt(path, f"images of shape {arr.shape[1:]}, expected 28x28")
    n_val = min(10_000, len(train_all) // 6)  # 10,000 of 60,000; a sixth of smaller files
    info = {
        "method": f"train = first {len(train_all) - n_val} of the training file, val = "
        f"last {n_val}, test = the t10k file (mnist.pkl.gz split)",
        "n_bits": n_bits,
    }
    return _image_dataset(
        name,
        train_all[:-n_val, None],
        train_all[-n_val:, None],
        test[:, None],
        n_bits,
        info,
        SOURCES[name].where,
    )


@register(
    "mnist",
    kind="discrete",
    event_shape=(1, 28, 28),
    levels=256,
    source="MNIST IDX files under <data_dir>/mnist/",
)
def load_mnist(*, seed: int, data_dir: Path, download: bool, n_bits: int = 8) -> DataSet:
    """MNIST, 50,000 / 10,000 / 10,000, 256 levels (or ``2^n_bits``)."""
    return _load_idx_set("mnist", data_dir, download, n_bits)


@register(
    "fashion-mnist",
    kind="discrete",
    event_shape=(1, 28, 28),
    levels=256,
    source="Fashion-MNIST IDX files under <data_dir>/fashion-mnist/",
)
def load_fashion_mnist(*, seed: int, data_dir: Path, download: bool, n_bits: int = 8) -> DataSet:
    """Fashion-MNIST, 50,000 / 10,000 / 10,000, 256 levels (or ``2^n_bits``)."""
    return _load_idx_set("fashion-mnist", data_dir, download, n_bits)


@register(
    "cifar10",
    kind="discrete",
    event_shape=(3, 32, 32),
    levels=256,
    source="CIFAR-10 binary batches under <data_dir>/cifar-10-batches-bin/",
)
def load_cifar10(*, seed: int, data_dir: Path, download: bool, n_bits: int = 8) -> DataSet:
    """CIFAR-10, 45,000 / 5,000 / 10,000 (MAF's split), 256 levels (or ``2^n_bits``)."""
    reduce_bits(np.zeros(1, dtype=np.uint8), n_bits)
    try:
        paths = require("cifar10", SOURCES["cifar10"], data_dir, download)
    except DataError as err:
        if (data_dir / "cifar-10-batches-py").is_dir():
            raise DataError(f"{err}\n{data_dir / 'cifar-10-batches-py'} (the python version) "
                            "is not read: its batches are pickles, which can run code; use "
                            "the binary version (cifar-10-binary.tar.gz)") from None
        raise
    train_all = np.concatenate(
        [read_cifar_bin(paths[f"{_CIFAR_DIR}/{b}"])[0] for b in _CIFAR_BATCHES[:5]]
    )
    test = read_cifar_bin(paths[f"{_CIFAR_DIR}/test_batch.bin"])[0]
    split = int(0.9 * len(train_all))
    info = {
        "method": f"MAF: train = first {split} of data_batch_1..5, val = the last "
        f"{len(train_all) - split}, test = test_batch",
        "n_bits": n_bits,
    }
    return _image_dataset(
        "cifar10",
        train_all[:split],
        train_all[split:],
        test,
        n_bits,
        info,
        SOURCES["cifar10"].where,
    )
