"""Workers on PostgreSQL (the throw-away server of `pg_server`): three worker processes drain
300 checkout runs while one of them is SIGKILLed, and a worker outlives a server restart. The
ledger of the example actions says what was executed, by which process, how often."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from throwaway_pg import PgServer

from .workers_support import (
    Worker,
    check_ledger,
    read_ledger,
    runs,
    saga_folder,
    submit_many,
    wait_until,
)


def _expect(entries: list[dict[str, object]], fails: set[str], orders: list[str]) -> None:
    """Each run's effects happened once: charge, reserve and ship (or release and refund
    after a failed ship), however often a call was re-sent with its key."""
    effective = {(e["action"], e["key"]) for e in entries if e["effective"]}
    for order in orders:
        done = {a for a, k in effective if k.rsplit("-", 1)[0] == order}  # type: ignore[union-attr]
        want = {"charge", "reserve", "release", "refund"} if order in fails else {
            "charge", "reserve", "ship"}  # fmt: skip
        assert done == want, (order, done)


def test_three_workers_drain_300_runs_while_one_is_killed(
    pg_server: PgServer, tmp_path: Path
) -> None:
    store = pg_server.database()
    shop = saga_folder(tmp_path / "shop")
    ledger = tmp_path / "ledger.jsonl"
    orders = [f"o-{i}" for i in range(300)]
    fails = {o for i, o in enumerate(orders) if i % 3 == 2}
    ids = submit_many(
        store, shop / "ledger_checkout.yaml", [{"order_id": o, "fail": o in fails} for o in orders]
    )
    args = ("--lease-ttl", "2s", "--concurrency", "8", "--exit-when-idle")
    doomed = Worker(store, tmp_path, ledger, *args)
    others = [Worker(store, tmp_path, ledger, *args) for _ in range(2)]
    # Killed in the middle of its work: once it made 30 calls.
    wait_until(
        lambda: sum(e["pid"] == doomed.pid for e in read_ledger(ledger)) >= 30, what="30 calls"
    )
    doomed.proc.send_signal(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL
    for w in others:
        assert w.wait(timeout=120) == 0, w.log.read_text()[-3000:]
    final = {r["run_id"]: r["status"] for r in runs(store, ledger)}
    assert len(final) == 300
    for run_id, order in zip(ids, orders, strict=True):
        assert final[run_id] == ("compensated" if order in fails else "succeeded"), order
    entries = read_ledger(ledger)
    pids = check_ledger(entries)  # no key effective twice; no run's calls interleaved
    _expect(entries, fails, orders)
    taken_over = [o for o, p in pids.items() if len(p) > 1]
    assert taken_over and all(pids[o][0] == str(doomed.pid) for o in taken_over)
    resumed = {x["run_id"] for w in others for x in w.events("resumed")}
    assert resumed  # the killed worker's runs, continued from their journals


def test_a_worker_outlives_a_server_restart(pg_server: PgServer, tmp_path: Path) -> None:
    store = pg_server.database()
    shop = saga_folder(tmp_path / "shop")
    ledger = tmp_path / "ledger.jsonl"
    orders = [f"o-{i}" for i in range(60)]
    fails = {o for i, o in enumerate(orders) if i % 3 == 2}
    inputs = [{"order_id": o, "seconds": 0.3} for o in orders[:20]]
    ids = submit_many(store, shop / "slow.yaml", inputs)
    ids += submit_many(
        store,
        shop / "ledger_checkout.yaml",
        [{"order_id": o, "fail": o in fails} for o in orders[20:]],
    )
    w = Worker(store, tmp_path, ledger, "--lease-ttl", "5s", "--exit-when-idle")
    wait_until(lambda: len(read_ledger(ledger)) >= 10, what="ten calls")
    pg_server.halt("fast")  # every connection cut, what was committed kept
    time.sleep(1.0)
    pg_server.start()
    assert w.wait(timeout=120) == 0, w.log.read_text()[-3000:]
    assert w.events("error")  # it saw the server go away, and went on
    assert not w.events("not_json")  # the pool's complaints too are JSON lines
    final = {r["run_id"]: r["status"] for r in runs(store, ledger)}
    assert len(final) == 60
    for run_id, order in zip(ids, orders, strict=True):
        slow = order in {o for o in orders[:20]}
        expected = "succeeded" if slow or order not in fails else "compensated"
        assert final[run_id] == expected, order
    entries = read_ledger(ledger)
    check_ledger(entries)
    effective = {(e["action"], e["key"]) for e in entries if e["effective"]}
    for order in orders[:20]:
        assert {a for a, k in effective if k.startswith(order + "-")} == {
            "charge", "slow", "reserve"}  # fmt: skip
    _expect(entries, fails, orders[20:])


def test_a_worker_whose_server_is_down_still_stops_on_sigterm(tmp_path: Path) -> None:
    """Its claims and heartbeats fail (and are logged) while nothing listens on the port; a
    SIGTERM then stops it with exit 0, however its heartbeat's wait and the stop interleave."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = Worker(f"postgresql://nobody@127.0.0.1:{port}/none", tmp_path, tmp_path / "ledger")
    try:
        failed = w.wait_for("error", count=2)
        assert {e["code"] for e in failed} == {"STORE_UNAVAILABLE"}
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=10) == 0, w.log.read_text()
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
