"""The simulated backend under the real driver, book, claims and SQLite store: a thousand jobs
with nodes lost and joining end with one finished run per key (audited by reading the store),
two drivers of one suite share its keys, and the virtual clock packs jobs as tightly as the
slots allow."""

from __future__ import annotations

import collections
import os
import threading

import pytest
from mlflow.tracking import MlflowClient

from harness import keys
from harness.app import load_jobs
from harness.schedule import driver as driver_module
from harness.schedule import run_jobs
from harness.schedule.costs import CostModel
from harness.schedule.forecast import Cluster, forecast
from harness.schedule.sim_backend import Faults, SimBackend, SimNode

# the scale test's size (the aim in CI: 10^3 jobs, every key once, in about a minute)
SCALE_JOBS = int(os.environ.get("NFBENCH_SIM_JOBS", 1000))

def _suite(tmp_path, n: int, name: str = "sim", timing: bool = True, hidden=(8,)):
    archs = ", ".join(f"{{name: realnvp, layers: 2, hidden: {h}}}" for h in hidden)
    text = (f"name: {name}\nmatrix:\n  architectures: [{archs}]\n  datasets: [moons]\n"
            f"  dequantization: [none]\n  seeds: [{', '.join(map(str, range(n)))}]\n"
            f"train: {{steps: 10}}\ntiming: {{enabled: {str(timing).lower()}}}\n"
            "resources: {cpus: 0.5, gpus: 0.25}\nretries: 3\n")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_jobs(str(path), quiet=True, max_jobs=100_000)


