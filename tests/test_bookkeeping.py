"""The scheduler's bookkeeping through the inline backend, in milliseconds per fault: lost
workers, retries, attempts across phases, stale errors, Ctrl-C, a second driver, lost
capacity. The store is a real SQLite MLflow store and the claims are real; only the job
phase is acted out by a small function, so that each fault costs no training."""

from __future__ import annotations

import collections
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from harness import keys
from harness.app import load_jobs
from harness.schedule import InlineBackend, WorkerLost, run_jobs
from harness.schedule import driver as driver_module
from harness.tracking import MlflowTracker, Store
from harness.tracking.index import JobIndex

SUITE = """\
name: book
matrix:
  architectures: [{name: realnvp, layers: 2, hidden: 8}]
  datasets: [moons]
  dequantization: [none]
  seeds: [0, 1, 2]
train: {steps: 10}
timing: {enabled: true}
retries: 2
"""


class Script:
    """A job phase acted out: ``plan[(seed, phase)]`` is a list of outcomes, one per call
    ("lost", "error", "interrupt", or "ok" when the list runs out)."""

    def __init__(self, plan=None):
        self.plan = {k: collections.deque(v) for k, v in (plan or {}).items()}
        self.calls: list[tuple[int, str]] = []

    def __call__(self, spec, p):
        seed = p.config.seed
        self.calls.append((seed, p.phase))
        todo = self.plan.get((seed, p.phase))
        what = todo.popleft() if todo else "ok"
        if what == "lost":
            raise WorkerLost(f"seed {seed} {p.phase}")
        if what == "interrupt":
            raise KeyboardInterrupt
        if what == "error":
            return {"ok": False, "error": "Traceback …\nValueError: broken on purpose\n",
                    "seconds": 0.01}
        tags = {keys.TAG_PHASE: "trained" if p.phase == "train" else "timed"}
        metrics = {keys.EVAL_NLL: 1.0 + seed} if p.phase == "train" else \
            {keys.PERF_SAMPLE_THROUGHPUT: 1000.0}
        return {"ok": True, "status": keys.STATUS_FINISHED, "metrics": metrics,
                "record": {"tags": tags, "metrics": metrics}, "seconds": 0.01}


@pytest.fixture
def suite(tmp_path):
    (tmp_path / "book.yaml").write_text(SUITE)
    return load_jobs(str(tmp_path / "book.yaml"), quiet=True)


def _run(suite_jobs, uri, script, **kw):
    suite, jobs = suite_jobs
    return run_jobs(suite, jobs, uri=uri, backend=InlineBackend(1, runner=script),
                    out=lambda s: None, tty=False, **kw)


def _by_seed(uri):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("book").experiment_id])
    out = collections.defaultdict(list)
    for r in runs:
        out[int(r.data.tags[keys.TAG_SEED])].append(r)
    return out


def test_lost_workers_are_retried_and_counted_across_phases(suite, sqlite_uri):
    uri = sqlite_uri
    script = Script({(0, "train"): ["lost"], (0, "time"): ["lost"]})
    summary = _run(suite, uri, script)
    assert sorted(summary.finished) == sorted(j.key for j in suite[1])
    assert summary.retried == 2
    runs = _by_seed(uri)
    assert all(len(v) == 1 for v in runs.values()) and len(runs) == 3
    tags = runs[0][0].data.tags
    assert tags[keys.TAG_STATUS] == keys.STATUS_FINISHED and tags[keys.TAG_ATTEMPTS] == "2"
    assert keys.TAG_ERROR not in tags
    assert keys.TAG_ATTEMPTS not in runs[1][0].data.tags  # nothing died under it
    assert script.calls.count((0, "train")) == 2 and script.calls.count((0, "time")) == 2


def test_a_job_whose_workers_keep_dying_fails_and_the_suite_goes_on(suite, sqlite_uri):
    uri = sqlite_uri
    summary = _run(suite, uri, Script({(1, "train"): ["lost"] * 3}))
    assert len(summary.failed) == 1 and len(summary.finished) == 2
    tags = _by_seed(uri)[1][0].data.tags
    assert tags[keys.TAG_STATUS] == keys.STATUS_FAILED and tags[keys.TAG_ATTEMPTS] == "3"
    assert "worker died 3 times" in tags[keys.TAG_ERROR]


