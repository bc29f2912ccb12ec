"""The canary's per-host baseline: kept per CPU model and thread count, aged, replaced by a
faster reading, written atomically by concurrent workers, and what marks a worker slowed for
its whole life (harness.measure.baseline)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from harness.measure import baseline


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(baseline.ENV_DIR, str(tmp_path))
    return tmp_path


def test_kept_per_cpu_and_threads_aged_and_replaced_only_by_a_faster_reading(cache,
                                                                            monkeypatch):
    now = 1e9
    assert math.isnan(baseline.read(1, now))
    assert baseline.record(1, 0.10, now) == 0.10
    assert baseline.record(1, 0.12, now + 60) == 0.10  # slower: the host's fastest stays
    assert baseline.record(2, 0.07, now) == 0.07  # another thread count: its own
    assert baseline.read(1, now + 60) == 0.10
    assert baseline.record(1, 0.09, now + 120) == 0.09  # faster: replaces it
    day = 86400
    assert baseline.read(1, now + 120 + (baseline.MAX_AGE_DAYS - 0.1) * day) == 0.09
    late = now + 120 + (baseline.MAX_AGE_DAYS + 0.1) * day
    assert math.isnan(baseline.read(1, late))  # expired
    assert baseline.record(1, 0.13, late) == 0.13  # and the next calibration replaces it
    real = baseline.cpu_model()
    monkeypatch.setattr(baseline, "cpu_model", lambda: "a new CPU")
    assert math.isnan(baseline.read(1, late))  # a new CPU starts afresh
    assert baseline.record(1, 0.2, late) == 0.2
    kept = json.loads((cache / baseline.FILE).read_text())
    assert set(kept) == {f"{real}|1", f"{real}|2", "a new CPU|1"}
    assert kept[f"{real}|1"]["ms"] == 0.13 and kept["a new CPU|1"]["ms"] == 0.2


def test_a_corrupt_file_is_ignored_and_rewritten(cache):
    (cache / baseline.FILE).write_text("{not json")
    assert math.isnan(baseline.read(1))
    assert baseline.record(1, 0.1) == 0.1
    assert json.loads((cache / baseline.FILE).read_text())[baseline.host_key(1)]["ms"] == 0.1


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(baseline.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert baseline.cache_dir() == tmp_path / "nfbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert baseline.cache_dir() == baseline.Path.home() / ".cache" / "nfbench"


_OFFER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("baseline", sys.argv[2])  # without torch
baseline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(baseline)
w = int(sys.argv[1])
for i in range(50):
    baseline.record(1 + i % 2, 1.0 - 0.001 * (w * 50 + i))
"""


def test_concurrent_workers_neither_corrupt_the_file_nor_lose_the_fastest(cache):
    """Four processes offer 50 readings each for two thread counts at once: the file is whole
    JSON throughout and ends with each thread count's fastest reading."""
    workers = [subprocess.Popen([sys.executable, "-c", _OFFER, str(w), baseline.__file__])
               for w in range(4)]
    try:
        while any(w.poll() is None for w in workers):
            if (cache / baseline.FILE).exists():
                json.loads((cache / baseline.FILE).read_text())  # never half written
            time.sleep(0.002)
    finally:
        for w in workers:
            w.kill()
            w.wait()
    assert [w.returncode for w in workers] == [0] * 4
    kept = json.loads((cache / baseline.FILE).read_text())
    for threads in (1, 2):  # the fastest offered: by worker 3, readings 48 and 49
        fastest = 1.0 - 0.001 * (3 * 50 + 48 + threads - 1)
        assert kept[baseline.host_key(threads)]["ms"] == pytest.approx(fastest)
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp"]


_WORKER = """
import json, os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
import torch
torch.set_num_threads(1)
from harness.measure import canary, timing
a = torch.randn(48, 48)
m = timing.measure_ms(lambda: a @ a, 0.05, retries=0)
probe = canary.for_device("cpu")
print(json.dumps({"slowed": m.slowed, "contended": m.contended, "slowdown": m.slowdown,
                  "best": probe.best, "own_best": probe.own_best}))
"""

_NEIGHBOUR = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
print("ready", flush=True)
while True:  # 50 µs of work every 100 µs, preempting whatever shares the core
    t = time.perf_counter()
    while time.perf_counter() - t < 5e-5:
        pass
    time.sleep(5e-5)
"""


def _worker(core: int, cache_dir) -> dict:
    env = {**os.environ, baseline.ENV_DIR: str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", _WORKER, str(core)], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_worker_slowed_for_its_whole_life_is_marked_by_the_host_baseline(tmp_path):
    """A worker whose core is shared from before it starts with a neighbour that preempts it
    every 100 µs (real-time priority: each canary is cut, not just some; a CPU-bound neighbour
    of equal priority only time-slices, which the canary does not see) runs every canary
    about twice as slow. Against its own fastest canary it looks at speed; against the host's
    baseline, recorded first by a worker on the quiet core, every block is slowed and the
    timing is marked contended."""
    core = max(os.sched_getaffinity(0))
    neighbour = subprocess.Popen([sys.executable, "-c", _NEIGHBOUR, str(core)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = neighbour.stdout.readline()
    if not ready:
        why = neighbour.communicate(timeout=30)[1].strip().splitlines()[-1:]
        pytest.skip(f"no real-time neighbour here: {why}")  # needs CAP_SYS_NICE
    neighbour.kill()
    neighbour.wait()

    quiet = _worker(core, tmp_path / "host")  # records the host's baseline
    assert quiet["best"] == quiet["own_best"]
    neighbour = subprocess.Popen([sys.executable, "-c", _NEIGHBOUR, str(core)],
                                 stdout=subprocess.PIPE, text=True)
    try:
        assert neighbour.stdout.readline() == "ready\n"
        alone = _worker(core, tmp_path / "fresh")  # no baseline: reads itself
        marked = _worker(core, tmp_path / "host")
    finally:
        neighbour.kill()
        neighbour.wait()
    assert marked["own_best"] > 1.5 * quiet["own_best"]  # it really ran slow all its life
    assert marked["best"] == pytest.approx(quiet["own_best"])  # the host's yardstick
    assert marked["slowed"] and marked["contended"] and marked["slowdown"] > 1.5
    assert alone["best"] == alone["own_best"]  # alone, its own fastest is the yardstick
    assert alone["slowdown"] < marked["slowdown"] / 1.5
