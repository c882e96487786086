"""Shared reading: a thread that waits for a reply reads the link itself.

Runs in: every process (in whichever thread waits on a link: a caller waiting
for a reply, a worker's idle actor thread, and the link's reader thread).

:class:`SharedReading` is a mixin of :class:`~localactors._link.Link`: the
half that lets threads other than the reader take turns reading a shared
link, under one read token, while the reader thread sleeps in ``epoll``.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import protocol as P

_thread_role = threading.local()


def in_reader_thread() -> bool:
    """Is this thread a link's reader? (It must never wait on a reply.)"""
    return getattr(_thread_role, "reader", False)


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


class SharedReading:
    """Lets a waiting thread read and dispatch a shared link's messages itself."""

    # the link state this half uses (set up in ``Link.__init__``)
    closed: bool
    _fd: int
    _ep: Any
    _poller: Any
    _read_token: threading.Lock
    _on_message: Callable[[Any, P.Message], None] | None
    _gone: bool
    _caller_error: BaseException | None
    _idle_poller: tuple[int, Any] | None
    _holder: int | None
    _out_poller: Any

    if TYPE_CHECKING:  # Link's own methods

        def recv(self) -> P.Message: ...
        def close(self) -> None: ...
        def _frame_buffered(self) -> bool: ...

    # -- a waiting caller reads its own reply ---------------------------------
    #
    # A reply read by the reader thread costs the caller two thread switches
    # (reader wakes, then it wakes the caller). On a shared link the reader
    # thread sleeps in epoll, and a caller that waits for a reply may take the
    # read token, disarm the reader's wake-up and read the link itself. It
    # dispatches whatever arrives (other callers' replies too) exactly as the
    # reader would, and re-arms the reader's wake-up when its reply is in.

    def _read_shared(self, on_message: Callable[[Any, P.Message], None]) -> None:
        ep = self._ep
        assert ep is not None and self._poller is not None
        fd = self._fd
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
            fd = self._fd
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

    def hold(self) -> bool:
        """Keep the reader thread off this link until this thread reads it next.

        A worker's actor thread calls it right before it writes a small reply:
        the caller's next request often arrives before the actor thread is
        back in :meth:`read_while_idle` (the write itself wakes the caller),
        and would otherwise wake the reader thread (a thread switch, and
        another to hand the call over). Only a thread that calls
        :meth:`read_while_idle` or :meth:`unhold` soon, without running user
        code, may hold it; it may write one small message meanwhile.

        Refused when the link is not writable now: a write that blocks while
        nobody reads this end could deadlock with a peer that blocks writing
        to us. (A writable unix socket has most of its buffer free.)
        """
        ep = self._ep
        if ep is None or self._caller_error is not None or not self._read_token.acquire(blocking=False):
            return False
        if self._gone or self.closed:
            self._read_token.release()
            return False
        try:
            fd = self._fd
            if self._out_poller is None:
                self._out_poller = select.poll()
                self._out_poller.register(fd, select.POLLOUT)
            if not self._out_poller.poll(0):
                self._read_token.release()
                return False
            ep.modify(fd, _DISARMED)
        except (OSError, ValueError):
            self._read_token.release()
            return False
        self._holder = threading.get_ident()
        return True

    def unhold(self) -> None:
        """Give the link back to its reader thread (after :meth:`hold`, by the same thread)."""
        if self._holder != threading.get_ident():
            return
        self._holder = None
        try:
            if not (self._gone or self.closed):
                self._ep.modify(self._fd, _ARMED)
        except (OSError, ValueError):
            pass  # closing: the reader wakes on the hang-up
        finally:
            self._read_token.release()

    def read_while_idle(self, wake_fd: int, has_work: Callable[[], bool]) -> bool | None:
        """Read and dispatch messages in this thread until ``has_work()`` or ``wake_fd`` is readable.

        For a worker's idle actor thread (see ``ActorThread.set_idle_wait``).
        Returns ``None`` at once when this thread cannot read the link now.
        """
        ep = self._ep
        held = self._holder is not None and self._holder == threading.get_ident()
        if held:
            self._holder = None  # the token is ours already, and the reader disarmed
        elif ep is None or self._caller_error is not None or not self._read_token.acquire(blocking=False):
            return None
        try:
            if self._gone or self.closed:
                return None
            fd = self._fd
            if self._idle_poller is None or self._idle_poller[0] != wake_fd:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.register(wake_fd, select.POLLIN)
                self._idle_poller = (wake_fd, poller)
            poller = self._idle_poller[1]
            if not held:
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
