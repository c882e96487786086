"""Placement: which live worker runs a task, and the resources it takes there.

Runs in: the manager process, on its one main thread (no locks needed).

A collaborator of :class:`~localactors._manager.scheduler.Scheduler`. Tasks
go where they are allowed (``workers=``, resources), actors to the worker with
the fewest, other tasks to the least busy worker per thread, preferring one
that already holds their inputs. A task no worker fits waits in ``no_worker``
until resources are given back or a worker joins; one bound to workers that
all died fails at once, since names are never reused.

It owns each worker's free resources: taken when a task is sent, given back
when its run ends (an actor's when the actor is dropped). A task released
while running is an *orphan*: its resources stay taken until its run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .._base.errors import WorkerLostError, dump_exception
from .._wire import protocol as P
from .books import DeadWorker, Send, Task, TaskStatus, WorkerState


class Placement:
    """Chooses workers for tasks and keeps their free resources.

    ``workers`` and ``tasks`` are the scheduler's books, read here; ``fail``
    is how a task that can never be placed is failed.
    """

    def __init__(
        self,
        workers: Mapping[str, WorkerState],
        tasks: Mapping[str, Task],
        send: Send,
        fail: Callable[[Task, bytes], None],
    ) -> None:
        self._workers = workers
        self._tasks = tasks
        self._send = send
        self._fail = fail
        self._free: dict[str, dict[str, float]] = {}  # live worker's name -> resource -> amount free
        self.no_worker: dict[str, Task] = {}  # key -> task that fits no live worker yet
        self._orphans: dict[str, Task] = {}  # key -> task released while running, resources still taken
        self._dead: dict[str, DeadWorker] = {}  # by name and by address

    # -- workers -------------------------------------------------------------------

    def add_worker(self, ws: WorkerState) -> None:
        """``ws`` joined: its resources are free, and it may fit a waiting task."""
        self._free[ws.name] = dict(ws.info.resources)
        self._retry_no_worker()

    def remove_worker(self, ws: WorkerState, reason: str) -> None:
        """``ws`` died or left: nothing comes back from it, tasks bound to it fail."""
        del self._free[ws.name]
        dead = DeadWorker(ws.name, ws.info.address, reason)
        self._dead[dead.name] = self._dead[dead.address] = dead
        for key in [k for k, t in self._orphans.items() if t.worker is ws]:
            del self._orphans[key]

    def unplaced(self) -> list[Task]:
        """The tasks no live worker fits (a copy: failing one may place or fail others)."""
        return list(self.no_worker.values())

    def free(self, ws: WorkerState) -> dict[str, float]:
        """What ``ws`` has left of each resource (a copy)."""
        return dict(self._free.get(ws.name, {}))

    # -- tasks ---------------------------------------------------------------------

    def schedule(self, task: Task) -> None:
        """Send ``task`` to the best worker, or park it in ``no_worker``."""
        spec = task.spec
        if spec is not None and not (spec.deps or spec.workers or spec.resources or spec.actor):
            # the usual task (a map's): the least busy live worker per thread, the oldest
            # on ties (the dict is in registration order), in one loop with no call per worker
            ws: WorkerState | None = None
            least = 0.0
            for w in self._workers.values():
                if w.alive and not w.retiring:
                    load = len(w.processing) / w.info.nthreads
                    if ws is None or load < least:
                        ws, least = w, load
        else:
            ws = self._choose(task)
        if ws is None:
            dead = self._dead_restriction(task.spec)
            if dead is not None:  # names are never reused: waiting would be forever
                err = WorkerLostError(f"{task.key!r} may only run on {dead.name}, which died: {dead.reason}", dead.name)
                self._fail(task, dump_exception(err))
                return
            task.status = TaskStatus.NO_WORKER
            self.no_worker[task.key] = task
            return
        assert spec is not None
        if self.no_worker:
            self.no_worker.pop(task.key, None)
        if spec.resources:
            free = self._free[ws.info.name]
            for r, q in spec.resources:
                free[r] = free.get(r, 0) - q
        task.status = TaskStatus.PROCESSING
        task.worker = ws
        ws.processing.add(task.key)
        if spec.actor:
            ws.starting_actors.add(task.key)
        who_has = (
            tuple((d, holder.info.address) for d in spec.deps if (holder := self._holder(d)) is not None)
            if spec.deps
            else ()
        )
        self._send(ws.link, P.RunTask(spec, who_has))

    def unpark(self, key: str) -> None:
        """``key`` no longer waits for a worker (placed elsewhere, failed or released)."""
        self.no_worker.pop(key, None)

    def give_back(self, ws: WorkerState, task: Task) -> None:
        """``task``'s run on ``ws`` ended (or its actor was dropped): free its resources."""
        free = self._free.get(ws.name)
        if task.spec is not None and task.spec.resources and free is not None:
            for r, q in task.spec.resources:
                free[r] = free.get(r, 0) + q
            self._retry_no_worker()

    def orphan(self, task: Task) -> None:
        """``task`` was released while running: keep its resources taken until the run ends."""
        if task.spec is not None and task.spec.resources:
            self._orphans[task.key] = task

    def run_ended(self, ws: WorkerState, key: str) -> None:
        """A run of ``key`` on ``ws`` ended: if it was an orphan, give back what it held."""
        if not self._orphans:
            return
        orphan = self._orphans.get(key)
        if orphan is not None and orphan.worker is ws:
            del self._orphans[key]
            self.give_back(ws, orphan)

    # -- choosing ------------------------------------------------------------------

    def _holder(self, key: str) -> WorkerState | None:
        task = self._tasks.get(key)
        return task.worker if task is not None else None

    def _candidates(self, spec: P.TaskSpec | None) -> list[WorkerState]:
        live = [w for w in self._workers.values() if w.alive and not w.retiring]
        if spec is None:
            return live
        allowed = live
        if spec.workers:
            wanted = set(spec.workers)
            allowed = [w for w in live if w.name in wanted or w.info.address in wanted]
            if not allowed and spec.allow_other_workers:
                allowed = live
        if spec.resources:
            allowed = [w for w in allowed if all(self._free[w.name].get(r, 0) >= q for r, q in spec.resources)]
        return allowed

    def _choose(self, task: Task) -> WorkerState | None:
        """The worker for a task with inputs, restrictions or resources, or an actor (see :meth:`schedule`)."""
        spec = task.spec
        candidates = self._candidates(spec)
        if not candidates:
            return None
        if spec is not None and spec.actor:
            # actors still being constructed count too, or a burst of creations
            # piles onto whichever worker finished its first one last (kept as a
            # set: counting them in ``processing`` made a burst of n creations O(n^2))
            return min(candidates, key=lambda w: (len(w.actors) + len(w.starting_actors), len(w.processing), w.index))

        def local_deps(w: WorkerState) -> int:
            return sum(1 for d in spec.deps if d in w.has) if spec is not None else 0

        return min(candidates, key=lambda w: (len(w.processing) / w.info.nthreads, -local_deps(w), w.index))

    def _dead_restriction(self, spec: P.TaskSpec | None) -> DeadWorker | None:
        """The dead worker a task is bound to, if every worker it may use is dead."""
        if spec is None or not spec.workers or spec.allow_other_workers:
            return None
        if all(w in self._dead for w in spec.workers):
            return self._dead[spec.workers[0]]
        return None

    def _retry_no_worker(self) -> None:
        for task in list(self.no_worker.values()):
            if task.key in self.no_worker:
                self.schedule(task)
