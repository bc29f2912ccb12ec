"""Claims on job keys with a driver lease, kept in the MLflow store itself.

Several drivers may run one suite into one store at once (two shells, a re-run after a driver
was killed, a Ray job beside a laptop). Each job key must still get one run. A driver
therefore *claims* a key before it opens the key's run, and only the holder of a claim opens,
resumes or closes that run.

The store offers one atomic primitive that works the same on SQLite, PostgreSQL and an MLflow
server: **a run's parameter is written once**. Logging a parameter that exists with another
value fails, and two writers racing on the same new key cannot both succeed (the parameter's
primary key is ``(run, key)``). The ledger is one MLflow run per suite, and

* a claim of key ``K`` in generation ``g`` is the ledger parameter ``claim.K.g`` whose value
  is the claiming driver's id. Whoever writes it first holds ``K``; a batch of claims is one
  ``log_batch``, all written or none;
* a driver's lease is the ledger tag ``driver.<id>``: its host, process id and expiry time,
  renewed by a background thread every ``ttl / 4`` seconds and marked ended when the driver
  stops. A claim is *alive* while its driver's lease is: not ended, not expired, and (on this
  host) its process still exists;
* a claim whose driver is gone is taken over by writing generation ``g + 1``, which again
  only one driver can do.

The ledger run lives in the experiment :data:`LEDGER_EXPERIMENT` (so suites' run tables show
only jobs); the suite's experiment names it in its tag ``nfbench.ledger``, set when the
experiment is created, so that every driver agrees on one ledger (experiment names are
unique, and creation is atomic).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException

from .. import keys

__all__ = ["LEDGER_EXPERIMENT", "Holder", "Ledger", "driver_id"]

LEDGER_EXPERIMENT = keys.LEDGER_EXPERIMENT
MAX_BATCH = 100  # MLflow's limit on params per log_batch
DEFAULT_TTL_S = 120.0


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
    """Claims of one driver in one suite's ledger run (see the module docstring)."""

    def __init__(self, client, run_id: str, me: str | None = None,
                 ttl: float | None = None, retry=None):
        self.client = client
        self.run_id = run_id
        self.me = me or driver_id()
        self.ttl = float(ttl if ttl is not None else
                         os.environ.get("NFBENCH_LEASE_SECONDS", DEFAULT_TTL_S))
        self._retry = retry or (lambda fn, *a, **k: fn(*a, **k))
        self.held: dict[str, int] = {}  # key → generation this driver holds
        self.lapsed = False  # a renewal came later than the lease allows: re-check ownership
        self._last_renewal = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ── the lease ──────────────────────────────────────────────────────────────────────
    def _lease_value(self, ended: bool = False) -> str:
        host, pid = socket.gethostname(), os.getpid()
        return json.dumps({"host": host, "pid": pid, "ended": ended,
                           "expires": 0 if ended else time.time() + self.ttl})

    def renew(self) -> None:
        """Write this driver's lease (raises when the store cannot be reached)."""
        self._retry(self.client.log_batch, self.run_id,
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
            self._retry(self.client.log_batch, self.run_id,
                        tags=[RunTag(f"driver.{self.me}", self._lease_value(ended=True))])
        except Exception:  # the lease then expires on its own after ttl seconds
            pass

    # ── reading the ledger ─────────────────────────────────────────────────────────────
    def _read(self) -> tuple[dict[str, tuple[int, str]], dict[str, dict]]:
        data = self._retry(self.client.get_run, self.run_id).data
        claims: dict[str, tuple[int, str]] = {}
        for name, owner in data.params.items():
            if not name.startswith("claim."):
                continue
            key, _, gen = name[len("claim."):].rpartition(".")
            g = int(gen)
            if key not in claims or g > claims[key][0]:
                claims[key] = (g, owner)
        leases = {}
        for name, value in data.tags.items():
            if name.startswith("driver."):
                try:
                    leases[name[len("driver."):]] = json.loads(value)
                except ValueError:
                    continue
        return claims, leases

    def _alive(self, driver: str, leases: dict[str, dict]) -> bool:
        if driver == self.me:
            return True
        lease = leases.get(driver)
        if not lease or lease.get("ended") or float(lease.get("expires", 0)) < time.time():
            return False
        if lease.get("host") == socket.gethostname():
            return _pid_alive(int(lease.get("pid", 0)))
        return True

    def holders(self, keys: Iterable[str]) -> dict[str, Holder | None]:
        """The current holder of each key (None: never claimed)."""
        claims, leases = self._read()
        out: dict[str, Holder | None] = {}
        for key in keys:
            c = claims.get(key)
            out[key] = None if c is None else Holder(c[1], c[0], self._alive(c[1], leases))
        return out

    # ── claiming ───────────────────────────────────────────────────────────────────────
    def _write(self, claims: dict[str, int]) -> bool:
        """Write ``claim.K.g = me`` for every key at once; False when any is taken."""
        params = [Param(f"claim.{k}.{g}", self.me) for k, g in claims.items()]
        try:
            self._retry(self.client.log_batch, self.run_id, params=params)
        except MlflowException:
            return False
        self.held.update(claims)
        return True

    def claim(self, keys: list[str]) -> dict[str, Holder | None]:
        """Claim ``keys``; returns, for each key this driver did *not* get, its holder.

        Keys never claimed are claimed in batches (one ``log_batch`` each); when a batch
        meets a claimed key, the ledger is read and each free or abandoned key is claimed
        (or taken over) on its own."""
        lost: dict[str, Holder | None] = {}
        todo = [k for k in keys if k not in self.held]
        for i in range(0, len(todo), MAX_BATCH):
            chunk = todo[i : i + MAX_BATCH]
            if self._write({k: 0 for k in chunk}):
                continue
            for key, holder in self.holders(chunk).items():
                got = self.take(key, holder)
                if not got:
                    lost[key] = self.holders([key])[key]
        return lost

    def take(self, key: str, holder: Holder | None) -> bool:
        """Claim ``key`` if it is free, or take it over if its holder is gone."""
        if holder is None:
            return self._write({key: 0})
        if holder.driver == self.me:
            self.held[key] = holder.generation
            return True
        if holder.alive:
            return False
        return self._write({key: holder.generation + 1})

    def still_mine(self, key: str) -> bool:
        """Whether this driver still holds ``key`` (checked only after a lapsed lease,
        when another driver may have taken the key over)."""
        if not self.lapsed:
            return key in self.held
        holder = self.holders([key])[key]
        return holder is not None and holder.driver == self.me
