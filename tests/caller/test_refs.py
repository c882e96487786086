"""A process's handle counts alone: what ``RefTracker.drain`` tells the manager.

No process: changes are queued from this thread and drained into the
``RefDelta`` the node would send under the manager link's send lock.
"""

from __future__ import annotations

import threading

from localactors._caller.refs import RefTracker
from localactors._wire import protocol as P


def _wakes(refs: RefTracker) -> int:
    n = 0
    while not refs.wake.empty():
        refs.wake.get_nowait()
        n += 1
    return n


def test_nothing_queued_drains_to_nothing() -> None:
    assert RefTracker().drain() is None


def test_only_the_first_and_last_handle_of_a_key_are_told() -> None:
    refs = RefTracker()
    refs.incref("x")
    refs.incref("x")
    assert refs.drain() == P.RefDelta((("x", 1),), (), ())
    assert refs.count("x") == 2
    refs.decref("x")
    assert refs.drain() is None and refs.count("x") == 1
    refs.decref("x")
    assert refs.drain() == P.RefDelta((("x", -1),), (), ())
    assert refs.count("x") == 0


def test_changes_keep_their_order_within_one_drain() -> None:
    refs = RefTracker()
    refs.incref("x")
    refs.decref("x")
    refs.incref("y")
    assert refs.drain() == P.RefDelta((("x", 1), ("x", -1), ("y", 1)), (), ())


def test_pins_and_unpins_travel_with_the_changes() -> None:
    refs = RefTracker()
    refs.pin([("t1", "x"), ("t2", "y")])
    assert _wakes(refs) == 0  # pins go out with the message that carries them (send_pins flushes)
    refs.unpin(["t0"])
    refs.unpin([])
    assert _wakes(refs) == 1
    assert refs.drain() == P.RefDelta((), (("t1", "x"), ("t2", "y")), ("t0",))


def test_every_count_change_wakes_the_refs_thread() -> None:
    refs = RefTracker()
    refs.incref("x")
    refs.decref("x")
    assert _wakes(refs) == 2


def test_after_close_drops_are_not_queued() -> None:
    """Closing: the manager frees everything anyway, and ``__del__`` must not pile up."""
    refs = RefTracker()
    refs.incref("x")
    refs.drain()
    refs.closed = True
    refs.decref("x")
    assert refs.drain() is None and _wakes(refs) == 1


def test_changes_from_many_threads_all_arrive() -> None:
    refs = RefTracker()

    def churn(key: str) -> None:
        for _ in range(1000):
            refs.incref(key)
        for _ in range(999):
            refs.decref(key)

    threads = [threading.Thread(target=churn, args=(f"k{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    delta = refs.drain()
    assert delta is not None
    assert sorted(delta.changes) == [(f"k{i}", 1) for i in range(4)]  # each still held once
    assert all(refs.count(f"k{i}") == 1 for i in range(4))
