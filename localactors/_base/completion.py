"""``Completion``: a value or an exception, set once, waking threads and coroutines.

Runs in: every process that calls (clients, and workers calling actors).

A reader thread sets a completion with the reply it read; whoever waits is
woken: blocking waiters (:meth:`Completion.wait_done`), done-callbacks and
awaiting coroutines (:meth:`Completion.await_done`). Both future types are
built on it (``futures.py``). A blocking wait follows this thread's hooks
(``blocking.py``): an actor thread keeps serving, a task thread lends its
slot, and a waiter may read its own reply off the link it comes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import interrupt
from .blocking import blocked, hooks
from .errors import without_our_frames

logger = logging.getLogger("localactors.futures")

#: the status of a completion (and so of a Future)
PENDING, FINISHED, ERROR, CANCELLED, LOST = "pending", "finished", "error", "cancelled", "lost"


class _Flag:
    """The part of ``threading.Event`` a completion needs, on one plain lock.

    An Event costs a Condition and a lock to make, and a fresh waiter lock on
    every wait; a completion is made for every call, so this one costs a
    single lock, held while unset. Each waiter that gets the lock hands it on
    at once, so any number of threads may wait.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._set = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        # callers serialise set() and clear() (Completion holds its own lock)
        if not self._set:
            self._set = True
            self._lock.release()

    def clear(self) -> None:
        if self._set:
            self._lock.acquire()  # waiters only hold it for an instant
            self._set = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if timeout is None:
            got = self._lock.acquire()
        else:
            got = self._lock.acquire(timeout=max(0.0, timeout))
        if got:
            self._lock.release()  # wake the next waiter
            return True
        return self._set


class Completion:
    """Set once with a value or an exception; wakes threads and coroutines."""

    __slots__ = ("__weakref__", "_callbacks", "_event", "_keep", "_link", "_lock", "error", "status", "value")

    def __init__(self) -> None:
        self._event = _Flag()
        self._link: Any = None  # the link its reply comes on, when a waiter may read it itself
        self._keep: Any = None  # held until done (see keep_until_done)
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Any], None]] = []
        self.status = PENDING
        self.value: Any = None
        self.error: BaseException | None = None

    def _finish(self, status: str, value: Any = None, error: BaseException | None = None) -> bool:
        with self._lock:
            if self._event.is_set():
                return False
            self.status, self.value, self.error = status, value, error
            callbacks, self._callbacks = self._callbacks, []
            keep, self._keep = self._keep, None
            self._event.set()
        for fn in callbacks:
            self._run_callback(fn)
        del keep  # after the callbacks, outside the lock: dropping a proxy may release its actor
        return True

    def set_result(self, value: Any) -> bool:
        return self._finish(FINISHED, value)

    def set_exception(self, error: BaseException, status: str = ERROR) -> bool:
        return self._finish(status, None, error)

    def _run_callback(self, fn: Callable[[Any], None]) -> None:
        try:
            fn(self._subject())
        except Exception:
            logger.exception("done-callback %r raised", fn)

    def _subject(self) -> Any:
        return self

    def done(self) -> bool:
        """True once the value or the error has arrived."""
        return self._event.is_set()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(future)`` when done (at once, in this thread, if it is)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        self._run_callback(fn)

    def keep_until_done(self, obj: object) -> None:
        """Hold a reference to ``obj`` until this completes (an actor call keeps its proxy alive)."""
        with self._lock:
            if not self._event.is_set():
                self._keep = obj

    def outcome(self) -> Any:
        """The value, or raise the error; only once done.

        A remote error is raised without the frames it gathered when raised
        before: asking twice does not show our machinery twice.
        """
        if self.error is not None:
            raise without_our_frames(self.error)
        return self.value

    def reply_comes_on(self, link: Any) -> None:
        """The reply will arrive on ``link``: a thread waiting for it may read the link itself."""
        self._link = link

    def wait_done(self, timeout: float | None) -> None:
        """Block until done; ``TimeoutError`` after ``timeout`` seconds."""
        if not self._event.is_set() and not self._block(timeout):
            raise TimeoutError(f"not done after {timeout} s")


    def _block(self, timeout: float | None) -> bool:
        waiter = getattr(hooks, "nested_waiter", None)  # blocking.nested_waiter(), inlined: the hot path
        if waiter is not None:
            return bool(waiter(self, timeout))
        with blocked():
            link = self._link
            if link is not None:
                # read the reply in this thread if nobody else is reading the link:
                # it saves waking the reader thread and then being woken by it
                deadline = None if timeout is None else time.monotonic() + timeout
                done = interrupt.read_until(link, self, timeout)  # Ctrl-C-safe in the main thread
                if done:
                    return True
                if done is not None and deadline is not None:
                    timeout = max(0.0, deadline - time.monotonic())
            return self._event.wait(timeout)

    async def await_done(self, timeout: float | None = None) -> None:
        """Wait in a coroutine (woken by the setting thread, through the loop).

        ``TimeoutError`` (the builtin one) after ``timeout`` seconds.
        """
        if self._event.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: Any) -> None:
            loop.call_soon_threadsafe(resolve_waiter, waiter)

        with self._lock:
            if self._event.is_set():
                return
            self._callbacks.append(wake)
        if timeout is None:
            await waiter
            return
        try:
            await asyncio.wait_for(waiter, max(0.0, timeout))
        except asyncio.TimeoutError:  # not the builtin one on 3.10
            raise TimeoutError(f"not done after {timeout} s") from None


def resolve_waiter(waiter: asyncio.Future[None]) -> None:
    """Wake a coroutine waiting on ``waiter`` (run in its loop, once)."""
    if not waiter.done():
        waiter.set_result(None)
