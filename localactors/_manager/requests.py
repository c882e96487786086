"""Client requests that reach every worker: ``Client.run`` and ``Client.restart``.

Runs in: the manager process, on its one main thread (no locks needed).

:class:`WorkerRequests` keeps the books of both for the manager. ``run`` sends a
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
    from .books import Send
    from .scheduler import Scheduler
    from .supervise import Supervisor


@dataclass
class _Run:
    client: Any  #: the link to answer on
    req_id: int
    waiting: dict[str, str]  #: worker name -> address, not answered yet
    results: dict[str, tuple[bool, bytes]] = field(default_factory=dict)  #: address -> outcome


class WorkerRequests:
    """``Client.run`` and ``Client.restart``: the requests in progress, and their answers."""

    def __init__(self, scheduler: Scheduler, supervisor: Supervisor, send: Send) -> None:
        self._scheduler = scheduler
        self._supervisor = supervisor  # starts the new workers of a restart, knows how many to keep
        self._send = send
        self._runs: dict[int, _Run] = {}
        self._restarts: list[tuple[Any, int, set[str]]] = []  #: (client link, req_id, old worker names)
        self._run_ids = itertools.count()

    # -- Client.run -------------------------------------------------------------------

    def run_on_workers(self, link: Any, msg: P.RunOnWorkers) -> None:
        """A client's ``run``: send the function to every worker it names (all, if none)."""
        wanted = set(msg.workers)
        targets = [
            ws
            for ws in sorted(self._scheduler.workers.values(), key=lambda w: w.index)
            if ws.alive and not ws.retiring and (not wanted or {ws.name, ws.info.address} & wanted)
        ]
        run_id = next(self._run_ids)
        run = _Run(link, msg.req_id, {ws.name: ws.info.address for ws in targets})
        self._runs[run_id] = run
        for ws in targets:
            self._send(ws.link, P.RunFunction(run_id, msg.payload))
        self._maybe_answer(run_id)

    def run_result(self, worker: str, msg: P.RunResult) -> None:
        """``worker``'s answer to a run."""
        run = self._runs.get(msg.run_id)
        if run is None or worker not in run.waiting:
            return
        run.results[run.waiting.pop(worker)] = (msg.ok, msg.payload)
        self._maybe_answer(msg.run_id)

    def worker_gone(self, worker: str) -> None:
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

    def restart(self, link: Any, req_id: int) -> None:
        """A client's ``restart``: cancel everything, retire every worker, start as many new ones."""
        self._scheduler.cancel_all()
        old = [ws for ws in self._scheduler.workers.values() if not ws.retiring]
        for ws in old:
            ws.retiring = True  # left on purpose: not replaced when it goes, nor warned about
            self._send(ws.link, P.Shutdown())
        for _ in range(max(self._supervisor.target, 0)):
            self._supervisor.spawn()
        self._restarts.append((link, req_id, {ws.name for ws in old}))
        self.workers_changed()

    def workers_changed(self) -> None:
        """Acknowledge the restarts whose old workers are gone and whose new ones are in."""
        if not self._restarts:
            return
        names = set(self._scheduler.workers)
        for entry in list(self._restarts):
            link, req_id, old = entry
            if not old & names and len(names) >= self._supervisor.target:
                self._restarts.remove(entry)
                self._send(link, P.Ack(req_id))
