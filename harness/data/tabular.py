"""Tabular data sets with the MAF paper's exact preprocessing and splits.

Ported in behaviour (not in code) from ``gpapamak/maf`` ``datasets/{power,gas,hepmass,
miniboone,bsds300}.py`` (Papamakarios et al. 2017, arXiv:1705.07057; ``bayesiains/nsf``
``data/`` uses the same), reading the MAF archive's files (zenodo.org/record/1161203,
``data.tar.gz``) laid out under the data directory as in the archive:
``power/data.npy``, ``gas/ethylene_CO.pickle``, ``hepmass/1000_{train,test}.csv``,
``miniboone/data.npy``, ``BSDS300/BSDS300.hdf5``. The preprocessing, as in MAF's code:

- POWER (D=6): ``RandomState(42)`` shuffle of the rows; delete column 3, then column 1; add
  noise per column (active power ``0.001·U``, voltage ``0.01·U``, three sub-meterings ``U``
  each, time 0; drawn voltage first, then active power, then sub-meterings); test = last
  10 %, validation = last 10 % of the rest; standardise with the train+validation mean and
  (population) std.
- GAS (D=8): drop ``Meth``, ``Eth``, ``Time``; while some column has a Pearson correlation
  above 0.98 with another, drop the first such column; standardise with the full data's
  mean and sample std (pandas); no shuffle; the same 10 % / 10 % split. The archive holds
  GAS only as a pickled DataFrame: it is read with an allow-list of the classes a DataFrame
  needs (:mod:`harness.data.safe_pickle`), so a pickle that asks for anything else is
  refused and nothing of it runs. ``.npy`` files are read with ``allow_pickle=False``.
- HEPMASS (D=21): keep label-1 rows and drop the label; drop the test file's last column
  (the archive's test file has a trailing empty column); standardise both with the training
  mean and sample std; drop each feature whose *smallest* standardised training value occurs
  more than 5 times (MAF's code counts the first entry of the sorted value counts, which
  removes the discrete features); validation = last 10 % of train.
- MINIBOONE (D=43): the archive's array is already cleaned; test = last 10 %, validation =
  last 10 % of the rest; standardise with the train+validation mean and population std.
- BSDS300 (D=63): the HDF5 file's ``train`` / ``validation`` / ``test`` arrays as they are.

Splits do not depend on the job seed. Published log-likelihoods (MAF Table 1, NSF Table 1)
are in nats in these standardised coordinates, so no Jacobian of the standardisation enters
``eval/nll`` (the same convention as the papers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import DataSet, register
from .errors import DataError
from .files import Archive, Digest, Source, corrupt, require
from .safe_pickle import read_frame_pickle

__all__ = ["PUBLISHED_SIZES", "SOURCES", "preprocess"]

MAF_URLS = ("https://zenodo.org/record/1161203/files/data.tar.gz",)
MAF_DIGEST = Digest("md5", "9b9c9b0375315ad270eba4ce80c093ab")  # Zenodo's md5 of data.tar.gz
MAF_WHERE = "the MAF archive (Papamakarios et al. 2017), zenodo.org/record/1161203"
_LAYOUT = {
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
}
SOURCES = {
    name: Source(
        files=files,
        where=MAF_WHERE,
        archive=Archive(MAF_URLS, "maf-data.tar.gz", {f"data/{f}": f for f in files},
                        MAF_DIGEST),
    )
    for name, files in _LAYOUT.items()
}
DIMS = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63}
PUBLISHED_SIZES = {
    "power": (1_659_917, 184_435, 204_928),
    "gas": (852_174, 94_685, 105_206),
    "hepmass": (315_123, 35_013, 174_987),
    "miniboone": (29_556, 3_284, 3_648),
    "bsds300": (1_000_000, 50_000, 250_000),
}
_METHODS = {
    "power": "MAF: RandomState(42) shuffle, drop cols 3 and 1, uniform noise, test = last 10%, "
    "val = last 10% of rest, standardised with train+val mean/std",
    "gas": "MAF: drop Meth/Eth/Time and correlated (>0.98) columns, standardised with full "
    "mean/std, no shuffle, test = last 10%, val = last 10% of rest",
    "hepmass": "MAF: label-1 rows, standardised with train mean/std, discrete features "
    "dropped, val = last 10% of the train file, test = the test file",
    "miniboone": "MAF: test = last 10%, val = last 10% of rest, standardised with train+val "
    "mean/std",
    "bsds300": "MAF: the HDF5 file's train/validation/test arrays as they are",
}

Splits = tuple[np.ndarray, np.ndarray, np.ndarray]


def _split_10_10(data: np.ndarray) -> Splits:
    """Test = last 10 %, validation = last 10 % of the rest (MAF's ``int(0.1·N)``)."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[-n_test:], data[:-n_test]
    n_val = int(0.1 * rest.shape[0])
    return rest[:-n_val], rest[-n_val:], test


def _standardise(train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Splits:
    both = np.vstack((train, val))
    mu, s = both.mean(axis=0), both.std(axis=0)
    if np.any(s == 0):
        raise DataError(
            f"columns {np.flatnonzero(s == 0).tolist()} are constant: cannot "
            "standardise; is this the MAF archive's file?"
        )
    return (train - mu) / s, (val - mu) / s, (test - mu) / s


def _power(paths: dict[str, Path]) -> Splits:
    rng = np.random.RandomState(42)
    data = np.array(np.load(paths["power/data.npy"], allow_pickle=False), dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 8:
        raise DataError(f"{paths['power/data.npy']}: expected an (N, 8) array, got {data.shape}")
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    return _standardise(*_split_10_10(data))


def _gas(paths: dict[str, Path]) -> Splits:
    import pandas as pd

    path = paths["gas/ethylene_CO.pickle"]
    frame = read_frame_pickle(path)  # never pd.read_pickle: a pickle may run code
    missing = [c for c in ("Meth", "Eth", "Time") if c not in getattr(frame, "columns", [])]
    if missing:
        raise DataError(
            f"{path}: expected a DataFrame with columns Meth, Eth, Time; missing {missing}"
        )
    frame = frame.drop(columns=["Meth", "Eth", "Time"])

    def correlated(f: pd.DataFrame) -> np.ndarray:
        return (f.corr() > 0.98).to_numpy().sum(axis=1)

    counts = correlated(frame)
    while np.any(counts > 1):
        frame = frame.drop(columns=frame.columns[np.where(counts > 1)[0][0]])
        counts = correlated(frame)
    frame = (frame - frame.mean()) / frame.std()
    return _split_10_10(frame.to_numpy(dtype=np.float64))


def _hepmass(paths: dict[str, Path]) -> Splits:
    import pandas as pd

    frames = []
    for rel in ("hepmass/1000_train.csv", "hepmass/1000_test.csv"):
        try:
            frames.append(pd.read_csv(paths[rel], index_col=False))
        except Exception as err:  # noqa: BLE001 - any parse failure means a bad file
            raise corrupt(paths[rel], err) from None
    train, test = frames
    train = train[train[train.columns[0]] == 1].drop(columns=train.columns[0])
    test = test[test[test.columns[0]] == 1].drop(columns=test.columns[0])
    test = test.drop(columns=test.columns[-1])
    if train.shape[1] != test.shape[1]:
        raise DataError(
            f"{paths['hepmass/1000_test.csv']}: {test.shape[1]} feature columns after MAF's "
            f"cleaning, the train file has {train.shape[1]}: not the MAF archive's files?"
        )
    mu, s = train.mean(), train.std()
    train_a = ((train - mu) / s).to_numpy(dtype=np.float64)
    test_a = ((test - mu) / s).to_numpy(dtype=np.float64)
    # MAF: ``sorted(Counter(feature).items())[0][1] > 5`` → the smallest value's count
    keep = [i for i, col in enumerate(train_a.T) if np.count_nonzero(col == col.min()) <= 5]
    train_a, test_a = train_a[:, keep], test_a[:, keep]
    n_val = int(train_a.shape[0] * 0.1)
    return train_a[:-n_val], train_a[-n_val:], test_a


def _miniboone(paths: dict[str, Path]) -> Splits:
    data = np.asarray(np.load(paths["miniboone/data.npy"], allow_pickle=False), dtype=np.float64)
    return _standardise(*_split_10_10(data))


def _bsds300(paths: dict[str, Path]) -> Splits:
    try:
        import h5py
    except ImportError:  # pragma: no cover - depends on the environment
        raise DataError("bsds300 needs h5py to read BSDS300.hdf5: pip install h5py") from None
    path = paths["BSDS300/BSDS300.hdf5"]
    try:
        with h5py.File(path, "r") as f:
            return tuple(
                np.asarray(f[k], dtype=np.float64) for k in ("train", "validation", "test")
            )  # type: ignore[return-value]
    except (OSError, KeyError) as err:
        raise corrupt(path, err) from None


_PREPROCESS: dict[str, Callable[[dict[str, Path]], Splits]] = {
    "power": _power,
    "gas": _gas,
    "hepmass": _hepmass,
    "miniboone": _miniboone,
    "bsds300": _bsds300,
}


def preprocess(name: str, paths: dict[str, Path]) -> Splits:
    """MAF's preprocessing of data set ``name`` from its files; checks the resulting width."""
    try:
        splits = _PREPROCESS[name](paths)
    except DataError as err:
        if any(str(p) in str(err) for p in paths.values()):
            raise
        raise DataError(f"{', '.join(map(str, paths.values()))}: {err}") from None
    except (ValueError, EOFError, OSError) as err:
        raise corrupt(next(iter(paths.values())), err) from None
    for part in splits:
        if part.ndim != 2 or part.shape[1] != DIMS[name]:
            raise DataError(
                f"{name}: preprocessing gave shape {part.shape}, expected (N, {DIMS[name]}): "
                f"are {', '.join(map(str, paths.values()))} the MAF archive's files?"
            )
    return splits


def _make_loader(name: str) -> Callable[..., DataSet]:
    def load_tabular(*, seed: int, data_dir: Path, download: bool) -> DataSet:
        paths = require(name, SOURCES[name], data_dir, download)
        train, val, test = preprocess(name, paths)
        info: dict[str, Any] = {
            "method": _METHODS[name],
            "files": ", ".join(SOURCES[name].files),
            "published_sizes": "/".join(map(str, PUBLISHED_SIZES[name])),
        }
        return DataSet(
            name=name,
            kind="continuous",
            event_shape=(DIMS[name],),
            levels=None,
            train=torch.as_tensor(train, dtype=torch.float32),
            val=torch.as_tensor(val, dtype=torch.float32),
            test=torch.as_tensor(test, dtype=torch.float32),
            splits_info=info,
            source=f"{MAF_WHERE}; gpapamak/maf datasets/{name}.py",
        )

    load_tabular.__name__ = f"load_{name}"
    return load_tabular


for _name in _PREPROCESS:
    register(
        _name,
        kind="continuous",
        event_shape=(DIMS[_name],),
        levels=None,
        source=f"MAF archive '{_name}' (files under the data directory)",
    )(_make_loader(_name))
