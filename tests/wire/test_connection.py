"""Unit tests of ``_wire/connection.py`` and ``_wire/link.py``: authenticated links, framing, readers, close."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection
from queue import SimpleQueue
from typing import Any

import pytest

from localactors._wire import codec as W
from localactors._wire import connection as _connection
from localactors._wire import protocol as P
from localactors._wire.connection import Link, LinkClosed, Server, connect

KEY = b"k" * 32
TIMEOUT = 10.0


class Peer:
    """A server whose accepted links push what they receive onto queues."""

    def __init__(self, directory: str) -> None:
        self.address = os.path.join(directory, "srv")
        self.links: SimpleQueue[Link] = SimpleQueue()
        self.messages: SimpleQueue[tuple[Link, Any]] = SimpleQueue()
        self.closes: SimpleQueue[tuple[Link, BaseException | None]] = SimpleQueue()
        self.server = Server(self.address, KEY, "test", self._on_link)
        self.accepted: list[Link] = []

    def _on_link(self, link: Link) -> None:
        link.start_reader(lambda lk, m: self.messages.put((lk, m)), lambda lk, e: self.closes.put((lk, e)))
        self.accepted.append(link)
        self.links.put(link)

    def close(self) -> None:
        self.server.close()
        for link in self.accepted:
            link.close()
            link.join_reader(TIMEOUT)


@pytest.fixture
def peer() -> Iterator[Peer]:
    with tempfile.TemporaryDirectory() as d:
        p = Peer(d)
        try:
            yield p
        finally:
            p.close()


def _reader(link: Link) -> tuple[SimpleQueue[Any], SimpleQueue[Any]]:
    messages: SimpleQueue[Any] = SimpleQueue()
    closes: SimpleQueue[Any] = SimpleQueue()
    link.start_reader(lambda lk, m: messages.put(m), lambda lk, e: closes.put(e))
    return messages, closes


def test_round_trip_both_ways(peer: Peer) -> None:
    link = connect(peer.address, KEY, "client")
    got, closes = _reader(link)
    try:
        link.send(P.Hello("client", 1))
        theirs, msg = peer.messages.get(timeout=TIMEOUT)
        assert msg == P.Hello("client", 1)
        theirs.send(P.Ack(5))
        assert got.get(timeout=TIMEOUT) == P.Ack(5)
    finally:
        link.close()
        link.join_reader(TIMEOUT)
    assert closes.get(timeout=TIMEOUT) is None  # we closed it: not an error


def test_large_messages_both_ways_at_once_do_not_deadlock(peer: Peer) -> None:
    link = connect(peer.address, KEY, "client")
    got, _ = _reader(link)
    theirs = peer.links.get(timeout=TIMEOUT)
    big = os.urandom(1 << 20) * 8  # far more than a socket buffer holds
    try:

        def send_three(via: Link) -> None:
            for i in range(3):
                via.send(P.CallOk(i, big))

        threads = [threading.Thread(target=send_three, args=(via,)) for via in (link, theirs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive()
        for i in range(3):
            assert got.get(timeout=TIMEOUT) == P.CallOk(i, big)
            assert peer.messages.get(timeout=TIMEOUT)[1] == P.CallOk(i, big)
    finally:
        link.close()
        link.join_reader(TIMEOUT)


def test_concurrent_senders_keep_frames_together(peer: Peer) -> None:
    link = connect(peer.address, KEY, "client")
    big = b"z" * W.OUT_OF_BAND  # two frames per message: they must not interleave
    try:

        def send(base: int) -> None:
            for i in range(20):
                link.send(P.CallOk(base + i, big if i % 2 else b"small"))

        threads = [threading.Thread(target=send, args=(b * 100,)) for b in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        ids = sorted(peer.messages.get(timeout=TIMEOUT)[1].call_id for _ in range(80))
        assert ids == sorted(b * 100 + i for b in range(4) for i in range(20))
    finally:
        link.close()


def test_wrong_authkey_is_refused_and_the_server_keeps_serving(peer: Peer) -> None:
    with pytest.raises(AuthenticationError):
        connect(peer.address, b"wrong" * 8, "intruder")
    assert peer.messages.empty()
    link = connect(peer.address, KEY, "friend")
    try:
        link.send(P.Ack(1))
        assert peer.messages.get(timeout=TIMEOUT)[1] == P.Ack(1)
    finally:
        link.close()


def test_garbage_before_the_handshake_is_dropped(peer: Peer) -> None:
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(peer.address)
    raw.sendall(b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n")
    raw.settimeout(TIMEOUT)
    try:
        while raw.recv(1 << 16):  # the server hangs up on us
            pass
    except OSError:
        pass
    finally:
        raw.close()
    link = connect(peer.address, KEY, "friend")  # and goes on serving
    link.close()


def test_a_silent_peer_is_dropped_after_the_handshake_timeout(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connection, "HANDSHAKE_TIMEOUT", 0.3)
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(peer.address)
    raw.settimeout(TIMEOUT)
    try:
        # meanwhile an honest peer gets in: each handshake has its own thread
        connect(peer.address, KEY, "friend").close()
        t0 = time.monotonic()
        while raw.recv(1 << 16):  # the challenge, then EOF when we are dropped
            pass
        assert time.monotonic() - t0 < 5.0
    finally:
        raw.close()


def test_garbled_frame_after_the_handshake_drops_the_peer(peer: Peer) -> None:
    link = connect(peer.address, KEY, "client")
    try:
        link.conn.send_bytes(W._COUNT.pack(0) + b"not a pickle at all")
        theirs, error = peer.closes.get(timeout=TIMEOUT)
        assert isinstance(error, ValueError)
        assert theirs.closed
        with pytest.raises(LinkClosed):
            theirs.send(P.Ack(1))
    finally:
        link.close()


def test_peer_closing_reports_an_error_and_fails_later_sends(peer: Peer) -> None:
    link = connect(peer.address, KEY, "client")
    _, closes = _reader(link)
    theirs = peer.links.get(timeout=TIMEOUT)
    theirs.close()
    error = closes.get(timeout=TIMEOUT)
    assert isinstance(error, (EOFError, OSError))  # the peer went away: not our doing
    with pytest.raises(LinkClosed):
        link.send(P.Ack(1))
    link.join_reader(TIMEOUT)


def test_close_is_idempotent_and_reports_once(peer: Peer) -> None:
    link = connect(peer.address, KEY, "client")
    _, closes = _reader(link)
    for _ in range(3):
        link.close()
    link.join_reader(TIMEOUT)
    assert closes.get(timeout=TIMEOUT) is None
    assert closes.empty()
    with pytest.raises(LinkClosed):
        link.send(P.Ack(2))


class _CountingConnection(Connection):
    """Counts real descriptor closes, and makes each one slow to widen races."""

    closes: list[str]

    def _close(self, _close: Any = os.close) -> None:  # type: ignore[override]
        self.closes.append(threading.current_thread().name)
        time.sleep(0.05)
        super()._close()  # type: ignore[misc]


def test_descriptor_is_released_once() -> None:
    # closing a descriptor twice (or reading it after close) hits whatever new
    # socket got its number: close() must leave the release to the reader
    for _ in range(5):
        a, b = socket.socketpair()
        conn = _CountingConnection(a.detach())
        conn.closes = []
        link = Link(conn, "counted")
        _, closes = _reader(link)
        threads = [threading.Thread(target=link.close) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        link.join_reader(TIMEOUT)
        assert closes.get(timeout=TIMEOUT) is None
        # once, and by the reader unless it had already stopped reading when a close came
        assert len(conn.closes) == 1
        b.close()


def test_descriptor_without_reader_is_released_by_close() -> None:
    a, b = socket.socketpair()
    conn = _CountingConnection(a.detach())
    conn.closes = []
    link = Link(conn, "plain")
    threads = [threading.Thread(target=link.close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert len(conn.closes) == 1
    b.close()


def test_server_socket_is_private_and_removed_on_close() -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Peer(d)
        try:
            mode = stat.S_IMODE(os.stat(p.address).st_mode)
            assert mode & 0o077 == 0
        finally:
            p.close()
        assert not os.path.exists(p.address)
        p.server.close()  # idempotent
