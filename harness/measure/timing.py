"""Timing of a flow's operations with :mod:`torch.utils.benchmark`, with its noise.

Each measurement runs after warm-up for at least ``min_run_time`` seconds and at least
:data:`MIN_BLOCKS` blocks (``torch.utils.benchmark.Timer.timeit``: blocks of repeated calls,
device-synchronised around each block, sized to last about ``min_run_time / MIN_BLOCKS``).
Interference from other work only ever adds time, so the reported value is a low quantile
of the block times, the first quartile (:data:`ESTIMATOR`); beside it each
``perf/*_ms`` metric records the median, the interquartile range (IQR) of the block times and
the number of blocks (:func:`spread_keys`).

Around each measurement the machine's load, the CPU that other processes used and the CPU
stolen by a hypervisor are read (:mod:`.interference`), and between every two blocks a fixed
reference kernel, the canary (:mod:`.canary`), reads how fast the machine itself runs. Only
blocks that ran at speed (both neighbouring canaries within 10 % of the fastest this process
has seen) enter the estimator, the median and the IQR. Blocks are taken until :data:`MIN_BLOCKS`
ran at speed, or twice as many blocks in all (:data:`SLOWED_SPAN`); a measurement that ends
with fewer at speed is *slowed*: its statistics are over all its blocks. A measurement whose
blocks disagree (IQR above :data:`NOISY` of the median) or that was slowed is timed again, up
to :data:`RETRIES` more times (when slowed, after a pause of :data:`SLOWED_PAUSE` s, doubling:
a slowdown lasts seconds); the quietest attempt is kept (not contended first, then the
smallest relative IQR). A run whose kept measurements include one taken while other processes
kept the free CPUs busy, or one that stayed slowed, is marked contended (``perf/contended`` =
1, tag ``nfbench.timing.contended``).

A compiled runtime (``compiled``, a function that gives a flow's compiled view,
:func:`harness.flows.compiled_view`) times every operation through the view. Its first call of
each operation compiles it; those first calls run before anything is timed, and their wall
time is recorded apart as ``perf/compile_s``, beside the view's graph breaks and
recompilations. Then, before any timing, the view is checked against the eager flow on the
timing batch (:func:`harness.flows.compare_with_eager`: log-densities and inverses within
√ε of the dtype); a mismatch raises :class:`CompiledMismatch` with the numbers.

The log-det cost is not guessed: it is the difference of two timed passes, ``transform(x)``
with and without its log-det, measured in alternating blocks so that a drift of the machine
is shared by both; its spread is the IQR of the differences of adjacent blocks.
"""

from __future__ import annotations

import copy
import json
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
from . import canary, interference

__all__ = ["ESTIMATOR", "CompiledMismatch", "Measured", "Timing", "measure_ms", "median_ms",
           "paired_ms", "retime", "time_flow"]

QUANTILE = 0.25  # the estimator: this quantile of the block times
ESTIMATOR = "first quartile (25th percentile) of the block times"
NOISY = 0.10  # blocks disagree: IQR above this share of the median
RETRIES = 2
SLOWED_PAUSE = 0.5  # seconds before re-timing a slowed measurement (doubling)
MIN_BLOCKS = 8
SLOWED_SPAN = 2  # blocks taken, at most, while waiting for MIN_BLOCKS at speed: this × it
PAIRED_BLOCKS = 16  # blocks a side of a paired measurement (alternating)


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
    ``blocks`` (how many blocks they are over) of the kept attempt; its ``times`` (every
    block) and ``slowdowns`` (per block, the slower neighbouring canary over the fastest:
    :mod:`.canary`); the ``kept`` block times the statistics are over; whether it was
    ``slowed`` (too few blocks at speed: then the statistics are over all of them); how many
    ``attempts`` were made, and what the machine did meanwhile."""

    value: float
    median: float
    iqr: float
    blocks: int
    times: list[float]
    slowdowns: list[float] = field(default_factory=list)
    slowed: bool = False
    attempts: int = 1
    others_cpus: float = math.nan
    steal_share: float = math.nan
    load1: float = math.nan
    contended: bool = False
    kept: list[float] = field(default_factory=list)

    @property
    def noisy(self) -> bool:
        return self.iqr > NOISY * self.median

    @property
    def slowdown(self) -> float:
        """The median block's slowdown (1.0 = full speed; NaN where no canary ran)."""
        return float(np.median(self.slowdowns)) if self.slowdowns else math.nan

    def metrics(self, key: str) -> dict[str, float]:
        median, iqr, blocks = keys.spread_keys(key)
        return {key: self.value, median: self.median, iqr: self.iqr, blocks: float(self.blocks)}


def _quantiles(times_ms: np.ndarray) -> tuple[float, float, float]:
    """The estimator, the median and the IQR of block times."""
    value, q1, med, q3 = np.quantile(times_ms, [QUANTILE, 0.25, 0.5, 0.75])
    return float(value), float(med), float(q3 - q1)


