"""``as_completed``: futures (task or actor) in the order they complete, blocking or async.

Runs in: every process that calls (clients, and workers calling actors).

It blocks in ``for`` and awaits in ``async for`` (``wait``, beside it in
``waiting.py``, follows the one sync/async rule instead). On an actor thread
it keeps serving other actors through the thread's nested waiter.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError
from queue import Empty, SimpleQueue
from typing import Any

from .blocking import blocked, nested_waiter
from .completion import Completion, resolve_waiter
from .errors import remote_traceback, without_our_frames
from .futures import ActorFuture, Future
from .timeouts import Timeout, seconds
from .waiting import completion_of


class as_completed(Iterator[Any]):  # noqa: N801 -- the dask.distributed name
    """Iterate over futures (task or actor) in the order they complete, as dask.distributed's.

    ``add(future)`` and ``update(futures)`` add more while iterating (the
    same future twice is yielded twice); anything but a future is a
    ``TypeError``. ``next_batch(block=)`` and ``batches()`` take what has
    finished at once; ``count()`` is the number still to be yielded;
    ``clear()`` drops them all. ``async for`` works too.

    ``with_results=True`` yields ``(future, result)`` pairs: a failed
    future's error is raised, unless ``raise_errors=False``, when its result
    is ``(type, exception, traceback)`` as in dask; a cancelled future is
    yielded with its ``CancelledError`` as result, never raised. ``timeout``
    (seconds or ``"1s"``) counts from creation: ``TimeoutError`` once it has
    passed with nothing finished left to yield. ``loop`` is dask's second
    parameter, kept so positional calls mean the same; it is not used (the
    loop of ``async for`` is whichever runs it).
    """

    def __init__(
        self,
        futures: Iterable[Any] | None = None,
        loop: Any = None,
        with_results: bool = False,
        raise_errors: bool = True,
        *,
        timeout: Timeout = None,
    ) -> None:
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._pending: dict[Any, int] = {}  # future -> times added and not arrived yet
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []  # ``async for``
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._timeout = seconds(timeout)
        self._deadline = None if self._timeout is None else time.monotonic() + self._timeout
        self._generation = 0  # bumped by clear(): arrivals for what was cleared are dropped
        if futures is not None:
            self.update(futures)

    def __repr__(self) -> str:
        return f"<as_completed: waiting={len(self._pending)} done={self._queue.qsize()}>"

    def update(self, futures: Iterable[Any]) -> None:
        """Add futures: each is yielded once it finishes."""
        futures = list(futures)
        for f in futures:
            if not isinstance(f, (Future, ActorFuture)):
                raise TypeError(f"as_completed takes futures, not {type(f).__name__}: {f!r}")
        for f in futures:
            with self._lock:
                self._pending[f] = self._pending.get(f, 0) + 1
                generation = self._generation
            f.add_done_callback(lambda fut, g=generation: self._arrived(fut, g))

    def add(self, future: Any) -> None:
        """Add one future: it is yielded once it finishes."""
        self.update((future,))

    def _arrived(self, future: Any, generation: int) -> None:
        with self._lock:  # the same lock __anext__ checks the queue under: no lost wake-up
            if generation != self._generation or future not in self._pending:
                return  # cleared meanwhile
            self._pending[future] -= 1
            if not self._pending[future]:
                del self._pending[future]
            self._queue.put(future)
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    def count(self) -> int:
        """How many futures are still to be yielded: running, or finished and not yielded yet."""
        with self._lock:
            return len(self._pending) + self._queue.qsize()

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        """Whether a finished future waits to be yielded."""
        return not self._queue.empty()

    def clear(self) -> None:
        """Drop every future: running ones and finished ones not yielded yet."""
        with self._lock:
            self._generation += 1
            self._pending.clear()
            while True:
                try:
                    self._queue.get_nowait()
                except Empty:
                    break
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    def __iter__(self) -> as_completed:
        return self

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"as_completed: not all done after {self._timeout} s")

    def _emit(self, future: Any) -> Any:
        if not self.with_results:
            return future
        outcome = _settled(future)
        if outcome is not None:
            return self._with_error(future, outcome)
        return future, future.result()

    def _with_error(self, future: Any, error: BaseException) -> Any:
        if isinstance(error, CancelledError):
            return future, error  # a cancelled future is not an error: yielded, never raised
        if self.raise_errors:
            raise without_our_frames(error)
        return future, (type(error), error, remote_traceback(error))

    def __next__(self) -> Any:
        while True:
            try:
                return self._emit(self._queue.get_nowait())
            except Empty:
                pass
            if self._expired():
                raise self._timed_out()
            if self.is_empty():
                raise StopIteration
            waiter = nested_waiter()
            if waiter is not None:
                waiter(_Never(), 0.05)  # serve other actors for a while, then look again
                continue
            remaining = None if self._deadline is None else self._deadline - time.monotonic()
            try:
                with blocked():
                    # bounded: clear() from another thread must not leave us waiting forever
                    item = self._queue.get(True, _POLL if remaining is None else min(remaining, _POLL))
            except Empty:
                continue
            return self._emit(item)

    next = __next__  # dask's name

    def next_batch(self, block: bool = True) -> list[Any]:
        """The futures finished now (at least one, waiting for it, if ``block``); ``[]`` if none and not ``block``."""
        batch = [next(self)] if block else []
        while True:
            try:
                item = self._queue.get_nowait()
            except Empty:
                return batch
            batch.append(self._emit(item))

    def batches(self) -> Iterator[list[Any]]:
        """Yield lists of the futures finished since the last one, until all are yielded."""
        while True:
            try:
                yield self.next_batch(block=True)
            except StopIteration:
                return

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            try:
                future = self._queue.get_nowait()
                break
            except Empty:
                pass
            if self._expired():
                raise self._timed_out()
            if self.is_empty():
                raise StopAsyncIteration
            waiter = loop.create_future()
            with self._lock:
                if not self._queue.empty():
                    continue  # one arrived meanwhile
                self._waiters.append((loop, waiter))
            remaining = None if self._deadline is None else self._deadline - time.monotonic()
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:  # not the builtin one on 3.10
                raise self._timed_out() from None
            finally:
                with self._lock:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))
        if not self.with_results:
            return future
        outcome = _settled(future)
        if outcome is not None:
            return self._with_error(future, outcome)
        return future, await future


#: how long a blocked ``as_completed`` waits before it looks again (for ``clear()`` from another thread)
_POLL = 0.5


def _settled(future: Any) -> BaseException | None:
    """A done future's error (its ``CancelledError`` if cancelled), or ``None`` if it has a value."""
    return completion_of(future).error


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, waiter in waiters:
        try:
            loop.call_soon_threadsafe(resolve_waiter, waiter)
        except RuntimeError:
            pass  # that loop is closed: nobody is iterating there any more


class _Never(Completion):
    """Never set: gives a nested waiter a bounded wait (it polls ``as_completed``'s queue)."""

    __slots__ = ()
