"""Turning user objects into bytes and back.

Runs in: every process.

Plain :mod:`pickle` (protocol 5) first, because it is fast and C-coded;
:mod:`cloudpickle` when plain pickle cannot do it (lambdas, closures, local
classes) or when the pickle refers to ``__main__`` (which a worker may not be
able to import). Anything neither can pickle fails *here*, in the caller,
with a :class:`SerializationError` naming the offending type.

With ``shared=True`` (a payload with one receiver: an actor call's arguments
or result, a data reply), buffers of 1 MiB and more leave the pickle: NumPy
arrays (and anything else pickle protocol 5 hands out as a buffer), large
``bytes`` and ``bytearray`` and any ``memoryview``. They are written once into
a shared-memory segment (:mod:`~localactors._wire.shm`) and the payload is a
:class:`~localactors._wire.shm.Shared` naming it; :func:`loads` builds NumPy
arrays and ``memoryview`` objects on the receiver's mapping without a copy,
and copies once into the ``bytes`` or ``bytearray`` it must own (a large
``bytes`` chunk by chunk, while the sender is still writing it:
:mod:`~localactors._wire.shm_stream`; a sender that died or failed part-way
makes it raise :class:`SerializationError`). Payloads that
go through the manager (task specs, scattered data) stay plain ``bytes``: the
manager keeps them for retries, and a pure task's key hashes them.

Handles (``Future``, ``Actor``) consult the active :class:`SerialContext`
while being pickled or unpickled: that is how a future in a task's arguments
becomes a dependency, and how an actor handle in flight keeps its actor alive.
"""

from __future__ import annotations

import contextvars
import io
import pickle
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .._wire import shm
from .._wire.shm import THRESHOLD, Shared
from . import code_source
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


def dumps(obj: object, ctx: SerialContext | None = None, what: str = "object", shared: bool = False) -> bytes:
    """Pickle ``obj``; raise :class:`SerializationError` naming what failed.

    ``shared``: the payload goes to one receiver, straight (not through the
    manager): its large buffers may travel in shared memory.
    """
    ctx = ctx if ctx is not None else SerialContext()
    token = _current.set(ctx)  # not ``with using()``: a generator context costs more than the pickle
    try:
        prefix = _prefix(ctx.node) if shared else None
        data = _dumps(obj, ctx, what) if prefix is None else _dumps_shared(obj, ctx, what, prefix)
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
    return _cloudpickle(obj, what)


_prefixes: dict[bytes, str] = {}


def _prefix(node: Any) -> str | None:
    """The shared-memory prefix of ``node``'s cluster (None: no segments from here)."""
    authkey = getattr(node, "authkey", None)
    if type(authkey) is not bytes or not authkey:
        return None
    prefix = _prefixes.get(authkey)
    if prefix is None:
        prefix = _prefixes[authkey] = shm.prefix_for(authkey)
        shm.trust(authkey)
    return prefix


def _has_big(obj: Any, depth: int = 0) -> bool:
    """A quick look (three levels of tuples, lists and dicts) for large bytes or any memoryview."""
    t = type(obj)
    if t is bytes or t is bytearray:
        return len(obj) >= THRESHOLD
    if t is memoryview:
        return True
    if depth >= 3:
        return False
    if t is dict:
        obj = obj.values()
    elif t is not tuple and t is not list:
        return False
    for item in obj:
        t = type(item)
        if t is bytes or t is bytearray:
            if len(item) >= THRESHOLD:
                return True
        elif (t is tuple or t is list or t is dict or t is memoryview) and _has_big(item, depth + 1):
            return True
    return False


class _OutOfBand(pickle.Pickler):
    """A pickler that leaves large bytes, bytearrays and memoryviews out of the stream."""

    def __init__(self, file: Any, kinds: list[int], buffers: list[Any]) -> None:
        super().__init__(file, protocol=5, buffer_callback=_collector(kinds, buffers))
        self.kinds = kinds
        self.buffers = buffers
        self.seen: dict[int, int] = {}
        self.used = False

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is bytes or t is bytearray:
            if len(obj) < THRESHOLD:
                return None
            kind = shm.BYTES if t is bytes else shm.BYTEARRAY
        elif t is memoryview:
            if not obj.c_contiguous:
                return None  # plain pickle will say it cannot
            if obj.nbytes < THRESHOLD:
                self.used = True
                return ("v", obj.tobytes(), obj.format, obj.shape)
            kind = shm.VIEW
        else:
            return None
        self.used = True
        index = self.seen.get(id(obj))
        if index is None:
            index = self.seen[id(obj)] = len(self.buffers)
            self.kinds.append(kind)
            self.buffers.append(obj)
        return index


