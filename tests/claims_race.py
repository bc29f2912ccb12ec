"""Drivers racing for keys in threads (each its own store connection), for the claims tests
on every kind of store."""

from __future__ import annotations

import threading


def race(ledgers: list, wanted: list[str], batch: int) -> dict[str, str]:
    """Each ledger claims ``wanted`` in windows of ``batch``, in an order of its own, all
    starting at once; checks that no key is held twice and every key is held; the owners."""
    start = threading.Barrier(len(ledgers))
    orders = [wanted, wanted[::-1], wanted[1::2] + wanted[::2], wanted]

    def grab(led, order):
        start.wait()
        for i in range(0, len(order), batch):
            led.claim(order[i : i + batch])

    threads = [threading.Thread(target=grab, args=(led, orders[i % len(orders)]))
               for i, led in enumerate(ledgers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners: dict[str, str] = {}
    for led in ledgers:
        for k in led.held:
            assert k not in owners, f"{k} held twice"
            owners[k] = led.me
    assert sorted(owners) == sorted(wanted)
    return owners
