"""Ray as the scheduler's backend: one long-lived actor per worker.

An actor imports torch once (2–5 s) and then takes job after job. Actors are never restarted
by Ray (``max_restarts=0``): when one dies (killed, out of memory, its node lost) the
bookkeeping decides what replaces it, from the capacity that is still alive. Every failure of
an actor call becomes a "lost" event; the only fatal one is an actor whose own set-up raised
(a package missing on a node), which no retry can mend.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .backend import Event
from .resources import ClusterShape, WorkerSpec
from .worker import Payload, PhaseRunner

__all__ = ["NAMESPACE", "RayBackend", "cluster_shape", "enable_token_auth"]

NAMESPACE = "nfbench"


@ray.remote(max_restarts=0, max_task_retries=0)  # the driver replaces dead actors itself
class JobWorker:
    """A :class:`PhaseRunner` in a Ray actor."""

    def __init__(self, threads: int, device: str | None = None):
        self.runner = PhaseRunner(threads, device)

    def where(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {"pid": os.getpid(), "node": ctx.get_node_id(), "device": str(self.runner.device),
                "resources": ctx.get_assigned_resources()}

    def run(self, payload: Payload) -> dict[str, Any]:
        return self.runner.run(payload)


def enable_token_auth() -> None:
    """Use the cluster's token (``~/.ray/auth_token`` or ``$RAY_AUTH_TOKEN``) when there is
    one: Ray ≥ 2.5x clusters started with ``ray start`` require it, and Ray decides whether to
    send it when it is first imported, which may be before this command knew it would join a
    cluster."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # an older Ray: no token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def cluster_shape() -> ClusterShape:
    """The alive nodes of the connected Ray cluster and their total resources."""
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        nodes.append({"id": n["NodeID"], "cpus": float(res.get("CPU", 0)),
                      "gpus": float(res.get("GPU", 0)), "memory": float(res.get("memory", 0))})
    return ClusterShape(nodes)


class RayBackend:
    """Workers as Ray actors on a local instance (started here) or a joined cluster."""

    max_workers = None

    def __init__(self, address: str | None = None, num_cpus: float | None = None):
        self.address, self.num_cpus = address, num_cpus
        self.started_ray = False
        self._actors: dict[int, Any] = {}
        self._refs: dict[Any, tuple[str, int]] = {}  # ObjectRef → ("start" | "run", worker)
        self._next = 0

    def attached(self) -> bool:
        """Ray is already initialized in this process (a caller's ``ray.init``, or a Ray
        job's driver): connecting joins that instance, whose shape is the one to plan on."""
        return ray.is_initialized()

    def connect(self) -> None:
        if ray.is_initialized():
            return
        env = {k: os.environ[k] for k in ("NFBENCH_DATA", "NFBENCH_REVISION") if k in os.environ}
        # inside a Ray job (nfbench submit) the job's runtime env already carries them, and Ray
        # refuses a second one that names the same variables
        in_ray_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
        runtime_env = {"env_vars": env} if env and not in_ray_job else None
        if self.address:
            enable_token_auth()
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False,
                     runtime_env=runtime_env)
            return
        # "local": a new instance of its own, never a cluster that `ray start` left running
        ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                 namespace=NAMESPACE, log_to_driver=False, runtime_env=runtime_env)
        self.started_ray = True

    def shape(self) -> ClusterShape:
        return cluster_shape()

    def free(self) -> list[dict]:
        shape = cluster_shape()
        alive = {n["id"] for n in shape.nodes}
        try:
            per_node = ray._private.state.available_resources_per_node()
        except Exception:  # a Ray without it: the nodes' totals (stuck workers are reaped)
            return shape.nodes
        return [{"id": node, "cpus": float(r.get("CPU", 0.0)), "gpus": float(r.get("GPU", 0.0)),
                 "memory": float(r.get("memory", 0.0))}
                for node, r in per_node.items() if node in alive]

    def start(self, spec: WorkerSpec) -> int:
        wid, self._next = self._next, self._next + 1
        opts: dict[str, Any] = {"num_cpus": spec.cpus, "num_gpus": spec.gpus}
        if spec.memory:
            opts["memory"] = spec.memory
        if spec.node is not None:
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(spec.node, soft=False)
        actor = JobWorker.options(**opts).remote(spec.threads)
        self._actors[wid] = actor
        self._refs[actor.where.remote()] = ("start", wid)
        return wid

    def submit(self, worker: int, payload: Payload) -> None:
        self._refs[self._actors[worker].run.remote(payload)] = ("run", worker)

    def wait(self, timeout: float) -> list[Event]:
        if not self._refs:
            return []
        ready, rest = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready and rest:  # whatever else finished meanwhile, without waiting
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return [self._event(ref) for ref in ready]

    def _event(self, ref) -> Event:
        kind, wid = self._refs.pop(ref)
        try:
            value = ray.get(ref, timeout=60)
        except RayTaskError as exc:  # raised in the worker outside the phase's own guard
            if kind == "start":
                return Event("start_failed", wid, error=str(exc)[-3000:], fatal=True)
            return Event("done", wid, result={"ok": False, "error": str(exc)[-4000:],
                                              "seconds": 0.0})
        except RayActorError as exc:
            if kind == "start" and getattr(exc, "actor_init_failed", False):
                return Event("start_failed", wid, error=str(exc)[-3000:], fatal=True)
            return Event("start_failed" if kind == "start" else "lost", wid,
                         error=f"{type(exc).__name__}: {str(exc)[-1000:]}")
        except (RayError, GetTimeoutError) as exc:  # unschedulable, node died, object lost
            return Event("start_failed" if kind == "start" else "lost", wid,
                         error=f"{type(exc).__name__}: {str(exc)[-1000:]}")
        if kind == "start":
            return Event("started", wid, info=value)
        return Event("done", wid, result=value)

    def stop(self, worker: int) -> None:
        actor = self._actors.pop(worker, None)
        self._refs = {r: v for r, v in self._refs.items() if v[1] != worker}
        if actor is not None:
            try:
                ray.kill(actor)
            except Exception:
                pass

    def handle(self, worker: int) -> Any:
        return self._actors.get(worker)

    def close(self) -> None:
        for wid in list(self._actors):
            self.stop(wid)
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False
