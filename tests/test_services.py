"""The cluster paths for real, on loopback: a real `mlflow server` as the tracking URI, and
`nfbench submit` through Ray's Jobs API to a real local Ray head with its dashboard."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from harness import keys
from harness.app import load_jobs
from harness.cli import main
from harness.schedule import run_jobs

pytestmark = pytest.mark.slow

SUITE = """\
name: {name}
matrix:
  architectures: [{{name: realnvp, layers: 2, hidden: 16}}]
  datasets: [moons]
  dequantization: [none]
train: {{steps: 30, batch_size: 64, eval_every: 10, checkpoint_every: 10, log_every: 5}}
timing: {{batch_size: 64, min_run_time: 0.01}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:  # it answers (401: token authentication is on)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def _venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _mlflow_server(root: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server",
         "--backend-store-uri", f"sqlite:///{root}/server.db",
         "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=root, env=_venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)


def test_runs_land_in_a_real_mlflow_server(tmp_path):
    port = _free_port()
    server = _mlflow_server(tmp_path, port)
    try:
        uri = f"http://127.0.0.1:{port}"
        _wait_http(f"{uri}/health", server)
        (tmp_path / "srv.yaml").write_text(SUITE.format(name="srv"))
        suite, jobs = load_jobs(str(tmp_path / "srv.yaml"), quiet=True)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            summary = run_jobs(suite, jobs, uri=uri, out=lambda s: None)
        finally:
            ray.shutdown()
        assert summary.finished == [jobs[0].key]
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("srv").experiment_id])
        assert run.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
        assert keys.PERF_SAMPLE_THROUGHPUT in run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, keys.TRAIN_LOSS)) == 7
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {keys.ART_CURVES, keys.ART_CONFIG, "checkpoints"} <= arts
        # artifacts went through the server into its store, not into the working directory
        assert list((tmp_path / "artifacts").rglob("best.pt"))
        # two drivers of one suite at once, into the same server: one run per job key
        (tmp_path / "two.yaml").write_text(SUITE.format(name="two").replace(
            "dequantization: [none]", "dequantization: [none]\n  seeds: [0, 1, 2, 3, 4, 5]"))
        exe = str(Path(sys.executable).with_name("nfbench"))
        cmd = [exe, "run", "two.yaml", "--tracking-uri", uri, "--no-report", "--num-cpus", "1"]
        procs = [subprocess.Popen(cmd, cwd=tmp_path, env=_venv_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        runs = client.search_runs([client.get_experiment_by_name("two").experiment_id])
        assert sorted(r.data.tags[keys.TAG_SEED] for r in runs) == [str(i) for i in range(6)]
        assert {r.data.tags[keys.TAG_STATUS] for r in runs} == {keys.STATUS_FINISHED}
    finally:
        _stop(server)


def test_the_mlflow_server_stopped_for_a_minute_mid_suite_loses_and_doubles_nothing(tmp_path):
    """The server goes away while jobs train and comes back 60 s later on the same port and
    store: the suite ends with every run complete (MLflow's client retries, then the
    tracker's), or with runs clearly failed that a re-run completes; no curve point is lost
    or doubled."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _mlflow_server(tmp_path, port)
    _wait_http(f"{uri}/health", server)
    (tmp_path / "out.yaml").write_text(SUITE.format(name="out").replace(
        "steps: 30, batch_size: 64, eval_every: 10, checkpoint_every: 10, log_every: 5",
        "steps: 3000, batch_size: 64, eval_every: 100, checkpoint_every: 100, log_every: 50"
    ).replace("dequantization: [none]", "dequantization: [none]\n  seeds: [0, 1]"))
    exe = str(Path(sys.executable).with_name("nfbench"))
    cmd = [exe, "run", "out.yaml", "--tracking-uri", uri, "--no-report", "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_venv_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        client = MlflowClient(uri)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # stop the server once both jobs have checkpoints
            exp = client.get_experiment_by_name("out")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if len(runs) == 2 and all(client.list_artifacts(r.info.run_id, "checkpoints")
                                      for r in runs):
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        _stop(server)
        time.sleep(60)
        server = _mlflow_server(tmp_path, port)
        _wait_http(f"{uri}/health", server)
        out = proc.communicate(timeout=900)[0]
        if proc.returncode != 0:  # runs recorded failed: a re-run completes them
            again = subprocess.run(cmd, cwd=tmp_path, env=_venv_env(), capture_output=True,
                                   text=True, timeout=900)
            assert again.returncode == 0, out + again.stdout + again.stderr
        runs = client.search_runs([client.get_experiment_by_name("out").experiment_id])
        assert len(runs) == 2, out
        for r in runs:
            assert r.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED, (out, r.data.tags)
            steps = [m.step for m in client.get_metric_history(r.info.run_id, keys.TRAIN_LOSS)]
            assert sorted(steps) == sorted(set(steps)), "a curve point was doubled"
            assert len(steps) == len({1} | set(range(50, 3001, 50))), "a curve point was lost"
    finally:
        if proc.poll() is None:
            proc.kill()
        _stop(server)


def _auth_server(tmp_path: Path, port: int, password: str) -> subprocess.Popen:
    """`mlflow server --app-name basic-auth` as cluster.yaml configures it (no permission
    unless granted; the admin's password from the environment), on loopback."""
    ini = tmp_path / "basic_auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                   f"database_uri = sqlite:///{tmp_path}/basic_auth.db\n"
                   "admin_username = nfbench\nauthorization_function = "
                   "mlflow.server.auth:authenticate_request_basic_auth\n"
                   "auth_cache_ttl_seconds = 60\n")
    env = {**_venv_env(), "MLFLOW_AUTH_CONFIG_PATH": str(ini),
           "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32)}
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "basic-auth",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_submit_sends_the_suite_as_a_ray_job(tmp_path, monkeypatch, capsys):
    """Through the Jobs API to a real Ray head, logging to a real MLflow server behind basic
    auth; the credentials in --tracking-uri are never printed nor put on the job's command
    line: they reach the job through its runtime_env."""
    from ray.job_submission import JobSubmissionClient

    password = secrets.token_urlsafe(24)
    port = _free_port()
    server = _auth_server(tmp_path, port, password)
    dash = _free_port()
    head = subprocess.Popen(
        [sys.executable, "-c",
         ("import ray, sys, time; ray.init(address='local', num_cpus=2, include_dashboard=True, "
          f"dashboard_host='127.0.0.1', dashboard_port={dash}); print('up', flush=True); "
          "sys.stdin.read()")],
        env=_venv_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert head.stdout.readline().strip() == "up"
        address = f"http://127.0.0.1:{dash}"
        _wait_http(f"{address}/api/version", head)
        uri = f"http://127.0.0.1:{port}"
        _wait_http(f"{uri}/health", server)
        with pytest.raises(urllib.error.HTTPError) as refused:  # no credentials: no access
            urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
                                   timeout=10)
        assert refused.value.code == 401
        (tmp_path / "suites").mkdir()
        (tmp_path / "suites" / "sub.yaml").write_text(SUITE.format(name="sub"))
        monkeypatch.chdir(tmp_path)
        with_credentials = f"http://nfbench:{password}@127.0.0.1:{port}"
        assert main(["submit", "suites/sub.yaml", "--address", address,
                     "--tracking-uri", with_credentials, "--follow"]) == 0
        out = capsys.readouterr().out
        assert "submitted suite sub (1 jobs) as Ray job" in out
        assert "ray job logs --address" in out and "SUCCEEDED" in out
        # the job's own log streamed, then where its report is
        assert "suite sub: 1 finished" in out
        report = re.search(r"^report: (\S+/reports/sub/index\.html) \(on the cluster's head",
                           out, re.MULTILINE)
        assert report and Path(report[1]).is_file(), out  # here, head and client are one
        assert "a copy here: nfbench report sub --tracking-uri URI" in out
        assert f"MLflow at http://nfbench:***@127.0.0.1:{port}" in out
        assert password not in out  # neither here nor in the job's own log lines
        job_id = out.split("as Ray job ")[1].split()[0]
        info = JobSubmissionClient(address).get_job_info(job_id)
        assert password not in info.entrypoint and f"--tracking-uri {uri}" in info.entrypoint
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "nfbench")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("sub").experiment_id])
        assert run.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
    finally:
        head.stdin.close()
        head.wait(timeout=60)
        server.terminate()
        server.wait(timeout=30)


def test_run_joins_a_token_auth_cluster_started_with_ray_start(tmp_path):
    """`ray start` turns Ray's token authentication on; `nfbench run --address` finds the
    token itself (no RAY_AUTH_MODE in the environment), as `nfbench submit` does."""
    port = _free_port()
    env = {k: v for k, v in _venv_env().items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    ray_exe = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_exe, "start", "--head", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--block"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        started = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = head.stdout.readline()
            assert line or head.poll() is None, "".join(started)
            started.append(line)
            if "Ray runtime started" in line:
                break
        assert "Token authentication is enabled" in "".join(started), "".join(started)
        (tmp_path / "tok.yaml").write_text(SUITE.format(name="tok"))
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        exe = str(Path(sys.executable).with_name("nfbench"))
        run = subprocess.run([exe, "run", "tok.yaml", "--address", f"127.0.0.1:{port}",
                              "--tracking-uri", uri, "--no-report"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        client = MlflowClient(uri)
        (r,) = client.search_runs([client.get_experiment_by_name("tok").experiment_id])
        assert r.data.tags[keys.TAG_STATUS] == keys.STATUS_FINISHED
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(head.pid, signal.SIGKILL)
