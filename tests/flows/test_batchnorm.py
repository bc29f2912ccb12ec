"""Invertible batch normalisation: exact inverse and log-det in training and evaluation mode,
alone and between the layers of every architecture that takes ``batch_norm: true``.

Truth is independent of the layer's own log-det: autograd Jacobians (of the forward in
evaluation mode; in training mode, of the inverse, which uses the statistics the training
forward kept, so the Jacobian is the per-sample one with the batch statistics held fixed, the
convention the log-det follows) and NumPy's mean and variance.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from harness import flows
from harness.flows.check import autograd_log_det, randomize
from harness.flows.layers.batchnorm import BatchNorm
from harness.flows.zoo import hparam_specs

FAMILIES = ["maf", "iaf", "realnvp", "nice", "nsf-coupling", "nsf-ar"]
CTX = 3


def _running_stats(flow: flows.Flow, seed: int = 7) -> flows.Flow:
    """Non-trivial running statistics in every batch-norm layer (fresh ones are 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    for m in flow.modules():
        if isinstance(m, BatchNorm):
            n = m.running_mean.numel()
            m.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64))
            m.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.3)
    return flow


def _build(name: str, d: int, context_dim: int | None) -> flows.Flow:
    torch.manual_seed(0)
    flow = flows.build(name, (d,), context_dim, batch_norm=True, layers=3).double()
    return _running_stats(randomize(flow, seed=1))


def _inputs(d: int, n: int, context_dim: int | None, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5 + 0.7
    c = None if context_dim is None else torch.randn(n, context_dim, generator=g).double()
    return x, c


def _inverse_log_det(flow: flows.Flow, z, context) -> torch.Tensor:
    """log|det ∂f⁻¹/∂z| per sample from the autograd Jacobian of the flow's inverse."""
    out = []
    for i in range(z.shape[0]):
        c = None if context is None else context[i : i + 1]

        def f(v, c=c):
            return flow.inverse(v[None], c).reshape(-1)

        jac = torch.autograd.functional.jacobian(f, z[i])
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


# ── the layer alone ─────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("shape", [(4,), (2, 3, 3)], ids=["vector", "image"])
def test_layer_in_training_mode_uses_batch_statistics(shape) -> None:
    torch.manual_seed(0)
    bn = BatchNorm(shape[0], momentum=0.25).double()
    with torch.no_grad():
        bn.log_gamma.copy_(torch.randn(shape[0]).double() * 0.3)
        bn.beta.copy_(torch.randn(shape[0]).double())
    flow = flows.Flow([bn], shape).train()
    x = torch.randn(16, *shape, dtype=torch.float64) * 3.0 + 2.0
    z, ld = flow.transform(x)
    # NumPy truth: per-feature mean and biased variance over the batch (and pixels)
    xn = np.moveaxis(x.numpy(), 1, -1).reshape(-1, shape[0])
    mean, var = xn.mean(0), xn.var(0)
    gamma, beta = bn.log_gamma.exp().detach().numpy(), bn.beta.detach().numpy()
    expect = (np.moveaxis(x.numpy(), 1, -1) - mean) / np.sqrt(var + bn.eps) * gamma + beta
    assert np.allclose(np.moveaxis(z.detach().numpy(), 1, -1), expect, atol=1e-12)
    pixels = int(np.prod(shape[1:]))
    ld_expect = pixels * (np.log(gamma).sum() - 0.5 * np.log(var + bn.eps).sum())
    assert np.allclose(ld.detach().numpy(), ld_expect, atol=1e-12, rtol=0)
    # running averages: (1 − m)·(0, 1) + m·(batch mean, batch variance)
    assert np.allclose(bn.running_mean.numpy(), 0.25 * mean, atol=1e-12)
    assert np.allclose(bn.running_var.numpy(), 0.75 + 0.25 * var, atol=1e-12)
    # the training-mode inverse inverts this batch's map; its Jacobian is the log-det's
    assert (flow.inverse(z.detach()) - x).abs().max() <= 1e-12
    m = 2 if len(shape) == 1 else 1
    truth = -_inverse_log_det(flow, z.detach()[:m], None)
    assert (ld[:m].detach() - truth).abs().max() <= 1e-10 * max(1.0, float(truth.abs().max()))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 3)], ids=["vector", "image"])
