"""Training within a budget, with checkpoints and best-on-validation selection.

The objective is the negative log-likelihood (a bound, for dequantized discrete data):

.. math::
    \\mathcal{L} = -\\frac{1}{B}\\sum_b
    \\big[\\log p_\\text{flow}(w_b) + \\text{log\\_weight}_b\\big]

plus the flow's own :meth:`~harness.flows.Flow.regularizer` where it has one (a continuous
flow's RNODE terms). Non-finite losses or gradients are skipped and counted; past
``max_nonfinite`` of them the run is *diverged*. Training ends at ``steps`` or ``minutes``,
whichever comes first, or earlier by early stopping (``patience`` validations without a new
best, or ``patience_epochs`` epochs' worth of steps since it; the counter is in the
checkpointed state, so a resumed job continues it); ``stopped_by`` says which. Every
``checkpoint_every`` steps the whole
:class:`TrainState` (model, optimizer, schedule, random generators, best-so-far weights and
the curve points not yet sent) is written as the run's ``checkpoints/last.pt`` artifact, and
only then are the curve points sent: a worker that dies resumes from that checkpoint and
re-sends the same points, which the store keeps once, so no point is lost or doubled. Points
are sent at a checkpoint at most every ``flush_seconds`` (live curves without a round trip per
checkpoint of a short job); the rest travel with the final metrics in one batch.
"""

from __future__ import annotations

import copy
import io
import math
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .. import keys
from ..suite.schema import Optimizer, Schedule, TrainBudget
from .components import Splits
from .tracker import Point, Tracker

__all__ = ["TrainOutcome", "TrainState", "Trainer", "make_optimizer", "make_schedule", "train"]

Curve = tuple[int, float, str, float]  # (step, seconds into training, key, value)


