"""Completion, the two future types, ``wait`` and ``as_completed``.

Runs in: every process that calls (clients, and workers calling actors).

A :class:`Completion` is set once, by a reader thread, with a value or an
exception, and wakes blocking waiters, callbacks and awaiting coroutines.
:class:`ActorFuture` *is* a completion: an actor's reply is pushed to it the
moment the call finishes and cached. :class:`Future` (a task's key) shares one
completion per key inside its client; its value stays on the worker and is
fetched by ``result()``.

A thread that runs actor code must not simply block (its actor thread is the
one that would have to run the awaited call); it registers a *nested waiter*
that keeps serving other actors while it waits (see ``_actor_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import ClusterClosedError

if TYPE_CHECKING:
    from ._client import ClientCore

logger = logging.getLogger("localactors.futures")

PENDING, FINISHED, ERROR, CANCELLED, LOST = "pending", "finished", "error", "cancelled", "lost"

#: per-thread hook: an actor thread installs a waiter that keeps it serving
_local = threading.local()


def _blocking_wait(comp: Completion, timeout: float | None) -> bool:
    waiter = getattr(_local, "nested_waiter", None)
    if waiter is not None and not comp._event.is_set():
        return bool(waiter(comp, timeout))
    return comp._event.wait(timeout)


class Completion:
    """Set once with a value or an exception; wakes threads and coroutines."""

    __slots__ = ("__weakref__", "_callbacks", "_event", "_lock", "error", "status", "value")

    def __init__(self) -> None:
        self._event = threading.Event()
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
            self._event.set()
        for fn in callbacks:
            self._run_callback(fn)
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

    def _wait(self, timeout: float | None) -> None:
        if not _blocking_wait(self, timeout):
            raise TimeoutError(f"not done after {timeout} s")

    async def _await_done(self) -> None:
        if self._event.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: Any) -> None:
            loop.call_soon_threadsafe(_resolve_waiter, waiter)

        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(wake)
                pending = True
            else:
                pending = False
        if pending:
            await waiter


def _resolve_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ActorFuture(Completion):
    """The future of one actor call: pushed when the call ends, then cached.

    ``result()`` returns the same object every time; an error re-raises each
    time with its original type and the worker's traceback as ``__cause__``.
    Works with :func:`wait`, :func:`as_completed`, ``client.gather`` and
    ``await``, and may be passed to ``submit`` or another actor's method,
    where it arrives as its value.
    """

    __slots__ = ("_label",)

    def __init__(self, label: str = "") -> None:
        super().__init__()
        self._label = label

    def __repr__(self) -> str:
        return f"<ActorFuture: {self._label} status={self.status}>"

    def result(self, timeout: float | None = None) -> Any:
        """The call's return value; blocks up to ``timeout`` seconds."""
        self._wait(timeout)
        if self.error is not None:
            raise self.error
        return self.value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return self.error

    def cancelled(self) -> bool:
        return False

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._await_done().__await__()
        return self.result()

    def __reduce__(self) -> tuple[Any, ...]:
        # sent to a task or actor: arrive as the value
        return (_identity, (self.result(),))


def _identity(x: Any) -> Any:
    return x


class Future:
    """A task's result, held on a worker until every Future for its key is gone.

    ``result()`` fetches the value from the worker that holds it; an error
    re-raises with its original type and the worker's traceback as cause.
    """

    __slots__ = ("__weakref__", "_core", "_state", "key")

    def __init__(self, key: str, core: ClientCore, state: TaskState) -> None:
        self.key = key
        self._core = core
        self._state = state
        core.refs.incref(key)

    def __del__(self) -> None:
        try:
            self._core.refs.decref(self.key)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Future: {self._state.status}, key: {self.key}>"

    @property
    def status(self) -> str:
        """``pending``, ``finished``, ``error``, ``cancelled`` or ``lost``."""
        return self._state.status

    @property
    def client(self) -> Any:
        return self._core.client

    def done(self) -> bool:
        return self._state.done()

    def cancelled(self) -> bool:
        return self._state.status == CANCELLED

    def cancel(self) -> None:
        self._core.cancel([self])

    def add_done_callback(self, fn: Callable[[Future], None]) -> None:
        self._state.add_done_callback(lambda _: fn(self))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._state._wait(timeout)
        return self._state.error

    def result(self, timeout: float | None = None) -> Any:
        """Wait up to ``timeout`` seconds, then fetch and return the value."""
        if self._core.asynchronous and _in_loop_thread(self._core):
            return self._result_async()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._state._wait(timeout)
        if self._state.error is not None:
            raise self._state.error
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._core.fetch_one(self, remaining)

    async def _result_async(self) -> Any:
        await self._state._await_done()
        if self._state.error is not None:
            raise self._state.error
        return await self._core.afetch_one(self)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result_async().__await__()

    def __reduce__(self) -> tuple[Any, ...]:
        from ._serialize import current_context

        ctx = current_context()
        if ctx is None or ctx.resolve is not None:
            raise TypeError("a Future can only be sent as an argument of submit() or map()")
        ctx.deps[self.key] = self
        return (_dependency, (self.key,))


