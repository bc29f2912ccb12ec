"""``ffjord`` against the reference approach and against nfbench's discrete flows.

The reference is FFJORD's own approach, written out here in its style (rtqichen/ffjord
``lib/layers/odefunc.py``, ``cnf.py``): concat-squash layers, a brute-force divergence that
always builds a graph (``create_graph=True``), the state ``(z, Δlog p)`` solved by torchdiffeq's
``dopri5`` with its default mixed norm. Both CNFs get the same network size and the same
(randomised) weights, so they solve the same ODE; the rows give their function evaluations and
the largest difference of their log-densities beside the times.

Operations, at D = 2 and 8 on one batch (float32):

- ``density``: ``log_prob`` in eval mode without gradients (ffjord: exact trace, D ≤ 64);
- ``train_step``: ``log_prob`` with the exact trace, then ``backward`` (direct
  back-propagation through the solver in both CNFs).

Peers: the reference CNF, ``realnvp`` and ``maf`` (defaults). Each row holds ``ours_ms``,
``peer_ms`` and ``ratio = ours_ms / peer_ms`` (below 1: ffjord is faster), timed with
``torch.utils.benchmark`` in blocks alternating between ffjord and the peer
(:func:`harness.measure.timing.paired_ms`: each side's first quartile over its blocks that ran
at speed).

With ``--floor`` (``flows_vs_peers.py --floor`` passes it on) each (D, op) also gets ffjord's
floor (:class:`floors.CNFFloor`): the dense products of its network's batch-sized layers
(``D → 64 → 64 → 64 → D``), each applied once per function evaluation, ``nfe`` times, ``nfe``
being what our solve used on that batch for that operation (the forward solve's evaluations;
the train step back-propagates through the same products). The solver's stage arithmetic, the
time gates (on the scalar ``t``) and the exact trace (``D`` vector-Jacobian products per
evaluation) are not counted, so it is a lower bound well below ffjord's time where the trace
dominates. Timed in blocks alternating with ffjord; the rows gain ``floor_ms`` and
``ours_over_floor``, and the section prints them beside ffjord ÷ the reference.

Usage: python benchmarks/cnf_rows.py [--quick] [--threads N] [--floor]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from harness import flows
from harness.flows.check import randomize
from harness.flows.families.ffjord import CNFFlow
from harness.measure.timing import paired_ms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floors import CNFFloor  # benchmarks/floors.py

__all__ = ["ReferenceCNF", "rows"]

TOL = 1e-5  # FFJORD's default rtol = atol
HIDDEN, DEPTH = 64, 3  # FFJORD's toy network: 64-64-64


# ── the reference: FFJORD's approach, written out ──────────────────────────────────────────
class _ConcatSquashLinear(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self._layer = nn.Linear(dim_in, dim_out)
        self._hyper_bias = nn.Linear(1, dim_out, bias=False)
        self._hyper_gate = nn.Linear(1, dim_out)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        tt = t.view(1, 1).to(x)
        return self._layer(x) * torch.sigmoid(self._hyper_gate(tt)) + self._hyper_bias(tt)


def _divergence_bf(dx: Tensor, y: Tensor) -> Tensor:
    total = torch.zeros(y.shape[0], device=y.device, dtype=y.dtype)
    for i in range(y.shape[1]):
        total = total + torch.autograd.grad(dx[:, i].sum(), y, create_graph=True)[0][:, i]
    return total


class _ODEfunc(nn.Module):
    def __init__(self, d: int, hidden: int, depth: int):
        super().__init__()
        dims = [d] + [hidden] * depth + [d]
        self.layers = nn.ModuleList(_ConcatSquashLinear(a, b) for a, b in pairwise(dims))
        self.act = nn.Softplus()
        self.nfe = 0

    def forward(self, t: Tensor, states: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        self.nfe += 1
        y = states[0]
        with torch.set_grad_enabled(True):
            y.requires_grad_(True)
            dx = y
            for k, layer in enumerate(self.layers):
                dx = layer(t, dx)
                if k < len(self.layers) - 1:
                    dx = self.act(dx)
            div = _divergence_bf(dx, y)
        return dx, -div


class ReferenceCNF(nn.Module):
    """A plain torchdiffeq CNF in FFJORD's style: ``log p(x) = log N(z) − Δlog p``."""

    def __init__(self, d: int, hidden: int = HIDDEN, depth: int = DEPTH, tol: float = TOL):
        super().__init__()
        self.odefunc = _ODEfunc(d, hidden, depth)
        self.tol = tol

    def log_prob(self, x: Tensor) -> Tensor:
        t = torch.tensor([0.0, 1.0]).to(x)
        zero = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        z, dlogp = odeint(
            self.odefunc, (x, zero), t, rtol=self.tol, atol=self.tol, method="dopri5"
        )
        z, dlogp = z[-1], dlogp[-1]
        logpz = -0.5 * z.square().sum(-1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return logpz - dlogp

    def load_from(self, flow: CNFFlow) -> ReferenceCNF:
        """Copy the weights of ``flow``'s (single) CNF, layer by layer."""
        (cnf,) = flow.cnf_layers()
        with torch.no_grad():
            for mine, ref in zip(cnf.net.layers, self.odefunc.layers):  # type: ignore[union-attr]
                ref._layer.weight.copy_(mine.layer.weight)
                ref._layer.bias.copy_(mine.layer.bias)
                ref._hyper_gate.weight.copy_(mine.time.gate.weight)
                ref._hyper_gate.bias.copy_(mine.time.gate.bias)
                ref._hyper_bias.weight.copy_(mine.time.shift.weight)
        return self


# ── timing ─────────────────────────────────────────────────────────────────────────────────
def _density(model: nn.Module, x: Tensor) -> Callable[[], object]:
    def run() -> object:
        model.eval()
        with torch.no_grad():
            return model.log_prob(x)  # type: ignore[operator]

    return run


def _train_step(model: nn.Module, x: Tensor) -> Callable[[], object]:
    params = list(model.parameters())

    def run() -> object:
        model.train()
        for p in params:
            p.grad = None
        loss = -model.log_prob(x).mean()  # type: ignore[operator]
        loss.backward()
        return loss

    return run


def _nfe_of(model: nn.Module, run: Callable[[], object]) -> int:
    if isinstance(model, CNFFlow):
        model.reset_counters()
        run()
        return model.counters()["nfe_forward"]
    if isinstance(model, ReferenceCNF):
        model.odefunc.nfe = 0
        run()
        return model.odefunc.nfe
    return 0


def cnf_floor(flow: CNFFlow, batch: int, nfe: int) -> CNFFloor:
    """ffjord's floor: its (single) CNF network's batch-sized products, ``nfe`` times."""
    (cnf,) = flow.cnf_layers()
    layers = [layer.layer for layer in cnf.net.layers]  # type: ignore[union-attr]
    return CNFFloor(layers, batch, nfe).to(next(flow.parameters()).device)


def rows(quick: bool, floor: bool = False) -> list[dict]:
    """Time ffjord against its peers at D = 2 and 8; one row per (D, op, peer); with
    ``floor``, each row also holds ffjord's floor for its (D, op) (module doc)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch, min_run_time = (256, 0.2) if quick else (512, 1.0)
    out: list[dict] = []
    for d in (2, 8):
        torch.manual_seed(0)
        ours = flows.build("ffjord", d, hidden=HIDDEN, depth=DEPTH, rtol=TOL, atol=TOL,
                           trace="exact")  # fmt: skip
        ours = randomize(ours, scale=1.0, seed=1).to(device)  # type: ignore[assignment]
        ref = ReferenceCNF(d).load_from(ours).to(device)  # type: ignore[arg-type]
        peers: dict[str, nn.Module] = {
            "torchdiffeq-reference": ref,
            "realnvp": flows.build("realnvp", d).to(device),
            "maf": flows.build("maf", d).to(device),
        }
        x = torch.randn(batch, d, generator=torch.Generator().manual_seed(2)).to(device)
        ours.eval()
        with torch.no_grad():
            diff = float((ours.log_prob(x) - ref.log_prob(x)).abs().max())
        for op, make in (("density", _density), ("train_step", _train_step)):
            ours_run = make(ours, x)
            ours_nfe = _nfe_of(ours, ours_run)
            floor_ms = math.nan
            if floor:
                floor_run = make(cnf_floor(ours, batch, ours_nfe), x)
                _, floor_t, _ = paired_ms(ours_run, floor_run, 2 * min_run_time, device=device)
                floor_ms = floor_t.value
            for peer, model in peers.items():
                run = make(model, x)
                ours_t, peer_t, _ = paired_ms(ours_run, run, 2 * min_run_time, device=device)
                ours_ms, peer_ms = ours_t.value, peer_t.value
                out.append({
                    "bench": "cnf", "ours": "ffjord", "peer": peer, "op": op, "D": d,
                    "batch": batch, "device": device.type, "threads": torch.get_num_threads(),
                    "ours_ms": ours_ms, "peer_ms": peer_ms, "ratio": ours_ms / peer_ms,
                    "nfe": ours_nfe, "peer_nfe": _nfe_of(model, run),
                    "max_abs_diff": diff if model is ref else math.nan,
                })  # fmt: skip
                if floor:
                    out[-1].update(floor_ms=floor_ms, ours_over_floor=ours_ms / floor_ms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller batch, shorter timing")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--floor", action="store_true",
                    help="also time ffjord's floor: its network's products × its NFE")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print_rows(rows(args.quick, floor=args.floor))


def print_rows(table: list[dict]) -> None:
    """The ffjord section as printed by this file and by ``flows_vs_peers.py``."""
    head = (f"{'D':>2} {'op':<10} {'peer':<22} {'ffjord ms':>10} {'peer ms':>9} "
            f"{'ratio':>7} {'nfe':>5} {'peer nfe':>8} {'|Δlog p|':>9}")  # fmt: skip
    print(f"ffjord (dopri5, rtol=atol={TOL:g}, {HIDDEN}×{DEPTH}, exact trace) vs peers; "
          f"batch {table[0]['batch']}, {table[0]['device']}, "
          f"{table[0]['threads']} threads")  # fmt: skip
    print(head)
    for r in table:
        print(f"{r['D']:>2} {r['op']:<10} {r['peer']:<22} {r['ours_ms']:>10.2f} "
              f"{r['peer_ms']:>9.2f} {r['ratio']:>7.2f} {r['nfe']:>5} {r['peer_nfe']:>8} "
              f"{r['max_abs_diff']:>9.1e}")  # fmt: skip
    print("ratio = ffjord ms / peer ms (below 1: ffjord faster); nfe = forward evaluations")
    floored = [r for r in table if "floor_ms" in r and r["peer"] == "torchdiffeq-reference"]
    if floored:
        print("\nffjord floor (its network's products × nfe; solver arithmetic and trace not "
              "counted): ffjord ÷ floor beside ffjord ÷ the reference")
        print(f"{'D':>2} {'op':<10} {'ffjord ms':>10} {'floor ms':>9} {'nfe':>5} "
              f"{'ours/floor':>10} {'ours/ref':>8}")  # fmt: skip
        for r in floored:
            print(f"{r['D']:>2} {r['op']:<10} {r['ours_ms']:>10.2f} {r['floor_ms']:>9.3f} "
                  f"{r['nfe']:>5} {r['ours_over_floor']:>10.1f} {r['ratio']:>8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
