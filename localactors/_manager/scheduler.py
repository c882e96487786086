"""The manager's bookkeeping: tasks, placement, references, failures.

Runs in: the manager process, on its one main thread (no locks needed).

Pure state machine: every handler updates state and sends messages through
the ``send`` callback it was given; it never blocks. Task states::

    waiting --deps in memory--> processing --TaskDone--> memory
       |                           |  \\--TaskErred (retries left)--> processing
       |                           |   \\--TaskErred / worker died too often--> erred
       \\--no worker fits---> no-worker --resources freed--> processing

Placement lives in :mod:`~localactors._placement`, reference counting and
release in :mod:`~localactors._refcount`: mixins over this class's state, so
the manager still talks to one ``Scheduler``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._base.errors import ActorLostError, KilledWorker, WorkerLostError, dump_exception
from .._wire import protocol as P
from .placement import Placement
from .refcount import References

logger = logging.getLogger("localactors.scheduler")

Send = Callable[[Any, P.Message], None]


@dataclass(eq=False)
class WorkerState:
    info: P.WorkerInfo
    link: Any
    index: int
    free: dict[str, float] = field(default_factory=dict)
    processing: set[str] = field(default_factory=set)
    starting_actors: set[str] = field(default_factory=set)  #: the actor keys in ``processing``
    has: set[str] = field(default_factory=set)
    actors: set[str] = field(default_factory=set)
    alive: bool = True
    retiring: bool = False

    @property
    def name(self) -> str:
        return self.info.name


@dataclass(eq=False)
class Task:
    key: str
    spec: P.TaskSpec | None  # None for scattered data
    state: str = "waiting"
    waiting_on: set[str] = field(default_factory=set)
    dependents: set[str] = field(default_factory=set)
    worker: WorkerState | None = None
    actor: P.ActorInfo | None = None
    type_name: str = ""
    error: bytes = b""
    retries_left: int = 0
    failures: int = 0
    restarts_left: int = 0
    restarting: bool = False  #: an actor being re-created after its worker died


class Scheduler(Placement, References):
    """Knows every task, every worker and every reference."""

    def __init__(self, send: Send, allowed_failures: int = 3) -> None:
        self.send = send
        self.allowed_failures = allowed_failures
        self.workers: dict[str, WorkerState] = {}
        self.tasks: dict[str, Task] = {}
        self.holders: dict[str, Counter[Any]] = {}  # key -> link -> count
        self.pins: dict[str, str] = {}  # token -> key
        self.pin_count: Counter[str] = Counter()
        self.early_unpins: set[str] = set()
        self.no_worker: dict[str, Task] = {}
        self.client_links: set[Any] = set()
        self.death_reasons: dict[str, str] = {}  # dead worker's name -> how it died
        self.dead_addresses: dict[str, str] = {}  # dead worker's address -> its name
        self.orphans: dict[str, Task] = {}  # released while processing: resources still held
        self._index = 0

    # -- workers -------------------------------------------------------------------

    def add_worker(self, info: P.WorkerInfo, link: Any) -> WorkerState:
        ws = WorkerState(info, link, self._index, dict(info.resources))
        self._index += 1
        self.workers[info.name] = ws
        self._retry_no_worker()
        return ws

    def remove_worker(self, name: str, reason: str, exitcode: int | None = None) -> P.WorkerDied | None:
        """A worker died or left: rerun, recompute, restart or give up what it had.

        Returns the notice for every node. The manager sends it *after* the
        per-key messages sent here, so a node holding the notice has seen them.
        """
        ws = self.workers.pop(name, None)
        if ws is None:
            return None
        ws.alive = False
        self.death_reasons[name] = reason
        self.dead_addresses[ws.info.address] = name
        for key in [k for k, t in self.orphans.items() if t.worker is ws]:
            del self.orphans[key]
        rerun: list[Task] = []
        # 1. what was running there runs elsewhere, unless it keeps killing workers
        for key in sorted(ws.processing):
            task = self.tasks.get(key)
            if task is None or task.worker is not ws:
                continue
            task.worker = None
            if task.spec is None:  # scattered data on its way there: nothing to rerun
                self._lose(task, WorkerLostError(f"scattered {key!r} lost: worker {name} {reason}", name, exitcode))
                continue
            task.failures += 1
            if task.failures > self.allowed_failures:
                err = KilledWorker(
                    f"task {key!r} was running on {task.failures} workers that died; last: {name} {reason}",
                    name,
                    exitcode,
                )
                self._erred(task, dump_exception(err))
            else:
                task.state = "waiting"
                rerun.append(task)
        # 2. what lived there: restart actors that may be, recompute data still wanted, lose the rest
        restarting: list[str] = []
        for key in sorted(ws.has | ws.actors):
            task = self.tasks.get(key)
            if task is None or task.worker is not ws:
                continue
            task.worker = None
            if task.actor is not None and task.restarts_left > 0 and task.spec is not None:
                task.restarts_left -= 1
                task.restarting = True
                task.state = "waiting"
                restarting.append(key)
                rerun.append(task)
            elif task.actor is None and task.spec is not None and self._referenced(key):
                task.state = "waiting"  # its Futures are still held: compute it again
                rerun.append(task)
                self._notify(key, P.KeyReset(key))
                for dep_key in task.dependents:
                    dependent = self.tasks.get(dep_key)
                    if dependent is not None and dependent.state in ("waiting", "no-worker"):
                        dependent.waiting_on.add(key)
                        dependent.state = "waiting"
                        self.no_worker.pop(dep_key, None)
            else:
                what = f"actor {key}" if task.actor is not None else f"data of {key!r}"
                cls = ActorLostError if task.actor is not None else WorkerLostError
                self._lose(task, cls(f"{what} lost: worker {name} {reason}", name, exitcode))
        # 3. start each over once the inputs it needs are back
        for task in rerun:
            if task.state == "waiting":  # not erred meanwhile through a lost input
                self._wait_for_deps(task)
        return P.WorkerDied(name, ws.info.address, reason, exitcode, tuple(restarting))

    def _lose(self, task: Task, err: BaseException) -> None:
        """The key's value is gone for good: tell its holders, fail its dependents."""
        task.state, task.error, task.worker = "lost", dump_exception(err), None
        self.no_worker.pop(task.key, None)
        self._notify(task.key, P.KeyLost(task.key, task.error))
        for dep_key in list(task.dependents):
            dependent = self.tasks.get(dep_key)
            if dependent is not None and dependent.state in ("waiting", "no-worker"):
                self._erred(dependent, task.error)

    def _wait_for_deps(self, task: Task) -> None:
        """(Re)start ``task``: schedule it now, or when its missing inputs are back."""
        assert task.spec is not None
        task.waiting_on = set()
        for dep in task.spec.deps:
            dt = self.tasks.get(dep)
            if dt is None or dt.state in ("lost", "erred", "cancelled"):
                err = WorkerLostError(f"dependency {dep!r} of {task.key!r} is gone")
                self._erred(task, dt.error if dt is not None and dt.error else dump_exception(err))
                return
            dt.dependents.add(task.key)
            if dt.state != "memory":
                task.waiting_on.add(dep)
        if not task.waiting_on:
            self._schedule(task)

    def fail_unplaced(self, error: bytes) -> None:
        """No worker can be kept alive: fail every task waiting for one, with ``error``."""
        for task in list(self.no_worker.values()):
            if task.key in self.no_worker:
                self._erred(task, error)

    def broadcast(self, msg: P.Message) -> None:
        """Send ``msg`` to every client and every live worker."""
        for link in list(self.client_links):
            self.send(link, msg)
        for ws in list(self.workers.values()):
            self.send(ws.link, msg)

    def _state(self, key: str) -> str:
        task = self.tasks.get(key)
        return task.state if task is not None else "released"

    # -- client requests --------------------------------------------------------------

    def submit(self, specs: tuple[P.TaskSpec, ...]) -> None:
        for spec in specs:
            old = self.tasks.get(spec.key)
            if old is not None and old.state not in ("erred", "lost", "cancelled"):
                continue  # the same pure task again: share it
            task = Task(spec.key, spec, retries_left=spec.retries, restarts_left=spec.max_restarts)
            self.tasks[spec.key] = task
            failed = None
            for dep in spec.deps:
                dt = self.tasks.get(dep)
                if dt is None or dt.state in ("lost", "cancelled"):
                    err = WorkerLostError(f"dependency {dep!r} of {spec.key!r} was released or lost")
                    failed = dt.error if dt is not None and dt.error else dump_exception(err)
                elif dt.state == "erred":
                    failed = dt.error
                else:
                    dt.dependents.add(spec.key)
                    if dt.state != "memory":
                        task.waiting_on.add(dep)
            if failed is not None:
                self._erred(task, failed)
            elif not task.waiting_on:
                self._schedule(task)

    def scatter(self, items: tuple[tuple[str, bytes], ...], workers: tuple[str, ...]) -> None:
        # like submit(workers=...): a worker is named by its name or its address
        wanted = set(workers)
        live = [w for w in self.workers.values() if w.alive and (not wanted or {w.name, w.info.address} & wanted)]
        if not live:
            live = [w for w in self.workers.values() if w.alive]
        for i, (key, payload) in enumerate(items):
            old = self.tasks.get(key)
            if old is not None and old.state in ("processing", "memory"):
                continue  # the same value scattered again (hashed key): one copy, or one would leak
            ws = sorted(live, key=lambda w: (len(w.has), w.index))[0] if len(items) == 1 else live[i % len(live)]
            task = Task(key, None, state="processing", worker=ws)
            self.tasks[key] = task
            ws.processing.add(key)
            self.send(ws.link, P.PutData(key, payload))

    def cancel(self, keys: tuple[str, ...]) -> None:
        from concurrent.futures import CancelledError

        error = dump_exception(CancelledError("cancelled"))
        for key in keys:
            self._cancel(key, error)

    def _cancel(self, key: str, error: bytes) -> None:
        task = self.tasks.get(key)
        if task is None or task.state in ("erred", "cancelled", "lost"):
            return
        self.no_worker.pop(key, None)
        was = task.state
        task.state, task.error = "cancelled", error
        if was == "processing" and task.worker is not None:
            # still running there: not ours to rerun if that worker dies, but
            # what it holds comes back when it ends (_adopt_orphan)
            task.worker.processing.discard(key)
            task.worker.starting_actors.discard(key)
            if task.spec is not None and task.spec.resources:
                self.orphans[key] = task
        self._notify(key, P.KeyErred(key, error))
        for dep_key in sorted(task.dependents):  # nothing will ever feed them now
            dependent = self.tasks.get(dep_key)
            if dependent is not None and dependent.state in ("waiting", "no-worker"):
                self._cancel(dep_key, error)
        self._finished_with_deps(task)
        if was == "memory":
            self._release(key, force=True)
        else:
            self._maybe_release(key)

    # -- worker reports ---------------------------------------------------------------------

    def task_done(self, ws: WorkerState, msg: P.TaskDone) -> None:
        task = self.tasks.get(msg.key)
        ws.processing.discard(msg.key)
        ws.starting_actors.discard(msg.key)
        self._adopt_orphan(ws, msg.key)
        if task is not None and task.state == "memory" and task.worker is ws and msg.actor is None:
            return  # a cancelled run of the same key ended here too: the data is the key's, keep it
        if task is None or task.state != "processing" or task.worker is not ws:
            self.send(ws.link, P.FreeKeys((msg.key,)))  # nobody wants it any more
            return
        task.state, task.type_name, task.actor = "memory", msg.type_name, msg.actor
        if msg.actor is not None:
            ws.actors.add(msg.key)  # its resources stay held for the actor's life
            if task.restarting:  # every handle anywhere now reaches the new instance
                task.restarting = False
                self.broadcast(P.ActorMoved(msg.key, ws.name, ws.info.address))
        else:
            ws.has.add(msg.key)
            self._give_back(ws, task)
        self._notify(msg.key, self._done_message(task))
        for dep_key in list(task.dependents):
            dependent = self.tasks.get(dep_key)
            if dependent is not None and dependent.state == "waiting":
                dependent.waiting_on.discard(msg.key)
                if not dependent.waiting_on:
                    self._schedule(dependent)
        self._finished_with_deps(task)
        self._maybe_release(msg.key)

    def task_erred(self, ws: WorkerState, msg: P.TaskErred) -> None:
        task = self.tasks.get(msg.key)
        ws.processing.discard(msg.key)
        ws.starting_actors.discard(msg.key)
        self._adopt_orphan(ws, msg.key)
        if task is None or task.worker is not ws or task.state != "processing":
            return
        self._give_back(ws, task)
        if task.spec is not None:
            gone = {d for d in task.spec.deps if self._state(d) in ("waiting", "processing", "no-worker")}
            if gone:  # an input died with its worker while this ran: wait for its recomputation
                task.state, task.worker, task.waiting_on = "waiting", None, gone
                for d in gone:
                    self.tasks[d].dependents.add(task.key)
                return
        if task.retries_left > 0:
            task.retries_left -= 1
            self._schedule(task)
            return
        self._erred(task, msg.error)

    def _adopt_orphan(self, ws: WorkerState, key: str) -> None:
        """A task released while running has ended: give back what it held."""
        orphan = self.orphans.get(key)
        if orphan is not None and orphan.worker is ws:
            del self.orphans[key]
            self._give_back(ws, orphan)

    def _erred(self, task: Task, error: bytes) -> None:
        task.state, task.error, task.worker = "erred", error, None
        self.no_worker.pop(task.key, None)
        if task.restarting:  # callers waiting for the new instance must hear it will not come
            task.restarting = False
            self.broadcast(P.ActorRestartFailed(task.key, error))
        self._notify(task.key, P.KeyErred(task.key, error))
        for dep_key in list(task.dependents):
            dependent = self.tasks.get(dep_key)
            if dependent is not None and dependent.state in ("waiting", "no-worker"):
                self._erred(dependent, error)
        self._finished_with_deps(task)
        self._maybe_release(task.key)

    def _finished_with_deps(self, task: Task) -> None:
        if task.spec is None:
            return
        for dep in task.spec.deps:
            dt = self.tasks.get(dep)
            if dt is not None:
                dt.dependents.discard(task.key)
                self._maybe_release(dep)

    def _done_message(self, task: Task) -> P.Message:
        if task.state == "memory" and task.worker is not None:
            return P.KeyDone(task.key, task.worker.name, task.worker.info.address, task.type_name, task.actor)
        if task.state in ("erred", "cancelled"):
            return P.KeyErred(task.key, task.error)
        return P.KeyLost(task.key, task.error)
