"""Small files in the MAF archive's real formats, for end-to-end tests of the tabular recipes.

The layout and formats are those the loaders read (``harness/data/tabular.py``):
``power/data.npy`` (N × 7 float array: six measurements and the time), ``gas/ethylene_CO.pickle``
(a pandas DataFrame with ``Time``, ``Meth``, ``Eth`` and sensor columns),
``hepmass/1000_train.csv`` and ``1000_test.csv`` (a ``# label`` column, 27 features and the
mass; the test file with a trailing empty column), ``miniboone/data.npy`` (N × 43) and
``BSDS300/BSDS300.hdf5`` (``train``, ``validation`` and ``test`` arrays of 63 columns).
Values are random with enough structure for every preprocessing step to have work to do
(near-duplicate GAS sensors, discrete HEPMASS features), at a few hundred rows each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["write_tabular_fixtures"]


def _power(root: Path, rng: np.random.RandomState, n: int) -> None:
    (root / "power").mkdir(parents=True, exist_ok=True)
    raw = np.concatenate([rng.rand(n, 7) * [5, 0.5, 240, 20, 40, 50, 20],
                          np.arange(n, dtype=np.float64)[:, None]], 1)
    np.save(root / "power" / "data.npy", raw)


def _gas(root: Path, rng: np.random.RandomState, n: int) -> None:
    (root / "gas").mkdir(parents=True, exist_ok=True)
    cols: dict[str, np.ndarray] = {"Time": np.arange(n, dtype=np.float64),
                                   "Meth": rng.rand(n), "Eth": rng.rand(n)}
    for k in range(8):
        base = rng.randn(n)
        cols[f"dup{k}"] = base + 0.01 * rng.randn(n)  # dropped: correlated above 0.98
        cols[f"s{k}"] = base
    pd.DataFrame(cols).to_pickle(root / "gas" / "ethylene_CO.pickle")


def _hepmass_csv(rng: np.random.RandomState, n: int, trailing: bool) -> str:
    names = ["# label"] + [f"f{k}" for k in range(27)] + ["mass"]
    label = rng.randint(0, 2, n)
    cont = rng.randn(n, 21)
    disc = rng.randint(0, 3, (n, 7)).astype(float)  # dropped: a value repeated > 5 times
    feats = np.concatenate([cont[:, :10], disc[:, :4], cont[:, 10:], disc[:, 4:]], 1)
    end = "," if trailing else ""
    lines = [",".join(names) + end]
    lines += [",".join([str(lab)] + [repr(float(v)) for v in row]) + end
              for lab, row in zip(label, feats)]
    return "\n".join(lines) + "\n"


def _hepmass(root: Path, rng: np.random.RandomState, n: int) -> None:
    (root / "hepmass").mkdir(parents=True, exist_ok=True)
    (root / "hepmass" / "1000_train.csv").write_text(_hepmass_csv(rng, 2 * n, trailing=False))
    (root / "hepmass" / "1000_test.csv").write_text(_hepmass_csv(rng, n, trailing=True))


def _miniboone(root: Path, rng: np.random.RandomState, n: int) -> None:
    (root / "miniboone").mkdir(parents=True, exist_ok=True)
    np.save(root / "miniboone" / "data.npy", rng.randn(n, 43) * rng.rand(43) * 10 + rng.randn(43))


def _bsds300(root: Path, rng: np.random.RandomState, n: int) -> None:
    import h5py

    (root / "BSDS300").mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for key, rows in (("train", n), ("validation", n // 4), ("test", n // 4)):
            f.create_dataset(key, data=rng.rand(rows, 63) - 0.5)


def write_tabular_fixtures(root: Path, n: int = 400, seed: int = 0) -> Path:
    """Write the five tabular data sets' files under ``root`` (about ``n`` rows each);
    returns ``root``, a data directory for ``--data-dir``."""
    rng = np.random.RandomState(seed)
    for write in (_power, _gas, _hepmass, _miniboone, _bsds300):
        write(root, rng, n)
    return root