def test_layer_in_evaluation_mode_uses_running_statistics(shape) -> None:
    torch.manual_seed(0)
    bn = BatchNorm(shape[0]).double()
    with torch.no_grad():
        bn.log_gamma.copy_(torch.randn(shape[0]).double() * 0.3)
        bn.beta.copy_(torch.randn(shape[0]).double())
    flow = _running_stats(flows.Flow([bn], shape)).eval()
    before = (bn.running_mean.clone(), bn.running_var.clone())
    x = torch.randn(5, *shape, dtype=torch.float64)
    z, ld = flow.transform(x)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert (flow.inverse(z) - x).abs().max() <= 1e-12
    truth = autograd_log_det(flow, x[:2])
    assert (ld[:2] - truth).abs().max() <= 1e-10 * max(1.0, float(truth.abs().max()))
    # one sample at a time gives the same values: no batch statistics in evaluation mode
    single = torch.cat([flow.transform(x[i : i + 1])[0] for i in range(5)])
    assert torch.allclose(single, z, atol=1e-12, rtol=0)


def test_layer_refuses_a_training_batch_without_statistics() -> None:
    bn = BatchNorm(3).train()
    with pytest.raises(ValueError, match="at least 2 values per feature.*eval"):
        bn(torch.randn(1, 3))
    bn.eval()
    y, _ = bn(torch.randn(1, 3))  # evaluation mode needs no batch
    assert y.shape == (1, 3)
    for kw in ({"momentum": 0.0}, {"momentum": 1.5}, {"eps": 0.0}):
        with pytest.raises(ValueError, match="BatchNorm"):
            BatchNorm(3, **kw)


# ── between the layers of every architecture ───────────────────────────────────────────
@pytest.mark.parametrize("context_dim", [None, CTX], ids=["plain", "ctx"])
@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("name", FAMILIES)
def test_architecture_with_batch_norm_is_exact_in_evaluation_mode(name, d, context_dim):
    flow = _build(name, d, context_dim).eval()
    assert sum(isinstance(m, BatchNorm) for m in flow.modules()) == 3
    x, c = _inputs(d, 6, context_dim)
    z, ld = flow.transform(x, c)
    assert (flow.inverse(z, c) - x).abs().max() <= 1e-9
    truth = autograd_log_det(flow, x[:2], None if c is None else c[:2])
    assert (ld[:2] - truth).abs().max() <= 1e-8 * max(1.0, float(truth.abs().max()))


@pytest.mark.parametrize("context_dim", [None, CTX], ids=["plain", "ctx"])
@pytest.mark.parametrize("name", FAMILIES)
def test_architecture_with_batch_norm_is_exact_in_training_mode(name, context_dim):
    d = 4
    flow = _build(name, d, context_dim).train()
    x, c = _inputs(d, 12, context_dim)
    z, ld = flow.transform(x, c)
    z = z.detach()
    assert (flow.inverse(z, c) - x).abs().max() <= 1e-9  # the same batch's statistics
    truth = -_inverse_log_det(flow, z[:2], None if c is None else c[:2])
    assert (ld[:2].detach() - truth).abs().max() <= 1e-8 * max(1.0, float(truth.abs().max()))
    # training and evaluation differ (batch vs running statistics) ...
    with torch.no_grad():
        z_eval, _ = flow.eval().transform(x, c)
    assert (z_eval - z).abs().max() > 1e-3
    # ... and after enough training forwards on one batch the running averages reach its
    # statistics, so evaluation mode then computes the training map
    flow.train()
    for bn in (m for m in flow.modules() if isinstance(m, BatchNorm)):
        bn.momentum = 1.0
    with torch.no_grad():
        for _ in range(2 * len(flow.layers)):
            z_train, ld_train = flow.transform(x, c)
        z_eval, ld_eval = flow.eval().transform(x, c)
    assert torch.allclose(z_eval, z_train, atol=1e-9, rtol=0)
    assert torch.allclose(ld_eval, ld_train, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_gradient_reaches_the_batch_norm_parameters(name):
    flow = _build(name, 3, CTX).train()
    x, c = _inputs(3, 8, CTX)
    flow.log_prob(x, c).mean().backward()
    names = [n for n, _ in flow.named_parameters() if "log_gamma" in n or n.endswith("beta")]
    assert len(names) == 6
    for pname, p in flow.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", FAMILIES)
def test_running_statistics_are_saved_and_the_default_build_is_unchanged(name):
    flow = _build(name, 3, None).eval()
    state = flow.state_dict()
    assert any(k.endswith("running_mean") for k in state)
    assert not any(k.endswith("batch_mean") for k in state)  # the training inverse's, not saved
    x, _ = _inputs(3, 5, None)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    torch.manual_seed(99)
    other = flows.build(name, (3,), None, batch_norm=True, layers=3).double().eval()
    other.load_state_dict(torch.load(buf))
    assert torch.allclose(other.log_prob(x), flow.log_prob(x), atol=1e-12, rtol=0)
    # batch_norm: false (the default) builds exactly the flow it built before the option
    torch.manual_seed(0)
    plain = flows.build(name, (3,), None, layers=3)
    torch.manual_seed(0)
    off = flows.build(name, (3,), None, layers=3, batch_norm=False)
    assert not any(isinstance(m, BatchNorm) for m in off.modules())
    assert list(plain.state_dict()) == list(off.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                 off.state_dict().values()))


