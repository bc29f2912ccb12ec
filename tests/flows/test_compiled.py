"""Compiled flows: every architecture traces as one graph, compiled equals eager, the view's
batch-size policies, training through a view, and what it measures.

Compilation is CPU-heavy (seconds per graph even for tiny flows), so the inductor checks use
small shapes (``D = 3``, one layer of width 8) and one compile per method; graph breaks are
counted by ``torch._dynamo.explain``, which traces without generating code, on two layers
(so that alternating orders and permutations are traced too).

``ffjord`` is the documented exception: its layers integrate an ODE with torchdiffeq's
adaptive solvers, whose step-size control accepts or rejects each step by comparing tensors
in Python (a data-dependent loop), so dynamo must break the graph at every step. Its compiled
view still works (``fullgraph=False``, the breaks counted); the test below pins the breaks.
"""

from __future__ import annotations

import pytest
import torch

from harness import flows
from harness.flows.check import randomize
from harness.flows.compiled import RuntimeUnavailable, compare_with_eager, compiled_view
from harness.flows.layers.linear import ActNorm

NAMES = flows.names()
BUILTIN = [n for n in NAMES if not flows.entry(n).meta.get("plugin")]
DISCRETE = [n for n in BUILTIN if not flows.entry(n).meta.get("continuous")]
IMAGES = [n for n in DISCRETE if flows.entry(n).meta.get("images")]
SMALL = {"layers": 2, "hidden": 8, "bins": 3}
CTX = 2


def _small(name: str, shape, context_dim=None, layers: int = 2) -> flows.Flow:
    hp = {k: v for k, v in {**SMALL, "layers": layers}.items() if k in flows.hparams(name)}
    torch.manual_seed(0)
    return randomize(flows.build(name, shape, context_dim, **hp), seed=1)


def _breaks(fn, *args) -> tuple[int, list[str]]:
    torch._dynamo.reset()
    out = torch._dynamo.explain(fn)(*args)
    return out.graph_break_count, [str(b.reason).splitlines()[0] for b in out.break_reasons]


@pytest.mark.parametrize("name", DISCRETE)
def test_every_architecture_traces_as_one_graph(name: str) -> None:
    """transform, log_prob, inverse and sample, with a context; log_prob in training mode
    (ActNorm's first-batch initialisation included) and in evaluation mode."""
    flow = _small(name, (3,), CTX)
    x, c = torch.randn(8, 3), torch.randn(8, CTX)
    flow.train()
    assert _breaks(flow.log_prob, x, c) == (0, [])  # first training call: initialisation
    assert _breaks(flow.log_prob, x, c) == (0, [])
    flow.eval()
    for fn, args in (
        (flow.transform, (x, c)),
        (flow.log_prob, (x, c)),
        (flow.inverse, (x, c)),
        (flow.sample, (8, c)),
    ):
        assert _breaks(fn, *args) == (0, []), f"{name}.{fn.__name__}"


@pytest.mark.parametrize("name", IMAGES)
def test_every_image_architecture_traces_as_one_graph(name: str) -> None:
    flow = _small(name, (2, 4, 4)).train()
    x = torch.randn(4, 2, 4, 4)
    assert _breaks(flow.log_prob, x) == (0, [])
    flow.eval()
    assert _breaks(flow.inverse, x) == (0, [])


def test_ffjord_breaks_graphs_in_the_adaptive_solver() -> None:
    flow = flows.build("ffjord", 2).eval()
    count, reasons = _breaks(flow.log_prob, torch.randn(4, 2))
    assert count > 0
    assert any("Data-dependent" in r or "step_unsupported" in r for r in reasons), reasons


@pytest.mark.parametrize("name", DISCRETE)
def test_compiled_equals_eager_for_every_architecture(name: str) -> None:
    """Inductor-compiled log_prob and inverse (one graph each) against eager in float32 (the
    inverse through a dynamic batch: the sample's size differs from the first batch's)."""
    flow = _small(name, (3,), layers=1).eval()
    view = compiled_view(flow, fullgraph=True)
    x = torch.randn(16, 3)
    check = compare_with_eager(flow, view, x)
    assert check.ok, f"{name}: {check.message}"
    with torch.no_grad():
        scale = max(1.0, float(flow.log_prob(x).abs().max()))
    assert check.logprob_tol == pytest.approx(torch.finfo(torch.float32).eps ** 0.5 * scale)
    stats = view.stats()
    assert stats.graphs == 2 and stats.graph_breaks == 0 and stats.recompiles == 0
    assert set(stats.first_call_s) == {"log_prob/no_grad/eval", "inverse/no_grad/eval"}
    assert stats.compile_s > 0
    with torch.no_grad():
        assert view.sample(24).shape == (24, 3)  # the same (dynamic-batch) inverse graph
    assert view.stats().graphs == 2


def test_compare_with_eager_reports_a_mismatch_with_its_numbers() -> None:
    flow, other = _small("realnvp", (3,)).eval(), _small("realnvp", (3,)).eval()
    randomize(other, seed=7)  # other weights: a "compiled" view that computes something else
    check = compare_with_eager(flow, compiled_view(other, runtime="eager"), torch.randn(8, 3))
    assert not check.ok and check.logprob_err > check.logprob_tol
    assert "MISMATCH" in check.message and f"{check.logprob_err:.3g}" in check.message


