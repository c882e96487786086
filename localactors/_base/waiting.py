"""``wait`` and its asynchronous form, over both future types.

Runs in: every process that calls (clients, and workers calling actors).

``wait`` takes task futures and actor futures alike and follows the one
sync/async rule (``blocking.awaits_here``): in the event loop of an
asynchronous client whose futures it waits for, it returns an awaitable. On
an actor thread it keeps serving other actors through the thread's nested
waiter instead of blocking it. ``as_completed`` is in ``completed.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any, NamedTuple

from .._wire.shared_read import SLICE_MS, in_main_thread
from .blocking import blocked, nested_waiter
from .completion import Completion, on_each_done, resolve_waiter
from .futures import ActorFuture, Future
from .nested import futures_in
from .timeouts import Timeout, seconds


class DoneAndNotDone(NamedTuple):
    done: set[Any]
    not_done: set[Any]


ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION = "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"


def completion_of(f: Future | ActorFuture) -> Completion:
    """What ``f``'s state lives in: a task future's shared ``TaskState``, or the actor future itself."""
    return f.state if isinstance(f, Future) else f


def _futures(fs: Any) -> list[Any]:
    """The futures to wait for: one, or those in a (nested) collection; other items are ignored, as dask does."""
    if isinstance(fs, (Future, ActorFuture)):
        return [fs]
    if not isinstance(fs, (list, tuple, set, frozenset, dict)):
        fs = list(fs)
    return futures_in(fs)


def _raise_if_cancelled(done: set[Any]) -> None:
    """As dask (2024.7+): waiting over cancelled futures raises ``CancelledError``, naming them."""
    cancelled = sorted(f.key for f in done if isinstance(f, Future) and f.cancelled())
    if cancelled:
        shown = ", ".join(repr(k) for k in cancelled[:5]) + (" ..." if len(cancelled) > 5 else "")
        raise CancelledError(f"{len(cancelled)} future(s) waited for were cancelled: {shown}")


def wait(fs: Any, timeout: Timeout = None, return_when: str = ALL_COMPLETED) -> Any:
    """Wait for futures (task or actor); return ``(done, not_done)`` sets.

    Raises ``TimeoutError`` if ``return_when`` is not met within ``timeout``
    (seconds, or a string such as ``"100ms"``), and ``CancelledError`` if a
    future waited for was cancelled (as dask.distributed does). In an
    asynchronous client's loop, returns an awaitable.
    """
    fs = _futures(fs)
    limit = seconds(timeout)
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"return_when must be ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION, not {return_when!r}")
    if _any_async(fs):
        return _wait_async(fs, limit, return_when)
    event = threading.Event()
    met = _condition(fs, return_when, event.set)
    if not met.arm():
        comps = met.comps
        deadline = None if limit is None else time.monotonic() + limit
        cursor = 0  # futures before it are done: the nested waiter never rescans them
        while not (event.is_set() and met.check()):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"wait: condition {return_when} not met after {timeout}")
            waiter = nested_waiter()
            if waiter is not None:
                # serve other actors while waiting: wait on any pending future
                while cursor < len(comps) and comps[cursor]._done:
                    cursor += 1
                if cursor == len(comps):
                    cursor = 0  # all done once, but one was reset: rescan from the start
                    if met.check():
                        break
                    time.sleep(0.01)
                    continue
                waiter(comps[cursor], remaining)
            elif event.is_set():
                time.sleep(0.01)  # done once, but a future was reset: poll until check() holds
            else:
                if in_main_thread():  # in slices: a Ctrl-C right before one lands when it ends
                    piece = SLICE_MS / 1000
                    remaining = piece if remaining is None else min(remaining, piece)
                with blocked():
                    event.wait(remaining)
    return met.outcome()


def _any_async(fs: list[Any]) -> bool:
    """Is any of ``fs`` awaited here (``in_async_context``)? Asked once per owner of task futures."""
    owners = set()
    for f in fs:
        if type(f) is Future:
            owner = f._owner
            if owner in owners:
                continue
            owners.add(owner)
        if f.in_async_context():
            return True
    return False


class _condition:  # noqa: N801 -- a small closure holder
    """When ``wait``'s ``return_when`` holds: ``on_done`` is O(1) per future, ``check`` rescans."""

    __slots__ = ("comps", "fs", "left", "lock", "return_when", "wake")

    def __init__(self, fs: list[Any], return_when: str, wake: Callable[[], None]) -> None:
        self.fs = fs
        self.comps: list[Completion] = [f.state if type(f) is Future else f for f in fs]
        self.return_when = return_when
        self.wake = wake
        self.lock = threading.Lock()
        self.left = len(fs)  # done-callbacks still to come

    def arm(self) -> bool:
        """Have ``on_done`` called as each future finishes; whether the condition holds already."""
        if self.check():
            return True
        armed = on_each_done(self.comps, self.on_done)
        with self.lock:  # those done already will call nothing: count them now
            self.left -= len(self.comps) - armed
            last = self.left <= 0
        if last:
            self.wake()
        return False

    def check(self) -> bool:
        done = [c for c in self.comps if c._done]
        if self.return_when == FIRST_COMPLETED:
            return bool(done) or not self.fs
        if self.return_when == FIRST_EXCEPTION and any(c.error is not None for c in done):
            return True
        return len(done) == len(self.fs)

    def on_done(self, comp: Completion) -> None:
        # O(1) per callback: never rescan every future here
        if self.return_when == FIRST_COMPLETED or (self.return_when == FIRST_EXCEPTION and comp.error is not None):
            self.wake()
            return
        with self.lock:
            self.left -= 1
            last = self.left <= 0
        if last:
            self.wake()

    def outcome(self) -> DoneAndNotDone:
        """``(done, not_done)``; ``CancelledError`` if a future waited for was cancelled."""
        done = {f for f, c in zip(self.fs, self.comps) if c._done}
        _raise_if_cancelled(done)
        return DoneAndNotDone(done, set(self.fs) - done)


async def _wait_async(fs: list[Any], timeout: float | None, return_when: str) -> DoneAndNotDone:
    # no task per future: done-callbacks wake one loop future, which is all wait() awaits,
    # so a timeout leaves nothing running behind it, and nothing un-awaited
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(resolve_waiter, waiter)
        except RuntimeError:
            pass  # that loop is closed: nobody waits there any more

    met = _condition(fs, return_when, wake)
    if not met.arm():
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (waiter.done() and met.check()):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"wait: condition {return_when} not met after {timeout} s")
            if waiter.done():
                await asyncio.sleep(0.01)  # done once, but a future was reset: poll until check() holds
                continue
            try:
                await asyncio.wait_for(asyncio.shield(waiter), remaining)
            except asyncio.TimeoutError:  # not the builtin one on 3.10
                pass
    return met.outcome()
