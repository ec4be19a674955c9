"""The console client's outbox: order, coalescing, overflow to a resync (pure)."""

from __future__ import annotations

from rtls.outbox import RESYNC, Outbox


def _drain(box: Outbox) -> list[bytes]:
    out = []
    while (m := box.pop()) is not None:
        out.append(m)
    return out


def test_reliable_in_order_before_latest_only() -> None:
    box = Outbox(limit=10)
    box.offer("heartbeat", b"hb1")
    box.offer("positions", b"p1")
    assert box.push(b"a1") and box.push(b"a2")
    box.offer("positions", b"p2")  # replaces p1: a slow client gets the newest only
    assert box.pending_positions()
    assert _drain(box) == [b"a1", b"a2", b"p2", b"hb1"]
    assert len(box) == 0 and box.pop() is None


def test_overflow_empties_the_queue_and_asks_for_a_snapshot_once() -> None:
    box = Outbox(limit=3)
    for i in range(3):
        assert box.push(f"a{i}".encode())
    box.offer("positions", b"p")
    assert not box.push(b"a3")  # the fourth does not fit
    assert not box.push(b"a4")  # superseded by the coming snapshot too
    assert box.resyncs == 1 and len(box) == 1
    assert box.pop() == RESYNC
    assert box.pop() is None  # nothing stale after the snapshot
    assert box.push(b"a5")  # and it accepts messages again
    assert _drain(box) == [b"a5"]
