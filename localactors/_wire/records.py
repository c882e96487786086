"""The records messages carry: a task's spec, what a worker and an actor are, statistics.

Runs in: every process (:mod:`~localactors._wire.protocol`'s messages are made of them).

They are frozen slotted dataclasses like the messages. Each pickles as its
class and its fields (``_plain_reduce``); a task spec's payload of 1 MiB or
more pickles out of band (:class:`_Big`), as the codec sends a message's
large ``bytes`` fields.
"""

from __future__ import annotations

import enum
import operator
import pickle
from dataclasses import dataclass, fields
from typing import Any

#: payloads at least this large travel as their own frame, not inside the envelope
OUT_OF_BAND = 1 << 20


class _Big:
    """Marks a large ``bytes`` field so it is pickled out of band."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        return (_received, (pickle.PickleBuffer(self.data),))


def _received(frame: Any) -> Any:
    # the frame as the link read it (a bytearray for large ones), not copied
    # into a new bytes object: for 100 MB that copy costs as much as the transfer
    if isinstance(frame, memoryview):  # pickle's read-only view of the frame
        owner: Any = frame.obj
        if type(owner) in (bytes, bytearray) and len(owner) == frame.nbytes:
            return owner
        return frame.tobytes()
    if isinstance(frame, pickle.PickleBuffer):  # pickled in band (no buffer_callback)
        return bytes(frame)
    return frame


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
        # only the payload can be large; every task is pickled twice on its way
        # (client -> manager -> worker), so this is on the no-op task hot path
        values = _spec_values(self)
        if len(self.payload) >= OUT_OF_BAND:
            values = (*values[:_PAYLOAD], _Big(self.payload), *values[_PAYLOAD + 1 :])
        return (TaskSpec, values)


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
_spec_values = operator.attrgetter(*_SPEC_FIELDS)  # all fields as a tuple, in one C call
_PAYLOAD = _SPEC_FIELDS.index("payload")


class CallKind(enum.IntEnum):
    METHOD = 0  #: call ``obj.name(*args, **kwargs)``
    GETATTR = 1  #: read ``obj.name``


@dataclass(frozen=True, slots=True)
class ActorStat:
    """One actor's counters, kept by its worker (see ``_worker.stats``)."""

    key: str
    cls_name: str
    calls: int  #: operations finished: method calls and attribute reads
    errors: int  #: of those, how many raised
    total_time: float  #: seconds from arrival at the worker to the reply, summed
    max_time: float
    queued: int  #: arrived, not started yet
    running: int  #: started, not finished (a sync call, or async ones awaiting)


@dataclass(frozen=True, slots=True)
class WorkerStat:
    name: str
    pid: int
    rss: int  #: bytes; 0 in-process
    cpu_percent: float  #: since the previous request; 0 in-process
    n_data: int  #: task results held
    n_actors: int


ActorStat.__reduce__ = _plain_reduce  # type: ignore[method-assign,assignment]
WorkerStat.__reduce__ = _plain_reduce  # type: ignore[method-assign,assignment]
