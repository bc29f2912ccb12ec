"""Tabular loaders on small files written in the MAF archive's real formats."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness import data
from harness.data import DataError, tabular
from harness.data.files import Archive, Digest
from harness.data.safe_pickle import read_frame_pickle


def _sizes(n: int) -> tuple[int, int, int]:
    """MAF's split: test = int(0.1 N), val = int(0.1 (N − test))."""
    n_test = int(0.1 * n)
    n_val = int(0.1 * (n - n_test))
    return n - n_test - n_val, n_val, n_test


def _assert_standardised(x: torch.Tensor, ddof: int) -> None:
    x64 = x.double()
    assert torch.allclose(x64.mean(0), torch.zeros(x.shape[1], dtype=torch.float64), atol=1e-5)
    std = x64.std(0, correction=ddof)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-5)


def test_power_protocol(tmp_path: Path) -> None:
    """Columns 3 and 1 go, rows are shuffled with RandomState(42), the split is 10 % / 10 %,
    train+val are standardised. Raw column j is 1000·sin((j+1)·i/97) of the row index i,
    except the last (time, never noised) which is i itself: so the output reveals both the
    column map and the row permutation."""
    n = 1000
    i = np.arange(n, dtype=np.float64)
    raw = np.stack([1000 * np.sin((j + 1) * i / 97) for j in range(7)] + [i], 1)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", raw)
    ds = data.load("power", data_dir=tmp_path)
    assert ds.event_shape == (6,) and ds.kind == "continuous"
    assert (len(ds.train), len(ds.val), len(ds.test)) == _sizes(n)
    _assert_standardised(torch.cat([ds.train, ds.val]), ddof=0)
    out = torch.cat([ds.train, ds.val, ds.test]).double().numpy()
    # rows: the time column, un-standardised, is the RandomState(42) permutation
    t = out[:, 5]
    order = np.round((t - t.min()) / (t.max() - t.min()) * (n - 1)).astype(int)
    perm = np.arange(n)
    np.random.RandomState(42).shuffle(perm)
    assert np.array_equal(order, perm)
    # columns: output c correlates with raw column [0, 2, 4, 5, 6][c]
    for c, j in enumerate([0, 2, 4, 5, 6]):
        corr = np.corrcoef(out[:, c], raw[perm, j])[0, 1]
        assert corr > 0.999


def _gas_frame(n: int = 500) -> tuple[pd.DataFrame, list[str]]:
    """A frame shaped like the archive's: Time, Meth, Eth, then sensor columns in which
    eight near-duplicate pairs must lose their first member."""
    rng = np.random.RandomState(0)
    cols: dict[str, np.ndarray] = {"Time": np.arange(n), "Meth": rng.rand(n), "Eth": rng.rand(n)}
    keep = []
    for k in range(8):
        base = rng.randn(n)
        cols[f"dup{k}"] = base + 0.01 * rng.randn(n)
        cols[f"s{k}"] = base
        keep.append(f"s{k}")
    return pd.DataFrame(cols), keep


def test_gas_protocol(tmp_path: Path) -> None:
    """Meth/Eth/Time dropped; of each near-duplicate pair the first column is dropped (it is
    the first with a correlation above 0.98); the rest standardised on the full data; no
    shuffle."""
    n = 500
    frame, keep = _gas_frame(n)
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    ds = data.load("gas", data_dir=tmp_path)
    assert ds.event_shape == (8,)
    assert (len(ds.train), len(ds.val), len(ds.test)) == _sizes(n)
    kept = frame[keep]
    expected = ((kept - kept.mean()) / kept.std()).to_numpy()
    got = torch.cat([ds.train, ds.val, ds.test]).double().numpy()
    assert np.allclose(got, expected, atol=1e-6)


# Module paths as pandas 0.19/0.20 and NumPy 1.x wrote them (the MAF archive is from 2017).
_LEGACY_NAMES = {
    b"cpandas\nDataFrame\n": b"cpandas.core.frame\nDataFrame\n",
    b"cpandas.core.internals.managers\nBlockManager\n": b"cpandas.core.internals\nBlockManager\n",
    b"cpandas.core.indexes.base\n_new_Index\n": b"cpandas.indexes.base\n_new_Index\n",
    b"cpandas\nIndex\n": b"cpandas.indexes.numeric\nInt64Index\n",
    b"cpandas\nRangeIndex\n": b"cpandas.indexes.range\nRangeIndex\n",
    b"cnumpy._core.multiarray\n_reconstruct\n": b"cnumpy.core.multiarray\n_reconstruct\n",
}


def test_gas_pickles_of_every_protocol_and_older_pandas_names(tmp_path: Path) -> None:
    frame, _ = _gas_frame(60)
    path = tmp_path / "f.pickle"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps(frame, protocol=protocol))
        assert read_frame_pickle(path).equals(frame), protocol
    # object column labels and an integer index, with the names older versions used: protocol
    # 2 writes each global as text, so renaming them keeps the stream valid
    old = pd.DataFrame(frame.to_numpy(), columns=pd.Index(list(frame.columns), dtype=object),
                       index=pd.Index(np.arange(60) * 2))
    raw = pickle.dumps(old, protocol=2)
    renamed = 0
    for new, legacy in _LEGACY_NAMES.items():
        renamed += raw.count(new)
        raw = raw.replace(new, legacy)
    assert renamed >= 5 and b"cpandas.indexes.base\n_new_Index" in raw
    path.write_bytes(raw)
    assert read_frame_pickle(path).equals(old)


