"""Supervision: watching worker processes, announcing their deaths, stopping them.

Runs in: the manager process, on its one main thread (no locks needed), plus
one short-lived reaper thread per dropped worker.

A mixin of :class:`~localactors._manager.Manager`, which owns the state it
reads and spawns the workers. A worker whose link drops is reaped (by a reaper
thread waiting on its process, so the main loop never blocks in ``join``) and
its exit code or signal told to every node (``WorkerDied``), milliseconds
after the drop, after the scheduler has rerun, recomputed or restarted what it
had; a replacement is spawned to keep ``n_workers``. With ``memory_limit``
each worker's RSS is checked every ``MEMORY_CHECK_INTERVAL`` s and a worker
over the limit is killed (and so replaced). Workers that die before they
register are replaced a few times, then the start fails with the reason.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._base.config import ManagerConfig
    from .scheduler import Scheduler, WorkerState

logger = logging.getLogger("localactors.manager")

#: consecutive workers dying before they register, after which we stop replacing them
MAX_START_FAILURES = 3
#: how long a worker's process gets to end after its link dropped before its death is
#: announced without an exit code (well inside the callers' ``DEATH_NOTICE_WAIT``)
REAP_TIMEOUT = 0.3


def exit_reason(exitcode: int | None, retiring: bool) -> str:
    """How a worker process ended, in words (completes "worker-1 ...")."""
    if exitcode is None:
        return "closed its connection (its process had not ended yet)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-exitcode} ({name})"
    if exitcode:
        return f"exited with code {exitcode}"
    return "left the cluster" if retiring else "exited unexpectedly (code 0)"


class _Reaped:
    """A dropped worker's process has ended (or ran out of ``REAP_TIMEOUT``)."""

    __slots__ = ("link",)

    def __init__(self, link: Any) -> None:
        self.link = link


#: what a thread worker (``processes=False``) that was not asked to leave died of
THREAD_WORKER_DIED = "closed its connection (workers are threads of the cluster's process: there is no exit code)"


class Supervision:
    """Reaps, replaces, meters and stops the manager's worker processes."""

    # the manager state this half uses (set up in ``Manager.__init__``)
    config: ManagerConfig
    inbox: SimpleQueue[Any]
    scheduler: Scheduler
    processes: dict[str, Any]
    target: int
    ready_sent: bool
    running: bool
    kill_reasons: dict[str, str]
    dying: dict[Any, tuple[WorkerState, Any]]
    start_failures: int
    _meters: dict[str, Any]

    if TYPE_CHECKING:

        def spawn_worker(self) -> None: ...

        def _reply_control(self, obj: object) -> None: ...

        def _maybe_ready(self) -> None: ...

        def _release_relays(self, address: str) -> None: ...

    def _check_workers(self) -> None:
        """Kill workers over their memory limit; replace workers that died starting."""
        for name, proc in list(self.processes.items()):
            if name not in self.scheduler.workers and not proc.is_alive():
                del self.processes[name]
                self.start_failures += 1
                logger.warning("%s died while starting (exit code %s)", name, proc.exitcode)
                if self.running and self.start_failures <= MAX_START_FAILURES:
                    self.spawn_worker()
                elif not self.ready_sent:
                    # the cluster is waiting for us to be ready: say why we never will be,
                    # rather than let it wait out its timeout
                    self.ready_sent = True
                    last = exit_reason(proc.exitcode, False)
                    why = f"{self.start_failures} workers in a row died before registering; last: {name} {last}"
                    self._reply_control(("failed", why))
                    self.running = False
        limit = self.config.memory_limit
        if limit is None or self.config.in_process:
            return
        import psutil

        for name, ws in list(self.scheduler.workers.items()):
            try:
                meter = self._meters.get(name)
                if meter is None:
                    meter = self._meters[name] = psutil.Process(ws.info.pid)
                rss = meter.memory_info().rss
            except psutil.Error:
                continue
            if rss > limit and name not in self.kill_reasons:
                mib = 2**20
                self.kill_reasons[name] = (
                    f"exceeded its memory limit ({rss / mib:.0f} MiB > {limit / mib:.0f} MiB)"
                    " and was killed; a new worker replaces it"
                )
                logger.warning("%s %s", name, self.kill_reasons[name])
                proc = self.processes.get(name)
                if proc is not None:
                    proc.kill()

    def _worker_link_closed(self, link: Any, ws: WorkerState) -> None:
        """A worker's link dropped: announce its death once its process has ended."""
        proc = self.processes.pop(ws.name, None)
        self._meters.pop(ws.name, None)
        self.dying[link] = (ws, proc)
        if proc is None or self.config.in_process or proc.exitcode is not None:
            self._worker_reaped(link)  # nothing to wait for: announce now
        else:
            # its process ends milliseconds after its socket closed (or it is a
            # stuck child that kept it): wait on it in a thread, never here, where
            # every other node's messages wait behind us
            threading.Thread(
                target=self._reap, args=(link, proc), name=f"localactors-reap-{ws.name}", daemon=True
            ).start()

    def _reap(self, link: Any, proc: Any) -> None:
        proc.join(REAP_TIMEOUT)  # returns once the process ended: its sentinel is ready
        self.inbox.put((link, _Reaped(link)))

    def _worker_reaped(self, link: Any) -> None:
        """Announce a dropped worker's death, with its exit code if it has one."""
        entry = self.dying.pop(link, None)
        if entry is None:
            return
        ws, proc = entry
        code = None
        if proc is None:
            reason = "left the cluster"
        elif self.config.in_process:
            # a thread has no exit code or signal: 0 or 1 would be read as one
            reason = "left the cluster" if ws.retiring else THREAD_WORKER_DIED
        else:
            code = proc.exitcode
            reason = exit_reason(code, ws.retiring)
            from .._wire import shm

            shm.sweep(shm.prefix_for(self.config.authkey), proc.pid)  # what it wrote and never sent
        reason = self.kill_reasons.pop(ws.name, reason)
        if code not in (0, None) or not ws.retiring:
            logger.warning("%s %s", ws.name, reason)
        else:
            self.start_failures = 0
        notice = self.scheduler.remove_worker(ws.name, reason, code)
        if notice is not None:
            # after the per-key messages: a node with the notice has seen them
            self.scheduler.broadcast(notice)
        self._release_relays(ws.info.address)
        self.scheduler.drop_holder(link)
        if self.running and not ws.retiring and len(self.scheduler.workers) < self.target:
            self.spawn_worker()  # keep n_workers
        self._maybe_ready()

    def _stop_processes(self, grace: float) -> None:
        """Wait ``grace`` s for the workers asked to leave, then SIGTERM, then SIGKILL."""
        procs = list(self.processes.values())
        deadline = time.monotonic() + grace
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        stuck = [proc for proc in procs if proc.is_alive()]
        for proc in stuck:
            logger.warning("%s did not stop within %.1f s: terminating it", proc.name, grace)
            proc.terminate()
        deadline = time.monotonic() + 0.5
        for proc in stuck:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(0.5)
