"""Where a job runs: device, threads, seeds, and the facts recorded beside its numbers."""

from __future__ import annotations

import functools
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from .. import keys

__all__ = ["describe_device", "environment_tags", "pick_device", "code_revision", "seed_all"]


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when there is a GPU visible to this process (Ray sets CUDA_VISIBLE_DEVICES per
    worker from its GPU share), else the CPU; ``prefer`` ("cpu", "cuda") overrides."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=1)
def code_revision() -> str:
    """The git revision of the nfbench checkout (``+dirty`` with local changes), or the
    package version when it is not a checkout (an installed wheel, a Ray job's working dir
    copy); ``NFBENCH_REVISION`` overrides (``nfbench submit`` sets it)."""
    if os.environ.get("NFBENCH_REVISION"):
        return os.environ["NFBENCH_REVISION"]
    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"v{__version__}"


def environment_tags(device: torch.device) -> dict[str, str]:
    """Device, versions and host; on a Slurm allocation also the Slurm node's name (the
    worker inherits ``$SLURMD_NODENAME`` from the job step that started its Ray node)."""
    tags = {
        keys.TAG_DEVICE: describe_device(device),
        keys.TAG_TORCH: torch.__version__,
        keys.TAG_REVISION: code_revision(),
        keys.TAG_HOST: platform.node(),
    }
    if os.environ.get("SLURMD_NODENAME"):
        tags[keys.TAG_SLURM_NODE] = os.environ["SLURMD_NODENAME"]
    return tags
