"""The driver's index of a suite's job runs: the direct query on a database store answers as
MLflow's API does (SQLite and PostgreSQL), by key and by "changed since"."""

from __future__ import annotations

import time

import pytest

from harness import keys
from harness.suite import parse_suite
from harness.suite.expand import expand
from harness.tracking import MlflowTracker, Store
from harness.tracking.index import JobIndex


def _jobs():
    suite, _ = parse_suite("name: t\nmatrix: {architectures: [realnvp], datasets: [moons], "
                           "dequantization: [none], seeds: [0, 1, 2, 3]}\n")
    return expand(suite)[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_direct_index_reads_what_mlflows_api_reads(backend, request, sqlite_uri):
    uri = request.getfixturevalue("postgres").new_database() if backend == "postgresql" \
        else sqlite_uri
    store = Store(uri, "idx")
    jobs = _jobs()
    a = store.open_run(jobs[0], {}, None, False)
    MlflowTracker(uri, a.run_id).record(tags={keys.TAG_PHASE: "trained"})
    store.close_run(a.run_id, keys.STATUS_FAILED, "boom", attempts=2)
    b = store.open_run(jobs[1], {}, None, False)
    store.close_run(b.run_id, keys.STATUS_FINISHED)
    c = store.open_run(jobs[2], {}, None, False)  # running
    time.sleep(0.05)
    since = int(time.time() * 1000)
    time.sleep(0.05)
    store.close_run(c.run_id, keys.STATUS_KILLED)
    d = store.open_run(jobs[3], {}, None, False)  # created after ``since``
    e = store.open_run(jobs[3], {}, None, False)
    store.client.delete_run(e.run_id)  # deleted runs are not indexed

    direct = JobIndex(store.client, uri, store.experiment_id)
    api = JobIndex(store.client, uri, store.experiment_id)
    api._url = None
    assert direct._url is not None
    for args in [{}, {"keys_": [jobs[0].key, jobs[3].key, "nope"]}, {"since_ms": since}]:
        got, want = direct.read(**args), api.read(**args)
        assert got == want, args
    assert direct._url is not None  # the direct query answered (it falls back on any error)
    whole = direct.read()
    assert len(whole) == 4 and [r.run_id for r in whole[jobs[3].key]] == [d.run_id]
    ref = whole[jobs[0].key][0]
    assert (ref.run_id, ref.status, ref.phase, ref.attempts, ref.has_error) == (
        a.run_id, keys.STATUS_FAILED, "trained", 2, True)
    assert whole[jobs[1].key][0].status == keys.STATUS_FINISHED
    changed = direct.read(since_ms=since)
    assert set(changed) == {jobs[2].key, jobs[3].key}  # ended, or created, since then
