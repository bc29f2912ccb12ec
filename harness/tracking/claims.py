"""Claims on job keys with a driver lease, kept in the MLflow store itself.

Several drivers may run one suite into one store at once (two shells, a re-run after a driver
was killed, a Ray job beside a laptop). Each job key must still get one run. A driver
therefore *claims* a key before it opens the key's run, and only the holder of a claim opens,
resumes or closes that run.

The store offers one atomic primitive that works the same on SQLite, PostgreSQL and an MLflow
server: **a run's parameter is written once**. Logging a parameter that exists with another
value fails, and two writers racing on the same new key cannot both succeed (the parameter's
primary key is ``(run, key)``, so the second insert is refused by the database inside the
same transaction that would have written it). Everything below is built on that primitive:

* the suite's **ledger** is a *directory* run (named by the suite experiment's tag
  ``nfbench.ledger``) and ``K`` *shard* runs. The directory's parameter ``shards`` fixes
  ``K`` (the first driver writes it, from its suite's size: about :data:`KEYS_PER_SHARD`
  keys a shard); its parameter ``shard.j`` names shard ``j``'s run. A shard run is created
  when first needed: a driver creates a run and writes ``shard.j``; of two drivers doing so,
  one write fails, and the loser deletes its run and adopts the winner's;
* key ``K`` lives in shard ``crc32(K) mod K``. A claim of ``K`` in generation ``g`` is the
  shard parameter ``claim.K.g`` whose value is the claiming driver's id. Whoever writes it
  first holds ``K``. Claims of one shard go in one ``log_batch`` (all written or none);
* a driver's **lease** is the directory tag ``driver.<id>``: its host, process id, expiry
  time and the time written, renewed by a background thread every ``ttl / 4`` seconds and
  marked ended when the driver stops. A claim is *alive* while its driver's lease is: not
  ended, not expired, and (on this host) its process still exists;
* a claim whose driver is gone is **taken over** by writing generation ``g + 1``, which
  again only one driver can do.

Why it scales: MLflow checks a parameter batch against *all* of the run's parameters, and
reading a run returns all of them, so a single ledger run made every claim O(N) and a suite
O(N²). A shard holds about :data:`KEYS_PER_SHARD` keys whatever the suite's size, so a
claim, a take-over and a second driver's discovery of a held key each cost O(1) store
operations per key: one shard write per shard touched by a window of keys, and at most one
read of each shard, whose holders are then known (and cached) for every key it holds. A
driver takes its jobs in shard-major order (:meth:`Ledger.order`), so that a window of
consecutive jobs touches few shards and its claims are a few writes, not one per key. A
cached holder is only ever used to *try* a write: a stale cache makes the write fail, and
the shard is read again.

The ledger runs live in the experiment :data:`LEDGER_EXPERIMENT` (so suites' run tables show
only jobs).
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException

from .. import keys

__all__ = ["LEDGER_EXPERIMENT", "POLL_OTHERS_S", "Holder", "Ledger", "driver_id",
           "hold_or_wait", "shard_count"]

LEDGER_EXPERIMENT = keys.LEDGER_EXPERIMENT
MAX_BATCH = 100  # MLflow's limit on params per log_batch
DEFAULT_TTL_S = 120.0
KEYS_PER_SHARD = 64  # claims a shard is sized for (a shard's reads and writes cost O(this))
MAX_SHARDS = 4096
POLL_OTHERS_S = 5.0  # how often a driver waiting on other drivers' keys looks again
LEASE_CACHE_S = 2.0  # how long a read of the leases answers "is that driver alive?"


def shard_count(n_keys: int) -> int:
    """Shards for a suite of ``n_keys`` keys: a power of two near ``n / KEYS_PER_SHARD``."""
    want = max(1, math.ceil(max(1, n_keys) / KEYS_PER_SHARD))
    return min(MAX_SHARDS, 1 << (want - 1).bit_length())


def shard_of(key: str, shards: int) -> int:
    """The shard that holds ``key``'s claims (stable across processes and hosts)."""
    return zlib.crc32(key.encode()) % shards


