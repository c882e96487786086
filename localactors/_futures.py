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
from contextlib import AbstractContextManager, nullcontext
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import ClusterClosedError

if TYPE_CHECKING:
    from ._client import ClientCore

logger = logging.getLogger("localactors.futures")

PENDING, FINISHED, ERROR, CANCELLED, LOST = "pending", "finished", "error", "cancelled", "lost"

#: per-thread hooks: an actor thread installs a waiter that keeps it serving;
#: a task thread installs ``block_hook``, which lends its slot while it waits
_local = threading.local()


def set_block_hook(hook: Callable[[], AbstractContextManager[Any]] | None) -> None:
    """Have every blocking wait of this thread run inside ``hook()`` (see ``_taskpool``)."""
    _local.block_hook = hook


def _blocked() -> AbstractContextManager[Any]:
    hook = getattr(_local, "block_hook", None)
    return hook() if hook is not None else nullcontext()


def _blocking_wait(comp: Completion, timeout: float | None) -> bool:
    if comp._event.is_set():
        return True
    waiter = getattr(_local, "nested_waiter", None)
    if waiter is not None:
        return bool(waiter(comp, timeout))
    with _blocked():
        link = comp._link
        if link is not None:
            # read the reply in this thread if nobody else is reading the link:
            # it saves waking the reader thread and then being woken by it
            deadline = None if timeout is None else time.monotonic() + timeout
            done = link.read_until(comp, timeout)
            if done:
                return True
            if done is not None and deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
        return comp._event.wait(timeout)


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

    __slots__ = ("__weakref__", "_callbacks", "_event", "_link", "_lock", "error", "status", "value")

    def __init__(self) -> None:
        self._event = _Flag()
        self._link: Any = None  # the link its reply comes on, when a waiter may read it itself
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

    __slots__ = ("_label", "_loop")

    def __init__(self, label: str = "", loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__()
        self._label = label
        self._loop = loop  # the event loop of the async code that made the call, if any

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

    def cancel(self) -> Any:
        """Cancel this key (see ``Client.cancel``); awaitable in async code."""
        return self._core.cancel([self])

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

    def cancel(self, error: BaseException) -> None:
        """Cancelled, even if it had finished (its data is being released)."""
        if not self.set_exception(error, CANCELLED):
            with self._lock:
                self.status, self.value, self.error = CANCELLED, None, error

    def reset(self) -> None:
        """Pending again: the key's data died with its worker and is being recomputed."""
        with self._lock:
            if not self._event.is_set():
                return
            self._event.clear()
            self.status, self.value, self.error = PENDING, None, None
            self.address = self.worker = None


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
    if any(_awaitable_here(f) for f in fs):
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
        # O(1) per callback: rescanning every future here made waiting on n futures O(n^2)
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
            waiter = getattr(_local, "nested_waiter", None)
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
                pending = fs[cursor]
                comp = pending._state if isinstance(pending, Future) else pending
                waiter(comp, remaining)
            elif event.is_set():
                time.sleep(0.01)  # done once, but a future was reset: poll until check() holds
            else:
                with _blocked():
                    event.wait(remaining)
    done = {f for f in fs if f.done()}
    return DoneAndNotDone(done, set(fs) - done)


def _awaitable_here(f: Any) -> bool:
    """Was ``f`` made by async code running on this thread's loop?"""
    if isinstance(f, Future):
        return bool(f._core.asynchronous) and _in_loop_thread(f._core)
    if isinstance(f, ActorFuture) and f._loop is not None:
        try:
            return asyncio.get_running_loop() is f._loop
        except RuntimeError:
            return False
    return False


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
                loop.call_soon_threadsafe(_resolve_waiter, waiter)
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
            with _blocked():
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


class _AnyOf(Completion):
    """Never set: used only to give a nested waiter a bounded wait."""

    __slots__ = ()

    def __init__(self, _queue: Any) -> None:
        super().__init__()
