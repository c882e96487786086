"""Authenticated, framed links between processes.

Runs in: every process.

A :class:`Link` wraps one ``multiprocessing`` connection. Any thread may
``send`` (a lock keeps frames of one message together); one *reader thread*
per link receives and hands each message to a callback. Because every process
always has a reader draining each of its links, two processes that write
large messages to each other at the same time cannot deadlock.

A :class:`Server` listens on an AF_UNIX socket in the cluster's private
directory. Each peer must pass the ``multiprocessing`` HMAC challenge (both
ways) before a single byte of it is unpickled; a peer that fails, stalls or
sends garbage is logged and dropped, and the server goes on serving.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Any

from . import _protocol as P

logger = logging.getLogger("localactors.connection")

HANDSHAKE_TIMEOUT = 5.0
_ids = itertools.count()

OnMessage = Callable[["Link", P.Message], None]
OnClose = Callable[["Link", "BaseException | None"], None]


class LinkClosed(Exception):
    """The link was closed (by us or by the peer); nothing more can be sent."""


class Link:
    """One end of a connection: locked sends, a reader thread, a close hook."""

    def __init__(self, conn: Connection, name: str) -> None:
        self.conn = conn
        self.name = name
        self.id = next(_ids)
        self.peer: Any = None  # set by the owner: what is at the other end
        self.closed = False
        self.send_lock = threading.Lock()
        self.before_send: Callable[[], None] | None = None  # runs under send_lock
        self._reader: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Link {self.name} #{self.id}{' closed' if self.closed else ''}>"

    # -- sending ---------------------------------------------------------

    def send(self, msg: P.Message) -> None:
        """Send one message; raise :class:`LinkClosed` if the link is gone."""
        frames = P.encode(msg)
        with self.send_lock:
            if self.before_send is not None:
                self.before_send()
            self._write(frames)

    def send_unlocked(self, msg: P.Message) -> None:
        """Send while the caller already holds ``send_lock``."""
        self._write(P.encode(msg))

    def send_frames(self, frames: list[Any]) -> None:
        with self.send_lock:
            self._write(frames)

    def _write(self, frames: list[Any]) -> None:
        if self.closed:
            raise LinkClosed(self.name)
        try:
            for frame in frames:
                self.conn.send_bytes(frame)
        except (OSError, ValueError) as err:
            self.closed = True
            raise LinkClosed(f"{self.name}: {err}") from err

    # -- receiving -------------------------------------------------------

    def recv_frames(self) -> list[bytes]:
        first = self.conn.recv_bytes()
        return [first, *(self.conn.recv_bytes() for _ in range(P.extra_frames(first)))]

    def recv(self) -> P.Message:
        frames = self.recv_frames()
        return P.decode(frames[0], frames[1:])

    def start_reader(self, on_message: OnMessage, on_close: OnClose) -> None:
        """Start the thread that feeds every incoming message to ``on_message``."""

        def run() -> None:
            error: BaseException | None = None
            try:
                while True:
                    msg = self.recv()
                    on_message(self, msg)
            except (EOFError, OSError) as err:
                error = None if self.closed else err
            except ValueError as err:  # garbled frame: drop this peer, keep serving
                logger.warning("dropping %s: %s", self.name, err)
                error = err
            except BaseException as err:  # a bug in a handler: log it, close the link
                logger.exception("reader of %s failed", self.name)
                error = err
            finally:
                self.close()
                on_close(self, error)

        self._reader = threading.Thread(target=run, name=f"localactors-reader-{self.name}", daemon=True)
        self._reader.start()

    def close(self) -> None:
        """Close the connection; idempotent. The reader ends with EOF."""
        self.closed = True
        try:
            # shutdown wakes a reader blocked in recv in this same process
            sock = socket.socket(fileno=os.dup(self.conn.fileno()))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except (OSError, ValueError):
            pass
        try:
            self.conn.close()
        except OSError:
            pass

    def join_reader(self, timeout: float) -> None:
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)


def _authenticate(conn: Connection, authkey: bytes, server: bool) -> None:
    # the fd is blocking; a receive timeout keeps a silent peer from stalling us
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        tv = struct.pack("ll", int(HANDSHAKE_TIMEOUT), 0)
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
