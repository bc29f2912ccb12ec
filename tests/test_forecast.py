"""``nfbench plan --forecast``: its arithmetic on hand-made cost tables against closed forms,
costs fitted back from a store, the cluster from cluster.yaml, the refusals, and a store that
the forecast reads but never writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness import cli
from harness.app import load_jobs
from harness.schedule import run_jobs
from harness.schedule.costs import CostModel, NoCostError
from harness.schedule.forecast import Cluster, cluster_from_yaml, forecast
from harness.schedule.sim_backend import SimBackend, SimNode

ROOT = Path(__file__).resolve().parents[1]
S, T, TAU = 5.0, 100.0, 10.0  # worker start-up, train and timing seconds


def _suite(tmp_path, seeds=8, name="fc", arch="{name: realnvp, layers: 2, hidden: 8}",
           steps=10):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmatrix:\n  architectures: [{arch}]\n  datasets: [moons]\n"
        f"  dequantization: [none]\n  seeds: [{', '.join(map(str, range(seeds)))}]\n"
        f"train: {{steps: {steps}}}\ntiming: {{enabled: true}}\n"
        "resources: {cpus: 0.5, gpus: 0.25}\n")
    return path


def test_eight_equal_jobs_on_two_gpus_at_four_a_gpu_match_the_closed_form(tmp_path):
    """8 slots hold the 8 jobs at once: train ends at S + T; one timing worker per GPU times
    them 4 after 4: S + 4τ more. Utilisation: train 8·¼·T / (2·(S + T)) = T / (S + T);
    timing 8·τ / (2·(S + 4τ))."""
    suite, jobs = load_jobs(str(_suite(tmp_path)), quiet=True)
    f = forecast(suite, jobs, Cluster(1, 8, 2), CostModel.constant(T, TAU), startup_s=S)
    assert f.slots == 8 and f.device == "GPU"
    assert f.makespan_s == pytest.approx(2 * S + T + 4 * TAU)
    assert f.phases["train"].utilisation == pytest.approx(T / (S + T))
    assert f.phases["time"].utilisation == pytest.approx(8 * TAU / (2 * (S + 4 * TAU)))
    assert f.phases["train"].busy_device_h == pytest.approx(8 * 0.25 * T / 3600)
    assert f.rented_device_h == pytest.approx(2 * f.makespan_s / 3600)
    assert f.longest[1].train_s + f.longest[1].time_s == pytest.approx(T + TAU)
    # ½× rounds up to the one node; 2× and 4× time 8 jobs on 4 and 8 GPUs
    assert f.scaling == [
        (1, pytest.approx(2 * S + T + 4 * TAU), pytest.approx(2 * (2 * S + T + 4 * TAU) / 3600)),
        (2, pytest.approx(2 * S + T + 2 * TAU), pytest.approx(4 * (2 * S + T + 2 * TAU) / 3600)),
        (4, pytest.approx(2 * S + T + TAU), pytest.approx(8 * (2 * S + T + TAU) / 3600)),
    ]


def test_more_jobs_than_slots_take_rounds(tmp_path):
    """20 jobs on 8 slots: ⌈20/8⌉ = 3 train rounds end at S + 3T; then 20 timings on
    2 GPUs, 10 a GPU: S + 10τ more. On 2 nodes: 16 slots, 2 rounds; 4 GPUs, 5 a GPU."""
    suite, jobs = load_jobs(str(_suite(tmp_path, seeds=20)), quiet=True)
    f = forecast(suite, jobs, Cluster(1, 8, 2), CostModel.constant(T, TAU), startup_s=S,
                 scales=(1.0, 2.0))
    assert f.makespan_s == pytest.approx(2 * S + 3 * T + 10 * TAU)
    assert f.scaling[1] == (2, pytest.approx(2 * S + 2 * T + 5 * TAU), pytest.approx(
        4 * (2 * S + 2 * T + 5 * TAU) / 3600))


def test_declared_costs_match_by_options_and_scale_with_steps(tmp_path):
    suite, jobs = load_jobs(str(_suite(tmp_path, seeds=1, steps=2000)), quiet=True)
    cfg = jobs[0].config
    costs = CostModel.declared([
        {"arch": "realnvp", "dataset": "moons", "train_s": 50},
        {"arch": {"name": "realnvp", "hidden": 8}, "dataset": "moons", "steps": 1000,
         "train_s": 100, "time_s": 10, "compile_s": 5},
        {"arch": {"name": "realnvp", "hidden": 16}, "dataset": "moons", "train_s": 999},
    ])
    got = costs.cost(cfg)  # the most specific row, at twice its steps
    assert (got.train_s, got.time_s, got.scaled) == (200.0, 15.0, True)
    with pytest.raises(NoCostError, match="maf on moons"):
        maf = load_jobs(str(_suite(tmp_path, 1, "m", "{name: maf, hidden: 8}")), quiet=True)
        costs.cost(maf[1][0].config)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cost_store(tmp_path, sqlite_uri):
    """A store of 2 finished runs whose phases took T and τ seconds (the simulated backend
    records them as a real run does: train/phase_s, perf/phase_s)."""
    suite, jobs = load_jobs(str(_suite(tmp_path, seeds=2, name="calib")), quiet=True)
    be = SimBackend([SimNode("n", 8, 2)], CostModel.constant(T, TAU), startup_s=S)
    run_jobs(suite, jobs, uri=sqlite_uri, backend=be, out=lambda _: None, tty=False)
    return sqlite_uri


def test_plan_forecast_fits_costs_from_a_store_and_leaves_it_untouched(
        tmp_path, cost_store, capsys, monkeypatch):
    suite = _suite(tmp_path, seeds=8)
    cwd = tmp_path / "cwd"  # where a default store would appear
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    db = Path(cost_store.removeprefix("sqlite:///"))
    before, files = _sha(db), sorted(p.name for p in db.parent.iterdir())
    code = cli.main(["plan", str(suite), "--forecast", "--costs-from", cost_store,
                     "--nodes", "1", "--cpus-per-node", "8", "--gpus-per-node", "2",
                     "--startup-s", str(S), "--no-preflight"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "makespan      2.5 min" in out  # 2S + T + 4τ = 150 s
    assert "train phase" in out and "utilisation 95 %" in out  # T / (S + T)
    assert _sha(db) == before and sorted(p.name for p in db.parent.iterdir()) == files
    assert not list(cwd.iterdir())


def test_plan_forecast_refuses_jobs_without_costs_and_bad_flags(tmp_path, cost_store, capsys):
    other = _suite(tmp_path, 2, "other", "{name: maf, hidden: 8}")
    assert cli.main(["plan", str(other), "--forecast", "--costs-from", cost_store, "--nodes",
                     "2", "--cpus-per-node", "8", "--no-preflight"]) == 2
    err = capsys.readouterr().err
    assert "2 of 2 jobs match no finished run in --costs-from" in err and "maf" in err
    suite = str(_suite(tmp_path))
    for argv, words in [
        (["--forecast", "--nodes", "2", "--cpus-per-node", "8"], "--costs-from URI is required"),
        (["--nodes", "2"], "--nodes: only with --forecast"),
        (["--forecast", "--costs-from", cost_store], "give the cluster's shape"),
        (["--forecast", "--costs-from", cost_store, "--nodes", "2", "--cpus-per-node", "8",
          "--no-preflight"], "the forecast's cluster: resources: a job asks for 0.5 CPUs and "
                             "0.25 GPUs, but the largest node has 8 CPUs and 0 GPUs"),
        (["--forecast", "--costs-from", str(tmp_path / "none.db"), "--nodes", "1",
          "--cpus-per-node", "8"], "--costs-from"),
    ]:
        assert cli.main(["plan", suite, *argv]) == 2, argv
        assert words in capsys.readouterr().err, argv
    assert not (tmp_path / "none.db").exists()


def test_the_cluster_of_cluster_yaml():
    c = cluster_from_yaml(str(ROOT / "cluster.yaml"))
    assert c == Cluster(4, 8.0, 1.0, 32.0)  # max_workers 4 × g5.2xlarge (8 vCPUs, 1 A10G)
