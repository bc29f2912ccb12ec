"""The machine's own speed, read from a fixed reference kernel timed between timing blocks.

``/proc`` (:mod:`.interference`) sees time taken away from a timing: other processes on the
free CPUs, CPU stolen by a hypervisor. It does not see a machine that keeps running the
timing but runs it slower: on a shared virtual machine another guest on the same physical
cores or caches slows every instruction, for seconds at a time, with no trace in this guest's
counters (measured on a 2-core VM: whole timings 1.3–1.5× slow at load < 1 and no steal).

The canary is a fixed kernel, one float32 product of a 64×256 and a 256×256 matrix on the
CPU at the timing's thread count, timed after one untimed call (its operands back in cache):

.. math::
    c_i = \\frac{1}{n}\\,t(\\text{n products}), \\qquad
    s_i = c_i / \\min_{\\text{this process, this host's baseline}} c

``s_i`` is the machine's slowdown at canary ``i`` relative to the fastest canary this process
(or, in the last days, this host: below) has seen at that thread count (calibrated on first
use: :data:`CALIBRATION` canaries back to back). Nothing else changes between canaries, so
``s_i`` is the machine, not the flow. A timing block between canaries ``i`` and ``i+1`` ran at
speed when both are within :data:`SLOW` of the best (:func:`block_slowdowns`). Slowdowns come
and go within a fraction of a second (measured here: blocks 1.2–1.5× slow beside a canary at
full speed when only one neighbour was asked), so a block needs both.

A slowdown that lasts the whole life of the process (then the process's fastest canary is
itself slow) is read against the host's fastest canary at that thread count, kept in the
user's cache across processes (:mod:`.baseline`): ``min`` above is over this process and the
host's baseline of the last days, so such a process reads its blocks as slowed.

What it cannot see: time-slicing of the CPU, which leaves canaries either whole or
preempted (``/proc``'s steal and other processes' CPU see that; measured here: a CPU-bound
process sharing the core leaves the fastest of 80 canaries within 0.2 % of a quiet core's).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from . import baseline

__all__ = ["CALIBRATION", "CALLS", "SLOW", "Canary", "at_speed", "block_slowdowns", "for_device",
           "reset"]

CALLS = 6  # products per canary (about 0.5 ms on one x86 core)
CALIBRATION = 40  # canaries timed back to back on first use
SLOW = 0.10  # a block ran at speed: both neighbouring canaries within 10 % of the fastest
_SHAPE = (64, 256, 256)  # (rows, inner, cols) of the product


class Canary:
    """The reference kernel on the CPU at the current thread count, and the fastest it has
    run (``best``: in this process or, after :meth:`calibrate`, on this host in the last days;
    ``own_best``: in this process)."""

    def __init__(self):
        rows, inner, cols = _SHAPE
        g = torch.Generator().manual_seed(0)
        self._a = torch.randn(rows, inner, generator=g)
        self._b = torch.randn(inner, cols, generator=g)
        self.best = self.own_best = math.inf

    def time(self) -> float:
        """One canary: milliseconds per product (the fastest seen is updated)."""
        torch.mm(self._a, self._b)  # back in cache after whatever ran before
        t0 = time.perf_counter()
        for _ in range(CALLS):
            torch.mm(self._a, self._b)
        ms = (time.perf_counter() - t0) / CALLS * 1e3
        self.best, self.own_best = min(self.best, ms), min(self.own_best, ms)
        return ms

    def calibrate(self, threads: int | None = None) -> None:
        """:data:`CALIBRATION` canaries back to back, then the host's baseline at ``threads``
        (default: torch's thread count) is offered this process's fastest and read back: the
        faster of the two is the yardstick (:mod:`.baseline`)."""
        for _ in range(CALIBRATION):
            self.time()
        host = baseline.record(torch.get_num_threads() if threads is None else threads,
                               self.own_best)
        if math.isfinite(host):
            self.best = min(self.best, host)

    def slowdowns(self, canaries: list[float]) -> np.ndarray:
        """Each canary's time over the fastest seen (1.0 = full speed)."""
        return np.asarray(canaries, dtype=float) / self.best


_CANARIES: dict[int, Canary] = {}  # by thread count


def for_device(device: torch.device | str) -> Canary | None:
    """This process's canary for ``device`` at the current thread count, calibrated; None
    off the CPU. (A GPU's timing phase holds the whole device, and a product this small is
    bound by its launch latency, whose jitter a 10 % threshold would read as a slowdown; the
    canary has not been measured there, so GPU timings count every block.)"""
    if torch.device(device).type != "cpu":
        return None
    threads = torch.get_num_threads()
    canary = _CANARIES.get(threads)
    if canary is None:
        canary = _CANARIES[threads] = Canary()
        canary.calibrate(threads)
    return canary


def reset() -> None:
    """Forget every canary's fastest time (a new machine, or a test)."""
    _CANARIES.clear()


def block_slowdowns(slowdowns: np.ndarray) -> np.ndarray:
    """For the blocks between consecutive canaries (``len(slowdowns) − 1`` of them): the
    slowdown of the slower neighbouring canary. A block ran at speed where it is within
    :data:`SLOW` of 1."""
    s = np.asarray(slowdowns, dtype=float)
    return np.maximum(s[:-1], s[1:])


def at_speed(slowdowns: np.ndarray | list[float]) -> np.ndarray:
    """Which blocks ran at speed: slowdown within :data:`SLOW` of 1."""
    return np.asarray(slowdowns, dtype=float) <= 1.0 + SLOW