def test_a_resumed_run_says_what_is_true_at_its_end(suite, sqlite_uri):
    uri = sqlite_uri
    first = _run(suite, uri, Script({(2, "train"): ["lost", "error"]}))
    assert len(first.failed) == 1
    run = _by_seed(uri)[2][0]
    assert "broken on purpose" in run.data.tags[keys.TAG_ERROR]
    again = _run(suite, uri, Script())
    assert again.finished == [first.failed[0]] and len(again.skipped) == 2
    (resumed,) = _by_seed(uri)[2]
    assert resumed.info.run_id == run.info.run_id
    tags = resumed.data.tags
    assert tags[keys.TAG_STATUS] == keys.STATUS_FINISHED and keys.TAG_ERROR not in tags
    assert tags[keys.TAG_ATTEMPTS] == "1"  # the worker lost under the first driver


def test_ctrl_c_marks_open_runs_killed_and_frees_the_claims(suite, sqlite_uri):
    uri = sqlite_uri
    with pytest.raises(KeyboardInterrupt):
        _run(suite, uri, Script({(1, "train"): ["interrupt"]}))
    runs = _by_seed(uri)
    statuses = {s: r[0].data.tags[keys.TAG_STATUS] for s, r in runs.items()}
    assert statuses[1] == keys.STATUS_KILLED and keys.STATUS_RUNNING not in statuses.values()
    t0 = time.monotonic()
    again = _run(suite, uri, Script())  # no lease to wait for: the first driver ended it
    assert time.monotonic() - t0 < 30
    assert not again.failed and len(again.finished) + len(again.skipped) == 3
    assert all(len(v) == 1 for v in _by_seed(uri).values())


def test_a_second_driver_leaves_claimed_jobs_and_takes_over_when_their_driver_stops(
        suite, sqlite_uri, monkeypatch):
    monkeypatch.setattr(driver_module, "POLL_OTHERS_S", 0.1)
    uri = sqlite_uri
    s, jobs = suite
    store = Store(uri, "book")
    other = store.ledger(ttl=60)  # another live driver holds seeds 0 and 1
    other.renew()
    assert other.claim([jobs[0].key, jobs[1].key]) == {}

    def finish_seed_0_then_stop() -> None:  # it finishes seed 0, then stops before seed 1
        jr = store.open_run(jobs[0], {keys.TAG_SEED: "0"}, None, False)
        MlflowTracker(uri, jr.run_id).record(tags={keys.TAG_PHASE: "timed"})
        store.close_run(jr.run_id, keys.STATUS_FINISHED)
        other.stop()

    threading.Timer(1.0, finish_seed_0_then_stop).start()
    script = Script()
    lines: list[str] = []
    reads: list[tuple] = []
    real_read = JobIndex.read

    def counted(self, keys_=None, since_ms=None):
        reads.append((keys_ is None, since_ms is None))
        return real_read(self, keys_, since_ms)

    monkeypatch.setattr(JobIndex, "read", counted)
    summary = run_jobs(s, jobs, uri=uri, backend=InlineBackend(1, runner=script),
                       out=lines.append, tty=False)
    # the whole suite is read once, at the start; waiting reads only what changed
    assert reads.count((True, True)) == 1 and reads[0] == (True, True), reads
    assert (True, False) in reads
    assert summary.elsewhere == [jobs[0].key]
    assert sorted(summary.finished) == sorted([jobs[1].key, jobs[2].key])
    assert (0, "train") not in script.calls and (1, "train") in script.calls
    assert any("taken over" in line for line in lines), lines
    runs = _by_seed(uri)
    assert sorted(runs) == [0, 1, 2] and all(len(v) == 1 for v in runs.values())


class LosingCapacity(InlineBackend):
    """An inline backend whose only node is gone after its first lost worker."""

    def __init__(self, runner):
        super().__init__(1, runner=runner)
        self.gone = False

    def free(self):
        return [] if self.gone else super().free()

    def wait(self, timeout):
        events = super().wait(timeout)
        self.gone = self.gone or any(e.kind == "lost" for e in events)
        return events


def test_with_no_capacity_left_the_suite_still_ends(suite, sqlite_uri, monkeypatch):
    monkeypatch.setenv("NFBENCH_CAPACITY_WAIT_SECONDS", "0.5")
    uri = sqlite_uri
    s, jobs = suite
    summary = run_jobs(s, jobs, uri=uri, backend=LosingCapacity(Script({(0, "train"): ["lost"]})),
                       out=lambda x: None, tty=False)
    assert sorted(summary.failed) == sorted(j.key for j in jobs)
    for runs in _by_seed(uri).values():
        tags = runs[0].data.tags
        assert tags[keys.TAG_STATUS] == keys.STATUS_FAILED
        assert "no capacity" in tags[keys.TAG_ERROR] or "no node" in tags[keys.TAG_ERROR]
