"""Resource slots: how many job workers fit, checked before anything is scheduled."""

from __future__ import annotations

import math
from dataclasses import dataclass

import ray

__all__ = ["ClusterShape", "ResourceError", "cluster_shape", "train_slots"]


class ResourceError(ValueError):
    """A resource request this cluster can never satisfy (exit status 2, nothing scheduled)."""


@dataclass(frozen=True)
class ClusterShape:
    nodes: list[dict]  # alive nodes: {"id", "cpus", "gpus"}

    @property
    def cpus(self) -> float:
        return sum(n["cpus"] for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n["gpus"] for n in self.nodes)


def cluster_shape() -> ClusterShape:
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        nodes.append({"id": n["NodeID"], "cpus": float(res.get("CPU", 0)),
                      "gpus": float(res.get("GPU", 0))})
    return ClusterShape(nodes)


def train_slots(shape: ClusterShape, cpus: float, gpus: float, jobs: int,
                source: str = "suite") -> int:
    """Number of concurrent job workers; raises :class:`ResourceError` when none fits."""
    per_node = []
    for n in shape.nodes:
        fit = math.floor(n["cpus"] / cpus + 1e-9)
        if gpus > 0:
            fit = min(fit, math.floor(n["gpus"] / gpus + 1e-9))
        per_node.append(fit)
    total = sum(per_node)
    if total == 0:
        biggest = max(shape.nodes, key=lambda n: (n["gpus"], n["cpus"]), default=None)
        have = (f"the largest node has {biggest['cpus']:g} CPUs and {biggest['gpus']:g} GPUs"
                if biggest else "the cluster has no alive node")
        fix = ("lower resources.cpus" if biggest is None or cpus > biggest["cpus"]
               else "set resources.gpus: 0 to run on CPUs, or add GPU nodes")
        raise ResourceError(
            f"{source}: resources: a job asks for {cpus:g} CPUs and {gpus:g} GPUs, but {have}; {fix}"
        )
    return max(1, min(total, jobs))


def local_shape(num_cpus: float | None = None) -> ClusterShape:
    """The shape a local Ray instance will have, without starting Ray: one node with
    ``num_cpus`` CPUs (default ``os.cpu_count()``) and ``torch.cuda.device_count()`` GPUs,
    so that a suite's resources are checked before anything is created."""
    import os

    import torch

    cpus = float(num_cpus) if num_cpus is not None else float(os.cpu_count() or 1)
    return ClusterShape([{"id": "local", "cpus": cpus, "gpus": float(torch.cuda.device_count())}])
