"""Turning user objects into bytes and back.

Runs in: every process.

Plain :mod:`pickle` (protocol 5) first, because it is fast and C-coded;
:mod:`cloudpickle` when plain pickle cannot do it (lambdas, closures, local
classes) or when the pickle refers to ``__main__`` (which a worker may not be
able to import). Anything neither can pickle fails *here*, in the caller,
with a :class:`SerializationError` naming the offending type.

Handles (``Future``, ``Actor``) consult the active :class:`SerialContext`
while being pickled or unpickled: that is how a future in a task's arguments
becomes a dependency, and how an actor handle in flight keeps its actor alive.
"""

from __future__ import annotations

import contextvars
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import SerializationError

_MAIN_MARK = b"__main__"
_current: contextvars.ContextVar[SerialContext | None] = contextvars.ContextVar(
    "localactors_serial_context", default=None
)


class SerialContext:
    """What handles see while they are pickled (sending) or unpickled (receiving)."""

    __slots__ = ("collect_deps", "deps", "foreign_pins", "node", "pins", "resolve", "unpins")

    def __init__(self, node: Any = None, resolve: Any = None, collect_deps: bool = False) -> None:
        self.node = node  # the node that will own handles built while unpickling
        self.resolve = resolve  # key -> value, for dependencies while unpickling
        # pickling a task's arguments: Futures among them are dependencies (arriving as
        # values); anywhere else a Future travels as a Future
        self.collect_deps = collect_deps
        self.deps: dict[str, Any] = {}  # key -> Future, collected while pickling
        self.pins: list[tuple[str, str]] = []  # (token, key) handles sent
        # (owner, token, key): handles whose references another node holds (a worker's
        # client's Futures); pinned through that owner once the pickle succeeded
        self.foreign_pins: list[tuple[Any, str, str]] = []
        self.unpins: list[str] = []  # tokens of handles received


def current_context() -> SerialContext | None:
    """The context of the pickle or unpickle running in this thread, if any."""
    return _current.get()


@contextmanager
def using(ctx: SerialContext) -> Iterator[SerialContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def _describe(obj: object) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def dumps(obj: object, ctx: SerialContext | None = None, what: str = "object") -> bytes:
    """Pickle ``obj``; raise :class:`SerializationError` naming what failed."""
    ctx = ctx if ctx is not None else SerialContext()
    token = _current.set(ctx)  # not ``with using()``: a generator context costs more than the pickle
    try:
        data = _dumps(obj, ctx, what)
    finally:
        _current.reset(token)
    if ctx.foreign_pins:
        for owner, pin, key in ctx.foreign_pins:
            # on the owner's own link: its later decref of ``key`` cannot overtake the pin
            owner.refs.pin([(pin, key)])
            owner.flush_refs()
        ctx.foreign_pins.clear()
    return data


def _dumps(obj: object, ctx: SerialContext, what: str) -> bytes:
    try:
        data = pickle.dumps(obj, protocol=5)
        if _MAIN_MARK not in data:
            return data
    except RecursionError as err:
        raise SerializationError(f"{what} is nested too deeply to pickle ({err})") from None
    except Exception:
        pass
    # second try: start the handle bookkeeping afresh
    ctx.deps.clear()
    ctx.pins.clear()
    ctx.foreign_pins.clear()
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(obj, protocol=5))
    except RecursionError as err:
        raise SerializationError(f"{what} is nested too deeply to pickle ({err})") from None
    except Exception as err:
        if isinstance(err.__cause__, RecursionError):  # cloudpickle rewraps it
            raise SerializationError(f"{what} is nested too deeply to pickle ({err})") from None
        culprit = _find_unpicklable(obj)
        raise SerializationError(
            f"cannot pickle {what}: {culprit} is not picklable ({type(err).__name__}: {err})"
        ) from err


def _find_unpicklable(obj: object, depth: int = 0) -> str:
    """Best effort: the type of the innermost element that will not pickle."""
    import cloudpickle

    children: list[object] = []
    if isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    if depth < 20:
        for child in children:
            try:
                cloudpickle.dumps(child)
            except Exception:
                return _find_unpicklable(child, depth + 1)
    return f"an object of type {_describe(obj)!r}"


def loads(data: bytes | memoryview, ctx: SerialContext | None = None, what: str = "object") -> Any:
    """Unpickle ``data`` under ``ctx``; raise :class:`SerializationError` on failure."""
    token = _current.set(ctx if ctx is not None else SerialContext())
    try:
        return pickle.loads(data)
    except Exception as err:
        raise SerializationError(f"cannot unpickle {what}: {type(err).__name__}: {err}") from err
    finally:
        _current.reset(token)


EMPTY_ARGS = pickle.dumps(((), {}), protocol=5)
