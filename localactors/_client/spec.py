"""Turning a call into a :class:`~localactors._wire.protocol.TaskSpec`: pickle it, name its key.

Runs in: the user's process (and in workers, under their ``get_client()``).

Pickling happens here, in the caller's thread, so a bad argument fails where
it was passed. A pure call's key is a hash of its pickled form (the same call
twice shares one task); an impure call or an actor gets a fresh key.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import uuid
import zlib
from collections import OrderedDict
from types import BuiltinFunctionType, FunctionType
from typing import Any

from .._base.errors import SerializationError
from .._base.serialize import SerialContext, dumps, plain_values
from .._caller.node import Node
from .._wire import protocol as P
from .._wire.protocol import OUT_OF_BAND

#: what marks a pickle that refers to ``__main__`` (``_base.serialize`` then uses cloudpickle)
_MAIN_MARK = b"__main__"

#: a function pickled by value is this long at least (by reference: a module and a name)
_BY_VALUE = 256
#: how many functions a worker keeps unpickled, by content hash
CACHED_FUNCTIONS = 256


class ShippedFunction:
    """A function pickled once for a whole ``map``: every task's payload carries its
    bytes and their hash, and a worker unpickles them once (:func:`_shipped`).

    Made by :func:`ship_function` only for functions pickled by value (defined in
    ``__main__``, a notebook, a closure): one by reference costs less to unpickle
    than to look up. The bytes are compressed, which also keeps the mark of a
    ``__main__`` object out of the payload (it would have it pickled by value
    again, by cloudpickle).
    """

    __slots__ = ("__name__", "blob", "digest", "fn")

    def __init__(self, fn: Any, digest: bytes, blob: bytes) -> None:
        self.fn = fn
        self.__name__ = funcname(fn)
        self.digest = digest
        self.blob = blob

    def __reduce__(self) -> tuple[Any, ...]:
        return (_shipped, (self.digest, self.blob))


def ship_function(node: Node, fn: Any) -> Any:
    """``fn`` to pickle into many task specs: a :class:`ShippedFunction` when it
    goes by value (and holds no handle), else ``fn`` itself."""
    if not callable(fn) or isinstance(fn, ShippedFunction):
        return fn
    ctx = SerialContext(node=node, collect_deps=True)
    try:
        data = dumps(fn, ctx, what=f"function {funcname(fn)}")
    except SerializationError:
        return fn  # fails again with the task's own message
    if len(data) < _BY_VALUE or ctx.deps or ctx.pins or ctx.foreign_pins:
        return fn
    return ShippedFunction(fn, hashlib.blake2b(data, digest_size=16).digest(), zlib.compress(data, 1))


_functions: OrderedDict[bytes, Any] = OrderedDict()  # digest -> function, least recently used first
_functions_lock = threading.Lock()


def _shipped(digest: bytes, blob: bytes) -> Any:
    """Unpickling a :class:`ShippedFunction` (in a worker): the function, unpickled once per content."""
    with _functions_lock:
        fn = _functions.get(digest)
        if fn is not None:
            _functions.move_to_end(digest)
            return fn
    data = zlib.decompress(blob)
    if hashlib.blake2b(data, digest_size=16).digest() != digest:
        raise pickle.UnpicklingError("a shipped function does not match its hash")
    fn = pickle.loads(data)
    with _functions_lock:
        _functions[digest] = fn
        while len(_functions) > CACHED_FUNCTIONS:
            _functions.popitem(last=False)
    return fn


def funcname(fn: Any) -> str:
    """``fn``'s name, fit for a key (its prefix groups the key's tasks in ``progress``)."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return str(name).replace("<", "").replace(">", "")


#: functions a plain pickle takes by reference (or, a ShippedFunction, by its bytes): no handle inside
_PLAIN_FUNCTIONS = (FunctionType, BuiltinFunctionType, ShippedFunction)


