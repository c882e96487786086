"""Every message that crosses a process boundary, and how it is framed.

Runs in: every process.

Messages are small frozen dataclasses. User data never travels as live
objects inside them: it is pickled first (see ``_serialize``) and carried as
``bytes`` fields, so a message can always be encoded and a bad argument fails
in the caller. On the wire a message is one pickled tuple ``(tag, *fields)``;
payloads of 1 MiB and more follow as out-of-band frames (pickle protocol 5),
so large data is not copied into the envelope.

Who sends what::

    client  -> manager : RefDelta SubmitTasks Scatter Cancel InfoRequest Scale RelayTo Goodbye
    manager -> client  : KeyDone KeyErred KeyLost InfoReply Ack RelayFrom
    worker  -> manager : RegisterWorker RefDelta TaskDone TaskErred
    manager -> worker  : RunTask PutData FreeKeys Shutdown
    any     -> worker  : Hello GetData ActorCall        (direct links)
    worker  -> any     : DataReply CallOk CallErr       (direct links)
"""

from __future__ import annotations

import enum
import pickle
from dataclasses import dataclass, fields
from typing import Any, Union

# ---------------------------------------------------------------- payload types


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """What a caller needs to build a proxy: the class and its public members."""

    cls_name: str
    methods: tuple[str, ...]
    attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task as the client submits it."""

    key: str
    payload: bytes  #: pickled ``(fn, args, kwargs)``; futures inside are DepRefs
    deps: tuple[str, ...]  #: keys whose values the payload needs
    workers: tuple[str, ...] = ()  #: allowed worker names or addresses
    resources: tuple[tuple[str, float], ...] = ()
    allow_other_workers: bool = False
    retries: int = 0
    actor: bool = False
    max_restarts: int = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskSpec, tuple(_wrap(getattr(self, n)) for n in _SPEC_FIELDS))


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    name: str
    address: str
    pid: int
    nthreads: int
    resources: tuple[tuple[str, float], ...]
    memory_limit: int | None


def _plain_reduce(self: Any) -> tuple[Any, ...]:
    # frozen slotted dataclasses do not unpickle on every supported Python
    return (type(self), tuple(getattr(self, f.name) for f in fields(self)))


ActorInfo.__reduce__ = _plain_reduce  # type: ignore[method-assign,assignment]
WorkerInfo.__reduce__ = _plain_reduce  # type: ignore[method-assign,assignment]
_SPEC_FIELDS = tuple(f.name for f in fields(TaskSpec))


class CallKind(enum.IntEnum):
    METHOD = 0  #: call ``obj.name(*args, **kwargs)``
    GETATTR = 1  #: read ``obj.name``


# ---------------------------------------------------------------- handshakes


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a direct link: who is calling."""

    name: str
    pid: int


@dataclass(frozen=True, slots=True)
class RegisterWorker:
    info: WorkerInfo


# ---------------------------------------------------------------- client/worker -> manager


@dataclass(frozen=True, slots=True)
class RefDelta:
    """Changes to the sender's references, applied in order.

    ``changes`` holds ``(key, +1 | -1)`` for the first and last local handle of
    a key; ``pins`` registers handles the sender put in flight, ``unpins``
    retires handles the sender received (by token).
    """

    changes: tuple[tuple[str, int], ...] = ()
    pins: tuple[tuple[str, str], ...] = ()
    unpins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubmitTasks:
    specs: tuple[TaskSpec, ...]


@dataclass(frozen=True, slots=True)
class Scatter:
    items: tuple[tuple[str, bytes], ...]
    workers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Cancel:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InfoRequest:
    req_id: int


@dataclass(frozen=True, slots=True)
class Scale:
    req_id: int
    n: int