def _collector(kinds: list[int], buffers: list[Any]) -> Callable[[pickle.PickleBuffer], bool]:
    def collect(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes < THRESHOLD:
            return True  # small: in band
        kinds.append(shm.PICKLE_BUFFER)
        buffers.append(buf)
        return False

    return collect


def _dumps_shared(obj: object, ctx: SerialContext, what: str, prefix: str) -> bytes:
    kinds: list[int] = []
    buffers: list[Any] = []
    t = type(obj)
    persistent = False
    data = b""
    if (t is tuple or t is list or t is dict or t is bytes or t is bytearray or t is memoryview) and _has_big(obj):
        persistent = True
    else:
        try:
            data = pickle.dumps(obj, protocol=5, buffer_callback=_collector(kinds, buffers))
            if _MAIN_MARK in data:
                data = b""
        except RecursionError as err:
            raise SerializationError(f"{what} is nested too deeply to pickle ({err})") from None
        except Exception:  # (a memoryview, or something only cloudpickle takes)
            persistent = True
    if persistent:
        _restart(ctx, kinds, buffers)
        file = io.BytesIO()
        pickler = _OutOfBand(file, kinds, buffers)
        try:
            pickler.dump(obj)
            data = file.getvalue()
            if _MAIN_MARK in data:
                data = b""
        except RecursionError as err:
            raise SerializationError(f"{what} is nested too deeply to pickle ({err})") from None
        except Exception:
            data = b""
        persistent = pickler.used
    if not data:
        _restart(ctx, kinds, buffers)
        persistent = False
        data = _cloudpickle(obj, what, _collector(kinds, buffers))
    if not buffers and not persistent and len(data) < THRESHOLD:
        return data
    if len(data) >= THRESHOLD:  # large in band (long lists, strings...): the stream goes too
        kinds.append(shm.STREAM)
        buffers.append(data)
        data = b""
    return shm.share(data, kinds, buffers, prefix)


def _restart(ctx: SerialContext, kinds: list[int], buffers: list[Any]) -> None:
    """Before pickling again: start the handle bookkeeping and the buffers afresh."""
    ctx.deps.clear()
    ctx.pins.clear()
    ctx.foreign_pins.clear()
    kinds.clear()
    buffers.clear()


def _cloudpickle(obj: object, what: str, buffer_callback: Any = None) -> bytes:
    try:
        return code_source.dumps(obj, buffer_callback)
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
        if type(data) is Shared:
            return _load_shared(data, what)
        return pickle.loads(data)
    except SerializationError:
        raise
    except Exception as err:
        raise SerializationError(f"cannot unpickle {what}: {type(err).__name__}: {err}") from err
    finally:
        _current.reset(token)


class _InBand(pickle.Unpickler):
    def __init__(self, file: Any, objects: list[Any], buffers: list[memoryview]) -> None:
        super().__init__(file, buffers=buffers)
        self.objects = objects

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is int:
            return self.objects[pid]
        if type(pid) is tuple and len(pid) == 4 and pid[0] == "v":
            view = memoryview(bytearray(pid[1]))
            try:
                return view.cast(pid[2], pid[3])
            except (TypeError, ValueError):
                return view
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def _load_shared(data: Shared, what: str) -> Any:
    """Rebuild a payload whose buffers came beside it: zero-copy where the object allows."""
    if data.error:
        raise SerializationError(f"cannot unpickle {what}: {data.error}")
    if len(data.views) != len(data.spans):
        raise SerializationError(f"cannot unpickle {what}: {len(data.views)} buffers for {len(data.spans)} spans")
    stream: bytes | memoryview = data
    objects: list[Any] = []
    buffers: list[Any] = []
    again = data.loaded  # the same payload unpickled twice: no two objects may share memory
    data.loaded = True
    for index, (kind, _, _) in enumerate(data.spans):
        try:
            obj = data.take(index, again)  # bytes and bytearray: the one copy on this side
        except (OSError, shm.SegmentError) as err:
            raise SerializationError(f"cannot unpickle {what}: {err}") from None
        if kind == shm.PICKLE_BUFFER:
            buffers.append(obj)
            objects.append(None)
        elif kind == shm.STREAM:
            stream = obj
            objects.append(None)
        else:
            objects.append(obj)
    return _InBand(io.BytesIO(stream), objects, buffers).load()


EMPTY_ARGS = pickle.dumps(((), {}), protocol=5)


_SCALARS = frozenset({int, float, str, bool, type(None), bytes, complex})


def plain_values(values: Iterable[Any], limit: int) -> bool:
    """Are ``values`` plain, so that one ``pickle.dumps`` sends them as they are?

    Numbers, strings, bytes, ``None``, and tuples, lists and dicts of them one
    level down: nothing that can be or hold a future, a handle or a class. A
    string or bytes of ``limit`` bytes or more is not (it travels in shared
    memory or out of band); one inside a container is found by the caller,
    which checks the pickle's size. One look per value, no call.
    """
    for a in values:
        t = type(a)
        if t in _SCALARS:
            if (t is bytes or t is str) and len(a) >= limit:
                return False
        elif t is tuple or t is list:
            for b in a:
                if type(b) not in _SCALARS:
                    return False
        elif t is dict:
            for k, v in a.items():
                if type(k) not in _SCALARS or type(v) not in _SCALARS:
                    return False
        else:
            return False
    return True
