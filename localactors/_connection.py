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
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Any

from . import _protocol as P

logger = logging.getLogger("localactors.connection")

HANDSHAKE_TIMEOUT = 5.0
_ids = itertools.count()

OnMessage = Callable[["Link", P.Message], None]
OnClose = Callable[["Link", "BaseException | None"], None]


_thread_role = threading.local()


def in_reader_thread() -> bool:
    """Is this thread a link's reader? (It must never wait on a reply.)"""
    return getattr(_thread_role, "reader", False)


_SIZE = struct.Struct("!i")
_BIG_SIZE = struct.Struct("!Q")
_CHUNK = 1 << 16  # read size: many small messages at once
_DIRECT = 1 << 16  # frames this large are read, and written, without coalescing copies


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _write_frames(fd: int, frames: list[Any]) -> None:
    """Write frames in multiprocessing's framing, small ones joined into one write."""
    if len(frames) == 1 and type(frames[0]) is bytes and len(frames[0]) < _DIRECT:
        data = _SIZE.pack(len(frames[0])) + frames[0]  # the usual case: one small message
        sent = os.write(fd, data)
        if sent < len(data):
            _write_all(fd, memoryview(data)[sent:])
        return
    parts: list[Any] = []
    for frame in frames:
        n = len(frame) if type(frame) is bytes else memoryview(frame).nbytes
        if n > 0x7FFFFFFF:
            parts.append(_SIZE.pack(-1) + _BIG_SIZE.pack(n))
        else:
            parts.append(_SIZE.pack(n))
        if n < _DIRECT:
            parts.append(frame)
        else:  # large: written from where it lies, not copied into a joined buffer
            _write_all(fd, b"".join(parts))
            parts = []
            _write_all(fd, frame)
    if parts:
        _write_all(fd, b"".join(parts))


