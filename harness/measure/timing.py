"""Timing of a flow's operations with :mod:`torch.utils.benchmark`.

Each measurement runs after warm-up for at least ``min_run_time`` seconds
(``Timer.blocked_autorange``), synchronises CUDA around each block, and reports the median
block time. The log-det cost is not guessed: it is the difference of two timed passes,
``transform(x)`` with and without its log-det (DESIGN.md); its share is that difference over
the pass with the log-det. Timing runs in the timing phase, with no other job on the device.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.utils import benchmark

from .. import keys

__all__ = ["Timing", "median_ms", "paired_ms", "time_flow"]


@dataclass
class Timing:
    metrics: dict[str, float]
    info: dict[str, str]


def median_ms(fn, min_run_time: float, label: str = "") -> float:
    """Median wall time of ``fn()`` in milliseconds (device-synchronised)."""
    fn()  # warm-up (lazy init, autotuning, allocator)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label,
                            num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def paired_ms(fn_a, fn_b, min_run_time: float, rounds: int = 5) -> tuple[float, float]:
    """Median times of two functions measured in alternating blocks.

    A difference of two timings (the log-det cost) is only as good as the conditions the two
    shared: alternating ``rounds`` blocks of each spreads any drift of the machine over both.
    """
    fn_a(), fn_b()
    a, b = [], []
    per = min_run_time / rounds
    threads = torch.get_num_threads()
    for _ in range(rounds):
        for fn, acc in ((fn_a, a), (fn_b, b)):
            t = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
            acc.append(t.blocked_autorange(min_run_time=per).median)
    a.sort(), b.sort()
    return a[len(a) // 2] * 1e3, b[len(b) // 2] * 1e3


def time_flow(flow, x: torch.Tensor, *, min_run_time: float = 0.2,
              sample_batch: int | None = None, train_step: bool = True,
              context: torch.Tensor | None = None) -> Timing:
    """Time density, forward with / without log-det, inverse, sampling and a training step.

    ``x`` is a batch of flow inputs (already dequantized / preprocessed) on the flow's device.
    """
    device = x.device
    flow.eval()
    n = sample_batch or len(x)
    c = context
    cn = None if c is None else c[torch.arange(n, device=c.device) % len(c)]
    with torch.no_grad():
        z, _ = flow.transform(x, context=c)
        m: dict[str, float] = {}
        fwd, fwd_nold = paired_ms(lambda: flow.transform(x, context=c),
                                  lambda: flow.transform(x, context=c, with_log_det=False),
                                  2 * min_run_time)
        m[keys.PERF_DENSITY_MS] = median_ms(lambda: flow.log_prob(x, context=c), min_run_time,
                                            "density")
        m[keys.PERF_FORWARD_NOLOGDET_MS] = fwd_nold
        m[keys.PERF_LOGDET_MS] = fwd - fwd_nold
        m[keys.PERF_LOGDET_SHARE] = (fwd - fwd_nold) / fwd if fwd > 0 else float("nan")
        m[keys.PERF_INVERSE_MS] = median_ms(lambda: flow.inverse(z, context=c), min_run_time,
                                            "inverse")
        sample_ms = median_ms(lambda: flow.sample(n, context=cn), min_run_time, "sample")
        m[keys.PERF_SAMPLE_MS] = sample_ms
        m[keys.PERF_SAMPLE_THROUGHPUT] = n / (sample_ms / 1e3)
    if train_step:
        clone = copy.deepcopy(flow).train()
        opt = torch.optim.Adam(clone.parameters(), lr=1e-6)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss = -clone.log_prob(x, context=c).mean()
            loss.backward()
            opt.step()

        m[keys.PERF_TRAIN_STEP_MS] = median_ms(step, min_run_time, "train-step")
        del clone, opt
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            flow.log_prob(x, context=c)
            flow.sample(n, context=cn)
        torch.cuda.synchronize(device)
        m[keys.PERF_PEAK_MEM_MB] = torch.cuda.max_memory_allocated(device) / 2**20
    m[keys.PERF_BATCH] = float(len(x))
    info = {
        "nfbench.timing.device": str(device),
        "nfbench.timing.threads": str(torch.get_num_threads()),
        "nfbench.timing.batch": str(len(x)),
        "nfbench.timing.sample_batch": str(n),
        "nfbench.timing.min_run_time": str(min_run_time),
        "nfbench.timing.method": "torch.utils.benchmark blocked_autorange, median; log-det = "
                         "forward − forward without log-det, alternating blocks",
    }
    return Timing(m, info)