def _summary(times_ms: list[float], seen: interference.Interference | None, threads: int,
             slowdowns: list[float] | None = None, need: int = 0) -> Measured:
    """Statistics of the blocks that ran at speed; a measurement with fewer than ``need`` of
    them is *slowed*, and its statistics are over all its blocks (as they are where no
    canary ran: ``slowdowns`` None or empty)."""
    t = np.asarray(times_ms, dtype=float)
    slowdowns = list(slowdowns) if slowdowns is not None and len(slowdowns) else None
    s = np.asarray(slowdowns if slowdowns is not None else np.ones(len(t)), dtype=float)
    ok = canary.at_speed(s)
    fast = int(ok.sum())
    slowed = fast < need
    used = t[ok] if fast >= max(need, 1) else t
    value, median, iqr = _quantiles(used)
    m = Measured(value, median, iqr, len(used), [float(v) for v in t],
                 [] if slowdowns is None else [float(v) for v in s], slowed,
                 kept=[float(v) for v in used])
    if seen is not None:
        m.others_cpus, m.steal_share, m.load1 = seen.others_cpus, seen.steal_share, seen.load1
    m.contended = slowed or (seen is not None and seen.contended(threads))
    return m


def _timer(fn, threads: int, label: str = "") -> benchmark.Timer:
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label, num_threads=threads)


def _interleaved_blocks(fns: list, threads: int, min_run_time: float, min_blocks: int,
                        label: str = "", device: torch.device | str = "cpu"
                        ) -> tuple[list[list[float]], list[list[float]]]:
    """Blocks of each function in turn, with the canary after every block; per function its
    per-call block times in ms and each block's slowdown (:func:`canary.block_slowdowns`).

    A block is ``number`` calls timed together (``Timer.timeit``, device-synchronised), with
    ``number`` chosen from one call so that a block lasts about
    ``min_run_time / (len(fns) · min_blocks)``. Blocks are taken until ``min_run_time``
    seconds have passed in them and every function has ``min_blocks`` blocks that ran at
    speed, or at most ``SLOWED_SPAN`` times as many blocks. (``blocked_autorange`` sizes
    blocks to make the timer's overhead negligible, which for a fast operation means one or
    two long blocks: no spread to read.) The canaries' own time is not counted."""
    timers = [_timer(fn, threads, label) for fn in fns]
    probe = canary.for_device(device)  # None off the CPU: every block counts
    share = min_run_time / len(fns) / min_blocks
    numbers = [max(1, int(share / max(t.timeit(1).times[0], 1e-9))) for t in timers]
    times: list[list[float]] = [[] for _ in fns]
    canaries = [probe.time() if probe else 1.0]
    total = 0.0
    k = len(fns)

    def slowdowns() -> list[np.ndarray]:
        slow = canary.block_slowdowns(probe.slowdowns(canaries) if probe else canaries)
        return [slow[i::k] for i in range(k)]

    while True:
        for timer, number, out in zip(timers, numbers, times, strict=True):
            per_call = timer.timeit(number).times[0]
            canaries.append(probe.time() if probe else 1.0)
            out.append(per_call * 1e3)
            total += per_call * number
        if total < min_run_time or len(times[0]) < min_blocks:
            continue
        fast = [int(canary.at_speed(s).sum()) for s in slowdowns()]
        if min(fast) >= min_blocks or len(times[0]) >= SLOWED_SPAN * min_blocks:
            break
    if probe is None:
        return times, [[] for _ in fns]
    return times, [s.tolist() for s in slowdowns()]


def measure_ms(fn, min_run_time: float, label: str = "", retries: int = RETRIES,
               device: torch.device | str = "cpu") -> Measured:
    """Time ``fn()`` on ``device`` (device-synchronised blocks, at least ``min_run_time`` s)
    and re-time it while its blocks disagree or the machine ran slow (module docstring)."""
    fn()  # warm-up (lazy init, autotuning, allocator)
    threads = torch.get_num_threads()

    def once() -> Measured:
        before = interference.probe()
        (times,), (slow,) = _interleaved_blocks([fn], threads, min_run_time, MIN_BLOCKS,
                                                label, device)
        return _summary(times, interference.between(before, interference.probe()), threads,
                        slow, MIN_BLOCKS)

    return retime(once, retries)


def retime(measure, retries: int = RETRIES, pause: float | None = None, sides=None):
    """``measure()`` again while its blocks disagree or it was slowed, at most ``retries``
    more times (a slowed attempt is followed by a pause of ``pause`` s, default
    :data:`SLOWED_PAUSE`, doubling each time); the quietest attempt (not contended first,
    then the smallest relative IQR), with the number of attempts made. ``sides`` gives the
    measurements of one attempt that decide (default: the attempt itself, a
    :class:`Measured`)."""
    def parts(attempt) -> tuple[Measured, ...]:
        return (attempt,) if sides is None else tuple(sides(attempt))

    def spread(m: Measured) -> float:
        return m.iqr / m.median if m.median else 0.0

    pause = SLOWED_PAUSE if pause is None else pause
    attempts = [measure()]
    while len(attempts) <= retries:
        last = parts(attempts[-1])
        if not any(m.noisy or m.slowed for m in last):
            break
        if any(m.slowed for m in last):
            time.sleep(pause * 2 ** (len(attempts) - 1))
        attempts.append(measure())
    best = min(attempts, key=lambda a: (any(m.contended for m in parts(a)),
                                        max(spread(m) for m in parts(a))))
    for m in (best if isinstance(best, tuple) else (best,)):
        m.attempts = len(attempts)
    return best


