"""Link: one framed connection between two processes, and how it is read.

Runs in: every process.

A :class:`Link` wraps one ``multiprocessing`` connection. Any thread may
``send`` (a lock keeps frames of one message together); one *reader thread*
per link receives and hands each message to a callback. Because every process
always has a reader draining each of its links, two processes that write
large messages to each other at the same time cannot deadlock. A thread that
waits for a reply may read a *shared* link itself while nobody else is reading
it (``read_until``, ``hold``/``read_while_idle``: the link's
:class:`~localactors._wire.shared_read.ReadToken`). Links are made by
``connection`` (``connect`` and ``Server``), which authenticates them first.
The framing itself (header formats, bounds, writing frames) is ``framing``.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import select
import socket
import threading
import typing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from . import codec as W
from . import protocol as P
from . import threads
from .framing import FRAME_HEAD, FrameReader, write_all, write_frames
from .protocol import OUT_OF_BAND
from .shared_read import EPOLL, Awaited, ReadToken, mark_reader_thread

logger = logging.getLogger("localactors.connection")

_ids = itertools.count()

#: the wire tags of a reply and of a batch of them (``codec``: a message's index in ``Message``)
_OK_TAG = typing.get_args(P.Message).index(P.CallOk)
_OKS_TAG = typing.get_args(P.Message).index(P.CallOks)

OnMessage = Callable[["Link", P.Message], None]
OnClose = Callable[["Link", "BaseException | None"], None]


class LinkClosed(Exception):
    """The link was closed (by us or by the peer); nothing more can be sent."""


class Link(FrameReader):
    """One end of a connection: locked sends, a reader thread, a close hook."""

    def __init__(self, conn: Connection, name: str) -> None:
        self.conn = conn
        self._fd = conn.fileno()  # valid until the link releases it: used under send_lock, or by its reader
        self.name = name
        self.id = next(_ids)
        #: on a worker's end of a caller's link: the caller's introduction (for log messages)
        self.hello: P.Hello | None = None
        self.closed = False
        self.send_lock = threading.Lock()
        self.before_send: Callable[[], None] | None = None  # runs under send_lock
        self._reader: threading.Thread | None = None
        self._rbuf = b""  # bytes read but not yet taken, from _rpos on
        self._rpos = 0
        self._shared: ReadToken | None = None  # set when read shared (start_reader)
        #: what a thread waiting for a reply on this link reads it through (its read token;
        #: ``None``: it cannot, the link's reader thread reads everything)
        self.read_point: ReadToken | None = None
        self._close_lock = threading.Lock()
        self._reading = False  # a reader thread owns the descriptor until it stops
        self._shut = False
        self._released = False
        self._nowait: socket.socket | None = None  # a duplicate of the descriptor, for MSG_DONTWAIT

    def __repr__(self) -> str:
        return f"<Link {self.name} #{self.id}{' closed' if self.closed else ''}>"

    def describe(self) -> str:
        """This link for a log message: its name, and who introduced itself at the other end."""
        hello = self.hello
        return repr(self) if hello is None else f"{self!r} from {hello.name} (pid {hello.pid})"

    # -- sending ---------------------------------------------------------

    def send(self, msg: P.Message) -> None:
        """Send one message; raise :class:`LinkClosed` if the link is gone."""
        frames = W.encode(msg)
        with self.send_lock:
            if self.before_send is not None:
                self.before_send()
            self._write(frames)

    def send_call(self, call_id: int, actor: str, name: str, kind: P.CallKind, payload: Any) -> None:
        """Send an :class:`~localactors._wire.protocol.ActorCall`: the hot path of
        :meth:`send`, with no message object and one write."""
        if type(payload) is bytes and len(payload) < OUT_OF_BAND:
            # framing.frame_call, inlined: the hot path
            head = pickle.dumps((W.CALL_TAG, call_id, actor, name, W.KIND_VALUE[kind], payload), 5)
            n = len(head) + 8
            data = FRAME_HEAD.pack(n - 4, 0) + head
            with self.send_lock:
                if self.before_send is not None:
                    self.before_send()
                if self.closed:
                    raise LinkClosed(self.name)
                try:
                    sent = os.write(self._fd, data)
                    if sent < n:
                        write_all(self._fd, memoryview(data)[sent:])
                except (OSError, ValueError) as err:
                    self.closed = True
                    raise LinkClosed(f"{self.name}: {err}") from err
        else:
            self.send(P.ActorCall(call_id, actor, name, kind, payload))

    def send_replies(self, replies: list[tuple[int, bytes]], on_block: Callable[[], None] | None = None) -> None:
        """Send small replies ``(call_id, payload)`` in one write: a ``CallOk``, or one
        :class:`~localactors._wire.protocol.CallOks` frame for several (together under
        ``OUT_OF_BAND``: ``_worker/reply_batch`` keeps a batch far smaller).

        With ``on_block`` (a thread that holds this link: :meth:`hold`), the write
        does not wait: when the socket has no room for all of it, ``on_block()``
        runs first (it gives the link back to its reader), then the rest is written.
        """
        if len(replies) == 1:
            call_id, payload = replies[0]
            head = pickle.dumps((_OK_TAG, call_id, payload), 5)
        else:
            head = pickle.dumps((_OKS_TAG, tuple(replies)), 5)
        data = FRAME_HEAD.pack(len(head) + 4, 0) + head
        with self.send_lock:
            if self.before_send is not None:
                self.before_send()
            if on_block is None:
                self._write_one(data)
            else:
                self._write_nowait(data, on_block)

    def send_nowait(self, data: bytes) -> int:
        """One send of framed bytes that does not wait for room (holding ``send_lock``):
        how many went (0: the socket is full); :class:`LinkClosed` if the link is gone."""
        if self.closed:
            raise LinkClosed(self.name)
        try:
            if self._nowait is None:
                self._nowait = socket.socket(fileno=os.dup(self._fd))  # released with the link's descriptor
            return self._nowait.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        except (OSError, ValueError) as err:
            self.closed = True
            raise LinkClosed(f"{self.name}: {err}") from err

    def wait_writable(self) -> None:
        """Sleep until the socket has room (or is broken: the next send says so)."""
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        poller.poll()

    def _write_nowait(self, data: bytes, on_block: Callable[[], None]) -> None:
        """Write without waiting for room; ``on_block()`` before the part that must wait (holding ``send_lock``)."""
        if self.closed:
            raise LinkClosed(self.name)
        try:
            sent = self.send_nowait(data)
        except LinkClosed:
            sent = 0  # (the usual write says what is wrong)
        if sent < len(data):
            on_block()
            try:
                write_all(self._fd, memoryview(data)[sent:])
            except (OSError, ValueError) as err:
                self.closed = True
                raise LinkClosed(f"{self.name}: {err}") from err

    def _write_one(self, data: bytes) -> None:
        """Write one small framed message (holding ``send_lock``)."""
        if self.closed:
            raise LinkClosed(self.name)
        try:
            sent = os.write(self._fd, data)
            if sent < len(data):
                write_all(self._fd, memoryview(data)[sent:])
        except (OSError, ValueError) as err:
            self.closed = True
            raise LinkClosed(f"{self.name}: {err}") from err

    def send_unlocked(self, msg: P.Message) -> None:
        """Send while the caller already holds ``send_lock``."""
        self._write(W.encode(msg))

    def send_frames(self, frames: list[Any]) -> None:
        with self.send_lock:
            self._write(frames)

    def send_many(self, msgs: list[P.Message]) -> None:
        """Send several messages, in order, with as few writes as possible."""
        frames = [frame for msg in msgs for frame in W.encode(msg)]
        with self.send_lock:
            if self.before_send is not None:
                self.before_send()
            self._write(frames)

    def _write(self, frames: list[Any]) -> None:
        if self.closed:
            raise LinkClosed(self.name)
        try:
            write_frames(self._fd, frames)
        except (OSError, ValueError) as err:
            self.closed = True
            raise LinkClosed(f"{self.name}: {err}") from err

    # -- receiving -------------------------------------------------------

    def start_reader(
        self,
        on_message: Callable[[Link, Any], None],  # gets a P.Message, or its frames with raw=True
        on_close: OnClose,
        *,
        raw: bool = False,
        shared: bool = False,
        on_messages: Callable[[Link, list[P.Message]], None] | None = None,
    ) -> None:
        """Start the thread that feeds every incoming message to ``on_message``.

        With ``raw=True`` it gets each message's frames undecoded (a relay).
        With ``shared=True`` a thread waiting for a reply may read the link
        itself (:meth:`read_until`) while the reader thread sleeps; then
        ``on_messages``, when given, gets the messages that arrived together
        (several whole in the read buffer), in order, in one call.
        """
        receive: Callable[[], Any] = self.recv_frames if raw else self.recv
        if shared and EPOLL and not raw:
            try:
                self._shared = ReadToken(self, self.conn.fileno(), on_message, on_messages)
            except (OSError, ValueError):
                pass  # released already: the plain reader reports the close
        shared_token = self.read_point = self._shared

        def run() -> None:
            mark_reader_thread()
            error: BaseException | None = None
            try:
                if shared_token is None:
                    while True:
                        msg = receive()
                        on_message(self, msg)
                else:
                    shared_token.serve()
            except (EOFError, OSError) as err:
                error = None if self.closed else err
            except ValueError as err:  # garbled frame: drop this peer, keep serving
                logger.warning("dropping %s: %s", self.name, err)
                error = err
            except BaseException as err:  # a bug in a handler: log it, close the link
                logger.exception("reader of %s failed", self.name)
                error = err
            finally:
                if shared_token is not None:
                    shared_token.stop()
                with self._close_lock:
                    self._reading = False
                self.close()
                on_close(self, error)

        with self._close_lock:
            # on a released link the reader fails at once and reports the close
            self._reading = not self._released
        reader = threading.Thread(target=run, name=f"localactors-reader-{self.name}", daemon=True)
        threads.start(reader)
        self._reader = reader  # only once started: join_reader() may be called from another thread

    # -- shared reading: a waiting thread reads the link itself (see shared_read) --------

    def read_until(self, comp: Awaited, timeout: float | None, deadline: float = 0.0) -> bool | None:
        """Read and dispatch messages in this thread until ``comp`` is done.

        Returns whether it is done, or ``None`` when this thread cannot read
        (another one is reading, or the link is not shared): then wait as usual.
        """
        shared = self._shared
        return None if shared is None else shared.read_until(comp, timeout, deadline)

    def unpark(self) -> None:
        """A thread will sleep until this link's reader dispatches: give it a parked link now
        (:meth:`ReadToken.unpark`)."""
        shared = self._shared
        if shared is not None:
            shared.unpark()

    def hold(self) -> bool:
        """Keep the reader thread off this link until this thread reads it next
        (:meth:`ReadToken.hold`); ``False`` when refused."""
        shared = self._shared
        return shared is not None and shared.hold()

    def unhold(self) -> None:
        """Give a held link back to its reader thread."""
        if self._shared is not None:
            self._shared.unhold()

    def read_while_idle(self, wake_fd: int, has_work: Callable[[], bool]) -> bool | None:
        """Read and dispatch until ``has_work()`` or ``wake_fd`` is readable
        (:meth:`ReadToken.read_while_idle`); ``None`` when this thread cannot read now."""
        shared = self._shared
        return None if shared is None else shared.read_while_idle(wake_fd, has_work)

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
            if self._nowait is not None:
                self._nowait.close()
            self.conn.close()
        except OSError:
            pass
        finally:
            if locked:
                self.send_lock.release()

    def join_reader(self, timeout: float) -> None:
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)
