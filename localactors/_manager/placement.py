"""Placement: which live worker runs a task, and the resources it takes there.

Runs in: the manager process, on its one main thread (no locks needed).

A mixin of :class:`~localactors._scheduler.Scheduler`, which owns the state
it reads. Tasks go where they are allowed (``workers=``, resources), actors
to the worker with the fewest, other tasks to the least busy worker per
thread, preferring one that already holds their inputs. A task no worker fits
waits in ``no_worker`` until resources are given back or a worker joins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._base.errors import WorkerLostError, dump_exception
from .._wire import protocol as P

if TYPE_CHECKING:
    from .scheduler import Send, Task, WorkerState


class Placement:
    """Chooses workers for tasks and keeps their free resources."""

    send: Send
    workers: dict[str, WorkerState]
    tasks: dict[str, Task]
    no_worker: dict[str, Task]
    death_reasons: dict[str, str]
    dead_addresses: dict[str, str]

    if TYPE_CHECKING:

        def _erred(self, task: Task, error: bytes) -> None: ...

    def _candidates(self, spec: P.TaskSpec | None) -> list[WorkerState]:
        live = [w for w in self.workers.values() if w.alive and not w.retiring]
        if spec is None:
            return live
        allowed = live
        if spec.workers:
            wanted = set(spec.workers)
            allowed = [w for w in live if w.name in wanted or w.info.address in wanted]
            if not allowed and spec.allow_other_workers:
                allowed = live
        if spec.resources:
            allowed = [w for w in allowed if all(w.free.get(r, 0) >= q for r, q in spec.resources)]
        return allowed

    def _choose(self, task: Task) -> WorkerState | None:
        candidates = self._candidates(task.spec)
        if not candidates:
            return None
        spec = task.spec
        if spec is not None and spec.actor:
            # actors still being constructed count too, or a burst of creations
            # piles onto whichever worker finished its first one last
            return min(candidates, key=lambda w: (len(w.actors) + self._actors_starting(w), len(w.processing), w.index))

        def local_deps(w: WorkerState) -> int:
            return sum(1 for d in spec.deps if d in w.has) if spec is not None else 0

        return min(candidates, key=lambda w: (len(w.processing) / w.info.nthreads, -local_deps(w), w.index))

    def _actors_starting(self, ws: WorkerState) -> int:
        # kept as a set: counting them in ``processing`` made a burst of n creations O(n^2)
        return len(ws.starting_actors)

    def _schedule(self, task: Task) -> None:
        ws = self._choose(task)
        if ws is None:
            dead = self._dead_restriction(task.spec)
            if dead:  # names are never reused: waiting would be forever
                err = WorkerLostError(
                    f"{task.key!r} may only run on {dead}, which died: {self.death_reasons[dead]}", dead
                )
                self._erred(task, dump_exception(err))
                return
            task.state = "no-worker"
            self.no_worker[task.key] = task
            return
        assert task.spec is not None
        self.no_worker.pop(task.key, None)
        for r, q in task.spec.resources:
            ws.free[r] = ws.free.get(r, 0) - q
        task.state = "processing"
        task.worker = ws
        ws.processing.add(task.key)
        if task.spec.actor:
            ws.starting_actors.add(task.key)
        who_has = tuple(
            (d, self.tasks[d].worker.info.address)  # type: ignore[union-attr]
            for d in task.spec.deps
            if d in self.tasks and self.tasks[d].worker is not None
        )
        self.send(ws.link, P.RunTask(task.spec, who_has))

    def _dead_restriction(self, spec: P.TaskSpec | None) -> str:
        """The dead worker a task is bound to, if every worker it may use is dead."""
        if spec is None or not spec.workers or spec.allow_other_workers:
            return ""
        dead = [self.dead_addresses.get(w, w) for w in spec.workers]
        if all(name in self.death_reasons for name in dead):
            return dead[0]
        return ""

    def _retry_no_worker(self) -> None:
        for task in list(self.no_worker.values()):
            if task.key in self.no_worker:
                self._schedule(task)

    def _give_back(self, ws: WorkerState, task: Task) -> None:
        if task.spec is not None and task.spec.resources and ws.alive:
            for r, q in task.spec.resources:
                ws.free[r] = ws.free.get(r, 0) + q
            self._retry_no_worker()
