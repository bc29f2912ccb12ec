"""The data-set registry: metadata, shapes, fixed splits, fingerprints, closed-form densities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness import data
from harness.data import DataError, DataSet
from harness.data.toy import GENERATORS, generate
from harness.registry import UnknownNameError

TOYS = sorted(GENERATORS)
IN_MEMORY = TOYS + ["digits"]


def test_names_and_meta_without_loading() -> None:
    names = data.names()
    assert names == sorted(names)
    assert set(IN_MEMORY) <= set(names)
    for name in names:
        meta = data.entry(name).meta
        assert meta["kind"] in ("continuous", "discrete")
        assert (meta["levels"] is None) == (meta["kind"] == "continuous")
        assert isinstance(meta["event_shape"], tuple)
    assert data.entry("digits").meta == {
        "kind": "discrete",
        "event_shape": (1, 8, 8),
        "levels": 17,
        "source": data.entry("digits").meta["source"],
        "classes": 10,
    }


@pytest.mark.parametrize("name", IN_MEMORY)
def test_loaded_matches_meta_and_is_well_formed(name: str) -> None:
    ds = data.load(name, seed=3)
    meta = data.entry(name).meta
    assert (ds.name, ds.kind, ds.event_shape, ds.levels) == (
        name,
        meta["kind"],
        meta["event_shape"],
        meta["levels"],
    )
    for split in (ds.train, ds.val, ds.test):
        assert split.dtype == torch.float32
        assert tuple(split.shape[1:]) == ds.event_shape
        assert torch.isfinite(split).all()
    info = ds.splits_info
    assert (info["n_train"], info["n_val"], info["n_test"]) == (
        len(ds.train),
        len(ds.val),
        len(ds.test),
    )
    assert isinstance(info["method"], str) and info["method"]
    assert len(ds.fingerprint) == 64 and int(ds.fingerprint, 16) >= 0
    params = ds.params()
    assert params["data.fingerprint"] == ds.fingerprint and params["data.name"] == name


def test_toy_splits_train_follows_seed_test_is_fixed() -> None:
    a, b, a2 = (data.load("moons", seed=s) for s in (0, 1, 0))
    assert torch.equal(a.train, a2.train) and a.fingerprint == a2.fingerprint
    assert not torch.equal(a.train, b.train) and a.fingerprint != b.fingerprint
    assert torch.equal(a.test, b.test) and torch.equal(a.val, b.val)
    assert not torch.equal(a.val, a.test)
    assert (len(a.train), len(a.val), len(a.test)) == (10_000, 2_000, 2_000)
    # the fixed val/test stream stays independent of a job seed equal to the fixed seed
    from harness.data.toy import FIXED_SEED

    c = data.load("moons", seed=FIXED_SEED)
    assert not torch.equal(c.train[:2000], c.val)


def test_toy_recipes_match_their_published_statistics() -> None:
    """Spot checks of FFJORD's recipes: ranges, centres, radii."""
    cb = generate("checkerboard", 20_000, 0)
    assert cb.min() >= -4 and cb.max() < 4
    g8 = generate("8gaussians", 20_000, 0)
    radius = np.linalg.norm(g8, axis=1)
    assert abs(np.median(radius) - 4 / 1.414) < 0.05
    rings = generate("rings", 20_000, 0)
    r = np.linalg.norm(rings, axis=1)
    for radius_ in (3.0, 2.25, 1.5, 0.75):
        assert abs(np.mean(np.abs(r - radius_) < 0.25) - 0.25) < 0.02
    moons = generate("moons", 20_000, 0)
    assert np.allclose(
        moons.mean(0), [0.0, 0.3], atol=0.05
    )  # make_moons centre (0.5, .25)·2 − (1, .2)
    assert generate("pinwheel", 1000, 0).shape == (1000, 2)
    assert generate("2spirals", 1000, 0).shape == (1000, 2)