_EPOLL = hasattr(select, "epoll")
_ARMED = select.EPOLLIN | select.EPOLLONESHOT if _EPOLL else 0
_DISARMED = select.EPOLLONESHOT if _EPOLL else 0


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class _CallerReadError(Exception):
    """Raised by a caller's read or dispatch: the link is broken for everyone."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


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
        self._rbuf = b""  # bytes read but not yet taken, from _rpos on
        self._rpos = 0
        # shared reading (see read_until): whoever holds the token reads
        self._read_token = threading.Lock()
        self._ep: Any = None
        self._poller: Any = None
        self._on_message: OnMessage | None = None
        self._gone = False  # the reader thread has stopped: nobody reads any more
        self._caller_error: BaseException | None = None
        self._idle_poller: tuple[int, Any] | None = None  # (wake fd, poll object) for read_while_idle
        self._close_lock = threading.Lock()
        self._reading = False  # a reader thread owns the descriptor until it stops
        self._shut = False
        self._released = False

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

    def send_many(self, msgs: list[P.Message]) -> None:
        """Send several messages, in order, with as few writes as possible."""
        frames = [frame for msg in msgs for frame in P.encode(msg)]
        with self.send_lock:
            if self.before_send is not None:
                self.before_send()
            self._write(frames)

    def _write(self, frames: list[Any]) -> None:
        if self.closed:
            raise LinkClosed(self.name)
        try:
            _write_frames(self.conn.fileno(), frames)
        except (OSError, ValueError) as err:
            self.closed = True
            raise LinkClosed(f"{self.name}: {err}") from err

    # -- receiving -------------------------------------------------------

    def recv_frames(self) -> list[bytes]:
        """The frames of the next message (only ever called by one thread)."""
        first = self._read_frame()
        extra = P.extra_frames(first)
        if not extra:
            return [first]
        return [first, *(self._read_frame() for _ in range(extra))]

    def _read_frame(self) -> bytes:
        # multiprocessing's framing, read through a buffer: one read() often
        # brings many small messages, where recv_bytes() makes two per message
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 4:
            buf, pos = self._fill(buf, pos, 4)
        (n,) = _SIZE.unpack_from(buf, pos)
        pos += 4
        if n < 0:  # a frame of 2 GiB or more: -1, then the size in 8 bytes
            if len(buf) - pos < 8:
                buf, pos = self._fill(buf, pos, 8)
            (n,) = _BIG_SIZE.unpack_from(buf, pos)
            pos += 8
        if len(buf) - pos >= n:
            self._rbuf, self._rpos = buf, pos + n
            return buf[pos : pos + n]
        if n >= _DIRECT:  # large: read straight into its own buffer, no copies on the way
            out = bytearray(n)
            have = len(buf) - pos
            out[:have] = buf[pos:]
            self._rbuf, self._rpos = b"", 0
            view = memoryview(out)
            fd = self.conn.fileno()
            while have < n:
                got = os.readv(fd, [view[have:]])
                if not got:
                    raise EOFError
                have += got
            return out  # type: ignore[return-value]  # bytes-like: pickle takes it as a buffer
        buf, pos = self._fill(buf, pos, n)
        self._rbuf, self._rpos = buf, pos + n
        return buf[pos : pos + n]

    def _fill(self, buf: bytes, pos: int, need: int) -> tuple[bytes, int]:
        """Read until ``need`` bytes are buffered; return the new buffer at offset 0."""
        rest = buf[pos:]
        fd = self.conn.fileno()
        while len(rest) < need:
            chunk = os.read(fd, max(_CHUNK, need - len(rest)))
            if not chunk:
                raise EOFError
            rest = rest + chunk if rest else chunk
        self._rbuf, self._rpos = rest, 0
        return rest, 0

    def recv(self) -> P.Message:
        frames = self.recv_frames()
        return P.decode(frames[0], frames[1:])

    def start_reader(
        self,
        on_message: Callable[[Link, Any], None],  # gets a P.Message, or its frames with raw=True
        on_close: OnClose,
        *,
        raw: bool = False,
        shared: bool = False,
    ) -> None:
        """Start the thread that feeds every incoming message to ``on_message``.

        With ``raw=True`` it gets each message's frames undecoded (a relay).
        With ``shared=True`` a thread waiting for a reply may read the link
        itself (:meth:`read_until`) while the reader thread sleeps.
        """
        receive: Callable[[], Any] = self.recv_frames if raw else self.recv
        self._on_message = on_message
        if shared and _EPOLL and not raw:
            try:
                self._ep = select.epoll()
                self._ep.register(self.conn.fileno(), _ARMED)
                self._poller = select.poll()
                self._poller.register(self.conn.fileno(), select.POLLIN)
            except (OSError, ValueError):
                self._ep = None  # released already: the plain reader reports the close

        def run() -> None:
            _thread_role.reader = True
            error: BaseException | None = None
            try:
                if self._ep is None:
                    while True:
                        msg = receive()
                        on_message(self, msg)
                else:
                    self._read_shared(on_message)
            except (EOFError, OSError) as err:
                error = None if self.closed else err
            except ValueError as err:  # garbled frame: drop this peer, keep serving
                logger.warning("dropping %s: %s", self.name, err)
                error = err
            except BaseException as err:  # a bug in a handler: log it, close the link
                logger.exception("reader of %s failed", self.name)
                error = err
            finally:
                if self._ep is not None:
                    with self._read_token:  # no caller may touch the descriptor from here on
                        self._gone = True
                    self._ep.close()
                with self._close_lock:
                    self._reading = False
                self.close()
                on_close(self, error)

        with self._close_lock:
            # on a released link the reader fails at once and reports the close
            self._reading = not self._released
        reader = threading.Thread(target=run, name=f"localactors-reader-{self.name}", daemon=True)
        reader.start()
        self._reader = reader  # only once started: join_reader() may be called from another thread

    # -- a waiting caller reads its own reply ---------------------------------
    #
    # A reply read by the reader thread costs the caller two thread switches
    # (reader wakes, then it wakes the caller). On a shared link the reader
    # thread sleeps in epoll, and a caller that waits for a reply may take the
    # read token, disarm the reader's wake-up and read the link itself. It
    # dispatches whatever arrives (other callers' replies too) exactly as the
    # reader would, and re-arms the reader's wake-up when its reply is in.

    def _read_shared(self, on_message: OnMessage) -> None:
        ep = self._ep
        assert ep is not None and self._poller is not None
        fd = self.conn.fileno()
        while True:
            ep.poll()
            with self._read_token:
                try:
                    if self._caller_error is not None:
                        raise self._caller_error  # a caller met it while reading for us
                    if not self._frame_buffered() and not self._poller.poll(0):
                        ep.modify(fd, _ARMED)  # a caller read what woke us
                        continue
                    on_message(self, self.recv())
                    while self._frame_buffered():  # epoll cannot see what is in our buffer
                        on_message(self, self.recv())
                    ep.modify(fd, _ARMED)
                except BaseException:
                    self._gone = True
                    raise

    def _frame_buffered(self) -> bool:
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 4:
            return False
        n: int = _SIZE.unpack_from(buf, pos)[0]
        return 0 <= n <= len(buf) - pos - 4

    def read_until(self, comp: Any, timeout: float | None) -> bool | None:
        """Read and dispatch messages in this thread until ``comp`` is done.

        Returns whether it is done, or ``None`` when this thread cannot read
        (another one is reading, or the link is not shared): then wait as usual.
        """
        ep, poller = self._ep, self._poller
        if ep is None or poller is None or not self._read_token.acquire(blocking=False):
            return None
        try:
            if self._gone or self.closed:
                return None
            fd = self.conn.fileno()
            ep.modify(fd, _DISARMED)  # the reader thread sleeps on; HUP and errors still wake it
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while not comp.done():
                    if not self._frame_buffered():
                        if deadline is None:
                            ready = poller.poll()
                        else:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                break
                            ready = poller.poll(max(1, int(remaining * 1000 + 0.999)))
                        if not ready:
                            continue
                    self._take_one()
                while self._frame_buffered():
                    self._take_one()
            except _CallerReadError as wrapped:
                # the stream is broken for everyone: hand the error to the reader
                # thread, which reports and closes as if it had met it itself
                self._caller_error = wrapped.error
                if not isinstance(wrapped.error, (EOFError, OSError)):
                    self.close()  # wake the reader (EOF and socket errors wake it anyway)
            finally:
                ep.modify(fd, _ARMED)
        finally:
            self._read_token.release()
        return comp.done()  # type: ignore[no-any-return]

    def read_while_idle(self, wake_fd: int, has_work: Callable[[], bool]) -> bool | None:
        """Read and dispatch messages in this thread until ``has_work()`` or ``wake_fd`` is readable.

        For a worker's idle actor thread (see ``ActorThread.set_idle_wait``).
        Returns ``None`` at once when this thread cannot read the link now.
        """
        ep = self._ep
        if ep is None or self._caller_error is not None or not self._read_token.acquire(blocking=False):
            return None
        try:
            if self._gone or self.closed:
                return None
            fd = self.conn.fileno()
            if self._idle_poller is None or self._idle_poller[0] != wake_fd:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.register(wake_fd, select.POLLIN)
                self._idle_poller = (wake_fd, poller)
            poller = self._idle_poller[1]
            ep.modify(fd, _DISARMED)
            try:
                while True:
                    if not self._frame_buffered():
                        ready = poller.poll()
                        if any(f == wake_fd for f, _ in ready):
                            _drain(wake_fd)
                            break
                    self._take_one()
                    if has_work():
                        break
                while self._frame_buffered():
                    self._take_one()
            except _CallerReadError as wrapped:
                self._caller_error = wrapped.error  # as in read_until: the reader reports it
                if not isinstance(wrapped.error, (EOFError, OSError)):
                    self.close()
            finally:
                ep.modify(fd, _ARMED)
        finally:
            self._read_token.release()
        return True

    def _take_one(self) -> None:
        """Read one message and dispatch it in this (caller's) thread."""
        was = getattr(_thread_role, "reader", False)
        _thread_role.reader = True  # while dispatching, this thread is a reader: it must not wait
        try:
            assert self._on_message is not None
            self._on_message(self, self.recv())
        except BaseException as err:
            raise _CallerReadError(err) from err
        finally:
            _thread_role.reader = was

    def close(self) -> None:
        """Close the connection; idempotent and safe from any thread.

        Shutting the socket down wakes the reader (and a blocked writer) at
        once. The descriptor itself is released exactly once: by the reader
        as it stops, or here if there is none, and never while a writer is
        using it. A descriptor number closed twice, or read after its close,
        may by then belong to a new socket of another link.
        """
        self.closed = True
        with self._close_lock:
            if self._released:
                return
            if not self._shut:
                self._shut = True
                try:
                    # shutdown wakes a reader blocked in recv in this same process
                    sock = socket.socket(fileno=os.dup(self.conn.fileno()))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()
                except (OSError, ValueError):
                    pass
            if self._reading and self._reader is not threading.current_thread():
                return  # the reader releases it on its way out
            self._released = True
        # a writer blocked before the shutdown has failed by now; wait for it to let go
        # (bounded: a thread closing its own link while it holds send_lock must not hang)
        locked = self.send_lock.acquire(timeout=2.0)
        try:
            self.conn.close()
        except OSError:
            pass
        finally:
            if locked:
                self.send_lock.release()

    def join_reader(self, timeout: float) -> None:
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)


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
