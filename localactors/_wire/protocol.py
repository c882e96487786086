"""Every message that crosses a process boundary.

Runs in: every process.

Messages are small frozen dataclasses. User data never travels as live
objects inside them: it is pickled first (see ``_base.serialize``) and carried as
``bytes`` fields, so a message can always be encoded and a bad argument fails
in the caller. How a message is framed on the wire is :mod:`~localactors._wire.codec`.

Who sends what::

    client  -> manager : Hello RefDelta SubmitTasks SubmitPlain Scatter Cancel InfoRequest RelayTo Goodbye
    manager -> client  : KeyDone KeysDone KeyErred KeyLost KeyReset InfoReply Ack RelayFrom Goodbye
    manager -> all     : WorkerDied ActorMoved ActorRestartFailed
    worker  -> manager : RegisterWorker RefDelta TaskDone TasksDone TaskErred Pong (as a client: the above)
    manager -> worker  : RunTask RunTasks PutData FreeKeys Shutdown Ping
    any     -> worker  : Hello GetData ActorCall        (direct links; the manager's relays too)
    worker  -> any     : DataReply CallOk CallErr CallOks  (direct links)
    cluster -> manager : WatchOutput;  manager -> cluster : Output   (diagnostics)
    any     -> worker  : StatsRequest; worker -> any : StatsReply    (diagnostics)
    client  -> manager : RunOnWorkers WhoHas Retry Restart CloseCluster;  manager -> client : RunReply WhoHasReply
    manager -> worker  : RunFunction;  worker -> manager : RunResult   (Client.run)

``Goodbye`` goes both ways: a client says it is leaving on purpose, and the
manager, stopping, tells each client that the cluster was closed (so that
pending calls fail with ``ClusterClosedError``, not ``ClusterBrokenError``).
The cluster and its manager also share a control pipe, which speaks the
messages of :mod:`~localactors._wire.control`. The messages of diagnostics
and cluster operations (the last four lines of the table) are defined in
:mod:`~localactors._wire.operations` and named here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .operations import (
    CloseCluster,
    Output,
    Restart,
    Retry,
    RunFunction,
    RunOnWorkers,
    RunReply,
    RunResult,
    StatsReply,
    StatsRequest,
    WatchOutput,
    WhoHas,
    WhoHasReply,
)
from .records import (
    OUT_OF_BAND,
    ActorInfo,
    ActorStat,
    CallKind,
    TaskSpec,
    WorkerInfo,
    WorkerStat,
)

#: the records messages carry, named here too: ``P.TaskSpec`` reads as part of the protocol
__all__ = ["OUT_OF_BAND", "ActorInfo", "ActorStat", "CallKind", "Message", "TaskSpec", "WorkerInfo", "WorkerStat"]
#: and the messages of diagnostics and cluster operations
__all__ += [
    "CloseCluster", "Output", "Restart", "Retry", "RunFunction", "RunOnWorkers", "RunReply", "RunResult",
    "StatsReply", "StatsRequest", "WatchOutput", "WhoHas", "WhoHasReply",
]  # fmt: skip

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
    req_id: int = -1  #: if >= 0, the manager answers ``Ack`` once done (after the ``KeyErred``)
    force: bool = False  #: cancel the keys for every client, not only the sender (``cancel(force=True)``)


@dataclass(frozen=True, slots=True)
class InfoRequest:
    req_id: int


@dataclass(frozen=True, slots=True)
class RelayTo:
    """Forward ``frames`` (an encoded message) to the worker at ``address``."""

    address: str
    frames: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The sender closes its link on purpose (a client leaving, or the manager stopping)."""


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


@dataclass(frozen=True, slots=True)
class Ping:
    """The manager's heartbeat: the worker's manager-link reader answers ``Pong`` at once."""

    seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int


# ---------------------------------------------------------------- manager -> every node


