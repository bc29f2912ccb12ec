"""What else the machine did while a timing ran: load, other processes' CPU, CPU steal.

Read from Linux's ``/proc/stat`` (jiffies of every CPU: busy, idle, steal), ``/proc/loadavg``
and this process's own CPU time (``getrusage``, all its threads) before and after a
measurement. Over the measurement's wall time ``t``:

.. math::
    \\text{others} = \\frac{\\Delta\\text{busy}_\\text{all CPUs} / \\text{HZ}
        - \\Delta\\text{cpu}_\\text{this process}}{t}, \\qquad
    \\text{steal} = \\frac{\\Delta\\text{steal}}{\\Delta\\text{total}}

``others`` is how many CPUs other processes kept busy on average (a CPU-bound neighbour
counts about 1). A timing is *contended* when others kept busy more than half of the CPUs
the timing left free (at least a quarter of a CPU), or when the hypervisor stole more than
5 % of the CPU time: then the timing shared the machine's cores, caches or memory bandwidth
with something else. Where ``/proc`` is missing (not Linux), nothing is known and nothing is
marked.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Interference", "Probe", "between", "contended", "probe"]

HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
STEAL_LIMIT = 0.05
OTHERS_FLOOR = 0.25  # CPUs
_STAT = Path("/proc/stat")
_LOADAVG = Path("/proc/loadavg")


@dataclass(frozen=True)
class Probe:
    """One reading of the machine's counters."""

    wall: float
    busy: int  # jiffies, all CPUs: user nice system irq softirq
    total: int  # busy + idle + iowait + steal
    steal: int
    own: float  # this process's CPU seconds (user + system, all threads)
    load1: float
    cpus: int


@dataclass(frozen=True)
class Interference:
    """Between two probes: the mean CPUs busy with other processes, the share of CPU time
    stolen, the larger 1-minute load average, and the machine's CPU count."""

    others_cpus: float
    steal_share: float
    load1: float
    cpus: int

    def contended(self, threads: int) -> bool:
        return contended(self, threads)


def probe() -> Probe | None:
    """Read the counters now (None where ``/proc/stat`` cannot be read)."""
    try:
        lines = _STAT.read_text().splitlines()
        load1 = float(_LOADAVG.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    fields = [int(v) for v in lines[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq
    cpus = sum(1 for ln in lines[1:] if ln.startswith("cpu") and ln[3:4].isdigit())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Probe(time.perf_counter(), busy, busy + idle + iowait + steal, steal,
                 usage.ru_utime + usage.ru_stime, load1, max(1, cpus))


def between(a: Probe | None, b: Probe | None) -> Interference | None:
    """What happened between two probes (None when either is missing)."""
    if a is None or b is None or b.wall <= a.wall:
        return None
    wall = b.wall - a.wall
    others = max(0.0, ((b.busy - a.busy) / HZ - (b.own - a.own)) / wall)
    total = b.total - a.total
    steal = (b.steal - a.steal) / total if total > 0 else 0.0
    return Interference(others, steal, max(a.load1, b.load1), b.cpus)


def contended(seen: Interference | None, threads: int) -> bool:
    """Whether a timing that used ``threads`` CPUs shared the machine (module docstring)."""
    if seen is None:
        return False
    free = max(0, seen.cpus - threads)
    return seen.others_cpus > max(OTHERS_FLOOR, 0.5 * free) or seen.steal_share > STEAL_LIMIT
