"""FFJORD's 2-D toy data, generated as in ``rtqichen/ffjord`` ``lib/toy_data.py``.

Recipes (``docs/protocols.md``, "FFJORD's 2-D toys"; Grathwohl et al. 2019, arXiv:1810.01367), each
drawn from an explicit ``numpy.random.RandomState`` instead of the global generator:

- ``swissroll``: ``make_swiss_roll(n, noise=1.0)`` columns [0, 2], ÷ 5
- ``circles``: ``make_circles(n, factor=.5, noise=0.08)`` × 3
- ``rings``: 4 circles of radius 1, .75, .5, .25 (n/4 evenly spaced angles each), × 3,
  shuffled, + N(0, 0.08²)
- ``moons``: ``make_moons(n, noise=0.1)`` × 2 + [−1, −0.2]
- ``8gaussians``: centres 4·{(±1,0), (0,±1), (±1/√2, ±1/√2)} + 0.5·N(0, I), ÷ 1.414
- ``pinwheel``: 5 arms, radial std 0.3, tangential std 0.1, rate 0.25; × 2
- ``2spirals``: n = √U·540·2π/360; (−cos n·n + 0.5U, sin n·n + 0.5U) and its negative; ÷ 3;
  + 0.1·N(0, I)
- ``checkerboard``: x1 ~ U[−2, 2); x2 = U[0,1) − 2·Bern(½) + (⌊x1⌋ mod 2); × 2

Splits: 10,000 / 2,000 / 2,000. The training split is drawn from the job seed; validation
and test come from a fixed seed, the same for every job, so test numbers compare across
seeds. The streams are independent (``SeedSequence`` spawn keys), even when the job seed
equals the fixed one.

Closed forms (exposed as ``true_log_prob`` / ``true_entropy``): ``8gaussians`` (equal mixture of
8 isotropic Gaussians, σ = 0.5/1.414; entropy by 2-D Gauss–Hermite quadrature, the
mixture being symmetric under 45° rotations), ``checkerboard`` (uniform on 8 squares of
side 2: log-density −ln 32, entropy ln 32) and ``rings`` (each circle convolved with
N(0, σ²): a Rice density ``exp(−(ρ−R)²/2σ²) i0e(ρR/σ²) / 2πσ²``; the angle lattice is
finer than σ by a factor whose aliasing error is below 1e−30; entropy by radial
quadrature).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .dataset import DataSet, register

__all__ = ["GENERATORS", "SIZES", "generate", "true_entropy", "true_log_prob"]

SIZES = {"train": 10_000, "val": 2_000, "test": 2_000}
FIXED_SEED = 20_190_101  # val/test seed: the same for every job
_SPLIT_KEYS = {"train": 0, "val": 1, "test": 2}

Generator = Callable[[np.random.RandomState, int], np.ndarray]



def _sk_datasets():
    """scikit-learn's generators, imported on first use (about 1 s of import otherwise paid
    by every worker that never draws a toy)."""
    import sklearn.datasets

    return sklearn.datasets


def _sk_shuffle():
    from sklearn.utils import shuffle

    return shuffle

def _swissroll(rng: np.random.RandomState, n: int) -> np.ndarray:
    x = _sk_datasets().make_swiss_roll(n_samples=n, noise=1.0, random_state=rng)[0]
    return x[:, [0, 2]] / 5


def _circles(rng: np.random.RandomState, n: int) -> np.ndarray:
    return (
        _sk_datasets().make_circles(n_samples=n, factor=0.5, noise=0.08, random_state=rng)[0] * 3
    )


def _rings(rng: np.random.RandomState, n: int) -> np.ndarray:
    n4 = n3 = n2 = n // 4
    n1 = n - n4 - n3 - n2
    xs, ys = [], []
    for radius, m in ((1.0, n4), (0.75, n3), (0.5, n2), (0.25, n1)):
        t = np.linspace(0, 2 * np.pi, m, endpoint=False)
        xs.append(np.cos(t) * radius)
        ys.append(np.sin(t) * radius)
    x = np.vstack([np.hstack(xs), np.hstack(ys)]).T * 3.0
    x = _sk_shuffle()(x, random_state=rng)
    return x + rng.normal(scale=0.08, size=x.shape)


def _moons(rng: np.random.RandomState, n: int) -> np.ndarray:
    x = _sk_datasets().make_moons(n_samples=n, noise=0.1, random_state=rng)[0]
    return x * 2 + np.array([-1, -0.2])


_S = 1.0 / math.sqrt(2.0)
_CENTRES = 4.0 * np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1), (_S, _S), (_S, -_S), (-_S, _S), (-_S, -_S)]
)
_G8_SCALE = 1.414  # FFJORD divides by 1.414, not √2


def _eight_gaussians(rng: np.random.RandomState, n: int) -> np.ndarray:
    out = np.empty((n, 2))
    for i in range(n):  # FFJORD's order of draws: the point's noise, then its centre
        point = rng.randn(2) * 0.5
        out[i] = point + _CENTRES[rng.randint(8)]
    return out / _G8_SCALE


def _pinwheel(rng: np.random.RandomState, n: int) -> np.ndarray:
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    per_class = n // num_classes
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.randn(num_classes * per_class, 2) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(num_classes), per_class)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    return 2 * rng.permutation(np.einsum("ti,tij->tj", features, rotations))


def _two_spirals(rng: np.random.RandomState, n: int) -> np.ndarray:
    m = n // 2
    t = np.sqrt(rng.rand(m, 1)) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(t) * t + rng.rand(m, 1) * 0.5
    d1y = np.sin(t) * t + rng.rand(m, 1) * 0.5
    x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    return x + rng.randn(*x.shape) * 0.1


def _checkerboard(rng: np.random.RandomState, n: int) -> np.ndarray:
    x1 = rng.rand(n) * 4 - 2
    x2_ = rng.rand(n) - rng.randint(0, 2, n) * 2
    x2 = x2_ + (np.floor(x1) % 2)
    return np.concatenate([x1[:, None], x2[:, None]], 1) * 2


GENERATORS: dict[str, Generator] = {
    "2spirals": _two_spirals,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "circles": _circles,
    "moons": _moons,
    "pinwheel": _pinwheel,
    "rings": _rings,
    "swissroll": _swissroll,
}


def _rng(seed: int, split: str) -> np.random.RandomState:
    seq = np.random.SeedSequence(entropy=seed, spawn_key=(_SPLIT_KEYS[split],))
    return np.random.RandomState(np.random.MT19937(seq))


def generate(name: str, n: int, seed: int, split: str = "train") -> np.ndarray:
    """``n`` points of toy ``name`` from the stream of (``seed``, ``split``), float64
    ``(n, 2)``."""
    return np.asarray(GENERATORS[name](_rng(seed, split), n), dtype=np.float64)


# ── closed-form densities ─────────────────────────────────────────────────────────────
_G8_SIGMA = 0.5 / _G8_SCALE
_RING_RADII = (3.0, 2.25, 1.5, 0.75)
_RING_SIGMA = 0.08


def _eight_gaussians_log_prob(x: Tensor) -> Tensor:
    mu = torch.as_tensor(_CENTRES / _G8_SCALE, dtype=x.dtype, device=x.device)
    sq = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
    s2 = _G8_SIGMA**2
    return torch.logsumexp(-sq / (2 * s2), dim=1) - math.log(8) - math.log(2 * math.pi * s2)


def _checkerboard_log_prob(x: Tensor) -> Tensor:
    a, b = x[:, 0] / 2, x[:, 1] / 2
    shift = torch.remainder(torch.floor(a), 2)
    r = b - shift
    inside = (a >= -2) & (a < 2) & (((r >= 0) & (r < 1)) | ((r >= -2) & (r < -1)))
    out = torch.full_like(a, -math.inf)
    return torch.where(inside, torch.full_like(a, -math.log(32.0)), out)


def _rings_log_prob(x: Tensor) -> Tensor:
    rho = x.norm(dim=1)
    s2 = _RING_SIGMA**2
    terms = []
    for radius in _RING_RADII:
        z = rho * radius / s2
        terms.append(-((rho - radius) ** 2) / (2 * s2) + torch.log(torch.special.i0e(z)))
    stacked = torch.stack(terms, dim=1)
    return torch.logsumexp(stacked, dim=1) - math.log(4) - math.log(2 * math.pi * s2)


_LOG_PROBS: dict[str, Callable[[Tensor], Tensor]] = {
    "8gaussians": _eight_gaussians_log_prob,
    "checkerboard": _checkerboard_log_prob,
    "rings": _rings_log_prob,
}


def true_log_prob(name: str) -> Callable[[Tensor], Tensor] | None:
    """The generating log-density of toy ``name`` (``(B, 2) → (B,)`` nats), or None."""
    return _LOG_PROBS.get(name)


@cache
def true_entropy(name: str) -> float | None:
    """Differential entropy in nats of toy ``name`` where its density is known, else None."""
    if name == "checkerboard":
        return math.log(32.0)
    if name == "8gaussians":
        # H = −E_{x∼N_0}[ln p(x)] by symmetry; 2-D Gauss–Hermite (probabilists') quadrature
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        gx, gy = np.meshgrid(nodes, nodes, indexing="ij")
        w = np.outer(weights, weights) / (2 * np.pi)
        mu0 = _CENTRES[0] / _G8_SCALE
        pts = np.stack([gx.ravel(), gy.ravel()], 1) * _G8_SIGMA + mu0
        lp = _eight_gaussians_log_prob(torch.as_tensor(pts, dtype=torch.float64)).numpy()
        return float(-(w.ravel() * lp).sum())
    if name == "rings":
        # radial density: H = −∫ p ln p · 2πρ dρ, composite Simpson on a fine grid
        rho = np.linspace(0.0, max(_RING_RADII) + 12 * _RING_SIGMA, 200_001)
        pts = torch.as_tensor(np.stack([rho, np.zeros_like(rho)], 1), dtype=torch.float64)
        lp = _rings_log_prob(pts).numpy()
        f = -np.exp(lp) * lp * 2 * np.pi * rho
        h = rho[1] - rho[0]
        return float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))
    return None


def _make_loader(name: str) -> Callable[..., DataSet]:
    def load_toy(*, seed: int, data_dir: Path, download: bool) -> DataSet:
        splits = {
            split: generate(name, n, seed if split == "train" else FIXED_SEED, split)
            for split, n in SIZES.items()
        }
        return DataSet(
            name=name,
            kind="continuous",
            event_shape=(2,),
            levels=None,
            train=torch.as_tensor(splits["train"], dtype=torch.float32),
            val=torch.as_tensor(splits["val"], dtype=torch.float32),
            test=torch.as_tensor(splits["test"], dtype=torch.float32),
            splits_info={
                "method": f"generated (FFJORD toy_data): train from job seed {seed}, "
                f"val/test from fixed seed {FIXED_SEED}",
                "seed": seed,
            },
            true_log_prob=true_log_prob(name),
            true_entropy=true_entropy(name),
            source="FFJORD toy data (rtqichen/ffjord lib/toy_data.py), arXiv:1810.01367",
        )

    load_toy.__name__ = f"load_{name}"
    return load_toy


for _name in GENERATORS:
    register(
        _name,
        kind="continuous",
        event_shape=(2,),
        levels=None,
        source=f"FFJORD 2-D toy '{_name}' (generated)",
    )(_make_loader(_name))