@dataclass(frozen=True, slots=True)
class WorkerDied:
    """A worker left the cluster; sent to every client and worker.

    Callers use it to say *why* their calls to that worker failed, and to
    refuse later calls at once. ``restarting`` lists the actors that will be
    re-created elsewhere (``max_restarts``): calls to them wait for the new
    instance instead of failing.
    """

    name: str
    address: str
    reason: str  #: e.g. "was killed by signal 9 (SIGKILL)"
    exitcode: int | None
    restarting: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActorMoved:
    """A restarted actor is alive again, on ``worker`` at ``address``."""

    key: str
    worker: str
    address: str


@dataclass(frozen=True, slots=True)
class ActorRestartFailed:
    """A restarting actor could not be re-created; calls to it fail with ``error``."""

    key: str
    error: bytes


@dataclass(frozen=True, slots=True)
class KeyReset:
    """The key's data died with its worker and is being recomputed: wait again."""

    key: str


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


@dataclass(frozen=True, slots=True)
class CallOks:
    """Several ``CallOk`` in one frame, in the order the calls finished: ``(call_id, payload)``
    each (the actor thread batches the replies of pipelined calls: ``_worker/reply_batch``)."""

    replies: tuple[tuple[int, bytes], ...]


# ---------------------------------------------------------------- many tasks at once (a map's)

#: a plain task as ``RunTasks`` carries it: ``(key, payload, who_has)``, the payload small
RunItem = tuple[str, bytes, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class RunTasks:
    """manager -> worker: several plain tasks (not actors), each with a payload under
    ``OUT_OF_BAND``, run as if each came in its own ``RunTask``, in this order."""

    tasks: tuple[RunItem, ...]


@dataclass(frozen=True, slots=True)
class TasksDone:
    """worker -> manager: several plain tasks finished, each as ``TaskDone`` would say it:
    ``(key, nbytes, type_name)``."""

    done: tuple[tuple[str, int, str], ...]


@dataclass(frozen=True, slots=True)
class KeysDone:
    """manager -> client: ``KeyDone`` for several keys held on one worker, none an actor:
    ``(key, type_name)`` each."""

    worker: str
    address: str
    done: tuple[tuple[str, str], ...]


#: a task as ``SubmitPlain`` carries it: ``(key, payload)``
PlainItem = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class SubmitPlain:
    """client -> manager: tasks with no inputs that share their options (a ``map``'s),
    each ``(key, payload)`` standing for ``TaskSpec(key, payload, (), workers, resources,
    allow_other_workers, retries, actor)``: no spec object per task on the wire."""

    tasks: tuple[PlainItem, ...]
    workers: tuple[str, ...] = ()
    resources: tuple[tuple[str, float], ...] = ()
    allow_other_workers: bool = False
    retries: int = 0
    actor: bool = False

    def specs(self) -> tuple[TaskSpec, ...]:
        """The ``TaskSpec`` of each task."""
        rest = (self.workers, self.resources, self.allow_other_workers, self.retries, self.actor)
        return tuple([TaskSpec(key, payload, (), *rest) for key, payload in self.tasks])


Message = Union[
    Hello, RegisterWorker, RefDelta, SubmitTasks, Scatter, Cancel, InfoRequest,
    RelayTo, Goodbye, TaskDone, TaskErred, KeyDone, KeyErred, KeyLost, InfoReply, Ack,
    RelayFrom, RunTask, PutData, FreeKeys, Shutdown, GetData, DataReply, ActorCall, CallOk,
    CallErr, WatchOutput, Output, StatsRequest, StatsReply, WorkerDied, ActorMoved, ActorRestartFailed,
    KeyReset, Ping, Pong, RunOnWorkers, RunFunction, RunResult, RunReply, WhoHas, WhoHasReply, Retry, Restart,
    CloseCluster, RunTasks, TasksDone, KeysDone, SubmitPlain, CallOks,
]  # fmt: skip
