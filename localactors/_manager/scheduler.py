"""The manager's bookkeeping: tasks, workers, failures, and when keys are released.

Runs in: the manager process, on its one main thread (no locks needed).

Pure state machine: every handler updates state and sends messages through
the ``send`` callback it was given; it never blocks. The records and the task
states are in :mod:`~localactors._manager.books`. Collaborators own their
own state: :class:`~localactors._manager.placement.Placement` (which worker
runs a task, free resources, tasks no worker fits),
:class:`~localactors._manager.refcount.References` (who holds which key) and
:class:`~localactors._manager.loss.Recovery` (what a lost worker had: rerun,
recompute, restart or give up).
The scheduler releases a key once nothing refers to it: then its worker frees
the data or drops the actor.
"""

from __future__ import annotations

import logging
from concurrent.futures import CancelledError
from typing import Any

from .._base.errors import WorkerLostError, dump_exception
from .._wire import protocol as P
from .books import FAILED, NOT_STARTED, UNFINISHED, Send, Task, TaskStatus, WorkerState
from .loss import Recovery, WorkerLoss
from .placement import Placement
from .refcount import References

__all__ = ["Scheduler", "WorkerState"]

logger = logging.getLogger("localactors.scheduler")

#: a dependent in one of these needs its inputs no more
_DONE_WITH_INPUTS = frozenset({TaskStatus.MEMORY, TaskStatus.ERRED, TaskStatus.CANCELLED})