def _dependency(key: str) -> Any:
    from ._serialize import current_context

    ctx = current_context()
    if ctx is None or ctx.resolve is None:
        raise ClusterClosedError(f"dependency {key!r} unpickled outside a task")
    return ctx.resolve(key)


def _in_loop_thread(core: Any) -> bool:
    loop = core.loop
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class TaskState(Completion):
    """The client's view of one key, shared by every Future for it."""

    __slots__ = ("actor", "address", "worker")

    def __init__(self) -> None:
        super().__init__()
        self.address: str | None = None
        self.worker: str | None = None
        self.actor: Any = None


AnyFuture = Future | ActorFuture


class DoneAndNotDone(NamedTuple):
    done: set[Any]
    not_done: set[Any]


ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION = "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"


def _errored(f: Any) -> bool:
    return f.done() and (f._state.error if isinstance(f, Future) else f.error) is not None


def wait(fs: Any, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> Any:
    """Wait for futures (task or actor); return ``(done, not_done)`` sets.

    Raises ``TimeoutError`` if ``return_when`` is not met within ``timeout``
    (as dask.distributed does). In an asynchronous client's loop, returns an
    awaitable.
    """
    if isinstance(fs, (Future, ActorFuture)):
        fs = [fs]
    fs = list(fs)
    if any(isinstance(f, Future) and f._core.asynchronous and _in_loop_thread(f._core) for f in fs):
        return _wait_async(fs, timeout, return_when)
    event = threading.Event()
    counter = [len([f for f in fs if not f.done()])]
    lock = threading.Lock()

    def check() -> bool:
        done = [f for f in fs if f.done()]
        if return_when == FIRST_COMPLETED:
            return bool(done) or not fs
        if return_when == FIRST_EXCEPTION and any(_errored(f) for f in done):
            return True
        return len(done) == len(fs)

    def on_done(_: Any) -> None:
        with lock:
            counter[0] -= 1
        if check():
            event.set()

    if not check():
        for f in fs:
            f.add_done_callback(on_done)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not check():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"wait: condition {return_when} not met after {timeout} s")
            waiter = getattr(_local, "nested_waiter", None)
            if waiter is not None:
                # serve other actors while waiting: wait on any pending future
                pending = next(f for f in fs if not f.done())
                comp = pending._state if isinstance(pending, Future) else pending
                waiter(comp, remaining)
            else:
                event.wait(remaining)
    done = {f for f in fs if f.done()}
    return DoneAndNotDone(done, set(fs) - done)


async def _wait_async(fs: list[Any], timeout: float | None, return_when: str) -> DoneAndNotDone:
    tasks = [asyncio.ensure_future(_done_of(f)) for f in fs]
    when = {ALL_COMPLETED: asyncio.ALL_COMPLETED, FIRST_COMPLETED: asyncio.FIRST_COMPLETED}.get(
        return_when, asyncio.FIRST_EXCEPTION
    )
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=timeout, return_when=when)
        for t in pending:
            t.cancel()
        if pending and return_when == ALL_COMPLETED:
            raise TimeoutError(f"wait: not all done after {timeout} s")
    done = {f for f in fs if f.done()}
    return DoneAndNotDone(done, set(fs) - done)


async def _done_of(f: Any) -> None:
    await (f._state if isinstance(f, Future) else f)._await_done()
    if return_error := (f._state.error if isinstance(f, Future) else f.error):
        raise return_error


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
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        for f in futures:
            self.add(f)

    def add(self, future: Any) -> None:
        with self._lock:
            self._outstanding += 1
        future.add_done_callback(self._queue.put)

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
        waiter = getattr(_local, "nested_waiter", None)
        if waiter is not None:
            while True:
                try:
                    return self._emit(self._queue.get_nowait())
                except Empty:
                    waiter(_AnyOf(self._queue), 0.05)
        return self._emit(self._take(True))

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        if self.is_empty():
            raise StopAsyncIteration
        while True:
            try:
                future = self._queue.get_nowait()
                break
            except Empty:
                pass
            remaining = None if self._deadline is None else self._deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"as_completed: not all done after {self._timeout} s")
            await asyncio.sleep(0.001)
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


class _AnyOf(Completion):
    """Never set: used only to give a nested waiter a bounded wait."""

    __slots__ = ()

    def __init__(self, _queue: Any) -> None:
        super().__init__()
