"""Shared reading: a thread that waits for a reply reads the link itself.

Runs in: every process (in whichever thread waits on a link: a caller waiting
for a reply, a worker's idle actor thread, and the link's reader thread).

A :class:`ReadToken` belongs to one shared :class:`~localactors._wire.link.Link`
(``start_reader(shared=True)``). Whoever holds the token reads and dispatches
the link's messages: the reader thread, woken by ``epoll``, or a thread that
would otherwise sleep until the reader woke it -- a caller waiting for its
reply (:meth:`ReadToken.read_until`), or a worker's idle actor thread waiting
for the next call (:meth:`ReadToken.hold`, :meth:`ReadToken.read_while_idle`).
A reply read by the reader thread costs the waiter two thread switches
(reader wakes, then it wakes the waiter); read by the waiter, none. The link
calls these through methods of its own; nothing else touches the token.

Taking the link from the reader thread disarms its ``epoll`` (``epoll_ctl``)
and wakes it (an ``eventfd``). A thread done reading does not hand the link
straight back: it *parks* it, so that the next call of a thread that calls
in a loop takes it again with no system call. The reader thread looks at an
away link :data:`PARK` seconds after it was taken, then at gaps that double
up to :data:`PARK_MAX` while it finds the link taken again since its last
look; at the first look that finds it untaken (the last taker runs code of
its own, or went away) it takes the link back and re-arms. So a message that
comes while the link is parked waits at most ``2 * PARK_MAX`` for a reader;
a hang-up wakes the reader at once; a thread that found the link taken makes
its holder hand it straight back (it sleeps until the reader reads its
reply); and an idle link costs no wake-ups: the reader sleeps on the lock
while one thread holds the link for long (a caller waiting for a long
reply, an idle actor thread), and in ``epoll`` with no timeout once it has
the link back.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from . import protocol as P


class _Role(threading.local):
    """What this thread is: ``reader`` while it reads a link (its reader thread, or a
    waiter dispatching what it read); ``main`` once it is the main thread with a
    Ctrl-C handler of ours. Class defaults: read with no ``getattr`` call."""

    reader = False
    main = False


_thread_role = _Role()

#: the longest the main thread blocks in one call while it waits (milliseconds). A
#: signal that comes between Python's last look at its signals and a blocking call
#: (a lock, a poll, a read) does not cut that call short: the handler runs only when
#: the call returns. So the main thread waits in slices, and a Ctrl-C lands within one.
SLICE_MS = 200


def mark_main_thread() -> None:
    """This (the main) thread raises KeyboardInterrupt from our handler: it waits in slices."""
    _thread_role.main = True


def in_main_thread() -> bool:
    """Is this the main thread, marked by :func:`mark_main_thread`?"""
    return _thread_role.main


def in_reader_thread() -> bool:
    """Is this thread a link's reader? (It must never wait on a reply.)"""
    return _thread_role.reader


def mark_reader_thread() -> None:
    """This thread is a link's reader thread, for the rest of its life."""
    _thread_role.reader = True


#: the thread owed a KeyboardInterrupt held back while it handed a message over
_interrupt_owed: int | None = None


def hold_interrupts() -> bool:
    """Hold back a Ctrl-C in this thread (as while it hands a message over) until
    :func:`release_interrupts`: for a stretch that must not be cut, a write and the
    note of what it wrote. Returns what to pass to :func:`release_interrupts`."""
    was = _thread_role.reader
    _thread_role.reader = True
    return was


def release_interrupts(was: bool) -> None:
    """End a :func:`hold_interrupts` stretch; raise the KeyboardInterrupt held back, if any."""
    _thread_role.reader = was
    if _interrupt_owed is not None:
        _raise_owed_interrupt()


def defer_interrupt() -> bool:
    """For a SIGINT handler (it runs in the main thread): is this thread between
    reading a message and handing it over? Then the interrupt is owed, raised by
    the read path once the message is handed over, and ``True``."""
    global _interrupt_owed
    if _thread_role.reader:
        _interrupt_owed = threading.get_ident()
        return True
    _interrupt_owed = None  # raised now: nothing owed any more
    return False