class Scheduler:
    """Knows every task, every worker and every reference."""

    def __init__(self, send: Send, allowed_failures: int = 3) -> None:
        self.send = send
        self.workers: dict[str, WorkerState] = {}
        self.tasks: dict[str, Task] = {}
        self.client_links: set[Any] = set()
        self.placement = Placement(self.workers, self.tasks, send, self._erred)
        self.refs = References()
        self.recovery = Recovery(
            self.tasks, self.placement, allowed_failures, self._erred, self._notify, self._referenced
        )
        #: tasks released while running: they keep their inputs until the run ends
        self._released_running: dict[str, Task] = {}
        self._index = 0

    def status(self, key: str) -> TaskStatus:
        task = self.tasks.get(key)
        return task.status if task is not None else TaskStatus.RELEASED

    def broadcast(self, msg: P.Message) -> None:
        """Send ``msg`` to every client and every live worker."""
        for link in list(self.client_links):
            self.send(link, msg)
        for ws in list(self.workers.values()):
            self.send(ws.link, msg)

    # -- workers -------------------------------------------------------------------

    def add_worker(self, info: P.WorkerInfo, link: Any) -> WorkerState:
        ws = WorkerState(info, link, self._index)
        self._index += 1
        self.workers[info.name] = ws
        self.placement.add_worker(ws)
        return ws

    def remove_worker(self, name: str, reason: str, exitcode: int | None = None) -> P.WorkerDied | None:
        """A worker died or left: rerun, recompute, restart or give up what it had (:mod:`.loss`).

        Returns the notice for every node. The manager sends it *after* the
        per-key messages sent here, so a node holding the notice has seen them.
        """
        ws = self.workers.pop(name, None)
        if ws is None:
            return None
        ws.alive = False
        self.placement.remove_worker(ws, reason)
        for key in [k for k, t in self._released_running.items() if t.worker is ws]:
            self._released_run_ended(key, ws)
        restarting = self.recovery.take_back(ws, WorkerLoss(name, reason, exitcode))
        return P.WorkerDied(name, ws.info.address, reason, exitcode, restarting)

    def fail_unplaced(self, error: bytes) -> None:
        """No worker can be kept alive: fail every task waiting for one, with ``error``."""
        for task in self.placement.unplaced():
            if task.status is TaskStatus.NO_WORKER:  # not failed meanwhile as a dependent of another
                self._erred(task, error)

    # -- client requests --------------------------------------------------------------

    def submit(self, specs: tuple[P.TaskSpec, ...], link: Any = None) -> None:
        for spec in specs:
            old = self.tasks.get(spec.key)
            if old is not None and old.status not in FAILED:
                if link in self.client_links and old.status not in UNFINISHED:
                    # the same pure task again: share it. A client that let go of the key
                    # (cancelled it while another kept it) hears its outcome again
                    self.send(link, self._done_message(old))
                continue  # the same pure task again: share it
            task = Task(spec.key, spec, retries_left=spec.retries, restarts_left=spec.max_restarts)
            self.tasks[spec.key] = task
            failed = None
            for dep in spec.deps:
                dt = self.tasks.get(dep)
                if dt is None or dt.status in (TaskStatus.LOST, TaskStatus.CANCELLED):
                    err = WorkerLostError(f"dependency {dep!r} of {spec.key!r} was released or lost")
                    failed = dt.error if dt is not None and dt.error else dump_exception(err)
                elif dt.status is TaskStatus.ERRED:
                    failed = dt.error
                else:
                    dt.dependents.add(spec.key)
                    if dt.status is not TaskStatus.MEMORY:
                        task.waiting_on.add(dep)
            if failed is not None:
                self._erred(task, failed)
            elif not task.waiting_on:
                self.placement.schedule(task)

    def scatter(self, items: tuple[tuple[str, bytes], ...], workers: tuple[str, ...]) -> None:
        # like submit(workers=...): a worker is named by its name or its address
        wanted = set(workers)
        live = [w for w in self.workers.values() if w.alive and (not wanted or {w.name, w.info.address} & wanted)]
        if not live:
            live = [w for w in self.workers.values() if w.alive]
        for i, (key, payload) in enumerate(items):
            old = self.tasks.get(key)
            if old is not None and old.status in (TaskStatus.PROCESSING, TaskStatus.MEMORY):
                continue  # the same value scattered again (hashed key): one copy, or one would leak
            ws = sorted(live, key=lambda w: (len(w.has), w.index))[0] if len(items) == 1 else live[i % len(live)]
            task = Task(key, None, status=TaskStatus.PROCESSING, worker=ws)
            self.tasks[key] = task
            ws.processing.add(key)
            self.send(ws.link, P.PutData(key, payload))

    def cancel(self, keys: tuple[str, ...], link: Any = None) -> None:
        """Cancel ``keys`` for the client at ``link``: as dask does, a key another client
        holds goes on for that client, and only this one hears it cancelled."""
        error = dump_exception(CancelledError("cancelled"))
        for key in keys:
            if link is not None and any(h is not link and h in self.client_links for h in self.refs.holders(key)):
                self.send(link, P.KeyErred(key, error))
                continue
            self._cancel(key, error)

    def cancel_all(self) -> None:
        """Cancel every key, for every client (``Client.restart``)."""
        error = dump_exception(CancelledError("cancelled: the cluster restarted"))
        for key in sorted(self.tasks):
            task = self.tasks.get(key)
            if task is not None and task.status in FAILED:
                task.status = TaskStatus.CANCELLED  # a failed key is forgotten too: its holders hear so
                task.error = error
                self._notify(key, P.KeyErred(key, error))
            else:
                self._cancel(key, error)

    def retry(self, keys: tuple[str, ...]) -> None:
        """Run failed keys again, the failed keys they depend on first (``Client.retry``)."""
        for key in keys:
            task = self.tasks.get(key)
            if task is None or task.spec is None or task.status is not TaskStatus.ERRED:
                continue
            self.retry(tuple(d for d in task.spec.deps if self.status(d) is TaskStatus.ERRED))
            self._notify(key, P.KeyReset(key))  # every holder waits for it again
            self.submit((task.spec,))  # a failed key is submitted afresh

    def who_has(self, keys: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Which workers hold each key's value (every key known, if ``keys`` is empty)."""
        out = []
        for key in keys or tuple(self.tasks):
            task = self.tasks.get(key)
            held = task is not None and task.status is TaskStatus.MEMORY and task.worker is not None
            out.append((key, (task.worker.info.address,) if held else ()))  # type: ignore[union-attr]
        return tuple(out)

    def _cancel(self, key: str, error: bytes) -> None:
        task = self.tasks.get(key)
        if task is None or task.status in FAILED:
            return
        self.placement.unpark(key)
        was = task.status
        task.status, task.error = TaskStatus.CANCELLED, error
        if was is TaskStatus.PROCESSING and task.worker is not None:
            # still running there: not ours to rerun if that worker dies, but
            # what it holds comes back when it ends (Placement.run_ended)
            task.worker.stop_processing(key)
            self.placement.orphan(task)
        self._notify(key, P.KeyErred(key, error))
        for dep_key in sorted(task.dependents):  # nothing will ever feed them now
            dependent = self.tasks.get(dep_key)
            if dependent is not None and dependent.status in NOT_STARTED:
                self._cancel(dep_key, error)
        self._finished_with_deps(task)
        if was is TaskStatus.MEMORY:
            self._release(key, force=True)
        else:
            self._maybe_release(key)

    # -- worker reports ---------------------------------------------------------------------

    def task_done(self, ws: WorkerState, msg: P.TaskDone) -> None:
        self._done(ws, msg.key, msg.type_name, msg.actor)

    def tasks_done(self, ws: WorkerState, msg: P.TasksDone) -> None:
        """Several plain tasks finished on ``ws``: each as its own ``TaskDone``."""
        done = self._done
        for key, _nbytes, type_name in msg.done:
            done(ws, key, type_name, None)

    def _done(self, ws: WorkerState, key: str, type_name: str, actor: P.ActorInfo | None) -> None:
        task = self.tasks.get(key)
        ws.processing.discard(key)
        if ws.starting_actors:
            ws.starting_actors.discard(key)
        self.placement.run_ended(ws, key)
        if self._released_running:
            self._released_run_ended(key, ws)
        if task is None or task.status is not TaskStatus.PROCESSING or task.worker is not ws:
            if task is not None and task.status is TaskStatus.MEMORY and task.worker is ws and actor is None:
                return  # a cancelled run of the same key ended here too: the data is the key's, keep it
            self.send(ws.link, P.FreeKeys((key,)))  # nobody wants it any more
            return
        task.status, task.type_name, task.actor = TaskStatus.MEMORY, type_name, actor
        if actor is not None:
            ws.actors.add(key)  # its resources stay held for the actor's life
            if task.restarting:  # every handle anywhere now reaches the new instance
                task.restarting = False
                self.broadcast(P.ActorMoved(key, ws.name, ws.info.address))
        else:
            ws.has.add(key)
            if task.spec is not None and task.spec.resources:
                self.placement.give_back(ws, task)
        self._notify(key, P.KeyDone(key, ws.info.name, ws.info.address, type_name, actor))
        if task.dependents:
            for dep_key in list(task.dependents):
                dependent = self.tasks.get(dep_key)
                if dependent is not None and dependent.status is TaskStatus.WAITING:
                    dependent.waiting_on.discard(key)
                    if not dependent.waiting_on:
                        self.placement.schedule(dependent)
        if task.spec is not None and task.spec.deps:
            self._finished_with_deps(task)
        if not self.refs.held(key):
            self._maybe_release(key)

    def task_erred(self, ws: WorkerState, msg: P.TaskErred) -> None:
        task = self.tasks.get(msg.key)
        ws.stop_processing(msg.key)
        self.placement.run_ended(ws, msg.key)
        self._released_run_ended(msg.key, ws)
        if task is None or task.worker is not ws or task.status is not TaskStatus.PROCESSING:
            return
        self.placement.give_back(ws, task)
        if task.spec is not None:
            gone = {d for d in task.spec.deps if self.status(d) in UNFINISHED}
            if gone:  # an input died with its worker while this ran: wait for its recomputation
                task.status, task.worker, task.waiting_on = TaskStatus.WAITING, None, gone
                for d in gone:
                    self.tasks[d].dependents.add(task.key)
                return
        if task.retries_left > 0:
            task.retries_left -= 1
            self.placement.schedule(task)
            return
        self._erred(task, msg.error)

    def _erred(self, task: Task, error: bytes) -> None:
        task.status, task.error, task.worker = TaskStatus.ERRED, error, None
        self.placement.unpark(task.key)
        if task.restarting:  # callers waiting for the new instance must hear it will not come
            task.restarting = False
            self.broadcast(P.ActorRestartFailed(task.key, error))
        self._notify(task.key, P.KeyErred(task.key, error))
        for dep_key in list(task.dependents):
            dependent = self.tasks.get(dep_key)
            if dependent is not None and dependent.status in NOT_STARTED:
                self._erred(dependent, error)
        self._finished_with_deps(task)
        self._maybe_release(task.key)

    def _released_run_ended(self, key: str, ws: WorkerState) -> None:
        """A run released while it ran is over: its inputs may go now."""
        task = self._released_running.get(key)
        if task is None or task.worker is not ws:
            return
        del self._released_running[key]
        if key not in self.tasks:  # submitted again meanwhile: the new task holds its inputs
            self._finished_with_deps(task)

    def _finished_with_deps(self, task: Task) -> None:
        if task.spec is None:
            return
        for dep in task.spec.deps:
            dt = self.tasks.get(dep)
            if dt is not None:
                dt.dependents.discard(task.key)
                self._maybe_release(dep)

    def _done_message(self, task: Task) -> P.Message:
        if task.status is TaskStatus.MEMORY and task.worker is not None:
            return P.KeyDone(task.key, task.worker.name, task.worker.info.address, task.type_name, task.actor)
        if task.status in (TaskStatus.ERRED, TaskStatus.CANCELLED):
            return P.KeyErred(task.key, task.error)
        return P.KeyLost(task.key, task.error)

    # -- references ----------------------------------------------------------------------------

    def ref_delta(self, link: Any, msg: P.RefDelta) -> None:
        # increments first, decrements last: a count never dips below the truth
        for key, d in msg.changes:
            if d > 0:
                self.refs.hold(link, key)
                task = self.tasks.get(key)
                if link in self.client_links and task is not None and task.status not in UNFINISHED:
                    self.send(link, self._done_message(task))  # a new holder of an outcome learns it now
        for token, key in msg.pins:
            self.refs.pin(token, key)
        for token in msg.unpins:
            pinned = self.refs.unpin(token)
            if pinned is not None:
                self._maybe_release(pinned)
        refs = self.refs
        for key, d in msg.changes:
            if d < 0:
                refs.drop(link, key)
                if not refs.held(key):
                    self._maybe_release(key)

    def drop_holder(self, link: Any) -> None:
        """A client or worker went away: drop every reference it held."""
        self.client_links.discard(link)
        for key in self.refs.held_by(link):
            self.refs.forget(link, key)
            self._maybe_release(key)

    def _notify(self, key: str, msg: P.Message) -> None:
        """Tell ``msg`` to every client holding ``key``."""
        for link in self.refs.holders(key):
            if link in self.client_links:
                self.send(link, msg)

    def _referenced(self, key: str) -> bool:
        if self.refs.held(key):
            return True
        task = self.tasks.get(key)
        return (
            task is not None
            and bool(task.dependents)
            and any(self.status(d) not in _DONE_WITH_INPUTS for d in task.dependents)
        )

    def _maybe_release(self, key: str) -> None:
        if not self._referenced(key):
            self._release(key)

    def _release(self, key: str, force: bool = False) -> None:
        task = self.tasks.get(key)
        if task is None:
            return
        del self.tasks[key]
        if task.status is TaskStatus.PROCESSING and not force:
            # let it finish; task_done will free the result, the resources and the inputs
            self.placement.orphan(task)
            self._released_running[key] = task
            return
        self.placement.unpark(key)
        ws = task.worker
        if ws is not None and ws.alive:
            ws.has.discard(key)
            if key in ws.actors:
                ws.actors.discard(key)
                self.placement.give_back(ws, task)
            self.send(ws.link, P.FreeKeys((key,)))
