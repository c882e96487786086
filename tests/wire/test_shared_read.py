"""A shared link's read token alone: who reads, and in which thread messages are dispatched.

Two :class:`~localactors._wire.link.Link` ends over a socket pair, no
handshake and no process: one end is read shared (as a caller's link to a
worker, or a worker's end of a caller's link), the other only writes.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest
from helpers import wait_until

from localactors._base import completion, interrupt
from localactors._base.completion import on_each_done
from localactors._base.futures import Completion
from localactors._wire import protocol as P
from localactors._wire import shared_read
from localactors._wire.link import Link
from localactors._wire.shared_read import EPOLL, ReadToken, in_reader_thread

pytestmark = pytest.mark.skipif(not EPOLL, reason="shared reading needs epoll")

T = 10.0


class Ends:
    """``shared``: read shared, dispatching into ``seen``; ``other``: the far end, writing."""

    def __init__(self) -> None:
        a, b = socket.socketpair()
        self.shared = Link(Connection(a.detach()), "shared")
        self.other = Link(Connection(b.detach()), "other")
        self.seen: list[tuple[int, str, bool]] = []  # (call id, dispatching thread, flagged as a reader)
        self.replies: dict[int, Completion] = {}
        self.closed = threading.Event()
        self.shared.start_reader(self._dispatch, lambda lk, err: self.closed.set(), shared=True)

    def _dispatch(self, link: Link, msg: P.Message) -> None:
        assert isinstance(msg, P.CallOk)
        self.seen.append((msg.call_id, threading.current_thread().name, in_reader_thread()))
        comp = self.replies.get(msg.call_id)
        if comp is not None:
            comp.set_result(msg.payload)

    def close(self) -> None:
        self.other.close()
        self.shared.close()
        assert self.closed.wait(T)
        self.shared.join_reader(T)


@pytest.fixture
def ends() -> Iterator[Ends]:
    e = Ends()
    yield e
    e.close()


class _AskedFirst:
    """A completion whose reply is sent when the waiter first asks whether it is done.

    ``read_until`` asks only once it holds the token and has disarmed the
    reader thread: so the reply is sure to be read by the waiter.
    """

    def __init__(self, ends: Ends, call_id: int) -> None:
        self.comp = ends.replies[call_id] = Completion()
        self._send = lambda: ends.other.send(P.CallOk(call_id, b"reply"))
        self._sent = False

    def done(self) -> bool:
        if not self._sent:
            self._sent = True
            self._send()
        return self.comp.done()


def test_a_waiting_thread_reads_its_own_reply(ends: Ends) -> None:
    ends.other.send(P.CallOk(0, b"someone else's"))
    wait_until(lambda: bool(ends.seen), T, "the reader thread dispatched it")
    asked = _AskedFirst(ends, 1)
    assert ends.shared.read_until(asked, T) is True
    assert asked.comp.value == b"reply"
    assert ends.seen == [(0, "localactors-reader-shared", True), (1, threading.current_thread().name, True)]
    assert not in_reader_thread()  # a reader only while it dispatched


def test_a_waiter_that_cannot_read_waits_for_the_reader(ends: Ends) -> None:
    """Whoever reads, every message is dispatched once, in order."""
    for call_id in range(20):
        comp = ends.replies[call_id] = Completion()
        waiter = threading.Thread(target=ends.shared.read_until, args=(comp, T), name=f"unit-waiter-{call_id}")
        waiter.start()
        ends.other.send(P.CallOk(call_id, b"reply"))
        waiter.join(T)  # it returns at once when the reader thread has the token: then the reader dispatches
        wait_until(comp.done, T, "the reply was dispatched")
        assert comp.value == b"reply"
    assert [call_id for call_id, _, _ in ends.seen] == list(range(20))
    assert all(flag for _, _, flag in ends.seen)  # dispatching marks the thread as a reader


def test_the_reader_thread_reads_when_nobody_waits(ends: Ends) -> None:
    ends.other.send(P.CallOk(5, b""))
    wait_until(lambda: bool(ends.seen), T, "the reader thread dispatched it")
    assert ends.seen == [(5, "localactors-reader-shared", True)]


def test_a_held_link_is_read_by_its_holder_only(ends: Ends) -> None:
    """``hold`` keeps the reader thread off until the holder reads (``read_while_idle``)."""
    assert ends.shared.hold()
    ends.other.send(P.CallOk(7, b""))
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        assert ends.shared.read_while_idle(r, lambda: bool(ends.seen)) is True
    finally:
        os.close(r)
        os.close(w)
    assert ends.seen == [(7, threading.current_thread().name, True)]
    assert not in_reader_thread()  # only while dispatching


def test_read_while_idle_returns_when_woken(ends: Ends) -> None:
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        os.write(w, b"\0")
        assert ends.shared.read_while_idle(r, lambda: False) is True
        assert not ends.seen
    finally:
        os.close(r)
        os.close(w)


def test_an_unheld_link_goes_back_to_its_reader(ends: Ends) -> None:
    assert ends.shared.hold()
    ends.shared.unhold()
    ends.other.send(P.CallOk(9, b""))
    wait_until(lambda: bool(ends.seen), T, "the reader thread read it")
    assert ends.seen[0][1] == "localactors-reader-shared"


def test_a_link_read_unshared_refuses_every_other_reader() -> None:
    a, b = socket.socketpair()
    plain, other = Link(Connection(a.detach()), "plain"), Link(Connection(b.detach()), "other")
    closed = threading.Event()
    plain.start_reader(lambda lk, m: None, lambda lk, err: closed.set())
    try:
        assert plain.read_until(Completion(), 0.1) is None
        assert plain.hold() is False
        assert plain.read_while_idle(0, lambda: True) is None
    finally:
        other.close()
        plain.close()
        assert closed.wait(T)
        plain.join_reader(T)


# -- a link parked by the thread that read it last ---------------------------------


def _token(ends: Ends) -> ReadToken:
    token = ends.shared.read_point
    assert token is not None
    return token


def _count_takes(token: ReadToken, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often ``token`` is taken from its reader thread (disarm and wake: the system calls)."""
    taken = [0]
    take = token._take_from_reader

    def counting() -> None:
        taken[0] += 1
        take()

    monkeypatch.setattr(token, "_take_from_reader", counting)
    return taken


