"""Training within a budget, with checkpoints and best-on-validation selection.

The objective is the negative log-likelihood (a bound, for dequantized discrete data):

.. math:: \\mathcal{L} = -\\frac{1}{B}\\sum_b \\big[\\log p_\\text{flow}(w_b) + \\text{log\\_weight}_b\\big]

Non-finite losses or gradients are skipped and counted; past ``max_nonfinite`` of them the run
is *diverged*. Every ``checkpoint_every`` steps the whole state (model, optimizer, schedule,
random generators, best-so-far weights and the curve points not yet sent) is written as the
run's ``checkpoints/last.pt`` artifact (plain values only, so that it loads with
``torch.load(weights_only=True)``), and only then are the curve points sent: a worker that
dies resumes from that checkpoint and re-sends the same points, which MLflow deduplicates, so
no point is lost or doubled. Points are sent at a checkpoint at most every ``flush_seconds``
(live curves in the MLflow UI without a database round trip per checkpoint of a short job);
the rest travel with the final metrics in one batch.
"""

from __future__ import annotations

import copy
import io
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import keys
from ..tracking.writer import Tracker

__all__ = ["TrainOutcome", "make_optimizer", "make_schedule", "train"]


def make_optimizer(cfg: dict[str, Any], params) -> torch.optim.Optimizer:
    name = cfg["name"]
    kw = {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}
    if name == "adam":
        return torch.optim.Adam(params, betas=tuple(cfg["betas"]), **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, betas=tuple(cfg["betas"]), **kw)
    if name == "adamax":
        return torch.optim.Adamax(params, betas=tuple(cfg["betas"]), **kw)
    if name == "sgd":
        return torch.optim.SGD(params, momentum=0.9, **kw)
    raise ValueError(f"train.optimizer.name: unknown optimizer '{name}'")


def make_schedule(cfg: dict[str, Any], opt, total_steps: int | None):
    """Linear warm-up, then constant or cosine annealing to ``min_lr_ratio`` × lr."""
    warm, floor = cfg["warmup_steps"], cfg["min_lr_ratio"]
    cosine = cfg["name"] == "cosine" and total_steps is not None

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if not cosine:
            return 1.0
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass
class TrainOutcome:
    steps: int
    seconds: float
    best_step: int
    best_val: float
    nonfinite: int
    diverged: bool
    grad_norm_max: float
    grad_norm_mean: float
    best_state: dict[str, Any] | None
    curves: list[tuple[int, float, str, float]] = field(default_factory=list)
    stopped_by: str = "steps"
    pending: list[tuple[int, int, str, float]] = field(default_factory=list)  # not yet sent


def _state_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else copy.deepcopy(v)
            for k, v in state.items()}


