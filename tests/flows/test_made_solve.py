"""The one-pass sequential solve of autoregressive layers against the plain ``D``-pass solve.

Truth is the textbook inversion: start from ``u = 0`` and run the whole MADE ``D`` times, each
pass making one more rank exact; its last pass gives the log-det. The step plan is checked on
masks of every shape a checkpoint can hold: random orders, fewer hidden units than ranks,
deep MADEs, contexts, and hidden units stored in any order (older checkpoints).
"""

from __future__ import annotations

import pytest
import torch

from harness.flows.check import randomize
from harness.flows.families.nsf import spline
from harness.flows.layers.elementwise import Affine, Elementwise
from harness.flows.layers.made_solve import solve
from harness.flows.made_plan import made_plan
from harness.flows.nets import MADE

D64 = torch.float64


def _naive(made: MADE, ew: Elementwise, v, context, with_log_det: bool):
    u = torch.zeros_like(v)
    ld = None
    for k in range(made.features):
        u, ld, _ = ew.inverse(v, made(u, context), with_log_det and k == made.features - 1)
    return u, (None if ld is None else ld.sum(-1))


def _made(d: int, ew: Elementwise, hidden: int, depth: int, order, ctx, mode: str = "concat"):
    made = MADE(d, ew.n_params, hidden, depth, order, context_dim=ctx, context_mode=mode)
    return randomize(made.double(), scale=0.5, seed=1)  # type: ignore[arg-type]


CASES = [
    pytest.param(5, 16, 2, "identity", None, "concat", id="d5-identity"),
    pytest.param(6, 16, 2, "reverse", 2, "concat", id="d6-reverse-ctx"),
    pytest.param(7, 24, 3, "random", 3, "film", id="d7-random-film-deep"),
    pytest.param(9, 4, 1, "random", None, "concat", id="d9-fewer-units-than-ranks"),
    pytest.param(1, 8, 2, "identity", None, "concat", id="d1"),
    pytest.param(2, 8, 2, "reverse", 1, "film", id="d2-film"),
]


def _order(d: int, kind: str) -> torch.Tensor:
    if kind == "identity":
        return torch.arange(d)
    if kind == "reverse":
        return torch.arange(d).flip(0)
    return torch.randperm(d, generator=torch.Generator().manual_seed(d))


@pytest.mark.parametrize("ew_kind", ["affine", "spline"])
@pytest.mark.parametrize("d, hidden, depth, order, ctx, mode", CASES)
def test_solve_equals_the_d_pass_solve(d, hidden, depth, order, ctx, mode, ew_kind) -> None:
    torch.manual_seed(0)
    ew = Affine(2.0) if ew_kind == "affine" else spline(5, 3.0, 1e-3, 1e-3, 1e-3)
    made = _made(d, ew, hidden, depth, _order(d, order), ctx, mode)
    v = 1.5 * torch.randn(11, d, dtype=D64)
    c = None if ctx is None else torch.randn(11, ctx, dtype=D64)
    with torch.no_grad():
        u, ld, _ = solve(made, ew, v, c, True)
        truth, truth_ld = _naive(made, ew, v, c, True)
        assert torch.allclose(u, truth, atol=1e-12, rtol=0)
        assert ld is not None and truth_ld is not None
        assert torch.allclose(ld, truth_ld, atol=1e-10, rtol=0)
        back, _, _ = ew.forward(u, made(u, c), False)  # and it is the inverse
        assert torch.allclose(back, v, atol=1e-10, rtol=0)


@pytest.mark.parametrize("d, hidden, depth, order, ctx, mode", CASES[1:4])
def test_gradients_of_the_solve_match_the_d_pass_solve(d, hidden, depth, order, ctx, mode):
    torch.manual_seed(0)
    ew = Affine(2.0)
    made = _made(d, ew, hidden, depth, _order(d, order), ctx, mode)
    v = torch.randn(6, d, dtype=D64, requires_grad=True)
    c = None if ctx is None else torch.randn(6, ctx, dtype=D64)
    params = [v, *made.parameters()]
    u, ld, aux = solve(made, ew, v, c, True)  # the autograd path (blocks joined, not in place)
    assert ld is not None and aux is not None and aux.shape == v.shape
    grads = torch.autograd.grad((u.square().sum() + ld.sum()), params, allow_unused=True)
    truth_u, truth_ld = _naive(made, ew, v, c, True)
    assert truth_ld is not None
    truth = torch.autograd.grad(
        (truth_u.square().sum() + truth_ld.sum()), params, allow_unused=True
    )
    assert torch.allclose(u, truth_u, atol=1e-12, rtol=0)
    for g, t in zip(grads, truth, strict=True):
        if t is None:
            assert g is None or g.abs().max() == 0
        else:
            assert g is not None and torch.allclose(g, t, atol=1e-10, rtol=1e-10)


def test_plan_of_a_standard_made_is_one_rank_per_step_in_storage_order() -> None:
    made = MADE(6, 2, 20, 2, torch.arange(6).flip(0))
    plan = made.plan
    assert plan.steps == 6
    assert plan.dim_bounds == (0, 1, 2, 3, 4, 5, 6)
    assert plan.dim_order is not None and plan.dim_order.tolist() == [5, 4, 3, 2, 1, 0]
    assert plan.hidden_orders == (None, None)  # units are stored sorted by degree
    # degree m units are known at step m: 20 units over degrees 1..5 (4 each)
    assert plan.hidden_ends[0] == (0, 4, 8, 12, 16, 20)
    # step s reads the parameters of rank s: rows p·D + i, input-major
    assert plan.out_rows[:4].tolist() == [5, 11, 4, 10]


def test_units_stored_in_any_order_load_and_solve_exactly() -> None:
    """A checkpoint whose hidden units are in another order (older nfbench builds cycled the
    degrees) loads into a fresh MADE: the plan follows the loaded masks."""
    torch.manual_seed(0)
    ew = Affine(2.0)
    made = _made(5, ew, 12, 2, torch.randperm(5), 2, "concat")
    perm = [torch.randperm(12), torch.randperm(12)]
    state = {k: v.clone() for k, v in made.state_dict().items()}
    for k in range(2):  # permute hidden layer k's units: rows here, columns in the next layer
        for key in (f"hidden.{k}.weight", f"hidden.{k}.mask", f"hidden.{k}.bias"):
            state[key] = state[key][perm[k]]
        nxt = f"hidden.{k + 1}" if k == 0 else "out"
        for key in (f"{nxt}.weight", f"{nxt}.mask"):
            state[key] = state[key][:, perm[k]]
    other = MADE(5, 2, 12, 2, torch.arange(5), context_dim=2).double()
    other.load_state_dict(state)
    assert all(h is not None for h in other.plan.hidden_orders)
    v, c = torch.randn(7, 5, dtype=D64), torch.randn(7, 2, dtype=D64)
    with torch.no_grad():
        assert torch.allclose(other(v, c), made(v, c), atol=1e-12)  # the same function
        u, _, _ = solve(other, ew, v, c, False)
        truth, _ = _naive(made, ew, v, c, False)
    assert torch.allclose(u, truth, atol=1e-12, rtol=0)


def test_masks_that_are_not_autoregressive_are_refused() -> None:
    first = torch.ones(4, 3)  # every unit sees every input ...
    out = torch.ones(6, 4)  # ... and every output sees every unit: a cycle
    with pytest.raises(ValueError, match="not autoregressive"):
        made_plan([first], out, 3)
