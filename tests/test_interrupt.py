"""Ctrl-C (or SIGTERM) stops `nfbench run` cleanly: unfinished runs are marked killed and a
re-run resumes them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import keys

pytestmark = pytest.mark.slow

STEPS = 3000  # about 10 s a job here: the interrupt lands while both still train


SUITE = f"""\
name: intr
matrix:
  architectures: [{{name: realnvp, layers: 2, hidden: 16}}]
  datasets: [moons]
  dequantization: [none]
  seeds: [0, 1]
train: {{steps: {STEPS}, batch_size: 64, eval_every: 100, checkpoint_every: 100, log_every: 50}}
timing: {{enabled: false}}
resources: {{cpus: 1}}
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _runs(client):
    exp = client.get_experiment_by_name("intr")
    return [] if exp is None else client.search_runs([exp.experiment_id])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_marks_unfinished_runs_killed_and_rerun_resumes(tmp_path, signum):
    """SIGTERM (a scheduler's or a container's stop) does what Ctrl-C does, although Ray
    installs a handler of its own for it that would abort the driver."""
    (tmp_path / "intr.yaml").write_text(SUITE)
    exe = str(Path(sys.executable).with_name("nfbench"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [exe, "run", "intr.yaml", "--tracking-uri", uri, "--no-report", "--num-cpus", "2"]
    # a shell that started the tests in the background (`pytest &`) ignores SIGINT, and its
    # children inherit that: the driver under test gets the default disposition back
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=_default_sigint)
    client = MlflowClient(uri)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:  # interrupt once both jobs have a checkpoint
            runs = _runs(client) if (tmp_path / "mlflow.db").exists() else []
            if len(runs) == 2 and all(client.list_artifacts(r.info.run_id, "checkpoints")
                                      for r in runs):
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "marked killed" in out
    runs = _runs(client)
    assert len(runs) == 2
    assert {r.data.tags[keys.TAG_STATUS] for r in runs} == {keys.STATUS_KILLED}
    assert {r.info.status for r in runs} == {"KILLED"}
    ids = {r.info.run_id for r in runs}
    if signum != signal.SIGINT:
        return  # the re-run below is the same for either signal

    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = _runs(client)
    assert {r.info.run_id for r in runs} == ids  # resumed in the same runs
    assert {r.data.tags[keys.TAG_STATUS] for r in runs} == {keys.STATUS_FINISHED}
    for r in runs:  # resumed from a checkpoint: the curve has every point exactly once
        steps = [m.step for m in client.get_metric_history(r.info.run_id, keys.TRAIN_LOSS)]
        assert sorted(steps) == sorted(set(steps))
        assert len(steps) == len({1} | set(range(50, STEPS + 1, 50)))
