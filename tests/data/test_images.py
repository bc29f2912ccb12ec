"""Image loaders on small files written in the real formats (IDX gz, CIFAR-10 binary
batches), downloads checked against digests, and pickles planted in a data directory."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import data
from harness.data import DataError, images
from harness.data.files import Digest


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


def cifar_bin(x: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10's binary format: per image one label byte, then its 3,072 pixel bytes."""
    return np.concatenate([labels.astype(np.uint8)[:, None], x.astype(np.uint8)], 1).tobytes()


def write_cifar(
    root: Path, per_batch: int = 20, n_test: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(1)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    batches = []
    for i in range(1, 6):
        x = rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8)
        batches.append(x)
        (d / f"data_batch_{i}.bin").write_bytes(cifar_bin(x, rng.randint(0, 10, per_batch)))
    test = rng.randint(0, 256, (n_test, 3072)).astype(np.uint8)
    (d / "test_batch.bin").write_bytes(cifar_bin(test, rng.randint(0, 10, n_test)))
    return np.concatenate(batches), test


class _WritesMarker:
    """A pickle payload that creates a file when it is unpickled (it must never run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


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
    batch3 = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    batch3.write_bytes(b"junk")
    with pytest.raises(DataError, match="data_batch_3.bin.*whole number of 3073-byte records"):
        data.load("cifar10", data_dir=tmp_path)
    x = np.zeros((2, 3072), dtype=np.uint8)
    batch3.write_bytes(cifar_bin(x, np.array([3, 200])))
    with pytest.raises(DataError, match="data_batch_3.bin.*record 1 has label byte 200"):
        data.load("cifar10", data_dir=tmp_path)


def test_a_pickle_planted_in_the_cifar_directories_does_not_run(tmp_path: Path) -> None:
    """The python version's batches are never unpickled, and a pickle in the binary
    version's place is a corrupt file: either way the payload's marker is not written."""
    marker = tmp_path / "marker"
    payload = pickle.dumps({"data": _WritesMarker(marker)})
    py_dir = tmp_path / "cifar-10-batches-py"  # the python version, planted alone
    py_dir.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (py_dir / name).write_bytes(payload)
    with pytest.raises(DataError, match="cifar-10-batches-py.*not read.*pickles"):
        data.load("cifar10", data_dir=tmp_path)
    write_cifar(tmp_path)  # and in the binary version's files
    (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_1.bin"):
        data.load("cifar10", data_dir=tmp_path)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: unpickled, it writes the marker
    assert marker.exists()


def test_download_fetches_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real urllib path against file:// mirrors (the first one dead): no network."""
    src = tmp_path / "mirror"
    train, _ = write_mnist_like(src, "files")
    direct = {
        f"mnist/{f}": ((src / "dead" / f).as_uri(), (src / "files" / f).as_uri())
        for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    }
    digests = {
        rel: Digest("md5", hashlib.md5(Path(urls[1].removeprefix("file://")).read_bytes())
                    .hexdigest())
        for rel, urls in direct.items()
    }
    monkeypatch.setitem(images.SOURCES, "mnist", dataclasses.replace(
        images.SOURCES["mnist"], direct=direct, digests=digests))
    ds = data.load("mnist", data_dir=tmp_path / "data", download=True)
    assert torch.equal(ds.train[:, 0], torch.from_numpy(train[:500]).float())
    assert not list((tmp_path / "data").rglob("*.part"))


def test_a_download_with_the_wrong_digest_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "mirror"
    write_mnist_like(src, "files")
    direct = {f"mnist/{f}": ((src / "files" / f).as_uri(),)
              for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")}
    wrong = {rel: Digest("md5", "0" * 32) for rel in direct}
    monkeypatch.setitem(images.SOURCES, "mnist", dataclasses.replace(
        images.SOURCES["mnist"], direct=direct, digests=wrong))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*checksum mismatch "
                       "\\(md5 [0-9a-f]{32}, expected 0{32}\\); the download was deleted"):
        data.load("mnist", data_dir=tmp_path / "data", download=True)
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def _cifar_archive(root: Path) -> tuple[Path, np.ndarray]:
    """A cifar-10-binary.tar.gz laid out as the real one (cifar-10-batches-bin/...)."""
    tar_path = root / "cifar-10-binary.tar.gz"
    rng = np.random.RandomState(2)
    images_all = rng.randint(0, 256, (60, 3072)).astype(np.uint8)
    with tarfile.open(tar_path, "w:gz") as tar:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for k, name in enumerate(names):
            raw = cifar_bin(images_all[10 * k: 10 * k + 10], rng.randint(0, 10, 10))
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return tar_path, images_all


def test_cifar10_download_checks_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real download path (urllib + tarfile) from a file:// URL, against the archive's
    digest; the published digest is the one on the CIFAR page."""
    assert images.SOURCES["cifar10"].archive.digest == Digest(
        "md5", "c32a1d4ab5d03f1284b67883e8d87530")
    assert images.SOURCES["cifar10"].archive.urls == (
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",)
    (tmp_path / "src").mkdir()
    tar_path, images_all = _cifar_archive(tmp_path / "src")
    real = images.SOURCES["cifar10"].archive
    good = dataclasses.replace(real, urls=(tar_path.as_uri(),), digest=Digest(
        "md5", hashlib.md5(tar_path.read_bytes()).hexdigest()))
    monkeypatch.setitem(images.SOURCES, "cifar10",
                        dataclasses.replace(images.SOURCES["cifar10"], archive=good))
    ds = data.load("cifar10", data_dir=tmp_path / "data", download=True)
    assert torch.equal(ds.test.reshape(10, -1), torch.from_numpy(images_all[50:]).float())
    # a kept archive that does not match is refused, not extracted
    kept = tmp_path / "data" / "cifar-10-binary.tar.gz"
    assert kept.is_file()
    (tmp_path / "data" / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    kept.write_bytes(kept.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz: checksum mismatch.*delete it"):
        data.load("cifar10", data_dir=tmp_path / "data", download=True)
    # a download that does not match is deleted
    bad = dataclasses.replace(good, digest=Digest("md5", "f" * 32))
    monkeypatch.setitem(images.SOURCES, "cifar10",
                        dataclasses.replace(images.SOURCES["cifar10"], archive=bad))
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz.*checksum mismatch"):
        data.load("cifar10", data_dir=tmp_path / "fresh", download=True)
    assert not [p for p in (tmp_path / "fresh").rglob("*") if p.is_file()]


def test_every_download_has_a_published_digest() -> None:
    """Each source names the digest its publisher lists (MD5 for these four)."""
    from harness.data import tabular

    for source in list(images.SOURCES.values()) + list(tabular.SOURCES.values()):
        digests = ([source.archive.digest] if source.archive else
                   [source.digests[rel] for rel in source.direct])
        assert digests and all(d.algorithm in ("md5", "sha256") for d in digests)
    assert images.SOURCES["mnist"].digests["mnist/train-images-idx3-ubyte.gz"].hexdigest == (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873")
    assert tabular.SOURCES["gas"].archive.digest.hexdigest == "9b9c9b0375315ad270eba4ce80c093ab"
    with pytest.raises(ValueError, match="no published digest"):
        dataclasses.replace(images.SOURCES["mnist"], digests={})
    with pytest.raises(ValueError, match="32 lower-case hex"):
        Digest("md5", "ABC")
