"""Claims with driver leases, on a real SQLite MLflow store: one holder per key, whatever
runs at once; a dead driver's keys are taken over exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

from harness import keys
from harness.tracking import Store
from harness.tracking.claims import LEDGER_EXPERIMENT, Ledger


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