class SpecMaker:
    """The specs of many calls of one function with the same options (``Client.map``).

    A call whose function goes by reference (or is a :class:`ShippedFunction`) and
    whose arguments are plain values is pickled with one ``pickle.dumps``: no context
    and nothing to walk, as nothing in it can be a handle. The bytes are what
    :func:`make_spec` makes of it, and so is the key. Any other call goes through
    :func:`make_spec`.
    """

    def __init__(
        self, node: Node, fn: Any, kwargs: dict[str, Any], pure: bool, workers: Any,
        resources: dict[str, float] | None, allow_other_workers: bool, retries: int, actor: bool,
        prefix: str | None,
    ) -> None:  # fmt: skip
        self.node, self.fn, self.kwargs = node, fn, kwargs
        self.pure, self.prefix = pure, prefix
        self.options = (workers, resources, allow_other_workers, retries, actor)
        if isinstance(workers, str):
            workers = (workers,)
        #: TaskSpec's fields after ``deps``
        self._rest = (
            tuple(workers or ()),
            tuple(sorted((resources or {}).items())),
            allow_other_workers,
            retries,
            actor,
            0,
        )
        #: plain calls of this function skip the context (see :meth:`spec`)
        self.lean = isinstance(fn, _PLAIN_FUNCTIONS) and plain_values(kwargs.values(), OUT_OF_BAND)
        self._name = f"{prefix or funcname(fn)}-"
        self._hashed = pure and not actor

    def plain(self, args: tuple[Any, ...], key: str | None) -> P.PlainItem | None:
        """``(key, payload)`` of a call whose arguments are plain values (the caller has
        seen to it, :func:`plain_values`), if the lean path takes it (else ``None``)."""
        try:
            payload = pickle.dumps((self.fn, args, self.kwargs), 5)
        except Exception:
            return None  # (the usual path says why)
        if _MAIN_MARK in payload:
            return None  # cloudpickle's turn, in dumps
        if key is None:
            if self._hashed:
                key = self._name + hashlib.blake2b(payload, digest_size=16).hexdigest()
            else:
                key = self._name + uuid.uuid4().hex
        return key, payload

    def spec(self, args: tuple[Any, ...], key: str | None) -> tuple[P.TaskSpec, SerialContext | None]:
        """The spec of ``fn(*args, **kwargs)``, and the context it was pickled in (``None``: none was needed)."""
        if self.lean and plain_values(args, OUT_OF_BAND):
            item = self.plain(args, key)
            if item is not None:
                return P.TaskSpec(item[0], item[1], (), *self._rest), None
        return make_spec(self.node, self.fn, args, self.kwargs, key, self.pure, *self.options, 0, self.prefix)

    def submit_plain(self, items: tuple[P.PlainItem, ...]) -> P.SubmitPlain:
        """The message submitting ``items`` (from :meth:`plain`) with this map's options."""
        return P.SubmitPlain(items, *self._rest[:-1])


def make_spec(
    node: Node, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None, pure: bool,
    workers: Any, resources: dict[str, float] | None, allow_other_workers: bool, retries: int,
    actor: bool, max_restarts: int, prefix: str | None = None,
) -> tuple[P.TaskSpec, SerialContext]:  # fmt: skip
    """The ``TaskSpec`` of ``fn(*args, **kwargs)``, pickled with ``node`` owning its handles.

    Without ``key`` the key is ``<prefix>-<token>``, the prefix being the
    function's name unless given (``map(key="INC")``, as dask names them):
    the token hashes the pickled call when pure, else it is random.
    """
    ctx = SerialContext(node=node, collect_deps=True)
    payload = dumps((fn, args, kwargs), ctx, what=f"the call of {funcname(fn)}")
    if key is None:
        if pure and not actor:
            token = hashlib.blake2b(payload, digest_size=16).hexdigest()
        else:
            token = uuid.uuid4().hex
        key = f"{prefix or funcname(fn)}-{token}"
    if isinstance(workers, str):
        workers = (workers,)
    spec = P.TaskSpec(
        key=key,
        payload=payload,
        deps=tuple(ctx.deps),
        workers=tuple(workers or ()),
        resources=tuple(sorted((resources or {}).items())),
        allow_other_workers=allow_other_workers,
        retries=retries,
        actor=actor,
        max_restarts=max_restarts,
    )
    return spec, ctx
