"""Between optimizer steps, a flow evaluated without gradients uses the weights of *this* step.

The trainer's optimizers run as fused kernels where torch has them, and a fused step writes
the parameters without bumping their version counters; anything derived from the weights and
kept between calls would then be evaluated with an earlier step's weights (and the trainer
would keep the wrong best checkpoint). Checked against a fresh flow loaded with the same
weights, for every optimizer the trainer builds and for the families whose layers derive
tensors from their weights (MADE's masked weights, the sequential solve's blocks)."""

from __future__ import annotations

import pytest
import torch

from harness import flows
from harness.job.train import make_optimizer
from harness.suite.schema import Optimizer


@pytest.mark.parametrize("arch", ["maf", "iaf", "nsf-ar", "realnvp"])
@pytest.mark.parametrize("opt_name", ["adam", "adamw", "adamax", "sgd"])
def test_no_grad_evaluation_sees_every_optimizer_step(arch, opt_name):
    torch.manual_seed(0)
    flow = flows.build(arch, event_shape=4)
    opt = make_optimizer(Optimizer(name=opt_name, lr=0.05), flow.parameters())
    x = torch.randn(64, 4)
    for step in range(3):
        with torch.no_grad():  # evaluation between steps (validation, best-weights check)
            seen = flow.log_prob(x)
            z = torch.randn(8, 4)
            inv = flow.inverse(z)
        fresh = flows.build(arch, event_shape=4)
        fresh.load_state_dict(flow.state_dict())
        with torch.no_grad():
            assert torch.allclose(seen, fresh.log_prob(x), rtol=1e-5, atol=1e-5), step
            assert torch.allclose(inv, fresh.inverse(z), rtol=1e-5, atol=1e-5), step
        opt.zero_grad()
        (-flow.log_prob(x).mean()).backward()
        opt.step()
