"""Resources as plain data: the cluster's alive nodes, worker shapes, and how many fit.

No Ray here: a backend reports the nodes (:class:`ClusterShape`) and their free resources, and
these functions decide how many workers of a shape fit. The scheduler re-plans from them
whenever a worker or a node is lost, so it never waits for resources that its own workers
hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ClusterShape", "ResourceError", "WorkerSpec", "fit_count", "local_shape",
           "timing_specs", "train_capacity", "train_slots", "train_spec"]

EPS = 1e-9


class ResourceError(ValueError):
    """A resource request this cluster can never satisfy (exit status 2, nothing scheduled)."""


@dataclass(frozen=True)
class ClusterShape:
    nodes: list[dict]  # alive nodes: {"id", "cpus", "gpus", "memory" (bytes, optional)}

    @property
    def cpus(self) -> float:
        return sum(n["cpus"] for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n["gpus"] for n in self.nodes)


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker holds while it lives: CPUs, a GPU share, memory, and optionally the
    node it must run on (timing workers hold one whole device of one node)."""

    cpus: float
    gpus: float = 0.0
    memory: int | None = None  # bytes
    node: str | None = None
    threads: int = 1  # torch threads in the worker
    label: str = ""

    def fits(self, free: dict) -> bool:
        """Whether this worker fits in ``free`` (a node's free resources)."""
        ok = free.get("cpus", 0.0) + EPS >= self.cpus and free.get("gpus", 0.0) + EPS >= self.gpus
        if self.memory:
            ok = ok and free.get("memory", math.inf) + 1 >= self.memory
        return ok


def fit_count(spec: WorkerSpec, nodes: list[dict]) -> int:
    """How many workers of ``spec`` fit in ``nodes`` (each a dict of free resources with an
    ``id``), packing each node as full as it goes."""
    total = 0
    for n in nodes:
        if spec.node is not None and n["id"] != spec.node:
            continue
        k = math.floor(n.get("cpus", 0.0) / spec.cpus + EPS) if spec.cpus > 0 else 10**6
        if spec.gpus > 0:
            k = min(k, math.floor(n.get("gpus", 0.0) / spec.gpus + EPS))
        if spec.memory:
            k = min(k, math.floor(n.get("memory", math.inf) / spec.memory + EPS)
                    if math.isfinite(n.get("memory", math.inf)) else k)
        total += max(0, k)
    return total


def train_spec(cpus: float, gpus: float, memory_gb: float | None) -> WorkerSpec:
    """The worker of the train phase: the suite's per-job resources."""
    return WorkerSpec(cpus=cpus, gpus=gpus,
                      memory=int(memory_gb * 2**30) if memory_gb else None,
                      threads=max(1, math.floor(cpus)), label="train")


def train_slots(shape: ClusterShape, cpus: float, gpus: float, jobs: int,
                source: str = "suite") -> int:
    """Number of concurrent job workers; raises :class:`ResourceError` when none fits."""
    return max(1, min(train_capacity(shape, cpus, gpus, source), jobs))


def train_capacity(shape: ClusterShape, cpus: float, gpus: float, source: str = "suite") -> int:
    """How many job workers fit in ``shape`` at once; :class:`ResourceError` when none does
    (``source``: the place the error names)."""
    total = fit_count(WorkerSpec(cpus=cpus, gpus=gpus), shape.nodes)
    if total == 0:
        biggest = max(shape.nodes, key=lambda n: (n["gpus"], n["cpus"]), default=None)
        have = (f"the largest node has {biggest['cpus']:g} CPUs and {biggest['gpus']:g} GPUs"
                if biggest else "the cluster has no alive node")
        fix = ("lower resources.cpus" if biggest is None or cpus > biggest["cpus"]
               else "set resources.gpus: 0 to run on CPUs, or add GPU nodes")
        raise ResourceError(f"{source}: resources: a job asks for {cpus:g} CPUs and "
                            f"{gpus:g} GPUs, but {have}; {fix}")
    return total


def timing_specs(shape: ClusterShape, use_gpus: bool) -> list[WorkerSpec]:
    """One timing worker per device of the alive nodes: a whole GPU (with its share of the
    node's CPUs), or every CPU of a node; each pinned to its node."""
    specs = []
    for node in shape.nodes:
        if use_gpus:
            gpus = int(node["gpus"])
            cpus = node["cpus"] / gpus if gpus else 0.0
            for i in range(gpus):
                specs.append(WorkerSpec(cpus=cpus, gpus=1.0, node=node["id"],
                                        threads=max(1, int(cpus)), label=f"time-gpu{i}"))
        elif node["cpus"] >= 1:
            specs.append(WorkerSpec(cpus=node["cpus"], node=node["id"],
                                    threads=max(1, int(node["cpus"])), label="time-cpu"))
    return specs


def local_shape(num_cpus: float | None = None) -> ClusterShape:
    """The shape a local Ray instance will have, without starting Ray: one node with
    ``num_cpus`` CPUs (default ``os.cpu_count()``) and ``torch.cuda.device_count()`` GPUs,
    so that a suite's resources are checked before anything is created."""
    import os

    import torch

    cpus = float(num_cpus) if num_cpus is not None else float(os.cpu_count() or 1)
    return ClusterShape([{"id": "local", "cpus": cpus,
                          "gpus": float(torch.cuda.device_count())}])