def test_digits_split_fixed_stratified_and_complete() -> None:
    from sklearn.datasets import load_digits

    a, b = data.load("digits", seed=0), data.load("digits", seed=99)
    assert a.fingerprint == b.fingerprint  # independent of the job seed
    assert (len(a.train), len(a.val), len(a.test)) == (1157, 280, 360)
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)
    allx = torch.cat([a.train, a.val, a.test])[:, 0]
    # the three splits are a partition of the 1,797 images (as a multiset of rows)
    def key(t):
        return sorted(map(tuple, t.reshape(len(t), -1).tolist()))

    assert key(allx) == key(images)
    # stratified: each class's share in the test split within one image of proportional
    row_to_label: dict[tuple, list[int]] = {}
    for img, lab in zip(images.reshape(len(images), -1).tolist(), bunch.target.tolist()):
        row_to_label.setdefault(tuple(img), []).append(lab)
    counts = np.bincount(bunch.target, minlength=10)
    test_labels = [row_to_label[tuple(r)][0] for r in a.test.reshape(360, -1).tolist()]
    expected = counts * 360 / len(images)
    assert np.all(np.abs(np.bincount(test_labels, minlength=10) - expected) <= 1.5)
    assert a.levels == 17 and a.train.max() == 16 and a.train.min() == 0


def test_fingerprint_is_stable_and_sensitive() -> None:
    """The digits fingerprint is pinned (sklearn's bundled file + numpy's RandomState split
    never change); flipping one value changes it."""
    ds = data.load("digits")
    assert ds.fingerprint == DIGITS_FINGERPRINT
    test = ds.test.clone()
    test[0, 0, 0, 0] += 1
    other = DataSet("digits", "discrete", (1, 8, 8), 17, ds.train, ds.val, test)
    assert other.fingerprint != ds.fingerprint


DIGITS_FINGERPRINT = "c1a077208a693b3cdb4ece6b2c7448e852544f1f1e7d31adf38330999076f724"


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard", "rings"])
def test_true_density_normalises_and_matches_entropy(name: str) -> None:
    """∫ p = 1 on a grid (midpoint rule), and −E[log p] on a large fresh sample agrees with
    the stated entropy within four standard errors."""
    ds = data.load(name)
    assert ds.true_log_prob is not None and ds.true_entropy is not None
    h = 0.01
    g = torch.arange(-6 + h / 2, 6, h, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    mass = float(torch.exp(ds.true_log_prob(pts)).sum() * h * h)
    assert mass == pytest.approx(1.0, abs=2e-3 if name == "checkerboard" else 1e-6)
    x = torch.as_tensor(generate(name, 40_000, 5), dtype=torch.float64)
    lp = ds.true_log_prob(x)
    assert torch.isfinite(lp).all()
    se = float(lp.std()) / math.sqrt(len(lp))
    assert abs(float(-lp.mean()) - ds.true_entropy) < 4 * se + 1e-9


def test_checkerboard_closed_form() -> None:
    ds = data.load("checkerboard")
    assert ds.true_entropy == pytest.approx(math.log(32))
    # black squares: (⌊x1/2⌋ + ⌊x2/2⌋) even, inside [−4, 4)²; white ones and off-board: −∞
    outside = torch.tensor(
        [[1.0, -1.0], [3.0, 1.0], [-1.0, 1.0], [-3.0, 3.0], [5.0, 0.0], [1.0, 4.5]]
    )
    assert torch.isneginf(ds.true_log_prob(outside)).all()
    inside = torch.tensor([[1.0, 1.0], [3.0, 3.0], [-1.0, -1.0], [-3.0, -3.0]])
    assert torch.allclose(ds.true_log_prob(inside), torch.full((4,), -math.log(32)))
    assert torch.isfinite(ds.true_log_prob(ds.train)).all()


def test_unknown_name_suggests_nearest() -> None:
    with pytest.raises(UnknownNameError, match="did you mean '8gaussians'"):
        data.load("8gaussian")
    with pytest.raises(UnknownNameError, match="did you mean 'digits'"):
        data.entry("digit")


def test_bad_options_and_seed_are_refused() -> None:
    with pytest.raises(DataError, match="unknown option.*n_bitz"):
        data.load("moons", n_bitz=3)
    with pytest.raises(DataError, match="seed must be an int"):
        data.load("moons", seed="0")  # type: ignore[arg-type]


def test_dataset_validates_its_arrays() -> None:
    good = torch.zeros(2, 3)
    with pytest.raises(DataError, match="integers in \\[0, 4\\)"):
        DataSet("x", "discrete", (3,), 4, good + 0.5, good, good)
    with pytest.raises(DataError, match="expected \\(N, 2\\)"):
        DataSet("x", "continuous", (2,), None, good, good, good)
    with pytest.raises(DataError, match="non-finite"):
        DataSet("x", "continuous", (3,), None, good / 0, good, good)