class _Payload:
    """Unpickled, calls ``fn(*args)``: the shape of every pickle exploit."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_a_pickle_planted_as_gas_does_not_run(tmp_path: Path) -> None:
    """A pickle in GAS's place that asks for anything but a DataFrame's classes is refused
    with a DataError naming the file and the name, and nothing of it runs."""
    import subprocess

    marker = tmp_path / "marker"
    frame, _ = _gas_frame(30)
    with_payload = frame.assign(Eth=pd.Series([_Payload(os.system, f"touch {marker}")] * 30,
                                              dtype=object))
    hostile = {
        "posix.system": pickle.dumps(_Payload(os.system, f"touch {marker}")),
        "builtins.eval": pickle.dumps(_Payload(eval, f"open({str(marker)!r}, 'w')")),
        "subprocess.Popen": pickle.dumps(_Payload(subprocess.Popen, ["touch", str(marker)])),
        # inside an otherwise valid frame: an object column holding the payload
        "posix.system ": pickle.dumps(with_payload),
        # Python 2 names are mapped first, then checked: __builtin__.eval is builtins.eval
        "builtins.eval  ": b"c__builtin__\neval\n(S'1'\ntR.",
        # the one codec a frame needs is latin-1; any other is refused
        "_codecs.encode with encoding": b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",
        # BUILD on a function or class would alter it for the whole process
        "setting the state of": b"cpandas.core.indexes.base\n_new_Index\n}b.",
    }
    (tmp_path / "gas").mkdir()
    path = tmp_path / "gas" / "ethylene_CO.pickle"
    for asks_for, raw in hostile.items():
        path.write_bytes(raw)
        with pytest.raises(DataError) as err:
            data.load("gas", data_dir=tmp_path)
        msg = str(err.value)
        assert msg.startswith(f"{path}: refused to unpickle: it asks for {asks_for.strip()}"), msg
    assert not marker.exists()
    pickle.loads(hostile["posix.system"])  # the payloads are live: unpickled, they run
    assert marker.exists()


def test_an_npy_file_holding_pickled_objects_is_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = np.empty((2, 43), dtype=object)
    payload[:] = _Payload(os.system, f"touch {marker}")
    for name in ("power", "miniboone"):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "data.npy", payload, allow_pickle=True)
        with pytest.raises(DataError, match=f"{name}/data.npy.*allow_pickle=False"):
            data.load(name, data_dir=tmp_path)
    assert not marker.exists()


def _hepmass_csv(rng: np.random.RandomState, n: int, trailing: bool) -> str:
    names = ["# label"] + [f"f{k}" for k in range(27)] + ["mass"]
    label = rng.randint(0, 2, n)
    cont = rng.randn(n, 21)
    disc = rng.randint(0, 3, (n, 7)).astype(float)  # the smallest value repeats > 5 times
    feats = np.concatenate([cont[:, :10], disc[:, :4], cont[:, 10:], disc[:, 4:]], 1)
    lines = [",".join(names) + ("," if trailing else "")]
    for lab, row in zip(label, feats):
        lines.append(
            ",".join([str(lab)] + [repr(float(v)) for v in row]) + ("," if trailing else "")
        )
    return "\n".join(lines) + "\n"


def test_hepmass_protocol(tmp_path: Path) -> None:
    rng = np.random.RandomState(1)
    (tmp_path / "hepmass").mkdir()
    train_csv = _hepmass_csv(rng, 600, trailing=False)
    test_csv = _hepmass_csv(rng, 300, trailing=True)  # the archive's test file: a trailing column
    (tmp_path / "hepmass" / "1000_train.csv").write_text(train_csv)
    (tmp_path / "hepmass" / "1000_test.csv").write_text(test_csv)
    ds = data.load("hepmass", data_dir=tmp_path)
    assert ds.event_shape == (21,)
    train_raw = pd.read_csv(io.StringIO(train_csv))
    test_raw = pd.read_csv(io.StringIO(test_csv), index_col=False)
    n_pos = int((train_raw.iloc[:, 0] == 1).sum())
    n_val = int(0.1 * n_pos)
    assert (len(ds.train), len(ds.val)) == (n_pos - n_val, n_val)
    assert len(ds.test) == int((test_raw.iloc[:, 0] == 1).sum())
    _assert_standardised(torch.cat([ds.train, ds.val]), ddof=1)  # pandas' sample std
    # the continuous features survive in order: compare with the raw positive rows
    pos = train_raw[train_raw.iloc[:, 0] == 1].iloc[:, 1:].to_numpy()
    cont_idx = list(range(10)) + list(range(14, 25))
    ref = (pos[:, cont_idx] - pos[:, cont_idx].mean(0)) / pos[:, cont_idx].std(0, ddof=1)
    assert np.allclose(torch.cat([ds.train, ds.val]).double().numpy(), ref, atol=1e-5)


def test_miniboone_protocol(tmp_path: Path) -> None:
    rng = np.random.RandomState(2)
    raw = rng.randn(700, 43) * rng.rand(43) * 10 + rng.randn(43)
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", raw)
    ds = data.load("miniboone", data_dir=tmp_path)
    assert ds.event_shape == (43,)
    n_train, n_val, n_test = _sizes(700)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (n_train, n_val, n_test)
    _assert_standardised(torch.cat([ds.train, ds.val]), ddof=0)
    both = raw[: n_train + n_val]
    expected_test = (raw[-n_test:] - both.mean(0)) / both.std(0)
    assert np.allclose(ds.test.double().numpy(), expected_test, atol=1e-5)


def test_bsds300_as_is(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    rng = np.random.RandomState(3)
    arrays = {
        k: rng.rand(n, 63) - 0.5 for k, n in (("train", 50), ("validation", 20), ("test", 30))
    }
    (tmp_path / "BSDS300").mkdir()
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    ds = data.load("bsds300", data_dir=tmp_path)
    assert ds.event_shape == (63,)
    for split, key in (("train", "train"), ("val", "validation"), ("test", "test")):
        assert np.allclose(getattr(ds, split).double().numpy(), arrays[key], atol=1e-7)


def test_missing_directory_names_files_and_source(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.load("hepmass", data_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert "does not exist" in msg
    assert str(tmp_path / "nowhere" / "hepmass" / "1000_train.csv") in msg
    assert str(tmp_path / "nowhere" / "hepmass" / "1000_test.csv") in msg
    assert "zenodo.org/record/1161203" in msg and "download=True" in msg


def test_data_dir_falls_back_to_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", np.random.RandomState(0).randn(100, 43))
    monkeypatch.setenv("NFBENCH_DATA", str(tmp_path))
    assert len(data.load("miniboone").test) == 10
    with pytest.raises(DataError, match="other"):
        data.load("miniboone", data_dir=tmp_path / "other")  # the argument wins


def test_corrupt_and_wrong_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "miniboone").mkdir()
    bad = tmp_path / "miniboone" / "data.npy"
    bad.write_bytes(b"this is not a numpy file")
    with pytest.raises(DataError, match=str(bad)):
        data.load("miniboone", data_dir=tmp_path)
    np.save(bad, np.random.RandomState(0).rand(100, 7))
    with pytest.raises(DataError, match="expected \\(N, 43\\)"):
        data.load("miniboone", data_dir=tmp_path)
    np.save(bad, np.zeros((100, 43)))
    with pytest.raises(DataError, match=f"{bad}: columns \\[0, 1,.*constant"):
        data.load("miniboone", data_dir=tmp_path)
    (tmp_path / "gas").mkdir()
    (tmp_path / "gas" / "ethylene_CO.pickle").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="ethylene_CO.pickle.*corrupt"):
        data.load("gas", data_dir=tmp_path)
    (tmp_path / "BSDS300").mkdir()
    (tmp_path / "BSDS300" / "BSDS300.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="BSDS300.hdf5"):
        data.load("bsds300", data_dir=tmp_path)


def test_download_extracts_from_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real download path (urllib + tarfile) against a file:// URL: no network."""
    src = tmp_path / "src"
    src.mkdir()
    payload = io.BytesIO()
    np.save(payload, np.random.RandomState(4).randn(200, 43))
    tar_path = src / "data.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo("data/miniboone/data.npy")
        info.size = len(payload.getvalue())
        tar.addfile(info, io.BytesIO(payload.getvalue()))
    archive = Archive(
        (tar_path.as_uri(),), "maf-data.tar.gz", {"data/miniboone/data.npy": "miniboone/data.npy"},
        Digest("md5", hashlib.md5(tar_path.read_bytes()).hexdigest()),
    )
    monkeypatch.setitem(
        tabular.SOURCES,
        "miniboone",
        dataclasses.replace(tabular.SOURCES["miniboone"], archive=archive),
    )
    target = tmp_path / "data"
    with pytest.raises(DataError, match="missing"):
        data.load("miniboone", data_dir=target)  # not without permission
    ds = data.load("miniboone", data_dir=target, download=True)
    assert (target / "miniboone" / "data.npy").is_file() and len(ds.test) == 20
    assert data.load("miniboone", data_dir=target).fingerprint == ds.fingerprint
    dead = Archive(((src / "missing.tar.gz").as_uri(),), "other.tar.gz", archive.members,
                   archive.digest)
    monkeypatch.setitem(
        tabular.SOURCES,
        "miniboone",
        dataclasses.replace(tabular.SOURCES["miniboone"], archive=dead),
    )
    with pytest.raises(DataError, match="could not download other.tar.gz"):
        data.load("miniboone", data_dir=tmp_path / "fresh", download=True)
