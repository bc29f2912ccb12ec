"""The histogram reference model: closed-form fit, exact bits per dimension."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness import data, flows
from harness.data import flow_bits_per_dim, make_dequantizer
from harness.flows.families.histogram import Histogram


def test_mle_fit_gives_empirical_entropy_on_training_data() -> None:
    """With a = 0 the fit is the empirical frequencies, so the mean training bpd is the sum of
    the per-dimension empirical entropies over D ln 2 (computed here with numpy)."""
    rng = np.random.RandomState(0)
    x = rng.randint(0, 5, (300, 2, 3)).astype(np.float32)
    x[:, 0, 0] = np.minimum(x[:, 0, 0], 1)  # a dimension using two levels only
    h = Histogram.fit(torch.from_numpy(x), levels=5, laplace=0.0)
    flat = x.reshape(300, -1).astype(int)
    entropy = 0.0
    for d in range(flat.shape[1]):
        p = np.bincount(flat[:, d], minlength=5) / 300
        entropy -= float((p[p > 0] * np.log(p[p > 0])).sum())
    bpd = h.bits_per_dim(torch.from_numpy(x))
    assert float(bpd.double().mean()) == pytest.approx(entropy / (6 * math.log(2)), abs=1e-5)
    assert h.log_probs.shape == (6, 5) and math.isinf(float(h.log_probs[0, 3]))


def test_laplace_smoothing_by_hand() -> None:
    x = torch.tensor([[0.0], [0.0]])
    h = Histogram.fit(x, levels=2, laplace=1.0)
    assert torch.allclose(h.log_probs.exp(), torch.tensor([[0.75, 0.25]]))
    h2 = Histogram.fit(x, levels=2, laplace=0.5)
    assert torch.allclose(h2.log_probs.exp(), torch.tensor([[5 / 6, 1 / 6]]))


def test_fit_recovers_known_probabilities() -> None:
    torch.manual_seed(0)
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    true = Histogram((2,), 3, probs.log())
    x = true.sample(40_000)
    fitted = Histogram.fit(x, levels=3)
    assert torch.allclose(fitted.log_probs.exp(), probs, atol=0.01)


def test_histogram_bpd_equals_its_dequantized_density_bpd() -> None:
    """As a density on the dequantized cube (K·π_d[⌊K y_d⌋], piecewise constant) it gives the
    same bpd through the uniform-dequantization path as its exact discrete bpd."""
    torch.manual_seed(1)
    ds = data.load("digits")
    h = Histogram.fit(ds.train, ds.levels)
    deq = make_dequantizer("uniform", ds)
    k = ds.levels
    d = torch.arange(deq.dims)

    def log_p_y(y: torch.Tensor) -> torch.Tensor:
        cell = torch.floor(y.reshape(len(y), -1) * k).long().clamp(0, k - 1)
        return (h.log_probs[d[None], cell] + math.log(k)).sum(1)

    w, lw = deq(ds.test)
    assert torch.allclose(
        flow_bits_per_dim(log_p_y(w), lw, deq.dims), h.bits_per_dim(ds.test), atol=1e-5
    )
    assert 0 < float(h.bits_per_dim(ds.test).mean()) < math.log2(17)


def test_histogram_refuses_bad_input() -> None:
    train = (torch.arange(8 * 3) % 4).reshape(8, 3).float()  # values cycle through 4 levels
    with pytest.raises(ValueError, match="integers in \\[0, 3\\)"):
        Histogram.fit(train, levels=3)
    with pytest.raises(ValueError, match="laplace"):
        Histogram.fit(train, levels=4, laplace=-1)
    h = Histogram.fit(train, levels=4)
    with pytest.raises(ValueError, match="expected \\(B, 3\\)"):
        h.log_prob_discrete(torch.zeros(2, 4))
    assert h.to(torch.float64).log_prob_discrete(train).dtype == torch.float64


def test_histogram_is_a_closed_form_reference_entry() -> None:
    """The registry entry carries what the suite checks, the job and the report read: a
    reference row, fitted (not built), discrete data only, run once in the uniform column."""
    meta = flows.entry("histogram").meta
    assert meta["reference"] and meta["closed_form"]
    assert meta["data_kinds"] == ("discrete",) and meta["dequant_columns"] == ("uniform",)
    assert "histogram" not in flows.names() and "histogram" in flows.names(closed_form=True)
    assert flows.entry("gaussian").meta["reference"] and not flows.entry("maf").meta.get(
        "reference"
    )
    ds = data.load("digits")
    fitted = flows.fit("histogram", ds.train, ds.levels, ds.kind, laplace=0.5)
    direct = Histogram.fit(ds.train, levels=ds.levels, laplace=0.5)
    assert torch.equal(fitted.log_probs, direct.log_probs)
    with pytest.raises(ValueError, match="takes discrete data, got continuous"):
        flows.fit("histogram", torch.zeros(4, 2), None, "continuous")
    with pytest.raises(ValueError, match="unknown hyper-parameter 'smoothing'"):
        flows.fit("histogram", ds.train, ds.levels, ds.kind, smoothing=1.0)
    with pytest.raises(ValueError, match="fitted in closed form"):
        flows.build("histogram", 64)
    with pytest.raises(ValueError, match="trained, not fitted"):
        flows.fit("gaussian", ds.train, ds.levels, ds.kind)
