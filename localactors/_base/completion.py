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

from .._wire.shared_read import SLICE_MS, in_main_thread
from . import interrupt
from .blocking import blocked, hooks
from .errors import without_our_frames
from .interrupt import PYTHON_HANDLER, SIGINT, getsignal

logger = logging.getLogger("localactors.futures")

#: the status of a completion (and so of a Future)
PENDING, FINISHED, ERROR, CANCELLED, LOST = "pending", "finished", "error", "cancelled", "lost"


#: guards every completion's state for a few bytecodes at a time (never across a
#: call out): one lock for all of them, so that making a completion -- one per
#: actor call -- allocates no lock at all
_GUARD = threading.Lock()


def _acquire_sliced(lock: Any, timeout: float | None) -> bool:
    """``lock.acquire(timeout=...)`` in slices, for the main thread: a Ctrl-C that came
    right before a slice lands when it ends (``shared_read.SLICE_MS``)."""
    piece = SLICE_MS / 1000
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        left = piece if deadline is None else min(piece, deadline - time.monotonic())
        if lock.acquire(timeout=max(0.0, left)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def on_each_done(comps: list[Completion], fn: Callable[[Any], None]) -> int:
    """Call ``fn(comp)`` when each of ``comps`` that is not done yet is done (as
    ``add_done_callback``, under one lock for all); how many that is."""
    armed = 0
    links = set()
    with _GUARD:
        for comp in comps:
            if not comp._done:
                if comp._callbacks is None:
                    comp._callbacks = [fn]
                else:
                    comp._callbacks.append(fn)
                armed += 1
                if comp._link is not None:
                    links.add(comp._link)
    for link in links:
        link.unpark()  # the reader thread reads them now, not at its next look at a parked link
    return armed


class Completion:
    """Set once with a value or an exception; wakes threads and coroutines.

    A thread that must sleep until it is set sleeps on a lock made for the
    purpose (:attr:`_waiter`, held while unset); most never do, because a
    caller reads its own reply (``wait_done``), so most completions never
    make one. Each waiter that gets the lock hands it on at once, so any
    number of threads may wait.
    """

    __slots__ = ("__weakref__", "_callbacks", "_done", "_keep", "_link", "_waiter", "error", "status", "value")

    _lock = _GUARD  # (a class attribute: what subclasses lock to change the state)

    def __init__(self) -> None:
        self._done = False
        self._waiter: Any = None  # a lock held while unset, made by the first thread to sleep on it
        self._link: Any = None  # the link its reply comes on, when a waiter may read it itself
        self._keep: Any = None  # held until done (see keep_until_done)
        self._callbacks: list[Callable[[Any], None]] | None = None
        self.status = PENDING
        self.value: Any = None
        self.error: BaseException | None = None

    def _finish(self, status: str, value: Any = None, error: BaseException | None = None) -> bool:
        with _GUARD:
            if self._done:
                return False
            self.status, self.value, self.error = status, value, error
            self._done = True
            callbacks, self._callbacks = self._callbacks, None
            keep, self._keep = self._keep, None
            waiter = self._waiter
        if waiter is not None:
            waiter.release()  # wakes the first sleeper, which hands it on
        if callbacks is not None:
            for fn in callbacks:
                self._run_callback(fn)
        del keep  # after the callbacks, outside the lock: dropping a proxy may release its actor
        return True

    def _reopen_locked(self) -> None:
        """Pending again (under ``_lock``, only when done; ``TaskState.reset``)."""
        self._done = False
        self._waiter = None  # sleepers on the old one (released) wake; new ones make another

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
        return self._done

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(future)`` when done (at once, in this thread, if it is)."""
        with _GUARD:
            done = self._done
            if not done:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
        if done:
            self._run_callback(fn)
        else:
            self._unpark()

    def _unpark(self) -> None:
        """This completion will be waited for without reading its link: a link parked by a
        thread that read it goes back to its reader now, not at the reader's next look."""
        if self._link is not None:
            self._link.unpark()

    def keep_until_done(self, obj: object) -> None:
        """Hold a reference to ``obj`` until this completes (an actor call keeps its proxy alive)."""
        with _GUARD:
            if not self._done:
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
        if self._done:
            return
        link = self._link
        if link is None or hooks.any:
            if not self._block(timeout):
                raise TimeoutError(f"not done after {timeout} s")
            return
        # the hot path (a plain thread waiting for a reply): _block_here, inlined
        if getsignal(SIGINT) is PYTHON_HANDLER:
            interrupt.install()  # Ctrl-C-safe reading in the main thread
        if timeout is None:
            if not link.read_until(self, None) and not self._sleep(None):
                raise TimeoutError(f"not done after {timeout} s")
            return
        deadline = time.monotonic() + timeout
        done = link.read_until(self, timeout, deadline)
        if done:
            return
        left = timeout if done is None else max(0.0, deadline - time.monotonic())
        if not self._sleep(left):
            raise TimeoutError(f"not done after {timeout} s")

    def _block(self, timeout: float | None) -> bool:
        waiter = hooks.nested_waiter
        if waiter is not None:
            self._unpark()  # the nested waiter does not read the link itself
            return bool(waiter(self, timeout))
        if hooks.block_hook is not None:
            with blocked():
                return self._block_here(timeout)
        return self._block_here(timeout)

    def _block_here(self, timeout: float | None) -> bool:
        link = self._link
        if link is not None:
            # read the reply in this thread if nobody else is reading the link:
            # it saves waking the reader thread and then being woken by it
            if getsignal(SIGINT) is PYTHON_HANDLER:
                interrupt.install()  # Ctrl-C-safe reading in the main thread
            if timeout is None:
                done = link.read_until(self, None)
            else:
                deadline = time.monotonic() + timeout
                done = link.read_until(self, timeout)
                if done is not None:
                    timeout = max(0.0, deadline - time.monotonic())
            if done:
                return True
        return self._sleep(timeout)

    def _sleep(self, timeout: float | None) -> bool:
        """Sleep until set (or ``timeout``); whether it is set."""
        self._unpark()
        with _GUARD:
            if self._done:
                return True
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = threading.Lock()
                waiter.acquire()
        if in_main_thread():
            got = _acquire_sliced(waiter, timeout)
        elif timeout is None:
            got = waiter.acquire()
        else:
            got = waiter.acquire(timeout=max(0.0, timeout))
        if got:
            waiter.release()  # wake the next sleeper
            return True
        return self._done

    async def await_done(self, timeout: float | None = None) -> None:
        """Wait in a coroutine (woken by the setting thread, through the loop).

        ``TimeoutError`` (the builtin one) after ``timeout`` seconds.
        """
        if self._done:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: Any) -> None:
            loop.call_soon_threadsafe(resolve_waiter, waiter)

        with _GUARD:
            if self._done:
                return
            if self._callbacks is None:
                self._callbacks = [wake]
            else:
                self._callbacks.append(wake)
        self._unpark()
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
