"""MLflow's system metrics for one job while it trains: CPU, memory, disk, network, and GPU
through NVML where there is one (``system/cpu_utilization_percentage``,
``system/gpu_0_utilization_percentage`` …, MLflow's own names, so the run page's "System
metrics" tab charts them).

MLflow's monitors (``mlflow.system_metrics``, psutil and ``nvidia-ml-py``) take the samples;
this module's loop sends them. It differs from ``mlflow.start_run(log_system_metrics=True)``
in three ways that a short job on a busy store needs:

* every MLflow call is timed (:attr:`SystemMetrics.seconds`: the logging share of a job);
* there is no status check per sample (MLflow's loop reads the whole run each time);
* a last point is taken when training ends, so that a job shorter than the interval still
  has one, averaged over its training; the scheduler's worker hands it to the driver with
  the job's final batch instead of sending it;
* a fresh run's points start at step 0 without reading the run first.

A resumed job's points go on from the run's earlier system points. The interval comes
from the suite (``system_metrics``) unless ``$NFBENCH_SYSTEM_METRICS`` says ``off`` or gives
seconds; MLflow's own ``$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` wins over both, and the
interval in force is recorded on the run (tag ``nfbench.system_metrics_s``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

from .. import keys
from ..suite.schema import MAX_SYSTEM_METRICS_S as MAX_INTERVAL_S
from ..suite.schema import MIN_SYSTEM_METRICS_S as MIN_INTERVAL_S
from .writer import retrying

__all__ = [
    "ENV",
    "MAX_INTERVAL_S",
    "MIN_INTERVAL_S",
    "TAG_INTERVAL",
    "SystemMetrics",
    "SystemMetricsError",
    "interval_setting",
]

ENV = "NFBENCH_SYSTEM_METRICS"
TAG_INTERVAL = keys.TAG_SYSTEM_METRICS_S
PREFIX = keys.SYSTEM_PREFIX
_OFF = ("0", "off", "false", "no", "none")


class SystemMetricsError(ValueError):
    """``$NFBENCH_SYSTEM_METRICS`` holds something that is neither ``off`` nor seconds."""


def interval_setting(enabled: bool = True, interval: float = 10.0,
                     env: dict[str, str] | None = None) -> float | None:
    """Seconds between system-metric samples, or None when they are off: the suite's
    ``system_metrics`` (``enabled``, ``interval``), overridden by ``$NFBENCH_SYSTEM_METRICS``.

    Raises:
        SystemMetricsError: the variable is set to neither ``off`` nor a number of seconds in
            [MIN_INTERVAL_S, MAX_INTERVAL_S].
    """
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return float(interval) if enabled else None
    if raw.lower() in _OFF:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S):
        raise SystemMetricsError(
            f"${ENV}={raw[:40]!r}: give 'off', or the seconds between samples in "
            f"[{MIN_INTERVAL_S:g}, {MAX_INTERVAL_S:g}] (e.g. {ENV}=10)")
    return seconds


def _monitor_class():
    """MLflow's monitor with this module's loop (imported late: MLflow is heavy)."""
    from mlflow.entities import Metric
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient

    class Monitor(SystemMetricsMonitor):
        def __init__(self, run_id: str, interval: float, uri: str, resume: bool):
            self.seconds = 0.0  # the monitor's thread: sampling and MLflow calls
            self.points = 0
            self.pending: list[tuple[int, int, str, float]] = []  # the last point, deferred
            self.defer_last = False
            self._client = MlflowClient(tracking_uri=uri)
            # resume_logging (one run read): the first step follows the run's last system point
            super().__init__(run_id, sampling_interval=interval, resume_logging=resume,
                             tracking_uri=uri)

        def monitor(self) -> None:
            while True:
                t0 = time.perf_counter()
                self.collect_metrics()
                self.seconds += time.perf_counter() - t0
                if self._shutdown_event.wait(self.sampling_interval):
                    return  # the last point is sent by finish()
                t0 = time.perf_counter()
                self._send()
                self.seconds += time.perf_counter() - t0

        def _send(self, last: bool = False) -> None:
            values = self.aggregate_metrics()
            for m in self.monitors:
                m.clear_metrics()
            if not values:
                return
            now = int(time.time() * 1000)
            if last and self.defer_last:  # the caller sends it with its own final batch
                self.pending = [(self._logging_step, now, PREFIX + k, float(v))
                                for k, v in values.items()]
                self.points += 1
                self._logging_step += 1
                return
            batch = [Metric(PREFIX + k, float(v), now, self._logging_step)
                     for k, v in values.items()]
            try:
                retrying(self._client.log_batch, self._run_id, metrics=batch)
                self.points += 1
            except Exception as exc:  # noqa: BLE001 (a lost sample never fails the job)
                logging.getLogger(__name__).warning("system metrics not logged: %s", exc)
            self._logging_step += 1

        def finish(self) -> None:
            if self._process is None:
                return
            self._shutdown_event.set()
            self._process.join()
            self._process = None
            self.collect_metrics()
            self._send(last=True)

    return Monitor


class SystemMetrics:
    """System metrics of run ``run_id`` while a ``with`` block runs (``interval`` None: off).

    ``resume``: the run may hold system points of an earlier attempt, so read it once to go
    on after them (a fresh run starts at step 0, with no read). ``defer_last``: keep the
    last point in :attr:`pending` for the caller's final batch. ``seconds`` is the time spent
    starting, stopping and in MLflow calls (the monitor's own thread included); ``points`` the
    points logged; ``interval`` the sampling interval in force (MLflow's variable may override the
    one asked for)."""

    def __init__(self, uri: str, run_id: str, interval: float | None, *,
                 resume: bool = True, defer_last: bool = False):
        self.uri, self.run_id = uri, run_id
        self.interval: float | None = interval
        self.resume, self.defer_last = resume, defer_last
        self._monitor: Any = None
        self._own = 0.0

    def __enter__(self):
        if self.interval is None:
            return self
        t0 = time.perf_counter()
        try:
            self._monitor = _monitor_class()(self.run_id, self.interval, self.uri, self.resume)
            self._monitor.defer_last = self.defer_last
            self.interval = float(self._monitor.sampling_interval)
            self._monitor.start()
        except Exception as exc:  # noqa: BLE001 (no psutil, a store hiccup: the job runs on)
            logging.getLogger(__name__).warning("system metrics are off: %s", exc)
            self._monitor = None
        self._own += time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        if self._monitor is not None:
            t0 = time.perf_counter()
            self._monitor.finish()
            self._own += time.perf_counter() - t0

    @property
    def seconds(self) -> float:
        """Starting and stopping (the last point included), plus the time the monitor's
        thread spent sampling and sending points while the job ran."""
        thread = self._monitor.seconds if self._monitor is not None else 0.0
        return self._own + thread

    @property
    def points(self) -> int:
        """Points logged (and, with ``defer_last``, the last one in :attr:`pending`)."""
        return self._monitor.points if self._monitor is not None else 0

    @property
    def pending(self) -> list[tuple[int, int, str, float]]:
        """With ``defer_last``: the last point, as ``(step, timestamp_ms, key, value)`` curve
        points for the caller's final batch (sending it here would cost the job a call)."""
        return list(self._monitor.pending) if self._monitor is not None else []

    def tags(self) -> dict[str, str]:
        """The run tag that records the interval in force (none when off)."""
        if self._monitor is None or self.interval is None:
            return {}
        return {TAG_INTERVAL: f"{self.interval:g}"}