def train(flow, deq, data, cfg: dict[str, Any], tracker: Tracker, device: torch.device,
          seed: int, resume: dict[str, Any] | None = None, progress=None,
          flush_seconds: float = 30.0) -> TrainOutcome:
    """Train ``flow`` (and a variational dequantizer's parameters) on ``data.train``.

    ``cfg`` is the job config's ``train`` section; ``resume`` a checkpoint dict from an earlier
    attempt. ``data.train`` / ``data.val`` are tensors already on ``device``, and
    ``data.train_c`` / ``data.val_c`` their contexts (None for an unconditional flow).
    """
    params = [p for p in list(flow.parameters()) + list(deq.parameters()) if p.requires_grad]
    opt = make_optimizer(cfg["optimizer"], params)
    total = cfg["steps"]
    sched = make_schedule(cfg["schedule"], opt, total)
    budget_s = cfg["minutes"] * 60 if cfg["minutes"] else math.inf
    clip = cfg["clip"] if cfg["clip"] else math.inf
    discrete = data.kind == "discrete"
    curve_key = keys.TRAIN_BPD if discrete else keys.TRAIN_NLL
    val_key = keys.VAL_BPD if discrete else keys.VAL_NLL
    dims = deq.dims
    gen = torch.Generator(device="cpu").manual_seed(seed)

    step, elapsed, nonfinite = 0, 0.0, 0
    best_val, best_step, best_state = math.inf, 0, None
    gmax, gsum, gcount = 0.0, 0.0, 0
    curves: list[tuple[int, float, str, float]] = []
    pending: list[tuple[int, int, str, float]] = []  # (step, timestamp ms, key, value)
    if resume:
        flow.load_state_dict(resume["flow"])
        deq.load_state_dict(resume["deq"])
        opt.load_state_dict(resume["opt"])
        sched.load_state_dict(resume["sched"])
        gen.set_state(resume["gen"])
        torch.set_rng_state(resume["torch_rng"])
        step, elapsed, nonfinite = resume["step"], resume["elapsed"], resume["nonfinite"]
        best_val, best_step, best_state = resume["best_val"], resume["best_step"], resume["best_state"]
        gmax, gsum, gcount = resume["gmax"], resume["gsum"], resume["gcount"]
        curves, pending = resume["curves"], resume["pending"]
    last_flush = time.monotonic()

    def record(points: dict[str, float], at: int) -> None:
        now = int(time.time() * 1000)
        for k, v in points.items():
            if math.isfinite(v):
                pending.append((at, now, k, float(v)))
                curves.append((at, elapsed + (time.perf_counter() - t0), k, float(v)))

    def validate() -> float:
        flow.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + 1)  # the same dequantization noise at every validation
            total_ll, n = 0.0, 0
            for i in range(0, len(data.val), 1024):
                x = data.val[i : i + 1024]
                c = None if data.val_c is None else data.val_c[i : i + 1024]
                w, lw = deq(x)
                ll = flow.log_prob(w, context=c) + lw
                total_ll += float(ll.double().sum())
                n += len(x)
        flow.train()
        nll = -total_ll / n
        return nll / (dims * math.log(2)) if discrete else nll

    def checkpoint() -> None:
        # tensors, numbers, strings and containers of them only: it loads weights-only
        state = {
            "flow": flow.state_dict(), "deq": deq.state_dict(), "opt": opt.state_dict(),
            "sched": sched.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "step": step, "elapsed": elapsed + (time.perf_counter() - t0), "nonfinite": nonfinite,
            "best_val": best_val, "best_step": best_step, "best_state": best_state,
            "gmax": gmax, "gsum": gsum, "gcount": gcount, "curves": curves, "pending": pending,
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(keys.ART_CHECKPOINT_LAST).name
            path.write_bytes(_state_bytes(state))
            tracker.log_file(path, str(Path(keys.ART_CHECKPOINT_LAST).parent))
        nonlocal last_flush
        if time.monotonic() - last_flush >= flush_seconds:
            _send(tracker, pending)
            pending.clear()
            last_flush = time.monotonic()

    inner = getattr(flow, "flow", flow)  # through the image-as-vector adapter
    counted = inner if hasattr(inner, "counters") and hasattr(inner, "reset_counters") else None
    regularized = inner if hasattr(inner, "regularizer") else None
    flow.train()
    deq.train()
    t0 = time.perf_counter()
    n_train = len(data.train)
    batch = min(cfg["batch_size"], n_train)
    stopped_by = "steps"
    diverged = False
    while total is None or step < total:
        if elapsed + (time.perf_counter() - t0) >= budget_s:
            stopped_by = "minutes"
            break
        idx = torch.randint(n_train, (batch,), generator=gen).to(device)
        x = data.train[idx]
        c = None if data.train_c is None else data.train_c[idx]
        if counted is not None:
            counted.reset_counters()
        w, lw = deq(x)
        loss = -(flow.log_prob(w, context=c) + lw).mean()
        if regularized is not None:  # RNODE's speed penalty (CNFs), 0 unless the suite sets it
            loss = loss + regularized.regularizer()
        step += 1
        if not torch.isfinite(loss):
            nonfinite += 1
            opt.zero_grad(set_to_none=True)
        else:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            if not math.isfinite(gnorm):
                nonfinite += 1
                opt.zero_grad(set_to_none=True)
            else:
                opt.step()
                gmax, gsum, gcount = max(gmax, gnorm), gsum + gnorm, gcount + 1
                if step % cfg["log_every"] == 0 or step == 1:
                    nll = float(loss.detach())
                    point = {keys.TRAIN_LOSS: nll,
                             curve_key: nll / (dims * math.log(2)) if discrete else nll,
                             keys.TRAIN_GRAD_NORM: gnorm,
                             keys.TRAIN_LR: opt.param_groups[0]["lr"],
                             keys.TRAIN_WALL_S: elapsed + (time.perf_counter() - t0)}
                    if counted is not None:
                        nfe = counted.counters()
                        point[keys.TRAIN_NFE_FORWARD] = nfe["nfe_forward"]
                        point[keys.TRAIN_NFE_BACKWARD] = nfe["nfe_backward"]
                    record(point, step)
        sched.step()
        if nonfinite > cfg["max_nonfinite"]:
            diverged = True
            stopped_by = "diverged"
            break
        last = total is not None and step >= total
        if step % cfg["eval_every"] == 0 or last:
            val = validate()
            record({val_key: val}, step)
            if math.isfinite(val) and val < best_val:
                best_val, best_step = val, step
                best_state = {"flow": _cpu_copy(flow.state_dict()), "deq": _cpu_copy(deq.state_dict())}
            if progress:
                progress(step, val)
        if step % cfg["checkpoint_every"] == 0 and not last:
            checkpoint()
    seconds = elapsed + (time.perf_counter() - t0)
    if best_state is None or stopped_by == "minutes":
        val = validate()
        if stopped_by == "minutes":
            record({val_key: val}, step)
        if math.isfinite(val) and val < best_val:
            best_val, best_step = val, step
            best_state = {"flow": _cpu_copy(flow.state_dict()), "deq": _cpu_copy(deq.state_dict())}
    if best_state is None:
        diverged = True
    return TrainOutcome(step, seconds, best_step, best_val, nonfinite, diverged, gmax,
                        gsum / max(1, gcount), best_state, curves, stopped_by, pending)


def _send(tracker: Tracker, points: list[tuple[int, int, str, float]]) -> None:
    """Send curve points with their original timestamps (idempotent in MLflow's SQL store)."""
    if not points:
        return
    send = getattr(tracker, "log_points", None)
    if send is not None:
        send(points)
    else:
        for step, _ts, k, v in points:
            tracker.log_metrics({k: v}, step)
    tracker.flush()
