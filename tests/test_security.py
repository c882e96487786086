"""Nobody without the authkey gets in, and nothing of theirs is unpickled.

The :class:`Server` is tested in this process (its log is visible to
``caplog``): a peer with no key, a wrong key, garbage bytes, a pickle aimed
at the unpickler, and a peer that connects and stays silent are each dropped
and logged while a real peer is still served. End to end, the same peers
knock on the manager's and a worker's sockets; both log the drops (their
stderr reaches ours) and the cluster goes on serving. The socket directory
is private (0700) and gone after close.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import stat
import struct
import tempfile
import threading
from collections.abc import Iterator
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import wait_until

from localactors import Client, LocalCluster
from localactors._wire import connection as C
from localactors._wire import protocol as P


def raw(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    return sock


def frame(data: bytes) -> bytes:
    """One ``multiprocessing.connection`` frame: a 4-byte big-endian length, then data."""
    return struct.pack("!i", len(data)) + data


class _Touch:
    """A pickle that, if anyone unpickled it, would create a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[C.Server, list[C.Link], bytes]]:
    monkeypatch.setattr(C, "HANDSHAKE_TIMEOUT", 0.5)
    directory = tempfile.mkdtemp(prefix="localactors-test-")
    key = os.urandom(32)
    links: list[C.Link] = []
    srv = C.Server(os.path.join(directory, "sock"), key, "testserver", links.append)
    try:
        yield srv, links, key
    finally:
        srv.close()
        for link in links:
            link.close()
        os.rmdir(directory)


def drops(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "failed authentication" in r.getMessage()]


def test_server_drops_unauthenticated_peers_and_serves_on(
    server: tuple[C.Server, list[C.Link], bytes], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    srv, links, key = server
    caplog.set_level(logging.WARNING, logger="localactors.connection")
    silent = raw(srv.address)  # connects, never speaks: held open through the whole test
    try:
        # no key at all: connects and hangs up
        raw(srv.address).close()
        # garbage bytes
        with raw(srv.address) as sock:
            sock.sendall(os.urandom(1000))
        # a pickle instead of the challenge's answer: must never be unpickled
        marker = tmp_path / "pwned"
        with raw(srv.address) as sock:
            sock.sendall(frame(pickle.dumps(_Touch(str(marker)))))
        # the wrong key: the client side is refused too
        with pytest.raises(AuthenticationError):
            C.connect(srv.address, b"not the key", "intruder")
        # meanwhile a real peer is served, the silent one notwithstanding
        good = C.connect(srv.address, key, "friend")
        try:
            wait_until(lambda: len(links) == 1, 5, "the real peer is handed over")
            received: list[P.Message] = []
            links[0].start_reader(lambda _, msg: received.append(msg), lambda *_: None)
            good.send(P.Hello("friend", os.getpid()))
            wait_until(lambda: received == [P.Hello("friend", os.getpid())], 5, "a message arrives")
        finally:
            good.close()
        wait_until(lambda: len(drops(caplog)) >= 5, 10, "five peers dropped and logged")
        assert not marker.exists()
        assert len(links) == 1  # only the real peer ever became a link
        assert any("AuthenticationError" in m for m in drops(caplog))
    finally:
        silent.close()


def test_silent_peer_is_dropped_after_the_handshake_timeout(
    server: tuple[C.Server, list[C.Link], bytes], caplog: pytest.LogCaptureFixture
) -> None:
    srv, links, _ = server
    caplog.set_level(logging.WARNING, logger="localactors.connection")
    with raw(srv.address) as silent:
        wait_until(lambda: drops(caplog), 10, "the silent peer is dropped")
        silent.settimeout(5)
        assert silent.recv(4096)  # the challenge it never answered...
        assert silent.recv(4096) == b""  # ...then the server hung up
    assert not links


# ---------------------------------------------------------------- end to end


def test_cluster_drops_intruders_logs_them_and_serves_on(capfd: pytest.CaptureFixture[str]) -> None:
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        targets = {"manager": cluster.manager_address, "worker-0": cluster.workers[0].address}
        silent = [raw(address) for address in targets.values()]
        try:
            for address in targets.values():
                raw(address).close()
                with raw(address) as sock:
                    sock.sendall(os.urandom(1000))
                with pytest.raises(AuthenticationError):
                    C.connect(address, b"not the key", "intruder")
            # the cluster serves while the silent peers hold their connections open
            actor = client.submit(Box, actor=True).result(timeout=30)
            assert actor.put(1).result(timeout=10) == 1
            assert client.submit(sum, [1, 2], pure=False).result(timeout=10) == 3
            # each process logged the drops on its stderr, which reaches ours
            seen = ""

            def logged() -> bool:
                nonlocal seen
                seen += capfd.readouterr().err
                return all(seen.count(f"{who}: dropped a peer") >= 3 for who in targets)

            wait_until(logged, 15, "manager and worker log the drops")
        finally:
            for sock in silent:
                sock.close()
        assert actor.put(2).result(timeout=10) == 2


class Box:
    def __init__(self) -> None:
        self.items: list[int] = []

    def put(self, x: int) -> int:
        self.items.append(x)
        return x


def test_socket_directory_is_private_and_removed() -> None:
    cluster = LocalCluster(n_workers=1)
    try:
        directory = cluster.directory
        info = os.lstat(directory)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
        for name in os.listdir(directory):
            mode = stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode)
            assert mode & 0o077 == 0, (name, oct(mode))  # sockets and files: owner only
        # the key never shows on a command line
        pids = [cluster._process.pid, *(w.pid for w in cluster.workers)]
        for pid in pids:
            assert cluster.authkey.hex() not in " ".join(psutil.Process(pid).cmdline())
    finally:
        cluster.close()
    assert not os.path.exists(directory)


def test_link_from_a_thread_is_not_a_reader() -> None:
    # the flow control relies on knowing a link's reader thread when it sees one
    assert not C.in_reader_thread()
    seen: list[bool] = []
    a, b = socket.socketpair()
    left, right = C.Link(Connection(a.detach()), "left"), C.Link(Connection(b.detach()), "right")
    done = threading.Event()

    def on_message(link: C.Link, msg: P.Message) -> None:
        seen.append(C.in_reader_thread())
        done.set()

    right.start_reader(on_message, lambda *_: None)
    left.send(P.Hello("x", 1))
    assert done.wait(5) and seen == [True]
    left.close()
    right.close()
    right.join_reader(5)
