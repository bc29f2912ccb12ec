"""Timing of a flow's operations with :mod:`torch.utils.benchmark`, with its noise.

Each measurement runs after warm-up for at least ``min_run_time`` seconds and at least
:data:`MIN_BLOCKS` blocks (``torch.utils.benchmark.Timer.timeit``: blocks of repeated calls,
device-synchronised around each block, sized to last about ``min_run_time / MIN_BLOCKS``).
Interference from other work only ever adds time, so the reported value is a low quantile
of the block times, the first quartile (:data:`ESTIMATOR`); beside it each
``perf/*_ms`` metric records the median, the interquartile range (IQR) of the block times and
the number of blocks (:func:`spread_keys`).

Around each measurement the machine's load, the CPU that other processes used and the CPU
stolen by a hypervisor are read (:mod:`.interference`). A measurement whose blocks disagree
(IQR above :data:`NOISY` of the median) is timed again, up to :data:`RETRIES` more times; the
quietest attempt is kept (not contended first, then the smallest relative IQR). A run whose
kept measurements include one taken while other processes kept the free CPUs busy is marked
contended (``perf/contended`` = 1, tag ``nfbench.timing.contended``).

A compiled runtime (``compiled``, a function that gives a flow's compiled view,
:func:`harness.flows.compiled_view`) times every operation through the view. Its first call of
each operation compiles it; those first calls run before anything is timed, and their wall
time is recorded apart as ``perf/compile_s``, beside the view's graph breaks and
recompilations. Then, before any timing, the view is checked against the eager flow on the
timing batch (:func:`harness.flows.compare_with_eager`: log-densities and inverses within
√ε of the dtype); a mismatch raises :class:`CompiledMismatch` with the numbers.

The log-det cost is not guessed: it is the difference of two timed passes, ``transform(x)``
with and without its log-det, measured in alternating blocks so that a drift of the machine
is shared by both; its spread is the IQR over the rounds of the per-round differences.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils import benchmark

from .. import keys
from ..flows import compare_with_eager
from . import interference

__all__ = ["ESTIMATOR", "CompiledMismatch", "Measured", "Timing", "measure_ms", "median_ms",
           "paired_ms", "retime", "time_flow"]

QUANTILE = 0.25  # the estimator: this quantile of the block times
ESTIMATOR = "first quartile (25th percentile) of the block times"
NOISY = 0.10  # blocks disagree: IQR above this share of the median
RETRIES = 2
MIN_BLOCKS = 8
PAIRED_BLOCKS = 3  # per side and round of a paired measurement (5 rounds: 15 blocks a side)


class CompiledMismatch(RuntimeError):
    """A compiled view disagrees with its eager flow on the timing batch (the job fails)."""


@dataclass
class Timing:
    metrics: dict[str, float]
    info: dict[str, str]
    detail: dict[str, dict] = field(default_factory=dict)  # per measurement (timing.json)


@dataclass
class Measured:
    """One measurement in milliseconds: ``value`` (the estimator), ``median``, ``iqr`` and
    ``blocks`` of the kept attempt, its ``times`` (block times), how many ``attempts`` were
    made, and what the machine did meanwhile."""

    value: float
    median: float
    iqr: float
    blocks: int
    times: list[float]
    attempts: int = 1
    others_cpus: float = math.nan
    steal_share: float = math.nan
    load1: float = math.nan
    contended: bool = False

    @property
    def noisy(self) -> bool:
        return self.iqr > NOISY * self.median

    def metrics(self, key: str) -> dict[str, float]:
        median, iqr, blocks = keys.spread_keys(key)
        return {key: self.value, median: self.median, iqr: self.iqr, blocks: float(self.blocks)}


def _quantiles(times_ms: np.ndarray) -> tuple[float, float, float]:
    """The estimator, the median and the IQR of block times."""
    value, q1, med, q3 = np.quantile(times_ms, [QUANTILE, 0.25, 0.5, 0.75])
    return float(value), float(med), float(q3 - q1)


def _summary(times_ms: list[float], seen: interference.Interference | None, threads: int
             ) -> Measured:
    t = np.asarray(times_ms, dtype=float)
    value, median, iqr = _quantiles(t)
    m = Measured(value, median, iqr, len(t), [float(v) for v in t])
    if seen is not None:
        m.others_cpus, m.steal_share, m.load1 = seen.others_cpus, seen.steal_share, seen.load1
        m.contended = seen.contended(threads)
    return m


def _quietest(attempts: list[Measured]) -> Measured:
    best = min(attempts, key=lambda m: (m.contended, m.iqr / m.median if m.median else 0.0))
    best.attempts = len(attempts)
    return best


def _timer(fn, threads: int, label: str = "") -> benchmark.Timer:
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label, num_threads=threads)


def _block_times(fn, threads: int, min_run_time: float, label: str = "",
                 min_blocks: int = MIN_BLOCKS) -> list[float]:
    """Per-call times in ms of at least ``min_blocks`` blocks and ``min_run_time`` seconds.

    A block is ``number`` calls timed together (``Timer.timeit``, device-synchronised), with
    ``number`` chosen from one call so that a block lasts about ``min_run_time / min_blocks``
    (``blocked_autorange`` sizes blocks to make the timer's overhead negligible, which for a
    fast operation means one or two long blocks: no spread to read)."""
    timer = _timer(fn, threads, label)
    one = max(timer.timeit(1).times[0], 1e-9)
    number = max(1, int(min_run_time / min_blocks / one))
    times: list[float] = []
    total = 0.0
    while len(times) < min_blocks or total < min_run_time:
        per_call = timer.timeit(number).times[0]
        times.append(per_call * 1e3)
        total += per_call * number
    return times


def measure_ms(fn, min_run_time: float, label: str = "", retries: int = RETRIES) -> Measured:
    """Time ``fn()`` (device-synchronised blocks, at least ``min_run_time`` s) and re-time it
    while its blocks disagree (module docstring)."""
    fn()  # warm-up (lazy init, autotuning, allocator)
    threads = torch.get_num_threads()

    def once() -> Measured:
        before = interference.probe()
        times = _block_times(fn, threads, min_run_time, label)
        return _summary(times, interference.between(before, interference.probe()), threads)

    return retime(once, retries)


def retime(measure, retries: int = RETRIES) -> Measured:
    """``measure()`` again while its blocks disagree, at most ``retries`` more times; the
    quietest attempt (not contended first, then the smallest relative IQR), with the number
    of attempts made."""
    attempts = [measure()]
    while attempts[-1].noisy and len(attempts) <= retries:
        attempts.append(measure())
    return _quietest(attempts)


def median_ms(fn, min_run_time: float, label: str = "") -> float:
    """Median wall time of ``fn()`` in milliseconds (device-synchronised), timed once."""
    fn()
    timer = _timer(fn, torch.get_num_threads(), label)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def paired_ms(fn_a, fn_b, min_run_time: float, rounds: int = 5, retries: int = RETRIES
              ) -> tuple[Measured, Measured, Measured]:
    """Two functions timed in ``rounds`` alternating rounds of blocks, and their difference.

    Returns ``(a, b, a − b)``: ``a`` and ``b`` summarise each function's blocks over all
    rounds; the difference's value is ``a.value − b.value`` and its spread the IQR over the
    rounds of the per-round differences (``blocks`` = rounds). Re-timed like
    :func:`measure_ms` when either side's blocks disagree.
    """
    fn_a(), fn_b()
    threads = torch.get_num_threads()
    per = min_run_time / rounds
    tries: list[tuple[Measured, Measured, Measured]] = []
    for _ in range(retries + 1):
        before = interference.probe()
        a_times: list[float] = []
        b_times: list[float] = []
        diffs = []
        for _ in range(rounds):
            ta = np.asarray(_block_times(fn_a, threads, per, min_blocks=PAIRED_BLOCKS))
            tb = np.asarray(_block_times(fn_b, threads, per, min_blocks=PAIRED_BLOCKS))
            a_times += ta.tolist()
            b_times += tb.tolist()
            diffs.append(float(np.quantile(ta, QUANTILE) - np.quantile(tb, QUANTILE)))
        seen = interference.between(before, interference.probe())
        a, b = _summary(a_times, seen, threads), _summary(b_times, seen, threads)
        d = _summary(diffs, seen, threads)
        d.value = a.value - b.value
        d.median = float(np.median(diffs))
        tries.append((a, b, d))
        if not (a.noisy or b.noisy):
            break
    best = min(tries, key=lambda t: (t[0].contended, max(t[0].iqr / t[0].median,
                                                          t[1].iqr / t[1].median)))
    for m in best:
        m.attempts = len(tries)
    return best


def time_flow(flow, x: torch.Tensor, *, min_run_time: float = 0.2,
              sample_batch: int | None = None, train_step: bool = True,
              context: torch.Tensor | None = None,
              compiled: Callable[[Any], Any] | None = None) -> Timing:
    """Time density, forward with / without log-det, inverse, sampling and a training step.

    ``x`` is a batch of flow inputs (already dequantized / preprocessed) on the flow's device.
    ``compiled`` (a flow → compiled view function) times the operations through compiled views
    of the flow and of the training step's copy, compiled before anything is timed and checked
    against eager first (module docstring); None times the eager flow.
    """
    device = x.device
    flow.eval()
    n = sample_batch or len(x)
    c = context
    cn = None if c is None else c[torch.arange(n, device=c.device) % len(c)]
    measured: dict[str, Measured] = {}
    run = flow if compiled is None else compiled(flow)
    if train_step:
        clone = copy.deepcopy(flow).train()
        clone_run = clone if compiled is None else compiled(clone)
        opt = torch.optim.Adam(clone.parameters(), lr=1e-6)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss = -clone_run.log_prob(x, context=c).mean()
            loss.backward()
            opt.step()

    extra: dict[str, float] = {}
    if compiled is not None:  # compile every timed operation first: no compilation is timed
        t0 = time.perf_counter()
        with torch.no_grad():
            run.log_prob(x, context=c)
            run.transform(x, context=c)
            run.transform(x, context=c, with_log_det=False)
            zc, _ = run.transform(x, context=c)
            run.inverse(zc, context=c)
            run.sample(n, context=cn)
        if train_step:
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        extra[keys.PERF_COMPILE_S] = time.perf_counter() - t0
        check = compare_with_eager(flow, run, x, c)
        if not check.ok:
            raise CompiledMismatch(check.message)
        extra[keys.PERF_EAGER_LOGPROB_ERR] = check.logprob_err
        extra[keys.PERF_EAGER_INVERSE_ERR] = check.inverse_err
    with torch.no_grad():
        z, _ = run.transform(x, context=c)
        fwd, fwd_nold, logdet = paired_ms(
            lambda: run.transform(x, context=c),
            lambda: run.transform(x, context=c, with_log_det=False), 2 * min_run_time)
        measured[keys.PERF_DENSITY_MS] = measure_ms(lambda: run.log_prob(x, context=c),
                                                    min_run_time, "density")
        measured[keys.PERF_FORWARD_NOLOGDET_MS] = fwd_nold
        measured[keys.PERF_LOGDET_MS] = logdet
        measured[keys.PERF_INVERSE_MS] = measure_ms(lambda: run.inverse(z, context=c),
                                                    min_run_time, "inverse")
        measured[keys.PERF_SAMPLE_MS] = measure_ms(lambda: run.sample(n, context=cn),
                                                   min_run_time, "sample")
    if train_step:
        measured[keys.PERF_TRAIN_STEP_MS] = measure_ms(step, min_run_time, "train-step")
    if compiled is not None:
        stats = [run.stats()] + ([clone_run.stats()] if train_step else [])
        extra[keys.PERF_GRAPH_BREAKS] = float(sum(st.graph_breaks for st in stats))
        extra[keys.PERF_RECOMPILES] = float(sum(st.recompiles for st in stats))
    if train_step:
        del clone, clone_run, opt
    m: dict[str, float] = {}
    for key, meas in measured.items():
        m.update(meas.metrics(key))
    m.update(extra)
    m[keys.PERF_LOGDET_SHARE] = logdet.value / fwd.value if fwd.value > 0 else float("nan")
    sample_ms = measured[keys.PERF_SAMPLE_MS].value
    m[keys.PERF_SAMPLE_THROUGHPUT] = n / (sample_ms / 1e3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            run.log_prob(x, context=c)
            run.sample(n, context=cn)
        torch.cuda.synchronize(device)
        m[keys.PERF_PEAK_MEM_MB] = torch.cuda.max_memory_allocated(device) / 2**20
    m[keys.PERF_BATCH] = float(len(x))
    m.update(noise_metrics(list(measured.values()) + [fwd]))
    # the paired passes were (re-)timed together: count their re-timings once
    m[keys.PERF_RETIMED] = float(sum(meas.attempts - 1 for key, meas in measured.items()
                                     if key != keys.PERF_FORWARD_NOLOGDET_MS))
    contended = bool(m[keys.PERF_CONTENDED])
    info = {
        keys.TAG_TIMING_DEVICE: str(device),
        keys.TAG_TIMING_THREADS: str(torch.get_num_threads()),
        keys.TAG_TIMING_BATCH: str(len(x)),
        keys.TAG_TIMING_SAMPLE_BATCH: str(n),
        keys.TAG_TIMING_MIN_RUN_TIME: str(min_run_time),
        keys.TAG_TIMING_METHOD: f"torch.utils.benchmark blocks, {ESTIMATOR} (median "
                                 "and IQR recorded beside it); log-det = forward − forward "
                                 "without log-det, alternating blocks"
                                 + ("" if compiled is None else "; compiled view, compiled "
                                    "before timing (perf/compile_s)"),
        keys.TAG_TIMING_CONTENDED: "yes" if contended else "no",
    }
    detail = {key: asdict(meas) for key, meas in measured.items()}
    detail["forward_ms"] = asdict(fwd)
    return Timing(m, info, detail)


def noise_metrics(measured: list[Measured]) -> dict[str, float]:
    """Per run: the worst interference seen and whether any kept measurement was contended,
    how many re-timings were made, and how many kept measurements stayed noisy."""

    def top(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return max(finite) if finite else math.nan

    out = {
        keys.PERF_CONTENDED: float(any(m.contended for m in measured)),
        keys.PERF_OTHERS_CPUS: top([m.others_cpus for m in measured]),
        keys.PERF_STEAL_SHARE: top([m.steal_share for m in measured]),
        keys.PERF_LOAD_AVG: top([m.load1 for m in measured]),
        keys.PERF_RETIMED: float(sum(m.attempts - 1 for m in measured)),
        keys.PERF_NOISY: float(sum(m.noisy for m in measured)),
    }
    return {k: v for k, v in out.items() if math.isfinite(v)}  # nothing known: not recorded
