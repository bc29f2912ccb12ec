"""Image loaders on small files written in the real formats (IDX gz, CIFAR python batches)."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import data
from harness.data import DataError, images


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> None:
    """The IDX format: 0x0000, type 0x08 (ubyte), ndim, big-endian int32 sizes, bytes."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_mnist_like(
    root: Path, sub: str, n_train: int = 600, n_test: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    train = rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8)
    test = rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8)
    write_idx(root / sub / "train-images-idx3-ubyte.gz", train)
    write_idx(root / sub / "t10k-images-idx3-ubyte.gz", test)
    return train, test


def write_cifar(
    root: Path, per_batch: int = 20, n_test: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(1)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = []
    for i in range(1, 6):
        x = rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8)
        batches.append(x)
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": x, "labels": list(rng.randint(0, 10, per_batch))}, f)
    test = rng.randint(0, 256, (n_test, 3072)).astype(np.uint8)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": test, "labels": list(rng.randint(0, 10, n_test))}, f)
    return np.concatenate(batches), test


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_sets(tmp_path: Path, name: str) -> None:
    train, test = write_mnist_like(tmp_path, name)
    ds = data.load(name, data_dir=tmp_path)
    assert (ds.kind, ds.event_shape, ds.levels) == ("discrete", (1, 28, 28), 256)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (500, 100, 100)  # last sixth is val
    assert torch.equal(ds.train[:, 0], torch.from_numpy(train[:500]).float())
    assert torch.equal(ds.val[:, 0], torch.from_numpy(train[500:]).float())
    assert torch.equal(ds.test[:, 0], torch.from_numpy(test).float())
    assert ds.params()["data.n_bits"] == 8


def test_bit_reduction(tmp_path: Path) -> None:
    train, _ = write_mnist_like(tmp_path, "mnist")
    ds = data.load("mnist", data_dir=tmp_path, n_bits=5)
    assert ds.levels == 32 and ds.train.max() <= 31
    assert torch.equal(ds.train[:, 0], torch.from_numpy(train[:500] // 8).float())
    assert ds.fingerprint != data.load("mnist", data_dir=tmp_path).fingerprint
    with pytest.raises(DataError, match="n_bits must be an int in \\[1, 8\\]"):
        data.load("mnist", data_dir=tmp_path, n_bits=9)


def test_cifar10(tmp_path: Path) -> None:
    train, test = write_cifar(tmp_path)
    ds = data.load("cifar10", data_dir=tmp_path)
    assert (ds.event_shape, ds.levels) == ((3, 32, 32), 256)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (90, 10, 10)  # MAF: 90 % / 10 %
    # channel-major: pixel (c, h, w) of image n is data[n, 1024 c + 32 h + w]
    n, c, h, w = 7, 2, 5, 30
    assert ds.train[n, c, h, w] == train[n, 1024 * c + 32 * h + w]
    assert ds.val[3, 1, 0, 0] == train[93, 1024]
    assert torch.equal(ds.test.reshape(10, -1), torch.from_numpy(test).float())


def test_missing_and_corrupt_image_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.load("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and "yann.lecun.com" in msg
    train_file = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    write_mnist_like(tmp_path, "mnist")
    train_file.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"ab"))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*holds 2 bytes"):
        data.load("mnist", data_dir=tmp_path)
    train_file.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + b"\x00" * 12))  # float IDX
    with pytest.raises(DataError, match="bad magic"):
        data.load("mnist", data_dir=tmp_path)
    train_file.write_bytes(gzip.compress(b"x" * 1000)[:30])  # truncated gzip
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*corrupt"):
        data.load("mnist", data_dir=tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"junk")
    with pytest.raises(DataError, match="data_batch_3"):
        data.load("cifar10", data_dir=tmp_path)


def test_download_fetches_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real urllib path against file:// mirrors (the first one dead): no network."""
    src = tmp_path / "mirror"
    train, _ = write_mnist_like(src, "files")
    direct = {
        f"mnist/{f}": ((src / "dead" / f).as_uri(), (src / "files" / f).as_uri())
        for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    }
    monkeypatch.setitem(
        images.SOURCES, "mnist", dataclasses.replace(images.SOURCES["mnist"], direct=direct)
    )
    ds = data.load("mnist", data_dir=tmp_path / "data", download=True)
    assert torch.equal(ds.train[:, 0], torch.from_numpy(train[:500]).float())
    assert not list((tmp_path / "data").rglob("*.part"))