def make_optimizer(cfg: Optimizer, params) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` over ``params``, its step one fused kernel over every parameter
    where torch has one for the optimizer and the parameters' device (Adam, AdamW and SGD; CPU
    and CUDA since torch 2.4), else one multi-tensor (``foreach``) pass: the update of torch's
    per-parameter loop in a few launches instead of about ten per parameter. A checkpoint's
    optimizer state carries its own setting (``load_state_dict`` restores it)."""
    params = list(params)
    kw = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name == "adam":
        return _fused_else_foreach(torch.optim.Adam, params, betas=tuple(cfg.betas), **kw)
    if cfg.name == "adamw":
        return _fused_else_foreach(torch.optim.AdamW, params, betas=tuple(cfg.betas), **kw)
    if cfg.name == "adamax":  # no fused kernel
        return torch.optim.Adamax(params, betas=tuple(cfg.betas), foreach=True, **kw)
    if cfg.name == "sgd":
        return _fused_else_foreach(torch.optim.SGD, params, momentum=0.9, **kw)
    raise ValueError(f"train.optimizer.name: unknown optimizer '{cfg.name}'")


def _fused_else_foreach(cls, params: list, **kw) -> torch.optim.Optimizer:
    """``cls(params, fused=True, **kw)``, or with ``foreach=True`` where torch refuses the
    fused kernel for these parameters (a device or dtype without one, an older torch)."""
    try:
        return cls(params, fused=True, **kw)
    except RuntimeError:
        return cls(params, foreach=True, **kw)


def make_schedule(cfg: Schedule, opt, total_steps: int | None):
    """Linear warm-up, then constant or cosine annealing to ``min_lr_ratio`` × lr."""
    warm, floor = cfg.warmup_steps, cfg.min_lr_ratio
    cosine = cfg.name == "cosine" and total_steps is not None

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if not cosine:
            return 1.0
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass
class TrainState:
    """Everything training carries from step to step, besides the modules and optimizer."""

    step: int = 0
    elapsed: float = 0.0  # seconds of training before this attempt
    nonfinite: int = 0
    best_val: float = math.inf
    best_step: int = 0
    best_state: dict[str, Any] | None = None  # weights of the best validation so far (CPU)
    stale: int = 0  # validations in a row without a new best (early stopping's counter)
    gmax: float = 0.0
    gsum: float = 0.0
    gcount: int = 0
    curves: list[Curve] = field(default_factory=list)
    pending: list[Point] = field(default_factory=list)  # curve points not yet sent


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
    curves: list[Curve] = field(default_factory=list)
    stopped_by: str = "steps"
    pending: list[Point] = field(default_factory=list)  # not yet sent


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else copy.deepcopy(v)
            for k, v in state.items()}


class Trainer:
    """Trains ``flow`` (and a variational dequantizer's parameters) on ``data.train``.

    ``view`` (a compiled view of ``flow``, :func:`harness.flows.compiled_view`) computes the
    log-densities of training and validation when given; it shares the flow's parameters, so
    the optimizer, the checkpoints and the best weights are the flow's own.

    ``data`` holds the splits already on ``device`` (:class:`~harness.job.components.Splits`);
    ``resume`` is a checkpoint dict from an earlier attempt. :meth:`run` trains to the end of
    the budget; :meth:`step`, :meth:`validate` and :meth:`checkpoint` are its parts.
    """

    def __init__(self, flow, deq, data: Splits, cfg: TrainBudget, tracker: Tracker,
                 device: torch.device, seed: int, resume: dict[str, Any] | None = None,
                 progress=None, flush_seconds: float = 30.0, view=None):
        self.flow, self.deq, self.data, self.cfg = flow, deq, data, cfg
        self.model = flow if view is None else view  # what computes log p
        self.tracker, self.device, self.seed = tracker, device, seed
        self.progress, self.flush_seconds = progress, flush_seconds
        self.params = [p for p in list(flow.parameters()) + list(deq.parameters())
                       if p.requires_grad]
        self.opt = make_optimizer(cfg.optimizer, self.params)
        self.sched = make_schedule(cfg.schedule, self.opt, cfg.steps)
        self.budget_s = cfg.minutes * 60 if cfg.minutes else math.inf
        self.clip = cfg.clip if cfg.clip else math.inf
        self.discrete = data.kind == "discrete"
        self.dims = deq.dims
        self.gen = torch.Generator(device="cpu").manual_seed(seed)  # batch order
        self.state = TrainState()
        if resume:
            self._restore(resume)
        self.t0 = time.perf_counter()
        self.last_flush = time.monotonic()

    # ── state ─────────────────────────────────────────────────────────────────────────
    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.flow.load_state_dict(ckpt["flow"])
        self.deq.load_state_dict(ckpt["deq"])
        self.opt.load_state_dict(ckpt["opt"])
        self.sched.load_state_dict(ckpt["sched"])
        self.gen.set_state(ckpt["gen"])
        torch.set_rng_state(ckpt["torch_rng"])
        # a field the checkpoint lacks (written before the field existed) keeps its default
        self.state = TrainState(**{f.name: ckpt[f.name] for f in fields(TrainState)
                                   if f.name in ckpt})

    def seconds(self) -> float:
        """Training time so far, earlier attempts included."""
        return self.state.elapsed + (time.perf_counter() - self.t0)

    def record(self, points: dict[str, float], at: int) -> None:
        """Curve points at step ``at`` (non-finite values are left out)."""
        now = int(time.time() * 1000)
        for k, v in points.items():
            if math.isfinite(v):
                self.state.pending.append((at, now, k, float(v)))
                self.state.curves.append((at, self.seconds(), k, float(v)))

    def _keep_best(self, val: float) -> None:
        s = self.state
        if math.isfinite(val) and val < s.best_val:
            s.best_val, s.best_step, s.stale = val, s.step, 0
            s.best_state = {"flow": _cpu_copy(self.flow.state_dict()),
                            "deq": _cpu_copy(self.deq.state_dict())}
        else:
            s.stale += 1

    def patience_steps(self) -> int | None:
        """``train.patience_epochs`` in steps on this data set,
        ``⌈patience_epochs · n_train / batch⌉``; None when that option is off."""
        epochs = self.cfg.patience_epochs
        if epochs is None:
            return None
        batch = min(self.cfg.batch_size, len(self.data.train))
        return max(1, math.ceil(epochs * len(self.data.train) / batch))

    def out_of_patience(self) -> bool:
        """Whether early stopping ends training now (called after a validation): ``patience``
        validations in a row without a new best, or ``patience_epochs`` worth of steps since
        the best."""
        s, cfg = self.state, self.cfg
        if cfg.patience is not None and s.stale >= cfg.patience:
            return True
        steps = self.patience_steps()
        return steps is not None and s.best_state is not None and s.step - s.best_step >= steps

    # ── the parts ─────────────────────────────────────────────────────────────────────
    def validate(self) -> float:
        """The validation score (bpd for discrete data, else nats) with the same
        dequantization noise at every call."""
        flow, deq, data = self.flow, self.deq, self.data
        flow.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + 1)
            total_ll, n = 0.0, 0
            for i in range(0, len(data.val), 1024):
                x = data.val[i : i + 1024]
                c = None if data.val_c is None else data.val_c[i : i + 1024]
                w, lw = deq(x)
                total_ll += float((self.model.log_prob(w, context=c) + lw).double().sum())
                n += len(x)
        flow.train()
        nll = -total_ll / n
        return nll / (self.dims * math.log(2)) if self.discrete else nll

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed trainer needs (the ``resume`` argument): modules, optimizer,
        schedule, random generators and the :class:`TrainState`; tensors and plain values
        only (it loads weights-only)."""
        return {"flow": self.flow.state_dict(), "deq": self.deq.state_dict(),
                "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                **{f.name: getattr(self.state, f.name) for f in fields(TrainState)},
                "elapsed": self.seconds()}

    def checkpoint(self) -> None:
        """Write ``checkpoints/last.pt``; then send the curve points (at most every
        ``flush_seconds``)."""
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(keys.ART_CHECKPOINT_LAST).name
            path.write_bytes(buf.getvalue())
            self.tracker.log_file(path, str(Path(keys.ART_CHECKPOINT_LAST).parent))
        if time.monotonic() - self.last_flush >= self.flush_seconds:
            if self.state.pending:
                self.tracker.log_points(self.state.pending)
                self.tracker.flush()
            self.state.pending.clear()
            self.last_flush = time.monotonic()

    def step(self) -> None:
        """One optimizer step on a random batch (skipped when the loss or the gradient is
        not finite), and its curve point every ``log_every`` steps."""
        s, data, flow = self.state, self.data, self.flow
        batch = min(self.cfg.batch_size, len(data.train))
        idx = torch.randint(len(data.train), (batch,), generator=self.gen).to(self.device)
        x = data.train[idx]
        c = None if data.train_c is None else data.train_c[idx]
        flow.reset_counters()
        w, lw = self.deq(x)
        loss = -(self.model.log_prob(w, context=c) + lw).mean()
        penalty = flow.regularizer()
        if penalty is not None:
            loss = loss + penalty
        s.step += 1
        self.opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            s.nonfinite += 1
        else:
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(self.params, self.clip))
            if not math.isfinite(gnorm):
                s.nonfinite += 1
                self.opt.zero_grad(set_to_none=True)
            else:
                self.opt.step()
                s.gmax, s.gsum, s.gcount = max(s.gmax, gnorm), s.gsum + gnorm, s.gcount + 1
                if s.step % self.cfg.log_every == 0 or s.step == 1:
                    self._log_step(float(loss.detach()), gnorm)
        self.sched.step()

    def _log_step(self, loss: float, gnorm: float) -> None:
        curve_key = keys.TRAIN_BPD if self.discrete else keys.TRAIN_NLL
        point = {keys.TRAIN_LOSS: loss,
                 curve_key: loss / (self.dims * math.log(2)) if self.discrete else loss,
                 keys.TRAIN_GRAD_NORM: gnorm,
                 keys.TRAIN_LR: self.opt.param_groups[0]["lr"],
                 keys.TRAIN_WALL_S: self.seconds()}
        nfe = self.flow.counters()
        if nfe:
            point[keys.TRAIN_NFE_FORWARD] = nfe["nfe_forward"]
            point[keys.TRAIN_NFE_BACKWARD] = nfe["nfe_backward"]
        self.record(point, self.state.step)

    # ── the loop ──────────────────────────────────────────────────────────────────────
    def run(self) -> TrainOutcome:
        s, cfg, total = self.state, self.cfg, self.cfg.steps
        val_key = keys.VAL_BPD if self.discrete else keys.VAL_NLL
        self.flow.train()
        self.deq.train()
        stopped_by, diverged = "steps", False
        while total is None or s.step < total:
            if self.seconds() >= self.budget_s:
                stopped_by = "minutes"
                break
            self.step()
            if s.nonfinite > cfg.max_nonfinite:
                diverged, stopped_by = True, "diverged"
                break
            last = total is not None and s.step >= total
            if s.step % cfg.eval_every == 0 or last:
                val = self.validate()
                self.record({val_key: val}, s.step)
                self._keep_best(val)
                if self.progress:
                    self.progress(s.step, val)
                if not last and self.out_of_patience():
                    stopped_by = keys.STOP_PATIENCE
                    break
            if s.step % cfg.checkpoint_every == 0 and not last:
                self.checkpoint()
        seconds = self.seconds()
        if s.best_state is None or stopped_by == "minutes":
            val = self.validate()
            if stopped_by == "minutes":
                self.record({val_key: val}, s.step)
            self._keep_best(val)
        return TrainOutcome(s.step, seconds, s.best_step, s.best_val, s.nonfinite,
                            diverged or s.best_state is None, s.gmax, s.gsum / max(1, s.gcount),
                            s.best_state, s.curves, stopped_by, s.pending)


def train(flow, deq, data: Splits, cfg: TrainBudget, tracker: Tracker, device: torch.device,
          seed: int, resume: dict[str, Any] | None = None, progress=None,
          flush_seconds: float = 30.0, view=None) -> TrainOutcome:
    """Train to the end of the budget (see :class:`Trainer`)."""
    return Trainer(flow, deq, data, cfg, tracker, device, seed, resume, progress,
                   flush_seconds, view).run()
