"""Pipelined calls deferred and written many to a write (``_caller/outbox``).

The outbox alone over a socket pair (what arrives, in which writes, in what
order, and that a reader's write never waits), then clusters: a lone call is
never deferred, a deferred call reaches the worker when nothing else would
send it, per-caller order and read-your-writes hold, and a worker's death
fails deferred calls.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import pytest
from helpers import wait_until

import localactors
from localactors import Client, LocalCluster
from localactors._base.errors import ActorLostError
from localactors._caller import outbox as outbox_module
from localactors._caller.outbox import DEFER_AT, MAX_FRAMES, Outbox
from localactors._wire import protocol as P
from localactors._wire.framing import frame_call
from localactors._wire.link import Link

T = 10.0


def _frame(call_id: int, payload: bytes = b"") -> bytes:
    return frame_call(call_id, "A-1", "m", P.CallKind.METHOD, payload)


class Pair:
    """A link whose outbox is tested, and the other end, read as a link reads."""

    def __init__(self, bound: float = T) -> None:
        a, b = socket.socketpair()
        self.link = Link(Connection(a.detach()), "out")
        self.outbox = Outbox(self.link, "t", bound=bound)
        self.raw = b
        self.peer = Link(Connection(os.dup(b.fileno())), "in")

    def received(self, n: int) -> list[int]:
        """The call ids of the next ``n`` messages (waits up to ``T`` for them)."""
        out: list[int] = []

        def read() -> None:
            for _ in range(n):
                msg = self.peer.recv()
                assert type(msg) is P.ActorCall
                out.append(msg.call_id)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(T)
        assert not reader.is_alive(), f"{len(out)} of {n} messages arrived"
        return out

    def read_raw(self, n: int) -> None:
        """Read and drop ``n`` bytes (waits up to ``T`` for each piece)."""
        while n > 0:
            assert select.select([self.raw], [], [], T)[0], "nothing to read"
            n -= len(self.raw.recv(min(1 << 16, n)))

    def nothing_buffered(self) -> bool:
        self.raw.setblocking(False)
        try:
            return not self.raw.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        finally:
            self.raw.setblocking(True)

    def close(self) -> None:
        self.outbox.close()
        self.link.close()
        self.peer.close()
        self.raw.close()


def test_frames_wait_for_a_flush_and_arrive_in_order_in_one_write() -> None:
    pair = Pair()
    try:
        for i in range(5):
            pair.outbox.add(_frame(i))
        assert pair.nothing_buffered()
        pair.outbox.flush()
        assert pair.received(5) == [0, 1, 2, 3, 4]
        assert pair.outbox.frames == []
    finally:
        pair.close()


def test_a_full_outbox_is_written_at_once() -> None:
    pair = Pair()
    try:
        for i in range(MAX_FRAMES):
            pair.outbox.add(_frame(i))
        assert pair.outbox.frames == []
        assert pair.received(MAX_FRAMES) == list(range(MAX_FRAMES))
    finally:
        pair.close()


def test_anything_else_sent_on_the_link_goes_after_the_deferred_frames() -> None:
    pair = Pair()
    try:
        pair.outbox.add(_frame(1))
        pair.outbox.add(_frame(2))
        pair.link.send_call(3, "A-1", "m", P.CallKind.METHOD, b"")  # (the link's before_send)
        pair.link.send(P.ActorCall(4, "A-1", "m", P.CallKind.METHOD, b""))
        assert pair.received(4) == [1, 2, 3, 4]
    finally:
        pair.close()


def test_the_watchdog_writes_what_nobody_flushes() -> None:
    pair = Pair(bound=0.001)
    try:
        pair.outbox.add(_frame(7))
        assert pair.received(1) == [7]  # (waits up to T: the watchdog wrote it)
        assert pair.outbox.frames == []
    finally:
        pair.close()


def test_a_flush_from_a_reader_never_waits_and_a_cut_frame_arrives_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "MAX_BYTES", 1 << 22)  # more than the socket holds: it must cut
    pair = Pair()
    try:
        filler = socket.socket(fileno=os.dup(pair.link.conn.fileno()))
        try:  # fill the socket's buffer with one frame's worth of bytes at a time, all read below
            sent = 0
            while True:
                sent += filler.send(_frame(0, b"x" * 2000), socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        finally:
            filler.close()
        big = [_frame(i, b"y" * 40_000) for i in range(1, 11)]
        for frame in big:
            pair.outbox.add(frame)
        started = time.monotonic()
        pair.outbox.flush_nowait()  # no room: returns at once, keeps what it could not write
        pair.read_raw(100)
        sent -= 100
        pair.outbox.flush_nowait()  # some room: writes what fits (it may cut a frame), keeps the rest
        assert time.monotonic() - started < 1.0
        assert pair.outbox.frames
        # the other end reads the filler, then a flush writes the rest (a frame may have been cut)
        pair.read_raw(sent)
        flusher = threading.Thread(target=pair.outbox.flush)  # (more than the socket holds: read meanwhile)
        flusher.start()
        assert pair.received(10) == list(range(1, 11))
        flusher.join(T)
        assert not flusher.is_alive()
    finally:
        pair.close()


def test_close_writes_what_fits_drops_the_rest_and_stops_the_watchdog() -> None:
    pair = Pair()
    pair.outbox.add(_frame(1))
    pair.outbox.close()
    assert pair.outbox.frames == []
    assert pair.received(1) == [1]
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name == "localactors-requests-t"], T, "watchdog stopped"
    )
    pair.link.close()
    pair.peer.close()
    pair.raw.close()


# -- in a cluster ------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []

    def add(self, x: int) -> int:
        self.n += x
        return self.n

    def pid(self) -> int:
        return os.getpid()

    def block(self) -> bool:
        return threading.Event().wait(60)  # (killed long before)

    async def wait_open(self) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters.append((loop, fut))
        return await fut

    def open(self) -> int:
        for loop, fut in self._waiters:
            loop.call_soon_threadsafe(fut.set_result, True)
        return len(self._waiters)


def _outbox(client: Client, actor: Any) -> Outbox:
    peer = client._core.peer(actor._address)  # type: ignore[attr-defined]
    assert peer.outbox is not None
    return peer.outbox


def test_a_lone_call_is_written_at_once() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result(timeout=T)
        outbox = _outbox(c, counter)
        link = c._core.peer(counter._address).link  # type: ignore[attr-defined]
        for i in range(1, 51):
            fut = counter.add(1)
            assert outbox.frames == []
            assert link.before_send is None  # (its sends call nothing more)
            assert fut.result(timeout=T) == i
        assert outbox._watchdog.thread is None  # never armed: nothing was deferred
        futures = [counter.add(1) for _ in range(DEFER_AT * 3)]
        assert [f.result(timeout=T) for f in futures] == list(range(51, 51 + DEFER_AT * 3))
        assert outbox.frames == [] and link.before_send is None  # written, and the hook gone with them


def test_pipelined_calls_keep_their_order_through_every_wait() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result(timeout=T)
        total = 0
        for n in (DEFER_AT + 5, 500, 3000):
            futures = [counter.add(1) for _ in range(n)]
            localactors.wait(futures, timeout=T)  # (reads no link: replies and the watchdog write the rest)
            assert [f.result(timeout=0) for f in futures] == list(range(total + 1, total + n + 1))
            total += n
        futures = [counter.add(1) for _ in range(500)]
        assert counter.n == total + 500  # read-your-writes: the read goes after the deferred calls
        assert [f.result(timeout=T) for f in futures] == list(range(total + 1, total + 501))


def test_a_deferred_call_is_written_while_every_call_ahead_of_it_waits() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result(timeout=T)
        waiting = [counter.wait_open() for _ in range(DEFER_AT + 10)]
        opened = counter.open()  # deferred: no reply comes until it runs, and nobody reads
        localactors.wait([opened, *waiting], timeout=T)
        assert opened.result(timeout=0) == DEFER_AT + 10
        assert all(f.result(timeout=0) for f in waiting)


def test_deferred_calls_fail_when_their_worker_dies() -> None:
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result(timeout=30)
        pid = counter.pid().result(timeout=T)
        futures = [counter.block() for _ in range(DEFER_AT * 3)]  # the first blocks; the rest queue, or wait here
        os.kill(pid, signal.SIGKILL)
        for fut in futures:
            try:
                fut.result(timeout=T)
            except ActorLostError:
                continue
            raise AssertionError("a call to a killed worker returned")
