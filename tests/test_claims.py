"""Claims with driver leases, on a real SQLite MLflow store: one holder per key, whatever
runs at once; a dead driver's keys are taken over exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness import keys
from harness.tracking import Store
from harness.tracking.claims import LEDGER_EXPERIMENT, Ledger, shard_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims_race import race  # noqa: E402


def _store(uri, suite="s") -> Store:
    return Store(uri, suite)


def test_a_suite_has_one_ledger_outside_its_experiment(sqlite_uri):
    a = _store(sqlite_uri)
    b = _store(sqlite_uri)  # a second driver of the same suite adopts the same ledger
    assert a.ledger_run_id == b.ledger_run_id
    exp = a.client.get_experiment(a.experiment_id)
    assert exp.tags[keys.TAG_LEDGER] == a.ledger_run_id
    ledger_run = a.client.get_run(a.ledger_run_id)
    assert a.client.get_experiment(ledger_run.info.experiment_id).name == LEDGER_EXPERIMENT
    assert a.client.search_runs([a.experiment_id]) == []  # the suite's table shows only jobs
    assert _store(sqlite_uri, "other").ledger_run_id != a.ledger_run_id


def test_an_experiment_from_before_ledgers_gets_one(sqlite_uri):
    store = _store(sqlite_uri)
    store.client.delete_experiment_tag(store.experiment_id, keys.TAG_LEDGER)
    again = _store(sqlite_uri)
    assert again.ledger_run_id not in ("", None, store.ledger_run_id)
    assert _store(sqlite_uri).ledger_run_id == again.ledger_run_id


def test_claims_are_exclusive_and_batched(sqlite_uri):
    store = _store(sqlite_uri)
    a, b = store.ledger(ttl=60), store.ledger(ttl=60)
    a.renew()
    b.renew()
    assert a.claim(["k1", "k2", "k3"]) == {}
    lost = b.claim(["k2", "k4"])
    assert set(lost) == {"k2"} and lost["k2"].driver == a.me and lost["k2"].alive
    assert set(a.held) == {"k1", "k2", "k3"} and set(b.held) == {"k4"}
    assert not b.take("k1", b.holders(["k1"])["k1"])  # a is alive


def test_a_dead_drivers_keys_are_taken_over_once(sqlite_uri):
    store = _store(sqlite_uri)
    a = store.ledger(ttl=60)
    a.renew()
    a.claim(["k"])
    a.stop()  # ended: its claims are free at once
    b, c = store.ledger(ttl=60), store.ledger(ttl=60)
    b.renew()
    c.renew()
    holder = b.holders(["k"])["k"]
    assert holder.driver == a.me and not holder.alive and holder.generation == 0
    assert b.take("k", holder) and b.held["k"] == 1
    assert not c.take("k", holder)  # generation 1 is b's now
    assert c.claim(["k"])["k"].driver == b.me


def test_an_expired_lease_and_a_dead_process_free_their_claims(sqlite_uri):
    store = _store(sqlite_uri)
    old = store.ledger(ttl=0.2)
    old.renew()
    old.claim(["k1"])
    import time

    time.sleep(0.3)
    assert not store.ledger().holders(["k1"])["k1"].alive  # expired
    # a driver on this host whose process is gone: its lease is dead before it expires
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone = f"{socket.gethostname()}:{proc.stdout.strip()}:dead"
    store.client.set_tag(store.ledger_run_id, f"driver.{gone}", json.dumps(
        {"host": socket.gethostname(), "pid": int(proc.stdout), "ended": False,
         "expires": time.time() + 3600}))
    ghost = Ledger(store.client, store.ledger_run_id, me=gone)
    assert ghost.claim(["k2"]) == {}
    assert not store.ledger().holders(["k2"])["k2"].alive
    me = f"{socket.gethostname()}:{os.getpid()}:live"
    store.client.set_tag(store.ledger_run_id, f"driver.{me}", json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "ended": False,
         "expires": time.time() + 3600}))
    Ledger(store.client, store.ledger_run_id, me=me).claim(["k3"])
    assert store.ledger().holders(["k3"])["k3"].alive


def test_drivers_racing_for_the_same_keys_get_one_holder_each(sqlite_uri):
    store = _store(sqlite_uri)
    ledgers = [Store(store.uri, "s").ledger(ttl=60) for _ in range(4)]
    for led in ledgers:
        led.renew()
    wanted = [f"k{i}" for i in range(30)]
    start = threading.Barrier(len(ledgers))

    def grab(led):
        start.wait()
        for i in range(0, len(wanted), 5):  # small batches, so that the races interleave
            led.claim(wanted[i : i + 5])

    threads = [threading.Thread(target=grab, args=(led,)) for led in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners = {}
    for led in ledgers:
        for k in led.held:
            assert k not in owners, f"{k} held twice"
            owners[k] = led.me
    assert sorted(owners) == sorted(wanted)
    truth = ledgers[0].holders(wanted)
    assert all(truth[k].driver == owners[k] for k in wanted)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_drivers_racing_on_a_sharded_ledger_get_one_holder_each(backend, request, sqlite_uri):
    """Four drivers in threads (each its own connection) race for 300 keys in 5 shards,
    creating the shards as they go: every key ends with one holder, and the shards' runs are
    one per shard (the losers of a shard's creation adopted the winner's)."""
    uri = request.getfixturevalue("postgres").new_database() if backend == "postgresql" \
        else sqlite_uri
    wanted = [f"{i:04x}" for i in range(300)]
    ledgers = [Store(uri, "race").ledger(ttl=60, jobs=len(wanted)) for _ in range(4)]
    for led in ledgers:
        led.renew()
    owners = race(ledgers, wanted, 40)
    judge = Store(uri, "race").ledger()
    truth = judge.holders(wanted)
    assert all(truth[k].driver == owners[k] and truth[k].generation == 0 for k in wanted)
    shards = judge.shards
    assert shards == shard_count(len(wanted)) == 8
    client = judge.client
    directory = client.get_run(judge.run_id).data.params
    live = client.search_runs([client.get_run(judge.run_id).info.experiment_id],
                              f"tags.`{keys.TAG_LEDGER}` = '{judge.run_id}'")
    assert sorted(r.info.run_id for r in live) == sorted(
        v for k, v in directory.items() if k.startswith("shard."))


def _ops_per_key(uri: str, suite: str, n: int) -> dict[str, float]:
    """Store operations per key of a first claim, a second driver finding every key held,
    and a take-over after the first driver ended (windows of 50 keys, as a driver claims)."""
    first = Store(uri, suite).ledger(ttl=60, jobs=n)
    first.renew()
    keys_ = first.order([f"{suite}{i:06d}" for i in range(n)])

    def run(led) -> float:
        before = led.ops
        for i in range(0, n, 50):
            led.claim(keys_[i : i + 50])
        return (led.ops - before) / n

    out = {"first": run(first)}
    second = Store(uri, suite).ledger(ttl=60, jobs=n)
    second.renew()
    out["second"] = run(second)
    assert not second.held
    first.stop()
    third = Store(uri, suite).ledger(ttl=60, jobs=n)
    third.renew()
    out["take-over"] = run(third)
    assert len(third.held) == n and set(third.held.values()) == {1}
    return out


def test_claims_cost_a_constant_number_of_store_operations_per_key(sqlite_uri):
    """O(1) per key, counted (not timed): the single-run ledger this replaced read and wrote
    a run holding every claim, so its cost per key grew with the suite."""
    small = _ops_per_key(sqlite_uri, "small", 256)
    large = _ops_per_key(sqlite_uri, "large", 2048)
    for step in small:
        assert large[step] <= 1.25 * small[step] + 0.01, (step, small, large)
        assert large[step] < 0.25, (step, large)


def test_a_driver_that_started_after_the_leases_were_read_is_alive(sqlite_uri):
    """Leases are cached for a moment; a claim by a driver missing from the cached read is
    never taken for a dead driver's (that double-ran keys of two drivers starting together)."""
    a = _store(sqlite_uri).ledger(ttl=60)
    a.renew()
    assert a.me in a.leases(fresh=True)  # cached now, before b exists
    b = _store(sqlite_uri).ledger(ttl=60)
    b.renew()
    assert b.claim(["k"]) == {}
    lost = a.claim(["k"])
    assert lost["k"].driver == b.me and lost["k"].alive
    assert not a.take("k", lost["k"]) and "k" not in a.held
