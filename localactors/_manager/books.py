"""The scheduler's records: a task, a worker, a task's status, the send callback.

Runs in: the manager process, on its one main thread (no locks needed).

Plain records shared by :mod:`~localactors._manager.scheduler`,
:mod:`~localactors._manager.placement` and :mod:`~localactors._manager.refcount`;
placement and refcount import nothing else of the manager's, so the scheduler
imports all three without a circle. Task states::

    waiting --inputs in memory--> processing --TaskDone--> memory
       |                             |  \\--TaskErred, retries left--> processing
       |                             |   \\--TaskErred / its workers died too often--> erred
       \\--no worker fits---> no-worker --resources freed, worker joined--> processing

    processing --its worker died--> waiting (to run elsewhere)
    memory --its worker died--> waiting (data still wanted, actor with restarts left) or lost
    any not yet erred, lost or cancelled --cancel--> cancelled

No status crosses the wire: clients learn outcomes from ``KeyDone``,
``KeyErred``, ``KeyLost`` and ``KeyReset``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .._wire import protocol as P

#: how the scheduler talks: ``send(link, message)``, never blocking
Send = Callable[[Any, P.Message], None]


class TaskStatus(enum.Enum):
    WAITING = "waiting"  #: for inputs, or to be placed
    NO_WORKER = "no-worker"  #: no live worker fits it (yet)
    PROCESSING = "processing"  #: sent to a worker (for scattered data: on its way there)
    MEMORY = "memory"  #: its value or actor lives on ``Task.worker``
    ERRED = "erred"
    LOST = "lost"  #: died with its worker and will not come back
    CANCELLED = "cancelled"
    RELEASED = "released"  #: no task of that key: never a ``Task.status``, only :meth:`Scheduler.status`


#: not started yet: an input failing or a cancel can still stop it
NOT_STARTED = frozenset({TaskStatus.WAITING, TaskStatus.NO_WORKER})
#: no outcome yet
UNFINISHED = NOT_STARTED | {TaskStatus.PROCESSING}
#: ended without a value, for good
FAILED = frozenset({TaskStatus.ERRED, TaskStatus.LOST, TaskStatus.CANCELLED})


@dataclass(eq=False)
class WorkerState:
    """A registered worker and the keys the scheduler has put on it."""

    info: P.WorkerInfo
    link: Any
    index: int  #: registration order: ties go to the oldest worker
    processing: set[str] = field(default_factory=set)
    starting_actors: set[str] = field(default_factory=set)  #: the actor keys in ``processing``
    has: set[str] = field(default_factory=set)
    actors: set[str] = field(default_factory=set)
    alive: bool = True
    retiring: bool = False

    @property
    def name(self) -> str:
        return self.info.name

    def stop_processing(self, key: str) -> None:
        self.processing.discard(key)
        self.starting_actors.discard(key)


@dataclass(eq=False)
class Task:
    key: str
    spec: P.TaskSpec | None  # None for scattered data
    status: TaskStatus = TaskStatus.WAITING
    waiting_on: set[str] = field(default_factory=set)
    dependents: set[str] = field(default_factory=set)
    worker: WorkerState | None = None
    actor: P.ActorInfo | None = None
    type_name: str = ""
    error: bytes = b""
    retries_left: int = 0
    failures: int = 0  #: workers that died running it
    restarts_left: int = 0
    restarting: bool = False  #: an actor being re-created after its worker died


class DeadWorker(NamedTuple):
    name: str
    address: str
    reason: str  #: how it died, e.g. "was killed by signal 9 (SIGKILL)"