def median_ms(fn, min_run_time: float, label: str = "") -> float:
    """Median wall time of ``fn()`` in milliseconds (device-synchronised), timed once."""
    fn()
    timer = _timer(fn, torch.get_num_threads(), label)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def paired_ms(fn_a, fn_b, min_run_time: float, min_blocks: int = PAIRED_BLOCKS,
              retries: int = RETRIES, device: torch.device | str = "cpu"
              ) -> tuple[Measured, Measured, Measured]:
    """Two functions timed in alternating blocks (a, b, a, b, …), and their difference.

    Returns ``(a, b, a − b)``: ``a`` and ``b`` summarise each function's blocks; the
    difference's value is ``a.value − b.value`` and its median and IQR are over the per-pair
    differences of adjacent blocks that both ran at speed (``blocks`` = those pairs), so a
    drift of the machine is shared by both sides. Re-timed like :func:`measure_ms` when either
    side's blocks disagree or were slowed.
    """
    fn_a(), fn_b()
    threads = torch.get_num_threads()

    def once() -> tuple[Measured, Measured, Measured]:
        before = interference.probe()
        (ta, tb), (sa, sb) = _interleaved_blocks([fn_a, fn_b], threads, min_run_time,
                                                 min_blocks, device=device)
        seen = interference.between(before, interference.probe())
        a = _summary(ta, seen, threads, sa, min_blocks)
        b = _summary(tb, seen, threads, sb, min_blocks)
        diffs = (np.asarray(ta) - np.asarray(tb)).tolist()
        d = _summary(diffs, seen, threads, np.maximum(sa, sb).tolist())
        d.value = a.value - b.value
        d.slowed, d.contended = a.slowed or b.slowed, a.contended or b.contended
        return a, b, d

    return retime(once, retries, sides=lambda t: t[:2])


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
            lambda: run.transform(x, context=c, with_log_det=False), 2 * min_run_time,
            device=device)
        measured[keys.PERF_DENSITY_MS] = measure_ms(lambda: run.log_prob(x, context=c),
                                                    min_run_time, "density", device=device)
        measured[keys.PERF_FORWARD_NOLOGDET_MS] = fwd_nold
        measured[keys.PERF_LOGDET_MS] = logdet
        measured[keys.PERF_INVERSE_MS] = measure_ms(lambda: run.inverse(z, context=c),
                                                    min_run_time, "inverse", device=device)
        measured[keys.PERF_SAMPLE_MS] = measure_ms(lambda: run.sample(n, context=cn),
                                                   min_run_time, "sample", device=device)
    if train_step:
        measured[keys.PERF_TRAIN_STEP_MS] = measure_ms(step, min_run_time, "train-step",
                                                       device=device)
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
                                 "and IQR recorded beside it) over the blocks that ran at "
                                 "speed (a canary kernel between blocks); log-det = forward "
                                 "− forward without log-det, alternating blocks"
                                 + ("" if compiled is None else "; compiled view, compiled "
                                    "before timing (perf/compile_s)"),
        keys.TAG_TIMING_CONTENDED: "yes" if contended else "no",
        keys.TAG_TIMING_BLOCKS: blocks_tag(measured),
    }
    detail = {key: asdict(meas) for key, meas in measured.items()}
    detail["forward_ms"] = asdict(fwd)
    return Timing(m, info, detail)


def blocks_tag(measured: dict[str, Measured]) -> str:
    """The ``nfbench.timing.blocks`` tag: per timed metric of :data:`keys.BLOCKED_MS`, the
    block times its statistics are over, in ms to 4 significant digits (compact JSON: about
    600 characters for a run; a ratio of two timings is bootstrapped from them)."""
    kept = {key: [float(f"{t:.4g}") for t in measured[key].kept]
            for key in keys.BLOCKED_MS if key in measured}
    return json.dumps(kept, separators=(",", ":"))


def noise_metrics(measured: list[Measured]) -> dict[str, float]:
    """Per run: the worst interference seen (the canary's slowdown included) and whether any
    kept measurement was contended, how many re-timings were made, and how many kept
    measurements stayed noisy."""

    def top(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return max(finite) if finite else math.nan

    out = {
        keys.PERF_CONTENDED: float(any(m.contended for m in measured)),
        keys.PERF_OTHERS_CPUS: top([m.others_cpus for m in measured]),
        keys.PERF_STEAL_SHARE: top([m.steal_share for m in measured]),
        keys.PERF_LOAD_AVG: top([m.load1 for m in measured]),
        keys.PERF_SLOWDOWN: top([m.slowdown for m in measured]),
        keys.PERF_RETIMED: float(sum(m.attempts - 1 for m in measured)),
        keys.PERF_NOISY: float(sum(m.noisy for m in measured)),
    }
    return {k: v for k, v in out.items() if math.isfinite(v)}  # nothing known: not recorded
