"""The dense-GEMM floor of ``benchmarks/flows_vs_peers.py --floor`` holds every linear layer of
our model and nothing else, and a train step reaches every one of them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("flows_vs_peers",
                                                  ROOT / "benchmarks" / "flows_vs_peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["maf", "realnvp", "nsf-coupling"])
def test_the_floor_has_our_linear_layers_and_trains_through_all_of_them(model):
    bench = _bench()
    torch.manual_seed(0)
    ours = bench.build_ours(model, 8)
    floor = bench.build_floor(model, 8, batch=32)
    linears = [m for m in ours.module.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(w.shape) for w in floor.module.weights] == [tuple(m.weight.shape)
                                                              for m in linears]
    # the conditioners are every parameter of these flows: equal counts, like the peers'
    assert floor.params() == ours.params()
    out = floor.density(torch.zeros(32, 8))
    assert out.shape == (32,)
    (-out.mean()).backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in floor.module.weights)


def test_ratio_rows_carry_the_bootstrap_interval_of_the_block_times():
    """Ours ÷ the fastest peer from three rounds of ten blocks each (log-normal, σ 0.05): the
    same times are not resolved; ours 20 % slower is, with an interval around 1.2."""
    import argparse

    import numpy as np

    bench = _bench()
    rng = np.random.default_rng(0)
    args = argparse.Namespace(ops=["density"])
    for factor in (1.0, 1.2):
        blocks = {key: [list(f * 1e-3 * np.exp(0.05 * rng.standard_normal(10)))
                        for _ in range(3)]
                  for key, f in ((("maf", 2, "density", "zuko", False), 1.0),
                                 (("maf", 2, "density", bench.OURS, False), factor))}
        med = {k: float(np.median(v)) for k, v in blocks.items()}
        row = bench._ratio_rows(med, {("maf", 2): {}}, [bench.OURS, "zuko"], args, False,
                                blocks)[0]
        assert row["fastest_peer"] == "zuko"
        assert row["q1_lo"] <= factor <= row["q1_hi"]
        assert row["resolved"] == (factor != 1.0)
