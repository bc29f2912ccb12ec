"""The floor of ``benchmarks/flows_vs_peers.py --floor`` (and of ``cnf_rows.py``) holds what it
says: every linear layer of our model once, and a train step reaches every one of them; the
spline work is our rational-quadratic spline (forward, inverse, log-det) on the elements each
spline layer transforms; the sequential chains are as long as the solve plans say, in the
direction each layer solves; ffjord's floor applies its network's layers ``nfe`` times.
Structure and correctness only: no timing."""

from __future__ import annotations

import importlib.util
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _bench():
    return _load("flows_vs_peers")


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


def _calls(fn, *ops):
    """How many times each of ``ops`` (torch functions) is called while ``fn()`` runs."""
    counts = dict.fromkeys(ops, 0)

    class Count(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in counts:
                counts[func] += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return counts


@pytest.mark.parametrize("inverse", [False, True])
def test_the_spline_floor_is_our_rational_quadratic_spline(inverse):
    """On the same parameters and points (inside, on the knots' range, in both tails), the
    floor's closed form with its bin search gives our spline's output and log-det."""
    from harness.flows.layers.splines import rq_spline

    floors = _load("floors")
    g = torch.Generator().manual_seed(3)
    k, shape, bound = 8, (64, 5), 3.0
    w, h = torch.randn(k, *shape, generator=g), torch.randn(k, *shape, generator=g)
    dv = torch.randn(k - 1, *shape, generator=g)
    x = 2.0 * torch.randn(*shape, generator=g)  # about 13 % in the tails
    x[0, 0], x[1, 1] = -3.5, 3.5  # at least one in each tail
    table = floors.rq_knots(w, h, dv, bound)
    search = table[1 if inverse else 0, ..., 1:-1].contiguous()
    y, ld = floors.rq_transform(x, table, search, inverse=inverse, tail_bound=bound,
                                with_log_det=True)
    want_y, want_ld = rq_spline(x, w, h, dv, inverse=inverse, tail_bound=bound)
    assert torch.allclose(y, want_y, atol=1e-5, rtol=1e-5)
    assert torch.allclose(ld, want_ld, atol=1e-4, rtol=1e-4)
    assert y[0, 0] == x[0, 0] and ld[1, 1] == 0.0  # identity tails
    y2, none = floors.rq_transform(x, table, search, inverse=inverse, tail_bound=bound,
                                   with_log_det=False)
    assert none is None and torch.equal(y2, y)


def test_the_spline_floor_round_trips():
    floors = _load("floors")
    work = floors.SplineWork(batch=16, elements=3, bins=8, tail_bound=3.0)
    fwd, _ = floors.rq_transform(work.x, work.table, work.search_forward, inverse=False,
                                 tail_bound=3.0, with_log_det=False)
    back, _ = floors.rq_transform(fwd, work.table, work.search_inverse, inverse=True,
                                  tail_bound=3.0, with_log_det=False)
    assert torch.allclose(back, work.x, atol=1e-4)


@pytest.mark.parametrize("model", ["nsf-coupling", "nsf-ar"])
def test_the_spline_floor_maps_the_elements_each_spline_layer_transforms(model):
    bench = _bench()
    floor = bench.build_floor(model, 8, batch=4).module
    layers = bench.AR_LAYERS if model == "nsf-ar" else bench.COUPLING_LAYERS
    per_layer = 8 if model == "nsf-ar" else 4  # a coupling transforms half of the dimensions
    assert [s.elements for s in floor.splines] == [per_layer] * layers
    assert all(s.bins == bench.BINS and s.tail_bound == bench.TAIL for s in floor.splines)
    assert floor.counts("density")["spline_elements"] == 4 * per_layer * layers
    for model_without in ("maf", "realnvp"):
        assert not bench.build_floor(model_without, 8, batch=4).module.splines


@pytest.mark.parametrize("d", [2, 8])
def test_the_sequential_floor_makes_the_steps_of_the_solve_plan(d):
    """MAF and NSF-AR solve when sampling and inverting, IAF when computing a density: each
    autoregressive layer adds ``steps − 1`` dependent ops (``steps = D``, its plan's), in that
    direction only, and the chain is run, not just counted."""
    bench = _bench()
    for model, solved in (("maf", "sample"), ("iaf", "density"), ("nsf-ar", "sample")):
        ours = bench.build_ours(model, d).module
        plans = [m.plan.steps for m in ours.modules() if hasattr(m, "plan")]
        assert plans == [d] * bench.AR_LAYERS
        impl = bench.build_floor(model, d, batch=4)
        floor = impl.module
        want = bench.AR_LAYERS * (d - 1)
        for op in bench.OPS:
            in_density = op in ("density", "train")
            steps = want if in_density == (solved == "density") else 0
            assert floor.counts(op)["sequential_steps"] == steps
            x = torch.zeros(4, d)
            call = {"density": partial(impl.density, x), "train": partial(impl.density, x),
                    "sample": partial(impl.sample, 4), "inverse": partial(impl.inverse, x)}[op]
            n = _calls(call, torch.addcmul)[torch.addcmul]
            assert n == steps
    assert bench.build_floor("realnvp", d, batch=4).module.counts("sample")[
        "sequential_steps"] == 0


def test_the_sequential_floor_backpropagates_through_its_chain():
    bench = _bench()
    floor = bench.build_floor("iaf", 8, batch=4).module
    (i, steps, dual), *_ = floor.chains
    assert dual and steps == 7
    floor.run(True).sum().backward()
    assert all(w.grad is not None for w in floor.weights)


def test_the_ffjord_floor_applies_its_network_nfe_times():
    """ffjord's floor: the batch-sized products of its network (D → 64 → 64 → 64 → D), each
    once per function evaluation, ``nfe`` times; a train step reaches every weight."""
    from harness import flows

    cnf_rows = _load("cnf_rows")
    flow = flows.build("ffjord", 2, hidden=cnf_rows.HIDDEN, depth=cnf_rows.DEPTH)
    floor = cnf_rows.cnf_floor(flow, batch=8, nfe=5)
    assert [tuple(w.shape) for w in floor.weights] == [(64, 2), (64, 64), (64, 64), (2, 64)]
    n = _calls(lambda: floor.log_prob(torch.zeros(8, 2)), torch.addmm)[torch.addmm]
    assert n == 5 * 4
    out = floor.log_prob(torch.zeros(8, 2))
    assert out.shape == (8,)
    out.mean().backward()
    assert all(w.grad is not None for w in floor.weights)


def test_floor_rows_give_ours_over_floor_beside_ours_over_the_fastest_peer():
    """Eager: ours eager ÷ floor eager and ÷ the fastest eager peer; compiled: ours compiled ÷
    the floor's faster runtime and ÷ the fastest peer in either runtime; with the counts."""
    import argparse

    bench = _bench()
    key = ("maf", 2, "sample")
    med = {(*key, bench.OURS, False): 2.0, (*key, bench.OURS, True): 1.0,
           (*key, bench.FLOOR, False): 1.0, (*key, bench.FLOOR, True): 0.5,
           (*key, "zuko", False): 4.0, (*key, "zuko", True): 3.0}  # fmt: skip
    impls = {("maf", 2): {bench.FLOOR: bench.build_floor("maf", 2, batch=4)}}
    (row,) = bench._floor_rows(med, impls, [bench.OURS, "zuko", bench.FLOOR],
                               argparse.Namespace(ops=["sample"]))
    assert row["ours_over_floor_eager"] == 2.0 and row["ours_over_peer_eager"] == 0.5
    assert row["ours_over_floor_compiled"] == 2.0 and row["ours_over_peer_compiled"] == 1 / 3
    assert row["floor_over_peer"] == 0.5 / 3.0
    assert row["counts"] == {"products": 15, "spline_elements": 0,
                             "sequential_steps": bench.AR_LAYERS * 1}