def driver_id() -> str:
    """A driver's identity: host, process id and a random suffix (unique per process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds a key: the driver id, the claim generation, and whether it is alive."""

    driver: str
    generation: int
    alive: bool

    @property
    def where(self) -> str:
        host, pid, _ = (self.driver.split(":") + ["", "", ""])[:3]
        return f"{host} pid {pid}"


class Ledger:
    """Claims of one driver in one suite's ledger (see the module docstring).

    ``shards``: the shard count to propose when the ledger has none yet (the suite's size
    decides it once, see :func:`shard_count`); an existing ledger keeps its own."""

    def __init__(self, client, run_id: str, me: str | None = None,
                 ttl: float | None = None, retry=None, shards: int | None = None):
        self.client = client
        self.run_id = run_id  # the directory run
        self.me = me or driver_id()
        self.ttl = float(ttl if ttl is not None else
                         os.environ.get("NFBENCH_LEASE_SECONDS", DEFAULT_TTL_S))
        self._retry = retry or (lambda fn, *a, **k: fn(*a, **k))
        self._propose = shards or 1
        self.held: dict[str, int] = {}  # key → generation this driver holds
        self.took: dict[str, str] = {}  # key → the driver it was taken over from
        self.lapsed = False  # a renewal came later than the lease allows: re-check ownership
        self.ops = 0  # store operations this ledger made (the scale benchmark counts them)
        self._last_renewal = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shards: int | None = None
        self._shard_runs: dict[int, str] = {}
        self._experiment: str | None = None
        self._known: dict[str, tuple[int, str]] = {}  # key → (generation, driver), cached
        self._leases: dict[str, dict] = {}
        self._leases_at = -math.inf
        self._leases_wall = 0.0  # wall-clock time of that read

    def _call(self, fn, *args, **kwargs):
        self.ops += 1
        return self._retry(fn, *args, **kwargs)

    # ── the lease ──────────────────────────────────────────────────────────────────────
    def _lease_value(self, ended: bool = False) -> str:
        host, pid = socket.gethostname(), os.getpid()
        now = time.time()
        return json.dumps({"host": host, "pid": pid, "ended": ended, "at": now,
                           "expires": 0 if ended else now + self.ttl})

    def renew(self) -> None:
        """Write this driver's lease (raises when the store cannot be reached)."""
        self._call(self.client.log_batch, self.run_id,
                   tags=[RunTag(f"driver.{self.me}", self._lease_value())])
        now = time.monotonic()
        if self._last_renewal and now - self._last_renewal > self.ttl:
            self.lapsed = True
        self._last_renewal = now

    def start(self) -> None:
        """Write the lease, then renew it in a background thread until :meth:`stop`."""
        self.renew()

        def beat() -> None:
            while not self._stop.wait(self.ttl / 4):
                try:
                    self.renew()
                except Exception:  # the store is down for now; the next beat tries again
                    if time.monotonic() - self._last_renewal > self.ttl:
                        self.lapsed = True

        self._thread = threading.Thread(target=beat, name="nfbench-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the lease: every claim of this driver is free for others at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._call(self.client.log_batch, self.run_id,
                       tags=[RunTag(f"driver.{self.me}", self._lease_value(ended=True))])
        except Exception:  # the lease then expires on its own after ttl seconds
            pass

    # ── the directory: shard count, shard runs, leases ─────────────────────────────────
    def _read_directory(self) -> None:
        run = self._call(self.client.get_run, self.run_id)
        self._experiment = run.info.experiment_id
        params = run.data.params
        if "shards" in params:
            self._shards = int(params["shards"])
        for name, value in params.items():
            if name.startswith("shard."):
                self._shard_runs[int(name[len("shard."):])] = value
        self._take_leases(run.data.tags)

    def _take_leases(self, tags: dict[str, str]) -> None:
        leases = {}
        for name, value in tags.items():
            if name.startswith("driver."):
                try:
                    leases[name[len("driver."):]] = json.loads(value)
                except ValueError:
                    continue
        self._leases, self._leases_at, self._leases_wall = leases, time.monotonic(), time.time()

    @property
    def shards(self) -> int:
        """The ledger's shard count (fixed by the first driver that wrote it)."""
        if self._shards is None:
            self._read_directory()
        if self._shards is None:
            try:
                self._call(self.client.log_batch, self.run_id,
                           params=[Param("shards", str(self._propose))])
                self._shards = self._propose
            except MlflowException:  # another driver fixed it first
                self._read_directory()
        assert self._shards is not None
        return self._shards

    def order(self, items: list, key: Callable[[object], str] = str) -> list:
        """``items`` in shard-major order (the given order within a shard): a window of
        consecutive items then touches few shards, so that its claims are a few writes."""
        k = self.shards
        return sorted(items, key=lambda it: shard_of(key(it), k))

    def _shard_run(self, j: int) -> str:
        """Shard ``j``'s run, created (once, whatever races) when first needed."""
        if j in self._shard_runs:
            return self._shard_runs[j]
        self._read_directory()
        if j in self._shard_runs:
            return self._shard_runs[j]
        run = self._call(self.client.create_run, self._experiment,
                         run_name=f"shard {j}", tags={keys.TAG_LEDGER: self.run_id})
        rid = run.info.run_id
        try:
            self._call(self.client.log_batch, self.run_id, params=[Param(f"shard.{j}", rid)])
            self._shard_runs[j] = rid
        except MlflowException:  # another driver made shard j first: use theirs
            self._call(self.client.delete_run, rid)
            self._read_directory()
        return self._shard_runs[j]

    def leases(self, fresh: bool = False) -> dict[str, dict]:
        """Every driver's lease (read again when older than :data:`LEASE_CACHE_S`)."""
        if fresh or time.monotonic() - self._leases_at > LEASE_CACHE_S:
            self._read_directory()
        return self._leases

    def gone_since(self, driver: str, leases: dict[str, dict]) -> float | None:
        """When ``driver`` stopped writing to the store, as a wall-clock bound, or None while
        it is alive: an ended lease gives its time, an expired one its expiry, and a process
        found gone on this host the time it was found gone. A lease counts as expired only
        when it had expired by the time it was read, so a cached read never declares a
        driver that renewed since dead."""
        if driver == self.me:
            return None
        lease = leases.get(driver)
        if not lease:
            return 0.0
        if lease.get("ended"):
            return float(lease.get("at", 0.0))
        expires = float(lease.get("expires", 0))
        if expires < self._leases_wall:
            return expires
        if lease.get("host") == socket.gethostname() and not _pid_alive(int(lease.get("pid",
                                                                                      0))):
            return time.time()
        return None

    def gone_drivers(self) -> set[str]:
        """The drivers whose leases say they are gone now (read fresh): nothing they wrote
        can change what a read of the store made after this call sees."""
        leases = self.leases(fresh=True)
        return {d for d in leases if self.gone_since(d, leases) is not None}

    def _alive(self, driver: str, leases: dict[str, dict]) -> bool:
        return self.gone_since(driver, leases) is None

    # ── reading claims ─────────────────────────────────────────────────────────────────
    def _read_shard(self, j: int) -> None:
        """Learn every claim of shard ``j`` (its latest generation per key)."""
        params = self._call(self.client.get_run, self._shard_run(j)).data.params
        latest: dict[str, tuple[int, str]] = {}
        for name, owner in params.items():
            if not name.startswith("claim."):
                continue
            key, _, gen = name[len("claim."):].rpartition(".")
            g = int(gen)
            if key not in latest or g > latest[key][0]:
                latest[key] = (g, owner)
        self._known.update(latest)

    def _holder(self, key: str, leases: dict[str, dict]) -> Holder | None:
        c = self._known.get(key)
        return None if c is None else Holder(c[1], c[0], self._alive(c[1], leases))

    def holders(self, keys: Iterable[str], fresh: bool = True) -> dict[str, Holder | None]:
        """The current holder of each key (None: never claimed). ``fresh``: read the keys'
        shards again (one read per shard); otherwise what this driver last learnt."""
        keys = list(keys)
        if fresh:
            for j in sorted({shard_of(k, self.shards) for k in keys}):
                self._read_shard(j)
        leases = self.leases()
        return {k: self._holder(k, leases) for k in keys}

    # ── claiming ───────────────────────────────────────────────────────────────────────
    def _write(self, j: int, claims: dict[str, int]) -> bool:
        """Write ``claim.K.g = me`` in shard ``j`` for every key at once; False when any is
        taken."""
        params = [Param(f"claim.{k}.{g}", self.me) for k, g in claims.items()]
        try:
            self._call(self.client.log_batch, self._shard_run(j), params=params)
        except MlflowException:
            return False
        for k, g in claims.items():
            if g > 0 and k in self._known and self._known[k][1] != self.me:
                self.took[k] = self._known[k][1]
        self.held.update(claims)
        self._known.update({k: (g, self.me) for k, g in claims.items()})
        return True

    def claim(self, keys: list[str]) -> dict[str, Holder | None]:
        """Claim ``keys``; returns, for each key this driver did *not* get, its holder.

        Keys are grouped by shard. A group's free keys are claimed in one write; when the
        write meets a claimed key, the shard is read once and the group's free and abandoned
        keys are claimed (or taken over) in one write again; only a race lost on that second
        write falls back to one key at a time."""
        lost: dict[str, Holder | None] = {}
        todo = [k for k in dict.fromkeys(keys) if k not in self.held]
        groups: dict[int, list[str]] = {}
        for k in todo:
            groups.setdefault(shard_of(k, self.shards), []).append(k)
        for j, group in groups.items():
            for i in range(0, len(group), MAX_BATCH):
                lost.update(self._claim_group(j, group[i : i + MAX_BATCH]))
        return lost

    def _plan(self, group: list[str]) -> tuple[dict[str, int], dict[str, Holder | None]]:
        """From what is known: the generation to write for each key this driver may take,
        and the holder of each key it may not."""
        leases = self.leases()
        want: dict[str, int] = {}
        lost: dict[str, Holder | None] = {}
        for k in group:
            h = self._holder(k, leases)
            if h is None:
                want[k] = 0
            elif h.driver == self.me:
                self.held[k] = h.generation
            elif h.alive:
                lost[k] = h
            else:
                want[k] = h.generation + 1
        return want, lost

    def _claim_group(self, j: int, group: list[str]) -> dict[str, Holder | None]:
        want, lost = self._plan(group)
        if not want or self._write(j, want):
            return lost
        self._read_shard(j)
        want, lost = self._plan(group)
        if not want or self._write(j, want):
            return lost
        for k, g in want.items():  # lost a race on the batch: each key on its own
            if not self._write(j, {k: g}):
                lost[k] = self.holders([k])[k]
                if lost[k] is not None and lost[k].driver == self.me:
                    del lost[k]
        return lost

    def take(self, key: str, holder: Holder | None) -> bool:
        """Claim ``key`` if it is free, or take it over if its holder is gone (one write; a
        holder that turns out stale makes it fail, and the caller asks again)."""
        if holder is None:
            ok = self._write(shard_of(key, self.shards), {key: 0})
        elif holder.driver == self.me:
            self.held[key] = holder.generation
            return True
        elif holder.alive:
            return False
        else:
            ok = self._write(shard_of(key, self.shards), {key: holder.generation + 1})
        if not ok:
            self._read_shard(shard_of(key, self.shards))
        return ok

    def still_mine(self, key: str) -> bool:
        """Whether this driver still holds ``key`` (checked only after a lapsed lease,
        when another driver may have taken the key over)."""
        if not self.lapsed:
            return key in self.held
        holder = self.holders([key])[key]
        return holder is not None and holder.driver == self.me


def hold_or_wait(ledger: Ledger, key: str, settled: Callable[[], bool],
                 on_wait: Callable[[], None] = lambda: None,
                 poll_s: float = POLL_OTHERS_S) -> bool:
    """Hold ``key``: claim it, or wait while another live driver holds it and take it over
    when that driver is gone. Returns False (not held) as soon as ``settled()`` says the
    key's work was finished meanwhile. ``on_wait`` is called once, when waiting begins."""
    lost = ledger.claim([key])
    waited = False
    while key in lost:
        if settled():
            return False
        if ledger.take(key, ledger.holders([key])[key]):
            return True
        if not waited:
            on_wait()
            waited = True
        time.sleep(poll_s)
    return True
