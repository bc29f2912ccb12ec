"""Image data sets: ``digits`` (scikit-learn, 8×8, 17 levels) and the file-based ones.

``digits`` is scikit-learn's ``load_digits`` (the UCI optdigits test set: 1,797 images of
8×8 with values 0..16), shaped ``(1, 8, 8)``, 17 levels. Its split is fixed and independent
of the job seed: a stratified 1,157 / 280 / 360 train / val / test split, made by ranking the
images of each class in a ``RandomState(0)`` permutation and interleaving the classes by rank
fraction (so every prefix is stratified), then taking the first 360 as test, the next 280 as
validation, the rest as training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .dataset import DataSet, register
from .errors import DataError

__all__ = ["DIGITS_SPLIT", "reduce_bits", "stratified_order"]

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
    )
