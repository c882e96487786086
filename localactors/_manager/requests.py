"""Client requests that reach every worker: ``Client.run`` and ``Client.restart``.

Runs in: the manager process, on its one main thread (no locks needed).

A mixin of :class:`~localactors._manager.manager.Manager`. ``run`` sends a
``RunFunction`` to each worker asked for and answers the client one
``RunReply`` once all have answered, or died (their entry is then a
``WorkerLostError``). ``restart`` cancels every key, starts a new worker for
each live one, retires the old ones, and acknowledges once the new ones are
in and the old ones gone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._base.errors import WorkerLostError, dump_exception
from .._wire import protocol as P

if TYPE_CHECKING:
    from .scheduler import Scheduler


@dataclass
class _Run:
    client: Any  #: the link to answer on
    req_id: int
    waiting: dict[str, str]  #: worker name -> address, not answered yet
    results: dict[str, tuple[bool, bytes]] = field(default_factory=dict)  #: address -> outcome


class ClientRequests:
    """``Client.run`` and ``Client.restart``, for the manager."""

    scheduler: Scheduler
    target: int

    if TYPE_CHECKING:

        def _send(self, link: Any, msg: P.Message) -> None: ...

        def spawn_worker(self) -> None: ...

    _runs: dict[int, _Run]
    _restarts: list[tuple[Any, int, set[str]]]  #: (client link, req_id, old worker names)
    _run_ids: itertools.count[int]

    def _init_requests(self) -> None:
        self._runs = {}
        self._restarts = []
        self._run_ids = itertools.count()

    # -- Client.run -------------------------------------------------------------------

    def _run_on_workers(self, link: Any, msg: P.RunOnWorkers) -> None:
        wanted = set(msg.workers)
        targets = [
            ws
            for ws in sorted(self.scheduler.workers.values(), key=lambda w: w.index)
            if ws.alive and not ws.retiring and (not wanted or {ws.name, ws.info.address} & wanted)
        ]
        run_id = next(self._run_ids)
        run = _Run(link, msg.req_id, {ws.name: ws.info.address for ws in targets})
        self._runs[run_id] = run
        for ws in targets:
            self._send(ws.link, P.RunFunction(run_id, msg.payload))
        self._maybe_answer(run_id)

    def _run_result(self, worker: str, msg: P.RunResult) -> None:
        run = self._runs.get(msg.run_id)
        if run is None or worker not in run.waiting:
            return
        run.results[run.waiting.pop(worker)] = (msg.ok, msg.payload)
        self._maybe_answer(msg.run_id)

    def _runs_worker_gone(self, worker: str) -> None:
        """A worker left: the runs waiting for it get a ``WorkerLostError`` in its place."""
        for run_id, run in list(self._runs.items()):
            address = run.waiting.pop(worker, None)
            if address is not None:
                err = WorkerLostError(f"worker {worker} left before its run() ended", worker)
                run.results[address] = (False, dump_exception(err))
                self._maybe_answer(run_id)

    def _maybe_answer(self, run_id: int) -> None:
        run = self._runs[run_id]
        if run.waiting:
            return
        del self._runs[run_id]
        results = tuple((address, ok, payload) for address, (ok, payload) in run.results.items())
        self._send(run.client, P.RunReply(run.req_id, results))

    # -- Client.restart -------------------------------------------------------------------

    def _restart(self, link: Any, req_id: int) -> None:
        self.scheduler.cancel_all()
        old = [ws for ws in self.scheduler.workers.values() if not ws.retiring]
        for ws in old:
            ws.retiring = True  # left on purpose: not replaced when it goes, nor warned about
            self._send(ws.link, P.Shutdown())
        for _ in range(max(self.target, 0)):
            self.spawn_worker()
        self._restarts.append((link, req_id, {ws.name for ws in old}))
        self._restart_check()

    def _restart_check(self) -> None:
        """Acknowledge the restarts whose old workers are gone and whose new ones are in."""
        if not self._restarts:
            return
        names = set(self.scheduler.workers)
        for entry in list(self._restarts):
            link, req_id, old = entry
            if not old & names and len(names) >= self.target:
                self._restarts.remove(entry)
                self._send(link, P.Ack(req_id))
