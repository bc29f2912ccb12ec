"""`nfbench status` against a suite that is running, with one job failed on purpose: a real
driver (in a thread, the inline backend, real training) writes a real SQLite store while
`nfbench status` reads it."""

from __future__ import annotations

import dataclasses
import re
import threading
import time

import pytest

from harness.app import load_jobs
from harness.cli import main
from harness.schedule import InlineBackend, run_jobs
from harness.schedule import worker as worker_module
from harness.schedule.worker import PhaseRunner
from harness.suite.jobconfig import DataConfig
from harness.tracking.status import error_line

SUITE = """\
name: live
matrix:
  architectures: [{name: realnvp, layers: 2, hidden: 8}]
  datasets: [moons]
  dequantization: [none]
  seeds: [0, 1, 2]
train: {steps: 1000000, minutes: 0.1, batch_size: 32, eval_every: 20, checkpoint_every: 100000}
timing: {enabled: false}
system_metrics: {enabled: false}
"""


class FailSeedZero:
    """The real phase runner; seed 0's config names a data set that does not exist, so that
    its job fails for real (an exception in the worker, recorded with its traceback)."""

    def __init__(self):
        self.real = PhaseRunner(1)

    def __call__(self, spec, payload):
        if payload.config.seed == 0:
            config = dataclasses.replace(payload.config, data=DataConfig("no-such-data"))
            payload = dataclasses.replace(payload, config=config)
        return self.real.run(payload)


def _status(capsys, uri: str, code: int = 0) -> str:
    capsys.readouterr()
    assert main(["status", "live", "--tracking-uri", uri]) == code
    return capsys.readouterr().out


def test_status_of_a_running_suite_with_a_failed_job(tmp_path, sqlite_uri, capsys, monkeypatch):
    monkeypatch.setattr(worker_module, "STEP_TAG_EVERY_S", 0.5)
    (tmp_path / "live.yaml").write_text(SUITE)
    suite, jobs = load_jobs(str(tmp_path / "live.yaml"), quiet=True)
    done: dict = {}
    driver = threading.Thread(target=lambda: done.setdefault("summary", run_jobs(
        suite, jobs, uri=sqlite_uri, backend=InlineBackend(runner=FailSeedZero()),
        out=lambda s: None)))
    driver.start()
    try:
        seen, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline and driver.is_alive():
            if main(["status", "live", "--tracking-uri", sqlite_uri]) == 2:  # no suite yet
                time.sleep(0.2)
                continue
            seen = _status(capsys, sqlite_uri)
            m = re.search(r"training, step ([\d,]+) of 1,000,000, for (\d+) s", seen)
            if m and int(m.group(1).replace(",", "")) >= 40 and "failed:" in seen:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"never saw a running job with steps and a failure:\n{seen}")
        lines = seen.splitlines()
        assert lines[0].startswith("suite live in sqlite:///") and "of 3 jobs" in lines[0]
        counts = re.fullmatch(r"  finished 0 · diverged 0 · failed 1 · killed 0 · running 1 · "
                              r"queued (\d) · not started (\d)", lines[1])
        assert counts and int(counts[1]) + int(counts[2]) == 1, lines[1]  # seed 2 waits
        (running,) = [ln for ln in lines if "training, step" in ln]
        assert running.startswith("  realnvp(hidden=8, layers=2) · moons · none · seed 1: ")
        left = re.search(r"about (\d+) s left", running)  # the 6 s budget bounds it
        assert left and int(left[1]) <= 6, running
        (failure,) = [ln for ln in lines if "seed 0:" in ln]
        assert "no-such-data" in failure and "Traceback" not in seen  # the exception's line
        assert re.search(r"time left: about \d+ s \(1 running, 1 waiting", seen), seen
    finally:
        driver.join(timeout=300)
    summary = done["summary"]
    assert len(summary.failed) == 1 and len(summary.finished) == 2
    final = _status(capsys, sqlite_uri)
    assert ("finished 2 · diverged 0 · failed 1 · killed 0 · running 0 · queued 0 · "
            "not started 0") in final
    assert "running now:" not in final and "time left: none" in final
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name("live").experiment_id])
    assert {r.data.tags["nfbench.live.phase"] for r in runs} == {"ended"}


def test_status_of_an_unknown_suite_names_those_there_are(sqlite_uri, capsys):
    from mlflow.tracking import MlflowClient

    MlflowClient(sqlite_uri).create_experiment("other")
    assert main(["status", "nope", "--tracking-uri", sqlite_uri]) == 2
    assert "'other'" in capsys.readouterr().err


def test_the_telling_line_of_an_error():
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad\n'
    assert error_line(tb) == "ValueError: bad"
    assert error_line("its worker died 3 times; last: lost\nmore") == \
        "its worker died 3 times; last: lost"
    assert error_line(None) == error_line(float("nan")) == "(no error recorded)"
