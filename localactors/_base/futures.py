"""Completion and the two future types; ``wait``/``as_completed`` live in ``_waiting``.

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
import uuid
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from . import interrupt as _interrupt
from .errors import ClusterClosedError

if TYPE_CHECKING:
    from .._client.core import ClientCore

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
            done = _interrupt.read_until(link, comp, timeout)  # Ctrl-C-safe in the main thread
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

    __slots__ = ("__weakref__", "_callbacks", "_event", "_keep", "_link", "_lock", "error", "status", "value")

    def __init__(self) -> None:
        self._event = _Flag()
        self._link: Any = None  # the link its reply comes on, when a waiter may read it itself
        self._keep: Any = None  # held until done (an actor call keeps its proxy, so the actor, alive)
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

    def _repr_html_(self) -> str:
        from .._client.html import actor_future_html

        return actor_future_html(self)

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

    def _repr_html_(self) -> str:
        from .._client.html import future_html

        return future_html(self)

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
        from .serialize import current_context

        ctx = current_context()
        if ctx is None or ctx.resolve is not None:
            raise TypeError(
                "a Future can only be sent as an argument of submit() or map(), or by localactors"
                " inside a task's or actor method's result or scattered data"
            )
        if ctx.collect_deps:  # a task's arguments: it runs on the value
            ctx.deps[self.key] = self
            return (_dependency, (self.key,))
        # anywhere else (a task's or actor method's result, scattered data) it arrives
        # as a Future: pinned in flight, as actor handles are, so the key outlives
        # the sender's reference until the receiver holds its own
        token = uuid.uuid4().hex
        if ctx.node is self._core:
            ctx.pins.append((token, self.key))  # sent by the sender just before the message
        else:
            # a worker sending its client's Future: the pin must travel on the link
            # that carries this Future's own decref, or the decref could overtake it
            ctx.foreign_pins.append((self._core, token, self.key))
        return (_future_handle, (self.key, token))


def _future_handle(key: str, token: str) -> Future:
    from .context import default_node
    from .serialize import current_context

    ctx = current_context()
    node = ctx.node if ctx is not None and ctx.node is not None else default_node()
    worker = getattr(node, "worker", None)
    # a worker's Futures belong to its own client (get_client() there)
    core = worker.get_client().core if worker is not None else node
    if core is None or not hasattr(core, "future"):
        raise ClusterClosedError(f"no client in this process to hold a Future for {key!r}")
    fut: Future = core.future(key)
    if ctx is not None and core is ctx.node:
        ctx.unpins.append(token)  # released once the whole message is unpickled
    else:
        core.refs.unpin([token])  # after the incref above, on the same link
    return fut


def _dependency(key: str) -> Any:
    from .serialize import current_context

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
