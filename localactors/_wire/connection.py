"""Authenticated connections: ``connect`` and the listening ``Server``.

Runs in: every process.

A :class:`Server` listens on an AF_UNIX socket in the cluster's private
directory. Each peer must pass the ``multiprocessing`` HMAC challenge (both
ways) before a single byte of it is unpickled; a peer that fails, stalls or
sends garbage is logged and dropped, and the server goes on serving. Either
side gets a :class:`~localactors._link.Link` once the handshake has passed.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

from . import shm
from .link import Link, LinkClosed
from .shared_read import in_reader_thread

# the link names are re-exported: whoever opens a link here also uses its type
__all__ = ["HANDSHAKE_TIMEOUT", "Link", "LinkClosed", "Server", "connect", "in_reader_thread"]

logger = logging.getLogger("localactors.connection")

HANDSHAKE_TIMEOUT = 5.0


def _authenticate(conn: Connection, authkey: bytes, server: bool) -> None:
    # the fd is blocking; a receive timeout keeps a silent peer from stalling us
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        tv = struct.pack("ll", int(HANDSHAKE_TIMEOUT), int(HANDSHAKE_TIMEOUT % 1 * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        if server:
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
        else:
            answer_challenge(conn, authkey)
            deliver_challenge(conn, authkey)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
    finally:
        sock.close()


def connect(address: str, authkey: bytes, name: str) -> Link:
    """Connect to a :class:`Server` and pass its challenge."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    conn = Connection(sock.detach())
    try:
        _authenticate(conn, authkey, server=False)
    except BaseException:
        conn.close()
        raise
    shm.trust(authkey)  # this cluster's shared-memory segments may be mapped here
    return Link(conn, name)


class Server:
    """Accepts authenticated links on an AF_UNIX socket, one thread per handshake."""

    def __init__(self, address: str, authkey: bytes, name: str, on_link: Callable[[Link], None]) -> None:
        self.address = address
        self.name = name
        self._authkey = authkey
        self._on_link = on_link
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(address)
        os.chmod(address, 0o600)
        self._sock.listen(128)
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"localactors-accept-{name}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                continue
            threading.Thread(
                target=self._handshake, args=(sock,), name=f"localactors-handshake-{self.name}", daemon=True
            ).start()

    def _handshake(self, sock: socket.socket) -> None:
        conn = Connection(sock.detach())
        try:
            _authenticate(conn, self._authkey, server=True)
        except Exception as err:
            logger.warning("%s: dropped a peer that failed authentication (%s: %s)", self.name, type(err).__name__, err)
            conn.close()
            return
        shm.trust(self._authkey)  # this cluster's shared-memory segments may be mapped here
        self._on_link(Link(conn, f"{self.name}-in"))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            os.unlink(self.address)
        except OSError:
            pass
        self._thread.join(1.0)
