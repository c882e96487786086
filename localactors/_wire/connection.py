"""Authenticated connections: ``connect`` and the listening ``Server``.

Runs in: every process.

A :class:`Server` listens on an AF_UNIX socket in the cluster's private
directory. Each peer must pass the ``multiprocessing`` HMAC challenge (both
ways) before a single byte of it is unpickled; a peer that fails, stalls or
sends garbage is logged and dropped, and the server goes on serving. The whole
handshake has a deadline (``HANDSHAKE_TIMEOUT``: a peer trickling a byte at a
time is dropped too), and at most ``MAX_HANDSHAKES`` run at once. Either
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

from . import shm, threads
from .link import Link, LinkClosed
from .shared_read import in_reader_thread

# the link names are re-exported: whoever opens a link here also uses its type
__all__ = ["HANDSHAKE_TIMEOUT", "Link", "LinkClosed", "Server", "connect", "in_reader_thread"]

logger = logging.getLogger("localactors.connection")

#: the whole handshake (both challenges) must be done within this many seconds
HANDSHAKE_TIMEOUT = 5.0
#: handshakes a server runs at once; a connection past that is dropped at once
#: (only processes of this user can reach the socket: this bounds a local flood)
MAX_HANDSHAKES = 128


def _authenticate(conn: Connection, authkey: bytes, server: bool) -> None:
    # the fd is blocking: a receive timeout keeps a silent peer from stalling a read,
    # and a deadline shuts the socket down under a peer that trickles a byte at a time
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the read in progress returns at once
        except OSError:
            pass

    deadline = threading.Timer(HANDSHAKE_TIMEOUT, expire)
    deadline.name = "localactors-handshake-deadline"
    deadline.daemon = True
    try:
        tv = struct.pack("ll", int(HANDSHAKE_TIMEOUT), int(HANDSHAKE_TIMEOUT % 1 * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        deadline.start()
        try:
            if server:
                deliver_challenge(conn, authkey)
                answer_challenge(conn, authkey)
            else:
                answer_challenge(conn, authkey)
                deliver_challenge(conn, authkey)
        except Exception as err:
            if expired.is_set():
                raise TimeoutError(f"the handshake took longer than {HANDSHAKE_TIMEOUT} s") from err
            raise
        finally:
            deadline.cancel()
            deadline.join()
        if expired.is_set():  # it fired as the last read returned: the socket is shut down
            raise TimeoutError(f"the handshake took longer than {HANDSHAKE_TIMEOUT} s")
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
    except EOFError as err:  # an OSError, as for any connection that fails
        conn.close()
        raise ConnectionResetError(f"{address} closed the connection during the handshake") from err
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
        self._slots = threading.BoundedSemaphore(MAX_HANDSHAKES)
        self._thread = threading.Thread(target=self._accept_loop, name=f"localactors-accept-{name}", daemon=True)
        threads.start(self._thread)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                continue
            if not self._slots.acquire(blocking=False):
                logger.warning("%s: dropped a peer: %d handshakes in progress already", self.name, MAX_HANDSHAKES)
                sock.close()
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
        finally:
            self._slots.release()
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
