"""Worker loss: what becomes of the tasks, data and actors a worker that died or left had.

Runs in: the manager process, on its one main thread (no locks needed).

A collaborator of :class:`~localactors._manager.scheduler.Scheduler`, which
calls :meth:`Recovery.take_back` from ``remove_worker`` once the worker is off
its books and placement. What was running there runs elsewhere, unless it has
now been running on more than ``allowed_failures`` workers that died
(``KilledWorker``); what lived there is recomputed if its Futures are still
held, restarted if it is an actor with restarts left, and lost otherwise
(``KeyLost``, and its dependents fail). Each task taken back starts over once
the inputs it needs are back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from .._base.errors import ActorLostError, KilledWorker, WorkerLostError, dump_exception
from .._wire import protocol as P
from .books import FAILED, NOT_STARTED, Task, TaskStatus, WorkerState
from .placement import Placement


class WorkerLoss(NamedTuple):
    """A worker that just died or left, and how: what errors about it say."""

    name: str
    reason: str
    exitcode: int | None

    def error(self, cls: type[WorkerLostError], what: str) -> bytes:
        return dump_exception(cls(f"{what} lost: worker {self.name} {self.reason}", self.name, self.exitcode))

    def killed_worker(self, task: Task) -> bytes:
        why = f"task {task.key!r} was running on {task.failures} workers that died; last: {self.name} {self.reason}"
        return dump_exception(KilledWorker(why, self.name, self.exitcode))


class Recovery:
    """Reruns, recomputes, restarts or gives up what a lost worker had.

    ``tasks`` and ``placement`` are the scheduler's; ``erred`` fails a task
    (and its dependents), ``notify`` tells a key's holders a message, and
    ``referenced`` says whether anything still wants a key's value: the
    scheduler's own steps, which this uses and does not duplicate.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task],
        placement: Placement,
        allowed_failures: int,
        erred: Callable[[Task, bytes], None],
        notify: Callable[[str, P.Message], None],
        referenced: Callable[[str], bool],
    ) -> None:
        self.allowed_failures = allowed_failures  #: workers a task may kill before it fails with KilledWorker
        self._tasks = tasks
        self._placement = placement
        self._erred = erred
        self._notify = notify
        self._referenced = referenced

    def take_back(self, ws: WorkerState, loss: WorkerLoss) -> tuple[str, ...]:
        """Everything ``ws`` ran or held, dealt with; returns the keys of the actors restarting."""
        rerun = self._requeue_runs(ws, loss)
        recovered = self._recover_keys(ws, loss)
        restarting = tuple(task.key for task in recovered if task.actor is not None)
        for task in rerun + recovered:  # start each over once the inputs it needs are back
            if task.status is TaskStatus.WAITING:  # not erred meanwhile through a lost input
                self._wait_for_deps(task)
        return restarting

    def _requeue_runs(self, ws: WorkerState, loss: WorkerLoss) -> list[Task]:
        """What was running on ``ws``: to run elsewhere, unless it keeps killing workers."""
        rerun = []
        for task in self._tasks_on(ws, ws.processing):
            if task.spec is None:  # scattered data on its way there: nothing to rerun
                self._lose(task, loss.error(WorkerLostError, f"scattered {task.key!r}"))
                continue
            task.failures += 1
            if task.failures > self.allowed_failures:
                self._erred(task, loss.killed_worker(task))
            else:
                task.status = TaskStatus.WAITING
                rerun.append(task)
        return rerun

    def _recover_keys(self, ws: WorkerState, loss: WorkerLoss) -> list[Task]:
        """What lived on ``ws``: actors to restart and data still wanted, to compute again; the rest is lost."""
        recovered = []
        for task in self._tasks_on(ws, ws.has | ws.actors):
            if task.actor is not None and task.restarts_left > 0 and task.spec is not None:
                task.restarts_left -= 1
                task.restarting = True
                task.status = TaskStatus.WAITING
                recovered.append(task)
            elif task.actor is None and task.spec is not None and self._referenced(task.key):
                self._recompute(task)  # its Futures are still held
                recovered.append(task)
            elif task.actor is not None:
                self._lose(task, loss.error(ActorLostError, f"actor {task.key}"))
            else:
                self._lose(task, loss.error(WorkerLostError, f"data of {task.key!r}"))
        return recovered

    def _tasks_on(self, ws: WorkerState, keys: set[str]) -> Iterator[Task]:
        """The tasks of ``keys`` that ``ws`` still has when their turn comes (in key
        order: handling one may release or fail another), each taken off ``ws``."""
        for key in sorted(keys):
            task = self._tasks.get(key)
            if task is not None and task.worker is ws:
                task.worker = None
                yield task

    def _recompute(self, task: Task) -> None:
        """``task``'s value died with its worker: its holders and dependents wait for it again."""
        task.status = TaskStatus.WAITING
        self._notify(task.key, P.KeyReset(task.key))
        for dep_key in task.dependents:
            dependent = self._tasks.get(dep_key)
            if dependent is not None and dependent.status in NOT_STARTED:
                dependent.waiting_on.add(task.key)
                dependent.status = TaskStatus.WAITING
                self._placement.unpark(dep_key)

    def _lose(self, task: Task, error: bytes) -> None:
        """The key's value is gone for good: tell its holders, fail its dependents."""
        task.status, task.error, task.worker = TaskStatus.LOST, error, None
        self._placement.unpark(task.key)
        self._notify(task.key, P.KeyLost(task.key, task.error))
        for dep_key in list(task.dependents):
            dependent = self._tasks.get(dep_key)
            if dependent is not None and dependent.status in NOT_STARTED:
                self._erred(dependent, task.error)

    def _wait_for_deps(self, task: Task) -> None:
        """(Re)start ``task``: schedule it now, or when its missing inputs are back."""
        assert task.spec is not None
        task.waiting_on = set()
        for dep in task.spec.deps:
            dt = self._tasks.get(dep)
            if dt is None or dt.status in FAILED:
                err = WorkerLostError(f"dependency {dep!r} of {task.key!r} is gone")
                self._erred(task, dt.error if dt is not None and dt.error else dump_exception(err))
                return
            dt.dependents.add(task.key)
            if dt.status is not TaskStatus.MEMORY:
                task.waiting_on.add(dep)
        if not task.waiting_on:
            self._placement.schedule(task)
