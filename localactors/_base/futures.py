"""The two future types: ``ActorFuture`` (a call's reply) and ``Future`` (a task's key).

Runs in: every process that calls (clients, and workers calling actors).

:class:`ActorFuture` *is* a :class:`~.completion.Completion`: an actor's
reply is pushed to it the moment the call finishes, and cached.
:class:`Future` (a task's key) shares one :class:`TaskState` per key inside
its client; its value stays on the worker and is fetched by ``result()``.
A Future knows its client only as a :class:`FutureOwner`, the few members it
uses. Their blocking methods follow the one sync/async rule
(:func:`~.blocking.awaits_here`): in the owner's event loop they return
awaitables. ``wait``/``as_completed`` live in ``waiting.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

from . import html
from .blocking import awaits_here
from .completion import CANCELLED, ERROR, FINISHED, LOST, PENDING, Completion
from .context import future_owner
from .errors import ClusterClosedError, remote_traceback, without_our_frames
from .serialize import current_context
from .timeouts import Timeout, seconds

__all__ = [
    "CANCELLED",
    "ERROR",
    "FINISHED",
    "LOST",
    "PENDING",
    "ActorFuture",
    "Completion",
    "Future",
    "FutureOwner",
    "TaskState",
]

class ActorFuture(Completion):
    """The future of one actor call: pushed when the call ends, then cached.

    ``result()`` returns the same object every time; an error re-raises each
    time with its original type and the worker's traceback as ``__cause__``.
    Works with :func:`wait`, :func:`as_completed`, ``client.gather`` and
    ``await``, and may be passed to ``submit`` or another actor's method,
    where it arrives as its value.
    """

    __slots__ = ("_loop", "label")

    def __init__(self, label: str = "", loop: asyncio.AbstractEventLoop | None = None) -> None:
        # Completion.__init__, inlined: one is made per call
        self._done = False
        self._waiter = self._link = self._keep = self._callbacks = self.value = self.error = None
        self.status = PENDING
        self.label = label  # ``Class.method``: how progress() groups it
        self._loop = loop  # the event loop of the async code that made the call, if any

    def __repr__(self) -> str:
        return f"<ActorFuture: {self.label} status={self.status}>"

    def _repr_html_(self) -> str:
        return html.actor_future_html(self)

    def in_async_context(self) -> bool:
        """Does a blocking method return an awaitable here (the one rule, for this call's loop)?"""
        return self._loop is not None and awaits_here(self._loop)

    def result(self, timeout: Timeout = None) -> Any:
        """The call's return value; blocks up to ``timeout`` (seconds or ``"1s"``; awaitable in its loop)."""
        if timeout is not None and type(timeout) is not float:  # (None or a float: nothing to parse)
            timeout = float(timeout) if type(timeout) is int else seconds(timeout)
        if self._loop is not None and awaits_here(self._loop):
            return self._result_async(timeout)
        if not self._done:
            self.wait_done(timeout)
        if self.error is not None:  # self.outcome(), inlined: the hot path
            raise without_our_frames(self.error)
        return self.value

    async def _result_async(self, timeout: float | None) -> Any:
        await self.await_done(timeout)
        return self.outcome()

    def exception(self, timeout: Timeout = None) -> Any:
        """The call's exception, or ``None``; blocks up to ``timeout`` seconds (awaitable in its loop)."""
        if timeout is not None and type(timeout) is not float:
            timeout = float(timeout) if type(timeout) is int else seconds(timeout)
        if self.in_async_context():
            return self._exception_async(timeout)
        self.wait_done(timeout)
        return self.error

    async def _exception_async(self, timeout: float | None) -> BaseException | None:
        await self.await_done(timeout)
        return self.error

    def cancelled(self) -> bool:
        return False

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self.await_done().__await__()
        return self.outcome()

    def __reduce__(self) -> tuple[Any, ...]:
        # sent to a task or actor: arrive as the value
        self.wait_done(None)
        return (_identity, (self.outcome(),))


def _identity(x: Any) -> Any:
    return x


class KeyRefs(Protocol):
    """The reference counts a Future keeps on its key (``_caller/refs.RefTracker``)."""

    def incref(self, key: str) -> None: ...
    def decref(self, key: str) -> None: ...
    def unpin(self, tokens: list[str]) -> None: ...


class FutureOwner(Protocol):
    """What a :class:`Future` uses of the client that owns it (``_client/core.ClientCore``)."""

    @property
    def refs(self) -> KeyRefs: ...
    @property
    def client(self) -> Any: ...
    def in_async_context(self) -> bool: ...
    def future(self, key: str) -> Future: ...
    def fetch(self, fut: Future, timeout: float | None) -> Any: ...
    def afetch(self, fut: Future, timeout: float | None) -> Awaitable[Any]: ...
    def cancel(
        self, futures: list[Future], timeout: float | None = ..., force: bool = ..., reason: str | None = ...
    ) -> Any: ...
    def retry(self, futures: list[Future]) -> Any: ...


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
                if self.status != CANCELLED:  # cancelled once is enough: the first reason stays
                    self.status, self.value, self.error = CANCELLED, None, error

    def lose(self, error: BaseException) -> None:
        """Lost, even if it had finished: its data is gone with its worker."""
        if not self.set_exception(error, LOST):
            with self._lock:
                if self.status != CANCELLED:  # this client let go of it: it stays cancelled
                    self.status, self.error = LOST, error

    def again(self) -> None:
        """Pending again, whatever it was: the task runs again (``Future.retry``)."""
        with self._lock:
            if self._done:
                self._reopen_locked()
                self.status, self.value, self.error = PENDING, None, None

    def reset(self) -> None:
        """Pending again: the key's data died with its worker and is being recomputed."""
        with self._lock:
            if not self._done or self.status == CANCELLED:
                return  # a cancelled key stays cancelled for this client (it let go of it)
            self._reopen_locked()
            self.status, self.value, self.error = PENDING, None, None
            self.address = self.worker = None


class Future:
    """A task's result, held on a worker until every Future for its key is gone.

    ``result()`` fetches the value from the worker that holds it; an error
    re-raises with its original type and the worker's traceback as cause.
    """

    __slots__ = ("__weakref__", "_owner", "_released", "key", "state")

    def __init__(self, key: str, owner: FutureOwner, state: TaskState) -> None:
        self.key = key
        self._owner = owner
        self.state = state  # shared by every Future for this key in this client
        self._released = False
        owner.refs.incref(key)

    def __del__(self) -> None:
        if self._released:
            return
        try:
            self._owner.refs.decref(self.key)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Future: {self.state.status}, key: {self.key}>"

    def _repr_html_(self) -> str:
        return html.future_html(self.key, self.status, self.state.error)

    @property
    def status(self) -> str:
        """``pending``, ``finished``, ``error``, ``cancelled`` or ``lost``."""
        return self.state.status

    @property
    def client(self) -> Any:
        return self._owner.client

    def in_async_context(self) -> bool:
        """Does a blocking method return an awaitable here (the one rule, for this Future's client)?"""
        return self._owner.in_async_context()

    def done(self) -> bool:
        return self.state.done()

    def cancelled(self) -> bool:
        return self.state.status == CANCELLED

    def cancel(self, reason: str | None = None, msg: str | None = None, **kwargs: Any) -> Any:
        """Cancel this client's claim on the key (see ``Client.cancel``); awaitable in its client's loop.

        ``reason`` (dask's ``msg`` too) goes into the ``CancelledError``; ``force=True``
        cancels the key for every client.
        """
        force = bool(kwargs.pop("force", False))
        timeout = seconds(kwargs.pop("timeout", 30.0))
        if kwargs:
            raise TypeError(f"Future.cancel() got unexpected keywords {sorted(kwargs)}")
        return self._owner.cancel([self], timeout, force, reason or msg)

    def retry(self, **kwargs: Any) -> Any:
        """Run this failed (or cancelled) task again (see ``Client.retry``); awaitable in its client's loop."""
        return self._owner.retry([self])

    def release(self) -> None:
        """Let go of this future's hold on its key now, rather than when it is garbage-collected.

        Once released, the future must not be used; the cluster forgets the key
        when no other future or task holds it (as dask's ``Future.release``).
        """
        if not self._released:
            self._released = True
            self._owner.refs.decref(self.key)

    def add_done_callback(self, fn: Callable[[Future], None]) -> None:
        self.state.add_done_callback(lambda _: fn(self))

    def exception(self, timeout: Timeout = None) -> Any:
        """The task's exception, or ``None``; blocks up to ``timeout`` seconds (awaitable in its client's loop)."""
        timeout = seconds(timeout)
        if self._owner.in_async_context():
            return self._exception_async(timeout)
        self.state.wait_done(timeout)
        return self.state.error

    async def _exception_async(self, timeout: float | None) -> BaseException | None:
        await self.state.await_done(timeout)
        return self.state.error

    def traceback(self, timeout: Timeout = None) -> Any:
        """The traceback of the task's error in the worker (a ``types.TracebackType``), or ``None``.

        Built from the frames the worker reported, as dask's (which tblib
        rebuilds) so ``traceback.extract_tb`` and debuggers can read it.
        Blocks up to ``timeout`` seconds (awaitable in its client's loop).
        """
        timeout = seconds(timeout)
        if self._owner.in_async_context():
            return self._traceback_async(timeout)
        self.state.wait_done(timeout)
        return remote_traceback(self.state.error)

    async def _traceback_async(self, timeout: float | None) -> Any:
        await self.state.await_done(timeout)
        return remote_traceback(self.state.error)

    def result(self, timeout: Timeout = None) -> Any:
        """Wait up to ``timeout`` (seconds or ``"1s"``), then fetch the value (awaitable in its client's loop)."""
        if timeout is not None:
            timeout = seconds(timeout)
        if self._owner.in_async_context():
            return self._owner.afetch(self, timeout)
        return self._owner.fetch(self, timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._owner.afetch(self, None).__await__()

    def __reduce__(self) -> tuple[Any, ...]:
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
        if ctx.node is self._owner:
            ctx.pins.append((token, self.key))  # sent by the sender just before the message
        else:
            # a worker sending its client's Future: the pin must travel on the link
            # that carries this Future's own decref, or the decref could overtake it
            ctx.foreign_pins.append((self._owner, token, self.key))
        return (_future_handle, (self.key, token))


def _future_handle(key: str, token: str) -> Future:
    ctx = current_context()
    owner: FutureOwner | None = future_owner(ctx.node if ctx is not None else None)
    if owner is None:
        raise ClusterClosedError(f"no client in this process to hold a Future for {key!r}")
    fut = owner.future(key)
    if ctx is not None and owner is ctx.node:
        ctx.unpins.append(token)  # released once the whole message is unpickled
    else:
        owner.refs.unpin([token])  # after the incref above, on the same link
    return fut


def _dependency(key: str) -> Any:
    ctx = current_context()
    if ctx is None or ctx.resolve is None:
        raise ClusterClosedError(f"dependency {key!r} unpickled outside a task")
    return ctx.resolve(key)