def test_batch_norm_on_images_and_bad_values_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"batch_norm.*flatten: true"):
        flows.build("realnvp", (2, 4, 4), None, batch_norm=True)
    with pytest.raises(ValueError, match="batch_norm"):
        flows.build("maf", (3,), None, batch_norm="yes")
    spec = hparam_specs("maf")["batch_norm"]
    assert spec.problem(True) is None and spec.problem("yes") is not None
    for name in FAMILIES:
        assert flows.hparams(name)["batch_norm"] is False


# ── compiled views ────────────────────────────────────────────────────────────────────────
def _breaks(fn, *args) -> int:
    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args).graph_break_count


@pytest.mark.parametrize("name", FAMILIES)
def test_batch_norm_traces_as_one_graph(name):
    """Training log_prob (batch statistics and the running-average update) and evaluation
    transform / inverse / sample, with a context, each one graph."""
    torch.manual_seed(0)
    flow = randomize(flows.build(name, (3,), 2, batch_norm=True, layers=2, hidden=8), seed=1)
    x, c = torch.randn(8, 3), torch.randn(8, 2)
    flow.train()
    assert _breaks(flow.log_prob, x, c) == 0
    assert _breaks(flow.inverse, x, c) == 0
    flow.eval()
    for fn, args in ((flow.transform, (x, c)), (flow.inverse, (x, c)), (flow.sample, (8, c))):
        assert _breaks(fn, *args) == 0, f"{name}.{fn.__name__}"


def test_a_compiled_view_with_batch_norm_trains_and_evaluates_as_eager():
    """Inductor-compiled, full graph: training gradients (batch statistics, running-average
    update) and evaluation log-density and inverse against eager."""
    from harness.flows.compiled import compare_with_eager, compiled_view

    torch.manual_seed(0)
    flow = randomize(flows.build("maf", (3,), None, batch_norm=True, layers=1, hidden=8),
                     seed=1).double().train()
    eager_flow = randomize(flows.build("maf", (3,), None, batch_norm=True, layers=1, hidden=8)
                           .double(), seed=1).train()
    eager_flow.load_state_dict(flow.state_dict())
    view = compiled_view(flow, fullgraph=True)
    x = torch.randn(16, 3, dtype=torch.float64) * 2 + 1
    grads = torch.autograd.grad(-view.log_prob(x).mean(), list(flow.parameters()))
    eager = torch.autograd.grad(-eager_flow.log_prob(x).mean(), list(eager_flow.parameters()))
    for g, e in zip(grads, eager, strict=True):
        assert torch.allclose(g, e, atol=1e-10, rtol=1e-8)
    (bn,) = [m for m in flow.modules() if isinstance(m, BatchNorm)]
    (bn_eager,) = [m for m in eager_flow.modules() if isinstance(m, BatchNorm)]
    assert torch.allclose(bn.running_mean, bn_eager.running_mean, atol=1e-12)
    assert bn.running_mean.abs().max() > 0  # the compiled forward updated its buffers
    flow.eval()
    check = compare_with_eager(flow, view, x)
    assert check.ok, check.message
    assert view.stats().graph_breaks == 0


@pytest.mark.parametrize("name", FAMILIES)
def test_preflight_passes_with_batch_norm(name):
    res = flows.preflight(name, 5, {"batch_norm": True, "layers": 2}, context_dim=2)
    assert res.ok, res.message
