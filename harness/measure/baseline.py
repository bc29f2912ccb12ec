"""The canary's fastest reading on this host, kept across processes in the user's cache.

A process compares its canaries with the fastest canary *it* has seen (:mod:`.canary`), so a
process slowed for its whole life (another guest on the same physical cores from before it
started) reads every block as at speed. The host's fastest reading, kept on disk, is the
yardstick such a process lacks: a process's calibration is read against

.. math::
    b = \\min(c_{\\text{this process}},\\; c_{\\text{host}}) \\quad
    \\text{where } c_{\\text{host}} \\text{ was recorded less than }
    :data:`MAX_AGE_DAYS` \\text{ days ago},

and a process whose own fastest canary is more than ``canary.SLOW`` above ``c_host`` sees
every block as slowed (its timings are marked contended). The baseline is kept per CPU model
(``/proc/cpuinfo``'s model name) and thread count: a new CPU starts a baseline of its own.
A calibration faster than the baseline replaces it (the machine really runs that fast); a
baseline older than :data:`MAX_AGE_DAYS` is replaced by the next calibration, so a host
whose speed fell for good (a new hypervisor setting, a smaller instance) is re-learnt within
days.

The file is ``canary.json`` in ``$NFBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/nfbench``, else
``~/.cache/nfbench``: ``{"<cpu model>|<threads>": {"ms": …, "at": <unix time>}}``. Workers
update it under an exclusive ``flock`` and write it whole to a temporary file renamed over it
(``os.replace``), so a reader never sees half a file and concurrent updates are not lost. A
file that cannot be read (corrupt, foreign) is ignored and rewritten; a cache directory that
cannot be written leaves the process with its own fastest reading, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

__all__ = ["ENV_DIR", "MAX_AGE_DAYS", "cache_dir", "cpu_model", "host_key", "record", "read"]

ENV_DIR = "NFBENCH_CACHE_DIR"  # overrides the cache directory (tests use a temporary one)
MAX_AGE_DAYS = 7.0  # a baseline older than this is replaced by the next calibration
FILE = "canary.json"


def cache_dir() -> Path:
    """``$NFBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/nfbench``, else ``~/.cache/nfbench``."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nfbench"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere the platform's processor name)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def host_key(threads: int) -> str:
    return f"{cpu_model()}|{threads}"


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _valid(entry, now: float) -> float:
    """The entry's fastest ms, or NaN when it is malformed or older than MAX_AGE_DAYS."""
    try:
        ms, at = float(entry["ms"]), float(entry["at"])
    except (TypeError, KeyError, ValueError):
        return math.nan
    fresh = 0 <= now - at <= MAX_AGE_DAYS * 86400
    return ms if fresh and math.isfinite(ms) and ms > 0 else math.nan


def read(threads: int, now: float | None = None) -> float:
    """This host's fastest canary (ms per product) at ``threads``; NaN when none is kept or
    it expired."""
    now = time.time() if now is None else now
    return _valid(_load(cache_dir() / FILE).get(host_key(threads)), now)


def record(threads: int, ms: float, now: float | None = None) -> float:
    """Offer this process's fastest canary ``ms``: it replaces the host's baseline when it is
    faster or the baseline expired. Returns the baseline now in force (NaN when the cache
    cannot be written and none could be read)."""
    now = time.time() if now is None else now
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / (FILE + ".lock"), "a+", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _load(folder / FILE)
            key = host_key(threads)
            kept = _valid(data.get(key), now)
            if math.isfinite(kept) and not ms < kept:  # none kept, or expired: replaced
                return kept
            data[key] = {"ms": ms, "at": now}
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=FILE, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, indent=1, sort_keys=True)
                os.replace(tmp, folder / FILE)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return ms
    except OSError:
        return read(threads, now)