#: seconds between the reader thread's looks at a link another thread has taken: the
#: first look, and the longest gap between looks (doubling while the link stays in use)
PARK = 0.002
PARK_MAX = 0.016

EPOLL = hasattr(select, "epoll")  # without it (not Linux) links are read by their reader threads only
_ARMED = select.EPOLLIN | select.EPOLLONESHOT if EPOLL else 0
_DISARMED = select.EPOLLONESHOT if EPOLL else 0


class SharedLink(Protocol):
    """What a read token needs of its link."""

    closed: bool
    _rbuf: bytes  # the read buffer and the offset read to (a glance: is anything left?)
    _rpos: int

    def recv(self) -> P.Message: ...
    def read_more(self) -> None: ...
    def recv_buffered(self) -> list[P.Message]: ...
    def frame_buffered(self) -> bool: ...
    def close(self) -> None: ...


class Awaited(Protocol):
    """What :meth:`ReadToken.read_until` waits for: a completion."""

    def done(self) -> bool: ...


class _CallerReadError(Exception):
    """Raised by a caller's read or dispatch: the link is broken for everyone."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _next_look(gap: float) -> float:
    """Seconds to the reader's next look at a link still in use, after a gap of ``gap`` (-1: none yet)."""
    return PARK if gap < 0 else min(2 * gap, PARK_MAX)


def _poll_sliced(poller: select.poll, wait_ms: int, deadline: float) -> bool:
    """The rest of the main thread's ``poller.poll(wait_ms)``, once its first slice came
    back empty, in slices of :data:`SLICE_MS` (a Ctrl-C lands between two). Whether
    the link is readable (``False``: timed out)."""
    while True:
        if wait_ms >= 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait_ms = max(1, int(remaining * 1000 + 0.999))
        if poller.poll(SLICE_MS if wait_ms < 0 or wait_ms > SLICE_MS else wait_ms):
            return True


def _drain_eventfd(fd: int) -> None:
    try:
        os.eventfd_read(fd)
    except BlockingIOError:
        pass


def _raise_owed_interrupt() -> None:
    """Raise the KeyboardInterrupt held back while this thread handed a message over."""
    global _interrupt_owed
    if _interrupt_owed == threading.get_ident() and not _thread_role.reader:
        _interrupt_owed = None
        raise KeyboardInterrupt


