"""Replies of pipelined calls, batched: order, bounds, and never held behind a long call.

The batch alone (``_worker/reply_batch``) over a fake link, the frame it makes
over a socket pair (read in pieces), and an in-process cluster whose actor
blocks until the caller has seen an earlier reply.
"""

from __future__ import annotations

import os
import socket
import threading
from multiprocessing.connection import Connection
from typing import Any

import pytest

from localactors import Client, LocalCluster
from localactors._wire import protocol as P
from localactors._wire.link import Link
from localactors._worker import reply_batch
from localactors._worker.reply_batch import MAX_REPLIES, ReplyBatch

T = 10.0


class FakeLink:
    """Records each ``send_replies`` call: one list per write."""

    def __init__(self) -> None:
        self.writes: list[list[tuple[int, bytes]]] = []
        self.wrote = threading.Event()

    def send_replies(self, replies: list[tuple[int, bytes]], on_block: object = None) -> None:
        self.writes.append(list(replies))
        self.wrote.set()


def _link() -> Any:
    return FakeLink()


def test_a_batch_goes_in_one_write_in_order_with_the_reply_that_ends_it() -> None:
    batch, link = ReplyBatch("t", bound=T), _link()
    try:
        for i in range(5):
            batch.add(link, i, b"r%d" % i)
        assert link.writes == []
        batch.send(link, 5, b"r5")  # the queue ran empty: this one and the batch, together
        assert link.writes == [[(i, b"r%d" % i) for i in range(6)]]
    finally:
        batch.close()


def test_a_batch_is_sent_at_its_size_bounds() -> None:
    batch, link = ReplyBatch("t", bound=T), _link()
    try:
        for i in range(MAX_REPLIES):
            batch.add(link, i, b"x")
        assert [len(w) for w in link.writes] == [MAX_REPLIES]
        batch.add(link, 100, b"y" * reply_batch.MAX_BYTES)
        batch.add(link, 101, b"z")
        assert [len(w) for w in link.writes] == [MAX_REPLIES, 2]
    finally:
        batch.close()


def test_a_reply_to_another_link_sends_the_batch_first() -> None:
    batch, one, two = ReplyBatch("t", bound=T), _link(), _link()
    try:
        batch.add(one, 1, b"a")
        batch.add(two, 2, b"b")
        assert one.writes == [[(1, b"a")]] and two.writes == []
        batch.send(one, 3, b"c")
        assert two.writes == [[(2, b"b")]] and one.writes == [[(1, b"a")], [(3, b"c")]]
        batch.flush()
        assert batch.close() is None and len(one.writes) == 2
    finally:
        batch.close()


def test_the_watchdog_sends_a_batch_nobody_flushes() -> None:
    batch, link = ReplyBatch("t", bound=0.001), _link()
    try:
        batch.add(link, 1, b"a")
        assert link.wrote.wait(T), "the watchdog never sent the batch"
        assert link.writes == [[(1, b"a")]]
        link.wrote.clear()
        batch.add(link, 2, b"b")  # and the next batch too
        assert link.wrote.wait(T)
        assert link.writes == [[(1, b"a")], [(2, b"b")]]
    finally:
        batch.close()


def test_close_sends_the_batch_and_stops_the_watchdog() -> None:
    batch, link = ReplyBatch("t", bound=T), _link()
    batch.add(link, 1, b"a")
    batch.close()
    assert link.writes == [[(1, b"a")]]
    assert not [t for t in threading.enumerate() if t.name == "localactors-replies-t"]


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_a_batch_frame_split_across_reads_arrives_whole(piece: int) -> None:
    replies = [(i, b"v%d" % i * (i % 50)) for i in range(200)]
    # what a link writes for these replies, captured
    raw, tap = socket.socketpair()
    capture = Link(Connection(raw.detach()), "capture")
    capture.send_replies(replies)
    capture.send_replies([(999, b"last")])
    capture.close()
    data = b""
    while chunk := tap.recv(1 << 16):
        data += chunk
    tap.close()
    # fed to a reading link a piece at a time
    a, b = socket.socketpair()
    receiver = Link(Connection(b.detach()), "c")
    got: list[P.Message] = []

    def read() -> None:
        got.append(receiver.recv())
        got.append(receiver.recv())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        view = memoryview(data)
        while view:
            view = view[a.send(view[:piece]) :]
        reader.join(T)
        assert not reader.is_alive()
        assert got == [P.CallOks(tuple(replies)), P.CallOk(999, b"last")]
    finally:
        a.close()
        receiver.close()
        reader.join(T)


def test_a_write_that_would_block_while_holding_gives_the_link_back_first() -> None:
    a, b = socket.socketpair()
    link = Link(Connection(a.detach()), "w")
    try:
        filler = socket.socket(fileno=os.dup(link.conn.fileno()))
        try:  # fill the socket's buffer: the next write must wait for the reader
            while True:
                filler.send(b"\0" * 4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        finally:
            filler.close()
        gave_back = threading.Event()
        drained = threading.Event()

        def drain() -> None:
            assert gave_back.wait(T)
            b.settimeout(T)
            got = b""
            while b"last" not in got:
                got += b.recv(1 << 16)
            drained.set()

        drainer = threading.Thread(target=drain)
        drainer.start()
        link.send_replies([(1, b"last")], on_block=gave_back.set)  # returns once written
        assert gave_back.is_set()
        assert drained.wait(T)
        drainer.join(T)
    finally:
        link.close()
        b.close()


def test_a_write_with_room_does_not_give_the_link_back() -> None:
    a, b = socket.socketpair()
    link = Link(Connection(a.detach()), "w")
    try:
        called: list[bool] = []
        link.send_replies([(1, b"x")], on_block=lambda: called.append(True))
        assert called == []
        b.settimeout(T)
        assert b"x" in b.recv(1 << 16)
    finally:
        link.close()
        b.close()


# -- in a cluster ------------------------------------------------------------------

GATE = threading.Event()  # the first call waits for it: the next ones queue behind it
RELEASE = threading.Event()  # the blocking call waits for it: set once the caller saw the earlier replies


class Blocker:
    def __init__(self) -> None:
        self.n = 0

    def gate(self) -> int:
        return int(GATE.wait(T))

    def add(self, x: int) -> int:
        self.n += x
        return self.n

    def block(self) -> bool:
        return RELEASE.wait(T)  # (not a future: nothing tells the worker it blocks)


def test_a_reply_is_never_held_behind_a_call_that_waits_for_the_caller_to_see_it() -> None:
    GATE.clear()
    RELEASE.clear()
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        actor = c.submit(Blocker, actor=True).result()
        gate = actor.gate()
        quick = [actor.add(1) for _ in range(10)]  # queued behind the gate: their replies batch
        blocking = actor.block()
        GATE.set()
        try:
            assert gate.result(timeout=T) == 1
            assert [f.result(timeout=T) for f in quick] == list(range(1, 11))
        finally:
            RELEASE.set()  # only now: the caller has seen every earlier reply
        assert blocking.result(timeout=T) is True


def test_pipelined_replies_arrive_in_order() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        actor = c.submit(Blocker, actor=True).result()
        GATE.set()
        futures = [actor.add(1) for _ in range(3000)]
        assert [f.result(timeout=T) for f in futures] == list(range(1, 3001))
