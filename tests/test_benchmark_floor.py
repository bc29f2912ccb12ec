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