def test_dynamic_batch_policy_compiles_once_for_every_batch_size() -> None:
    flow = _small("realnvp", (3,)).eval()
    view = compiled_view(flow, shapes="dynamic", fullgraph=True)
    with torch.no_grad():
        for n in (16, 7, 33, 1000, 360):
            x = torch.randn(n, 3)
            assert torch.allclose(view.log_prob(x), flow.log_prob(x), atol=1e-5, rtol=1e-5)
    stats = view.stats()
    assert stats.graphs == 1 and stats.recompiles == 0


def test_static_policy_recompiles_per_batch_size_and_pad_per_bucket() -> None:
    flow = _small("gaussian", (3,)).eval()
    static = compiled_view(flow, shapes="static")
    padded = compiled_view(flow, shapes="pad")
    with torch.no_grad():
        for n in (16, 9, 12, 16, 3):
            x = torch.randn(n, 3)
            for view in (static, padded):
                lp = view.log_prob(x)
                assert lp.shape == (n,)
                assert torch.allclose(lp, flow.log_prob(x), atol=1e-5, rtol=1e-5)
    assert static.stats().recompiles == 3  # 9, 12 and 3 after 16
    # every size here pads to the bucket of 16 or of 8: two graphs, the second a recompile
    assert padded.stats().graphs == 2 and padded.stats().recompiles == 1


def test_training_through_a_view_matches_eager_gradients_and_initialises_eagerly() -> None:
    """IAF's density is its sequential direction (the solve's autograd path); Glow's ActNorm
    initialises from the first batch, eagerly, then the compiled graph takes over."""
    for name in ("iaf", "glow"):
        flow = _small(name, (3,), CTX, layers=1).double().train()
        if name == "glow":  # as built: ActNorm waits for its first batch
            norms = [m for m in flow.modules() if isinstance(m, ActNorm)]
            assert norms
            for m in norms:
                m.initialized.fill_(False)
                m.pending_init = True
            assert flow.needs_data_init()
        view = compiled_view(flow, fullgraph=True)
        x, c = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, CTX, dtype=torch.float64)
        before = view.stats().graphs
        first = view.log_prob(x, c)  # glow: eager, initialises ActNorm
        assert not flow.needs_data_init()
        if name == "glow":
            assert view.stats().graphs == before  # that call ran eagerly
        loss = -view.log_prob(x, c).mean()
        grads = torch.autograd.grad(loss, list(flow.parameters()))
        eager = torch.autograd.grad(-flow.log_prob(x, c).mean(), list(flow.parameters()))
        for g, e in zip(grads, eager, strict=True):
            assert torch.allclose(g, e, atol=1e-10, rtol=1e-8), name
        assert first.shape == (8,)
        stats = view.stats()
        assert stats.graph_breaks == 0 and "log_prob/grad/train" in stats.first_call_s
        assert flow.stability()  # the layers kept their diagnostics through the graph


def test_eager_runtime_is_the_flow_behind_the_same_interface() -> None:
    flow = _small("maf", (3,)).eval()
    view = compiled_view(flow, runtime="eager")
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(view.log_prob(x), flow.log_prob(x))
        z, ld = view.transform(x)
        assert torch.equal(view.inverse(z), flow.inverse(z)) and ld is not None
    stats = view.stats()
    assert stats.compile_s == 0 and stats.graphs == 0 and stats.first_call_s == {}
    # the module state is the flow's: modes, parameters, shape
    assert view.train().training and flow.training and not view.eval().training
    assert [id(p) for p in view.parameters()] == [id(p) for p in flow.parameters()]
    assert view.event_shape == (3,) and view.context_dim is None


def test_unavailable_runtimes_and_options_are_refused_before_any_work() -> None:
    flow = _small("realnvp", (3,))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailable, match="cuda-graphs.*CUDA device.*'compile'"):
            compiled_view(flow, runtime="cuda-graphs")
    with pytest.raises(RuntimeUnavailable, match="runtime must be one of"):
        compiled_view(flow, runtime="jit")
    with pytest.raises(RuntimeUnavailable, match="shapes must be one of"):
        compiled_view(flow, shapes="bucketed")
    with pytest.raises(RuntimeUnavailable, match="not a mode"):
        compiled_view(flow, mode="reduce-overhead")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_view_equals_eager_on_a_gpu() -> None:
    flow = _small("maf", (3,)).cuda().eval()
    view = compiled_view(flow, runtime="cuda-graphs", shapes="pad")
    x = torch.randn(16, 3, device="cuda")
    check = compare_with_eager(flow, view, x)
    assert check.ok, check.message
    with torch.no_grad():
        a = view.log_prob(x)
        b = view.log_prob(2 * x)  # a second replay must not overwrite the first result
    assert not torch.equal(a, b)
    assert torch.allclose(a, flow.log_prob(x), atol=1e-4, rtol=1e-4)
