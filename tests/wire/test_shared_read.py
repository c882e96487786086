"""A shared link's read token alone: who reads, and in which thread messages are dispatched.

Two :class:`~localactors._wire.link.Link` ends over a socket pair, no
handshake and no process: one end is read shared (as a caller's link to a
worker, or a worker's end of a caller's link), the other only writes.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest
from helpers import wait_until

from localactors._base.futures import Completion
from localactors._wire import protocol as P
from localactors._wire.link import Link
from localactors._wire.shared_read import EPOLL, in_reader_thread

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