def test_a_caller_in_a_loop_takes_the_link_once(ends: Ends, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parked after each reply, the link is taken again with no system call, while in use."""
    monkeypatch.setattr(shared_read, "PARK", 60.0)  # the reader does not look again during the loop
    monkeypatch.setattr(shared_read, "PARK_MAX", 60.0)
    token = _token(ends)
    taken = _count_takes(token, monkeypatch)
    for call_id in range(200):
        asked = _AskedFirst(ends, call_id)
        assert ends.shared.read_until(asked, T) is True
        assert asked.comp.value == b"reply"
    assert taken == [1]
    assert token._away  # parked
    assert [thread for _, thread, _ in ends.seen] == [threading.current_thread().name] * 200


def test_a_parked_link_goes_back_to_its_reader(ends: Ends) -> None:
    """Nobody took it again: within ``2 * PARK_MAX`` the reader thread reads a message that comes."""
    token = _token(ends)
    asked = _AskedFirst(ends, 1)
    assert ends.shared.read_until(asked, T) is True
    ends.other.send(P.CallOk(2, b"later"))
    wait_until(lambda: len(ends.seen) == 2, T, "the reader thread read it")
    assert ends.seen[1] == (2, "localactors-reader-shared", True)
    wait_until(lambda: not token._away, T, "the reader has the link back")


def test_a_link_back_with_its_reader_costs_no_wake_ups(ends: Ends) -> None:
    """Once it has the link back, the reader sleeps in epoll with no timeout (counted by the kernel)."""
    token = _token(ends)
    assert ends.shared.read_until(_AskedFirst(ends, 1), T) is True
    wait_until(lambda: not token._away, T, "the reader has the link back")
    reader = next(t for t in threading.enumerate() if t.name == "localactors-reader-shared")
    wait_until(lambda: _state(reader.native_id) == "S", T, "the reader thread sleeps")
    before = _switches(reader.native_id)
    threading.Event().wait(10 * shared_read.PARK_MAX)  # (what is measured is time passing with no wake-up)
    assert _switches(reader.native_id) - before <= 1


def _status(tid: int) -> dict[str, str]:
    with open(f"/proc/self/task/{tid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _state(tid: int | None) -> str:
    assert tid is not None
    return _status(tid)["State"].split()[0]


def _switches(tid: int | None) -> int:
    assert tid is not None
    return int(_status(tid)["voluntary_ctxt_switches"])


def test_a_waiter_turned_away_gets_the_link_back_to_the_reader_at_once(ends: Ends) -> None:
    """A thread that found the link taken sleeps until the reader reads for it: the
    holder hands the link back when it is done instead of parking it."""
    token = _token(ends)
    first = ends.replies[1] = Completion()
    holder = threading.Thread(target=ends.shared.read_until, args=(first, T), name="unit-holder")
    holder.start()
    wait_until(lambda: token._away, T, "the holder took the link")
    refused = ends.replies[3] = Completion()
    assert ends.shared.read_until(refused, 0.0) is None  # (the holder has it)
    ends.other.send(P.CallOk(1, b"the holder's"))
    holder.join(T)
    assert first.done() and not holder.is_alive()
    assert not token._away  # given back, not parked
    r, w = os.pipe()
    try:  # the same with a holder that reads until idle
        os.set_blocking(r, False)
        os.write(w, b"\0")
        taker = threading.Thread(target=lambda: ends.shared.read_while_idle(r, lambda: False))
        wait_until(ends.shared.hold, T, "held (the reader thread may have the token a moment)")
        taker.start()
        taker.join(T)
        assert not taker.is_alive()
        assert ends.shared.read_while_idle(r, lambda: False) is True  # (it had been woken: returns)
        assert not token._away
    finally:
        os.close(r)
        os.close(w)
    ends.other.send(P.CallOk(3, b"yours"))
    wait_until(refused.done, T, "the reader thread read the reply")


def test_a_parked_link_reports_a_hang_up_at_once(ends: Ends, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_read, "PARK", 60.0)
    monkeypatch.setattr(shared_read, "PARK_MAX", 60.0)
    token = _token(ends)
    assert ends.shared.read_until(_AskedFirst(ends, 1), T) is True
    assert token._away
    ends.other.close()
    assert ends.closed.wait(T)  # not after PARK: the hang-up wakes the reader


@pytest.mark.parametrize("how", ["add_done_callback", "on_each_done", "a sleeping thread"])
def test_a_thread_that_sleeps_on_a_reply_unparks_the_link(
    ends: Ends, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """``wait``, done-callbacks and sleepers rely on the reader thread: a parked link goes
    back to it at once, not at its next look (here an hour away)."""
    monkeypatch.setattr(shared_read, "PARK", 3600.0)
    monkeypatch.setattr(shared_read, "PARK_MAX", 3600.0)
    token = _token(ends)
    assert ends.shared.read_until(_AskedFirst(ends, 1), T) is True
    assert token._away
    comp = ends.replies[2] = Completion()
    comp.reply_comes_on(token)
    got = threading.Event()
    if how == "add_done_callback":
        comp.add_done_callback(lambda _: got.set())
    elif how == "on_each_done":
        assert on_each_done([comp], lambda _: got.set()) == 1
    else:
        sleeper = threading.Thread(target=lambda: comp._sleep(T) and got.set())
        sleeper.start()
        wait_until(lambda: not token._away, T, "the sleeper gave the link back")
    assert not token._away
    ends.other.send(P.CallOk(2, b"read by the reader thread"))
    assert got.wait(T)
    assert ends.seen[-1] == (2, "localactors-reader-shared", True)


def test_a_ctrl_c_held_back_lands_when_the_stretch_ends() -> None:
    """``hold_interrupts``: a Ctrl-C in the main thread lands at ``release_interrupts``,
    never inside the stretch (a write and the note of what it wrote)."""
    assert threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, interrupt.on_sigint)
    try:
        was = shared_read.hold_interrupts()
        landed_inside = False
        try:
            signal.raise_signal(signal.SIGINT)  # its handler runs right after, in this stretch
            landed_inside = sum(range(10)) < 0  # (some bytecode for the handler to run at)
        except KeyboardInterrupt:
            landed_inside = True
        with pytest.raises(KeyboardInterrupt):
            shared_read.release_interrupts(was)
        assert not landed_inside
        assert not in_reader_thread()
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_main_thread_sleeps_in_slices() -> None:
    """A signal that comes right before a blocking call does not cut it short: the main
    thread's sleeps are slices of ``SLICE_MS``, so a Ctrl-C lands when one ends."""

    class Lock:
        def __init__(self) -> None:
            self.asked: list[float] = []

        def acquire(self, timeout: float) -> bool:
            self.asked.append(timeout)
            return len(self.asked) == 4

    lock = Lock()
    assert completion._acquire_sliced(lock, None) is True
    assert len(lock.asked) == 4
    assert all(0 < t <= shared_read.SLICE_MS / 1000 for t in lock.asked)