class ReadToken:
    """Who may read one shared link now, and the reading its holder does.

    ``on_message(link, msg)`` dispatches every message, whichever thread read
    it; ``on_messages(link, msgs)``, when given, several at once (in order).
    it. Made by the link before its reader thread starts; raises ``OSError``
    or ``ValueError`` when the descriptor is released already.
    """

    def __init__(
        self,
        link: SharedLink,
        fd: int,
        on_message: Callable[[Any, P.Message], None],
        on_messages: Callable[[Any, list[P.Message]], None] | None = None,
    ) -> None:
        self._link = link
        # the link's descriptor: used only while holding the token, and the
        # reader thread (which releases the descriptor) takes it to stop
        self._fd = fd
        self._on_message = on_message
        self._on_messages = on_messages if on_messages is not None else self._each
        self._recv = link.recv  # bound once: the hot path
        self._recv_buffered = link.recv_buffered
        self._read_more = link.read_more
        self._buffered = link.frame_buffered
        self._lock = threading.Lock()  # the token itself
        self._ep = select.epoll()  # the reader thread's wake-up, disarmed while another thread has the link
        self._ep.register(fd, _ARMED)
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)  # "the link was taken: look again soon"
        self._ep.register(self._wake, select.EPOLLIN)
        self._away = False  # the link is disarmed in ``_ep``: held, or parked (changed under the lock)
        self._takes = 0  # how many times a thread took the link (the reader's sign of use while parked)
        self._contended = False  # a thread found the link taken: it waits for a reader, so park none
        self._poller = select.poll()  # a waiting caller's: is the link readable?
        self._poller.register(fd, select.POLLIN)
        self._idle_poller: tuple[int, select.poll] | None = None  # (wake fd, poll object) for read_while_idle
        self._held_by: int | None = None  # the thread keeping the token between reads (hold)
        self._gone = False  # the reader thread has stopped: nobody reads any more
        self._caller_error: BaseException | None = None  # met by a caller while reading for everyone

    def _each(self, link: Any, msgs: list[P.Message]) -> None:
        on_message = self._on_message
        for msg in msgs:
            on_message(link, msg)

    # -- the reader thread -----------------------------------------------------

    def serve(self) -> None:
        """The reader thread's loop: sleep in epoll, read what a waiting thread did not,
        and take the link back once nobody has taken it for a while (see the module)."""
        ep, fd, wake, on_message, link = self._ep, self._fd, self._wake, self._on_message, self._link
        on_messages = self._on_messages
        timeout = -1.0  # while the link is away: PARK
        seen = -1  # ``_takes`` when the reader last looked at the away link
        while True:
            events = ep.poll(timeout)
            from_link = False
            for efd, _ in events:
                if efd == fd:
                    from_link = True  # (while away: a hang-up or an error)
                else:
                    _drain_eventfd(wake)
            if not from_link:
                if not self._away:
                    timeout, seen = -1.0, -1  # given back (unhold, unpark) since: ours, armed
                    continue
                if self._takes != seen:
                    seen = self._takes  # still in use: leave it with them, look again later
                    timeout = _next_look(timeout)
                    continue
            with self._lock:  # (waits while a thread reads: a caller waiting for a long reply)
                try:
                    if self._caller_error is not None:
                        raise self._caller_error  # a caller met it while reading for us
                    if self._away:
                        if not from_link and self._takes != seen:
                            seen = self._takes  # taken again while we waited for the lock
                            timeout = _next_look(timeout)
                            continue
                        self._away = False  # untaken for a whole PARK: ours again
                        ep.modify(fd, _ARMED)
                        timeout, seen = -1.0, -1
                        if not self._buffered() and not self._poller.poll(0):
                            continue
                    elif not from_link:
                        timeout, seen = -1.0, -1  # given back while we waited for the lock
                        continue
                    if not self._buffered() and not self._poller.poll(0):
                        ep.modify(fd, _ARMED)  # a caller read what woke us
                        continue
                    on_message(link, self._recv())
                    while True:  # epoll cannot see what is in our buffer: take it all
                        msgs = self._recv_buffered()
                        if msgs:
                            on_messages(link, msgs)
                        if not self._buffered():
                            break
                        on_message(link, self._recv())  # (a large one, or one with out-of-band frames)
                    ep.modify(fd, _ARMED)
                except BaseException:
                    self._gone = True
                    raise

    def stop(self) -> None:
        """The reader thread is stopping: no other thread may touch the descriptor from now on."""
        with self._lock:
            self._gone = True
        self._ep.close()
        os.close(self._wake)

    def _take_from_reader(self) -> None:
        """Disarm the reader thread and wake it to watch the link (holding the token)."""
        self._away = True  # (first: whatever cuts this short, the reader looks at the link again)
        self._ep.modify(self._fd, _DISARMED)  # the reader thread sleeps on; HUP and errors still wake it
        os.eventfd_write(self._wake, 1)

    # -- a waiting caller reads its own reply ---------------------------------

    def read_until(self, comp: Awaited, timeout: float | None, deadline: float = 0.0) -> bool | None:
        """Read and dispatch messages in this thread until ``comp`` is done.

        Returns whether it is done, or ``None`` when this thread cannot read
        (another one is reading): then wait as usual. ``deadline``: the
        ``time.monotonic()`` that ``timeout`` ends at, when the caller knows it.
        """
        role = _thread_role  # (hold_interrupts, inlined: the hot path)
        was = role.reader
        role.reader = True  # (a Ctrl-C waits until the token is ours inside the try, or refused)
        if not self._lock.acquire(blocking=False):
            role.reader = was
            self._contended = True
            if _interrupt_owed is not None:
                _raise_owed_interrupt()
            return None
        try:
            role.reader = was
            if _interrupt_owed is not None:
                _raise_owed_interrupt()
            if self._gone or self._link.closed:
                return None
            self._takes += 1
            if not self._away:
                self._take_from_reader()
            poller = self._poller
            if timeout is None:
                wait_ms = -1
            else:
                wait_ms = int(timeout * 1000) + 1 if timeout > 0 else 0  # (rounded up: never early)
                if not deadline:
                    deadline = time.monotonic() + timeout
            done = False
            link = self._link
            try:
                done = comp.done()
                again = False
                while not done:
                    # (a glance at the buffer first: almost always read to its end, and
                    # then no frame_buffered call; a slice is no call)
                    if not (link._rbuf[link._rpos + 3 : link._rpos + 4] and self._buffered()):
                        if again and wait_ms >= 0:  # the first message was not the reply: what is left
                            remaining = deadline - time.monotonic()
                            wait_ms = max(1, int(remaining * 1000 + 0.999)) if remaining > 0 else 0
                        if role.main:  # (in slices: see SLICE_MS)
                            if not (
                                poller.poll(SLICE_MS if wait_ms < 0 or wait_ms > SLICE_MS else wait_ms)
                                or _poll_sliced(poller, wait_ms, deadline)
                            ):
                                break  # timed out
                        elif wait_ms < 0:
                            # no deadline to keep: the read itself waits (no poll first)
                            try:
                                self._read_more()
                            except (EOFError, OSError) as err:
                                raise _CallerReadError(err) from err
                        elif not poller.poll(wait_ms):
                            break  # timed out
                    # self._take(), inlined: the hot path (one message, the reply)
                    was = _thread_role.reader
                    _thread_role.reader = True
                    try:
                        self._on_message(link, self._recv())
                    except BaseException as err:
                        raise _CallerReadError(err) from err
                    finally:
                        _thread_role.reader = was
                    if _interrupt_owed is not None:
                        _raise_owed_interrupt()
                    done = comp.done()
                    again = True
                while link._rbuf[link._rpos + 3 : link._rpos + 4] and self._buffered():
                    self._take()
            except _CallerReadError as wrapped:
                self._hand_error_to_reader(wrapped.error)
        finally:
            if self._contended:
                self._give_back()
            self._lock.release()  # (else parked: the reader takes it back once untaken for a while)
        return done or comp.done()

    def _give_back(self) -> None:
        """Re-arm the reader thread now (holding the token): a thread that found the
        link taken sleeps until the reader reads its reply."""
        self._contended = False
        if self._away and not (self._gone or self._link.closed):
            try:
                self._ep.modify(self._fd, _ARMED)
            except (OSError, ValueError):
                pass  # closing: the reader wakes on the hang-up
            self._away = False  # (last: whatever cuts this short, the reader re-arms at its next look)

    def unpark(self) -> None:
        """A thread is about to sleep until the reader thread dispatches what it waits
        for (a done-callback, ``wait``, an ``await``): a parked link goes back to the
        reader now, not at its next look; a held one as soon as its holder is done."""
        if not self._away:
            return
        was = hold_interrupts()  # (a Ctrl-C never leaves the token taken)
        try:
            if self._lock.acquire(blocking=False):
                try:
                    self._give_back()
                finally:
                    self._lock.release()
            else:
                self._contended = True
        finally:
            release_interrupts(was)

    def _hand_error_to_reader(self, error: BaseException) -> None:
        """The stream is broken for everyone: the reader thread reports and closes
        as if it had met ``error`` itself."""
        self._caller_error = error
        if not isinstance(error, (EOFError, OSError)):
            self._link.close()  # wake the reader (EOF and socket errors wake it anyway)

    def _take(self, whole_buffer: bool = False) -> None:
        """Read one message and dispatch it in this (a waiting) thread; with
        ``whole_buffer``, every message whole in the buffer (at least one)."""
        was = _thread_role.reader
        _thread_role.reader = True  # while dispatching, this thread is a reader: it must not wait
        try:
            if whole_buffer:
                self._on_messages(self._link, self._recv_buffered() or [self._recv()])
            else:
                self._on_message(self._link, self._recv())
        except BaseException as err:
            raise _CallerReadError(err) from err
        finally:
            _thread_role.reader = was
        if _interrupt_owed is not None:
            _raise_owed_interrupt()

    # -- an idle actor thread reads its caller's next request ------------------

    def hold(self) -> bool:
        """Keep the reader thread off this link until this thread reads it next.

        A worker's actor thread calls it right before it writes a small reply:
        the caller's next request often arrives before the actor thread is
        back in :meth:`read_while_idle` (the write itself wakes the caller),
        and would otherwise wake the reader thread (a thread switch, and
        another to hand the call over). Only a thread that calls
        :meth:`read_while_idle` or :meth:`unhold` soon, without running user
        code, may hold it; it may write one small message meanwhile.

        The holder must not block in a write meanwhile: nobody reads this end,
        and a peer blocked writing to us would never read what we write (a
        deadlock). It writes without waiting (``Link.send_replies`` with
        ``on_block``), and gives the link back before a write that would block.
        """
        if self._caller_error is not None or not self._lock.acquire(blocking=False):
            return False
        if self._gone or self._link.closed:
            self._lock.release()
            return False
        self._takes += 1
        if not self._away:
            try:
                self._take_from_reader()
            except (OSError, ValueError):
                self._lock.release()
                return False
        self._held_by = threading.get_ident()
        return True

    def unhold(self) -> None:
        """Give the link back to its reader thread (after :meth:`hold`, by the same thread)."""
        if self._held_by != threading.get_ident():
            return
        self._held_by = None
        try:
            self._give_back()
        finally:
            self._lock.release()

    def read_while_idle(self, wake_fd: int, has_work: Callable[[], bool]) -> bool | None:
        """Read and dispatch messages in this thread until ``has_work()`` or ``wake_fd`` is readable.

        For a worker's idle actor thread (see ``ActorThread.set_idle_wait``).
        Returns ``None`` at once when this thread cannot read the link now.
        """
        if self._held_by is not None and self._held_by == threading.get_ident():
            self._held_by = None  # the token is ours already, and the reader disarmed
            held = True
        elif self._caller_error is not None or not self._lock.acquire(blocking=False):
            self._contended = True
            return None
        else:
            held = False
        try:
            if self._gone or self._link.closed:
                return None
            poller = self._idle_poller_for(wake_fd)
            if not held:
                self._takes += 1
                if not self._away:
                    self._take_from_reader()
            try:
                self._read_until_work(poller, wake_fd, has_work)
            except _CallerReadError as wrapped:
                self._hand_error_to_reader(wrapped.error)
        finally:
            if self._contended:
                self._give_back()
            self._lock.release()  # else parked: the actor thread's caller often calls again at once
        return True

    def _idle_poller_for(self, wake_fd: int) -> select.poll:
        if self._idle_poller is None or self._idle_poller[0] != wake_fd:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            poller.register(wake_fd, select.POLLIN)
            self._idle_poller = (wake_fd, poller)
        return self._idle_poller[1]

    def _read_until_work(self, poller: select.poll, wake_fd: int, has_work: Callable[[], bool]) -> None:
        while True:
            if not self._buffered():
                ready = poller.poll()
                if len(ready) > 1 or ready[0][0] == wake_fd:  # woken: work came by another way
                    _drain(wake_fd)
                    break
            self._take()
            if has_work():
                break
        while self._buffered():
            self._take(whole_buffer=True)