@dataclass(frozen=True, slots=True)
class RelayTo:
    """Forward ``frames`` (an encoded message) to the worker at ``address``."""

    address: str
    frames: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The sender closes its link on purpose; the manager may stop if asked."""

    shutdown_cluster: bool = False


@dataclass(frozen=True, slots=True)
class TaskDone:
    key: str
    nbytes: int
    type_name: str
    actor: ActorInfo | None = None


@dataclass(frozen=True, slots=True)
class TaskErred:
    key: str
    error: bytes  #: from ``_errors.dump_exception``


# ---------------------------------------------------------------- manager -> client


@dataclass(frozen=True, slots=True)
class KeyDone:
    key: str
    worker: str
    address: str
    type_name: str
    actor: ActorInfo | None = None


@dataclass(frozen=True, slots=True)
class KeyErred:
    key: str
    error: bytes


@dataclass(frozen=True, slots=True)
class KeyLost:
    """The key's data or actor died with its worker and will not come back."""

    key: str
    error: bytes


@dataclass(frozen=True, slots=True)
class InfoReply:
    req_id: int
    workers: tuple[WorkerInfo, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    req_id: int


@dataclass(frozen=True, slots=True)
class RelayFrom:
    address: str
    frames: tuple[bytes, ...]


# ---------------------------------------------------------------- manager -> worker


@dataclass(frozen=True, slots=True)
class RunTask:
    spec: TaskSpec
    who_has: tuple[tuple[str, str], ...]  #: (dep key, holder address)


@dataclass(frozen=True, slots=True)
class PutData:
    key: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class FreeKeys:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


# ---------------------------------------------------------------- direct links


@dataclass(frozen=True, slots=True)
class GetData:
    req_id: int
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DataReply:
    req_id: int
    items: tuple[tuple[str, bytes], ...]
    missing: tuple[str, ...] = ()
    error: bytes = b""  #: a value that could not be pickled


@dataclass(frozen=True, slots=True)
class ActorCall:
    call_id: int
    actor: str
    name: str
    kind: CallKind
    payload: bytes  #: pickled ``(args, kwargs)``


@dataclass(frozen=True, slots=True)
class CallOk:
    call_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class CallErr:
    call_id: int
    error: bytes


Message = Union[
    Hello, RegisterWorker, RefDelta, SubmitTasks, Scatter, Cancel, InfoRequest, Scale,
    RelayTo, Goodbye, TaskDone, TaskErred, KeyDone, KeyErred, KeyLost, InfoReply, Ack,
    RelayFrom, RunTask, PutData, FreeKeys, Shutdown, GetData, DataReply, ActorCall, CallOk,
    CallErr,
]  # fmt: skip

_TYPES: tuple[type, ...] = Message.__args__  # type: ignore[attr-defined]
_TAG = {cls: i for i, cls in enumerate(_TYPES)}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _TYPES}

#: payloads at least this large travel as their own frame, not inside the envelope
OUT_OF_BAND = 1 << 20


class _Big:
    """Marks a large ``bytes`` field so it is pickled out of band."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        return (bytes, (pickle.PickleBuffer(self.data),))


def _wrap(value: object) -> object:
    if type(value) is bytes and len(value) >= OUT_OF_BAND:
        return _Big(value)
    if type(value) is tuple and value and type(value[-1]) in (tuple, bytes):
        # ((key, payload), ...), (key, payload) and frame tuples
        return tuple(_wrap(v) for v in value)
    return value


def encode(msg: Message) -> list[bytes | pickle.PickleBuffer]:
    """Frames for ``msg``: the envelope, then one frame per large payload."""
    cls = type(msg)
    values = [getattr(msg, name) for name in _FIELDS[cls]]
    buffers: list[pickle.PickleBuffer] = []
    values = [_wrap(v) for v in values]
    head = pickle.dumps((_TAG[cls], *values), protocol=5, buffer_callback=buffers.append)
    return [bytes((len(buffers),)) + head, *buffers]


def decode(first: bytes, rest: list[bytes]) -> Message:
    """Rebuild a message from its frames; raise ``ValueError`` if garbled."""
    try:
        tagged = pickle.loads(memoryview(first)[1:], buffers=rest)
        cls = _TYPES[tagged[0]]
        return cls(*tagged[1:])  # type: ignore[no-any-return]
    except Exception as err:
        raise ValueError(f"garbled message: {type(err).__name__}: {err}") from err


def extra_frames(first: bytes) -> int:
    """How many out-of-band frames follow this envelope."""
    if not first:
        raise ValueError("empty frame")
    return first[0]