def _audit(uri: str, suite: str) -> dict[str, list]:
    """Every active run of the suite, by job key (read back from the store)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite).experiment_id
    by_key = collections.defaultdict(list)
    token = None
    while True:
        page = client.search_runs([exp], max_results=1000, page_token=token)
        for r in page:
            by_key[r.data.tags[keys.TAG_KEY]].append(r)
        token = page.token
        if not token:
            return by_key


@pytest.mark.slow  # ~90 s on 2 busy cores: the store's real costs (~30 ms of MLflow a job)
def test_a_thousand_jobs_two_drivers_lost_and_joining_nodes_end_with_one_finished_run_each(
        tmp_path, sqlite_uri, monkeypatch):
    """10^3 jobs, two drivers of one suite at once, each on a simulated cluster of its own:
    driver A loses two nodes while jobs train (their jobs are retried elsewhere) and gains
    two; driver B, on two nodes, loses one. Every key ends with exactly one run, finished
    and timed, run by one driver only."""
    monkeypatch.setattr(driver_module, "POLL_OTHERS_S", 0.1)
    suite, jobs = _suite(tmp_path, SCALE_JOBS)
    a_faults = Faults(lose=((250.0, "a1"), (900.0, "a2")),
                      join=((500.0, SimNode("a4", 8, 2)), (1100.0, SimNode("a5", 8, 2))),
                      slow_start_share=0.2, slow_start_s=20.0)
    backends = {
        "a": SimBackend([SimNode(f"a{i}", 8, 2) for i in range(4)],  # 4 × 8 slots
                        CostModel.constant(100.0, 10.0), startup_s=5.0, faults=a_faults),
        "b": SimBackend([SimNode(f"b{i}", 8, 2) for i in range(2)],
                        CostModel.constant(100.0, 10.0), startup_s=5.0,
                        faults=Faults(lose=((400.0, "b1"),))),
    }
    summaries: dict[str, object] = {}

    def drive(name: str) -> None:
        summaries[name] = run_jobs(suite, jobs, uri=sqlite_uri, backend=backends[name],
                                   out=lambda _: None, tty=False)

    other = threading.Thread(target=drive, args=("b",))
    other.start()
    drive("a")
    other.join(timeout=900)
    assert not other.is_alive()
    a, b = summaries["a"], summaries["b"]
    be_a, be_b = backends["a"], backends["b"]
    assert be_a.lost_nodes == [(250.0, "a1"), (900.0, "a2")]
    assert [n for _, n in be_a.joined_nodes] == ["a4", "a5"]
    assert be_b.lost_nodes == [(400.0, "b1")]
    assert a.retried > 0 and b.retried > 0  # type: ignore[attr-defined]
    assert not a.failed and not b.failed  # type: ignore[attr-defined]
    ran = a.finished + b.finished  # type: ignore[attr-defined]
    assert sorted(ran) == sorted(j.key for j in jobs)  # each key run by one driver only
    assert len(a.finished) > len(jobs) // 4 and b.finished  # type: ignore[attr-defined]
    runs = _audit(sqlite_uri, "sim")
    assert set(runs) == {j.key for j in jobs}
    assert all(len(v) == 1 for v in runs.values())
    tags = [v[0].data.tags for v in runs.values()]
    assert all(t[keys.TAG_STATUS] == keys.STATUS_FINISHED for t in tags)
    assert all(t[keys.TAG_PHASE] == "timed" for t in tags)
    retried = a.retried + b.retried  # type: ignore[attr-defined]
    assert sum(int(t.get(keys.TAG_ATTEMPTS, 0)) for t in tags) == retried
    one = next(iter(runs.values()))[0]
    assert one.data.metrics[keys.TRAIN_PHASE_S] == pytest.approx(100.0)
    assert one.data.metrics[keys.PERF_PHASE_S] == pytest.approx(10.0)
    # the makespan is the virtual clock's, far beyond the seconds this test took: A's jobs
    # on at most 48 slots (6 nodes × 8) bound it below
    assert a.wall_seconds > len(a.finished) * 100.0 / 48  # type: ignore[attr-defined]


def test_the_virtual_clock_packs_many_jobs_near_the_ideal(tmp_path):
    """Σ(job seconds) / slots bounds any schedule's makespan from below; with jobs far
    outnumbering slots the pool comes within 5 % of it."""
    hidden = (8, 16, 32, 64)
    seconds = {8: 60.0, 16: 90.0, 32: 150.0, 64: 240.0}
    suite, jobs = _suite(tmp_path, 100, timing=False, hidden=hidden)
    costs = CostModel.declared([{"arch": {"name": "realnvp", "hidden": h}, "dataset": "moons",
                                 "train_s": s} for h, s in seconds.items()])
    f = forecast(suite, jobs, Cluster(2, 8, 2), costs, startup_s=5.0, scales=(1.0,))
    assert f.slots == 16
    ideal = sum(seconds[j.config.arch.hparams["hidden"]] for j in jobs) / f.slots
    assert f.makespan_s >= ideal
    assert ideal / f.makespan_s >= 0.95, (ideal, f.makespan_s)


def test_a_node_lost_under_busy_workers_retries_their_jobs_elsewhere(tmp_path, sqlite_uri):
    suite, jobs = _suite(tmp_path, 8, timing=False)
    be = SimBackend([SimNode("a", 2, 1), SimNode("b", 2, 1)], CostModel.constant(100.0),
                    startup_s=5.0, faults=Faults(lose=((50.0, "a"),)))
    summary = run_jobs(suite, jobs, uri=sqlite_uri, backend=be, out=lambda _: None, tty=False)
    # 4 slots a node; node a's 4 jobs die at t = 50 and run again on b after its first 4:
    # b runs 4 at 5..105 and the 4 retried at 105..205
    assert summary.retried == 4 and len(summary.finished) == 8
    assert summary.wall_seconds == pytest.approx(205.0)


def test_spot_preemption_at_a_rate_with_replacements_loses_no_job(tmp_path):
    from harness.schedule.forecast import _simulate

    suite, jobs = _suite(tmp_path, 200, timing=False)
    shape = Cluster(4, 8, 2)
    faults = Faults(preempt_per_hour=2.0, replace_after_s=120.0, seed=3)
    be, book = _simulate(suite, jobs, shape, CostModel.constant(300.0), 5.0, faults)
    calm, _ = _simulate(suite, jobs, shape, CostModel.constant(300.0), 5.0, None)
    assert be.lost_nodes and be.joined_nodes  # nodes went, and their likes came
    assert book.summary.retried > 0 and not book.summary.failed
    assert sorted(book.summary.finished) == sorted(j.key for j in jobs)
    assert be.now() > calm.now()


def test_run_jobs_takes_the_sim_backend_by_name(tmp_path, sqlite_uri):
    """``backend="sim"``: one node of ``num_cpus`` CPUs, every phase 1 s, start-up 5 s. Two
    one-CPU jobs at a time: 4 jobs train in 5 + 2 s; one timing worker holds the node and
    times them one after another: 5 + 4 s more."""
    path = tmp_path / "cpu.yaml"
    path.write_text("name: cpu\nmatrix:\n  architectures: [realnvp]\n  datasets: [moons]\n"
                    "  dequantization: [none]\n  seeds: [0, 1, 2, 3]\ntrain: {steps: 10}\n"
                    "resources: {cpus: 1}\n")
    suite, jobs = load_jobs(str(path), quiet=True)
    summary = run_jobs(suite, jobs, uri=sqlite_uri, backend="sim", num_cpus=2,
                       out=lambda _: None, tty=False)
    assert len(summary.finished) == 4 and summary.slots == 2
    assert summary.wall_seconds == pytest.approx(5 + 2 + 5 + 4)
