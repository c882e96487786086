"""``wait``, ``as_completed`` and their asynchronous forms, over both future types.

Runs in: every process that calls (clients, and workers calling actors).

Both take task futures and actor futures alike. ``wait`` follows the one
sync/async rule (``blocking.awaits_here``): in the event loop of an
asynchronous client whose futures it waits for, it returns an awaitable;
``as_completed`` blocks in ``for`` and awaits in ``async for``. On an actor
thread both keep serving other actors through the thread's nested waiter
instead of blocking it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Iterator
from queue import Empty, SimpleQueue
from typing import Any, NamedTuple

from .blocking import blocked, nested_waiter
from .completion import Completion, resolve_waiter
from .futures import ActorFuture, Future


class DoneAndNotDone(NamedTuple):
    done: set[Any]
    not_done: set[Any]


ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION = "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"


def _completion(f: Future | ActorFuture) -> Completion:
    return f.state if isinstance(f, Future) else f


def _errored(f: Any) -> bool:
    return f.done() and _completion(f).error is not None


def wait(fs: Any, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> Any:
    """Wait for futures (task or actor); return ``(done, not_done)`` sets.

    Raises ``TimeoutError`` if ``return_when`` is not met within ``timeout``
    (as dask.distributed does). In an asynchronous client's loop, returns an
    awaitable.
    """
    if isinstance(fs, (Future, ActorFuture)):
        fs = [fs]
    fs = list(fs)
    if any(f.in_async_context() for f in fs):
        return _wait_async(fs, timeout, return_when)
    event = threading.Event()
    lock = threading.Lock()
    left = [len(fs)]  # done-callbacks still to come

    def check() -> bool:
        done = [f for f in fs if f.done()]
        if return_when == FIRST_COMPLETED:
            return bool(done) or not fs
        if return_when == FIRST_EXCEPTION and any(_errored(f) for f in done):
            return True
        return len(done) == len(fs)

    def on_done(f: Any) -> None:
        # O(1) per callback: never rescan every future here
        if return_when == FIRST_COMPLETED or (return_when == FIRST_EXCEPTION and _errored(f)):
            event.set()
            return
        with lock:
            left[0] -= 1
            last = left[0] <= 0
        if last:
            event.set()

    if not check():
        for f in fs:
            f.add_done_callback(on_done)
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = 0  # futures before it are done: the nested waiter never rescans them
        while not (event.is_set() and check()):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"wait: condition {return_when} not met after {timeout} s")
            waiter = nested_waiter()
            if waiter is not None:
                # serve other actors while waiting: wait on any pending future
                while cursor < len(fs) and fs[cursor].done():
                    cursor += 1
                if cursor == len(fs):
                    cursor = 0  # all done once, but one was reset: rescan from the start
                    if check():
                        break
                    time.sleep(0.01)
                    continue
                waiter(_completion(fs[cursor]), remaining)
            elif event.is_set():
                time.sleep(0.01)  # done once, but a future was reset: poll until check() holds
            else:
                with blocked():
                    event.wait(remaining)
    done = {f for f in fs if f.done()}
    return DoneAndNotDone(done, set(fs) - done)


async def _wait_async(fs: list[Any], timeout: float | None, return_when: str) -> DoneAndNotDone:
    when = {ALL_COMPLETED: asyncio.ALL_COMPLETED, FIRST_COMPLETED: asyncio.FIRST_COMPLETED}.get(
        return_when, asyncio.FIRST_EXCEPTION
    )
    if fs:
        tasks = [asyncio.ensure_future(_done_of(f)) for f in fs]
        finished, pending = await asyncio.wait(tasks, timeout=timeout, return_when=when)
        for t in pending:
            t.cancel()
        for t in finished:
            t.exception()  # retrieved here: the error itself stays on its future
        if return_when == FIRST_COMPLETED:
            met = bool(finished)
        elif return_when == FIRST_EXCEPTION:
            met = not pending or any(t.exception() is not None for t in finished)
        else:
            met = not pending
        if not met:  # the same contract as the blocking wait
            raise TimeoutError(f"wait: condition {return_when} not met after {timeout} s")
    done = {f for f in fs if f.done()}
    return DoneAndNotDone(done, set(fs) - done)


async def _done_of(f: Any) -> None:
    comp = _completion(f)
    await comp.await_done()
    if comp.error is not None:
        raise comp.error


class as_completed(Iterator[Any]):  # noqa: N801 -- the dask.distributed name
    """Iterate over futures in the order they complete.

    ``with_results=True`` yields ``(future, result)`` pairs (errors raise,
    unless ``raise_errors=False``, when the exception is yielded as result).
    ``add(future)`` adds more while iterating; ``async for`` works too.
    """

    def __init__(
        self,
        futures: Iterable[Any] = (),
        with_results: bool = False,
        raise_errors: bool = True,
        timeout: float | None = None,
    ) -> None:
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []  # ``async for``
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        for f in futures:
            self.add(f)

    def add(self, future: Any) -> None:
        with self._lock:
            self._outstanding += 1
        future.add_done_callback(self._arrived)

    def _arrived(self, future: Any) -> None:
        with self._lock:  # the same lock __anext__ checks the queue under: no lost wake-up
            self._queue.put(future)
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(resolve_waiter, waiter)
            except RuntimeError:
                pass  # that loop is closed: nobody is iterating there any more

    def count(self) -> int:
        with self._lock:
            return self._outstanding

    def is_empty(self) -> bool:
        return self.count() == 0

    def __iter__(self) -> as_completed:
        return self

    def _take(self, block: bool) -> Any:
        remaining = None if self._deadline is None else self._deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(f"as_completed: not all done after {self._timeout} s")
        try:
            with blocked():
                return self._queue.get(block, remaining)
        except Empty:
            raise TimeoutError(f"as_completed: not all done after {self._timeout} s") from None

    def _emit(self, future: Any) -> Any:
        with self._lock:
            self._outstanding -= 1
        if not self.with_results:
            return future
        try:
            return future, future.result()
        except BaseException as err:
            if self.raise_errors:
                raise
            return future, err

    def __next__(self) -> Any:
        if self.is_empty():
            raise StopIteration
        waiter = nested_waiter()
        if waiter is not None:
            while True:
                try:
                    return self._emit(self._queue.get_nowait())
                except Empty:
                    waiter(_Never(), 0.05)  # serve other actors for a while, then look again
        return self._emit(self._take(True))

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        if self.is_empty():
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        while True:
            try:
                future = self._queue.get_nowait()
                break
            except Empty:
                pass
            waiter = loop.create_future()
            with self._lock:
                if not self._queue.empty():
                    continue  # one arrived meanwhile
                self._waiters.append((loop, waiter))
            remaining = None if self._deadline is None else self._deadline - time.monotonic()
            try:
                if remaining is not None and remaining <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:  # not the builtin one on 3.10
                raise TimeoutError(f"as_completed: not all done after {self._timeout} s") from None
            finally:
                with self._lock:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))
        if self.with_results:
            with self._lock:
                self._outstanding -= 1
            try:
                return future, await future
            except BaseException as err:
                if self.raise_errors:
                    raise
                return future, err
        return self._emit(future)


class _Never(Completion):
    """Never set: gives a nested waiter a bounded wait (it polls ``as_completed``'s queue)."""

    __slots__ = ()
