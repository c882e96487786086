"""Supervisor: the manager's worker processes: spawning, reaping, replacing, stopping.

Runs in: the manager process, on its one main thread (no locks needed), plus
one short-lived reaper thread per dropped worker.

The :class:`Supervisor` owns the worker processes and everything about their
lives: how many are wanted, which are dying, why one was killed, how many in a
row died while starting, and each one's memory meter. The manager hands it the
scheduler (to announce deaths), a ``send`` callable, its inbox's ``post`` and
the output pump. A worker whose link drops is reaped (by a reaper thread
waiting on its process, so the main loop never blocks in ``join``) and its exit
code or signal told to every node (``WorkerDied``), milliseconds after the
drop, after the scheduler has rerun, recomputed or restarted what it had; a
replacement is spawned to keep the target. A worker's process is also watched
itself (``waitpid`` at every check): one that ends while a child it forked
keeps its socket open is announced all the same. A heartbeat (``Ping``, answered by the
worker's manager-link reader) finds a worker that hangs alive (SIGSTOP, a C
call holding the GIL): silent past ``worker_timeout`` it is killed, and so
replaced. With ``memory_limit`` each worker's RSS is checked every check
interval and a worker over the limit is killed (and so replaced). Workers that
die before they register are replaced with a backoff; after a few in a row
with no worker alive, :attr:`Supervisor.gave_up` says why, and the manager
fails the work that waits for a worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from .._base.config import ManagerConfig, WorkerConfig
from .._base.runner import Runner, make_runner
from .._wire import protocol as P
from .._wire import shm
from .inbox import Post, Reaped

if TYPE_CHECKING:
    from .books import Send, WorkerState
    from .output import OutputPump
    from .scheduler import Scheduler

logger = logging.getLogger("localactors.manager")

#: consecutive workers dying before they register, after which, with no worker
#: alive, the cluster has no worker it can keep: work fails instead of waiting
MAX_START_FAILURES = 3
#: the wait before replacing a worker that died starting doubles from this ...
BACKOFF_FIRST = 0.1
#: ... up to this (replacements go on: a passing cause, such as a full disk, may clear)
BACKOFF_MAX = 5.0
#: how often, at most, the heartbeat pings each worker
PING_INTERVAL = 1.0
#: how long a worker's process gets to end after its link dropped before its death is
#: announced without an exit code (well inside the callers' ``DEATH_NOTICE_WAIT``)
REAP_TIMEOUT = 0.3
#: what a thread worker (``processes=False``) that was not asked to leave died of
THREAD_WORKER_DIED = "closed its connection (workers are threads of the cluster's process: there is no exit code)"


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


class Supervisor:
    """Spawns, reaps, replaces, meters and stops the manager's worker processes."""

    def __init__(
        self,
        config: ManagerConfig,
        manager_address: str,
        scheduler: Scheduler,
        send: Send,
        post: Post,
        output: OutputPump,
    ) -> None:
        self._config = config
        self._manager_address = manager_address
        self._scheduler = scheduler
        self._send = send
        self._post = post
        self._output = output
        self._ctx: Any = multiprocessing.get_context(config.start_method)
        self.target = config.n_workers  #: how many workers we keep
        self._counter = 0  # worker names are never reused
        self._processes: dict[str, Runner] = {}  # worker name -> its process (or thread)
        self._dying: dict[Any, tuple[WorkerState, Runner | None]] = {}  # link -> being reaped
        self._kill_reasons: dict[str, str] = {}  # worker -> why we killed it (e.g. its memory limit)
        self._start_failures = 0
        self._meters: dict[str, Any] = {}  # worker -> psutil.Process
        self._replacing = True  # False once the manager stops
        self._respawn_at = 0.0  # after a start failure, no replacement before this (backoff)
        self._owed = 0  # replacements put off by the backoff
        self.failing = ""  #: why workers keep dying while starting, until one registers
        # heartbeat (off in-process: a thread cannot be killed, so a hang cannot be ended)
        self._timeout = None if config.in_process else config.worker_timeout
        self._heard: dict[Any, float] = {}  # worker link -> when it last answered a Ping
        self._seq = 0
        self._next_ping = 0.0
        self._last_check = time.monotonic()

    # -- queries -------------------------------------------------------------------

    def starting(self) -> int:
        """Workers spawned and alive that have not registered yet."""
        known = self._scheduler.workers
        return len([p for name, p in self._processes.items() if name not in known and p.is_alive()])

    def notice_pending(self, address: str) -> bool:
        """Is the worker at ``address`` live, or dead with its death notice still to come?"""
        workers = [*self._scheduler.workers.values(), *(ws for ws, _ in self._dying.values())]
        return any(ws.info.address == address for ws in workers)

    # -- spawning ------------------------------------------------------------------

    def spawn(self) -> None:
        config = self._config
        name = f"worker-{self._counter}"
        self._counter += 1
        cfg = WorkerConfig(
            name=name,
            directory=config.directory,
            authkey=config.authkey,
            manager_address=self._manager_address,
            nthreads=config.threads_per_worker,
            resources=config.resources,
            memory_limit=config.memory_limit,
            log_level=config.log_level,
            max_in_flight=config.max_in_flight,
            in_process=config.in_process,
        )
        output = None
        if config.forward_output and not config.in_process:
            (out_r, out_w), (err_r, err_w) = self._ctx.Pipe(duplex=False), self._ctx.Pipe(duplex=False)
            output = (out_w, err_w)
        entry = config.worker_entry
        proc = make_runner(config.in_process, config.start_method, entry, (cfg, output), f"localactors-{name}")
        proc.start()
        if output is not None:
            out_w.close()  # the worker holds the write ends now: EOF comes when it exits
            err_w.close()
            self._output.watch(name, proc.pid or 0, out_r, err_r)
        self._processes[name] = proc

    def registered(self, ws: WorkerState) -> None:
        """A worker registered: the run of start failures is over."""
        self._start_failures = 0
        self._respawn_at = 0.0
        self.failing = ""
        self._heard[ws.link] = time.monotonic()

    def heard(self, link: Any) -> None:
        """A worker answered a Ping. Called on its link's reader thread: the main loop may be busy."""
        self._heard[link] = time.monotonic()

    def scale(self, n: int) -> None:
        """Keep ``n`` workers from now on: start the missing ones, retire the extra."""
        self.target = max(0, n)
        live = sorted((w for w in self._scheduler.workers.values() if not w.retiring), key=lambda w: w.index)
        for _ in range(self.target - len(live) - self.starting()):
            self.spawn()
        if len(live) > self.target:
            # retire the emptiest workers first: no actors, least data
            victims = sorted(live, key=lambda w: (len(w.actors), len(w.has), -w.index))[: len(live) - self.target]
            for ws in victims:
                ws.retiring = True
                self._send(ws.link, P.Shutdown())

    # -- watching --------------------------------------------------------------------

    @property
    def gave_up(self) -> str:
        """Why no worker can be kept alive (none is, and they keep dying starting), else ``""``."""
        return "" if self._scheduler.workers else self.failing

    def check(self) -> list[str]:
        """The periodic look: process exits, start failures, the heartbeat, memory limits.

        Returns the registered workers whose process has ended: the manager
        announces them even if their link is still open (a child the worker
        forked holds its socket, and with it the end of the pipe that the
        process's sentinel waits on: only ``waitpid`` tells). Workers that died
        starting are replaced with a backoff; after ``MAX_START_FAILURES`` in a
        row, :attr:`failing` says why, until a worker registers.
        """
        now = time.monotonic()
        exited = []
        for name, proc in list(self._processes.items()):
            if name in self._scheduler.workers:
                if proc.exitcode is not None:  # a non-blocking waitpid
                    exited.append(name)
            elif not proc.is_alive():
                del self._processes[name]
                self._start_failures += 1
                logger.warning("%s died while starting (exit code %s)", name, proc.exitcode)
                failures = self._start_failures
                self._respawn_at = now + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
                self._owed += 1
                if failures >= MAX_START_FAILURES:
                    last = exit_reason(proc.exitcode, False)
                    self.failing = f"{failures} workers in a row died before registering; last: {name} {last}"
        if self._owed and self._replacing and now >= self._respawn_at:
            owed, self._owed = self._owed, 0
            for _ in range(min(owed, self.target - len(self._scheduler.workers) - self.starting())):
                self.spawn()
        self._heartbeat(now)
        self._check_memory()
        return exited

    def _heartbeat(self, now: float) -> None:
        timeout = self._timeout
        if timeout is None:
            return
        late, self._last_check = now - self._last_check > timeout / 2, now
        if late:  # we were stalled ourselves (suspended, swapped out): we cannot judge them
            for link in self._heard:
                self._heard[link] = now
        if now >= self._next_ping:
            self._next_ping = now + min(PING_INTERVAL, timeout / 4)
            self._seq += 1
            for ws in self._scheduler.workers.values():
                self._send(ws.link, P.Ping(self._seq))
        for name, ws in list(self._scheduler.workers.items()):
            silent = now - self._heard.get(ws.link, now)
            if silent > timeout and name not in self._kill_reasons:
                self.kill(
                    name,
                    f"stopped responding (no answer to the manager's heartbeat for {silent:.1f} s,"
                    f" worker_timeout={timeout:g} s) and was killed; a new worker replaces it",
                )

    def _check_memory(self) -> None:
        limit = self._config.memory_limit
        if limit is None or self._config.in_process:
            return
        import psutil

        for name, ws in list(self._scheduler.workers.items()):
            try:
                meter = self._meters.get(name)
                if meter is None:
                    meter = self._meters[name] = psutil.Process(ws.info.pid)
                rss = meter.memory_info().rss
            except psutil.Error:
                continue
            if rss > limit and name not in self._kill_reasons:
                mib = 2**20
                self.kill(
                    name,
                    f"exceeded its memory limit ({rss / mib:.0f} MiB > {limit / mib:.0f} MiB)"
                    " and was killed; a new worker replaces it",
                )

    def kill(self, name: str, reason: str) -> None:
        """SIGKILL a worker; its death notice will give ``reason``."""
        self._kill_reasons[name] = reason
        logger.warning("%s %s", name, reason)
        proc = self._processes.get(name)
        if proc is not None:
            proc.kill()

    # -- deaths ----------------------------------------------------------------------

    def link_closed(self, link: Any, ws: WorkerState) -> bool:
        """A worker's link dropped: its death is announced by :meth:`reaped` once its process ended.

        Returns True if that is now (nothing to wait for); else a reaper thread
        posts ``Reaped`` when it is.
        """
        proc = self._processes.pop(ws.name, None)
        self._meters.pop(ws.name, None)
        self._heard.pop(link, None)
        self._dying[link] = (ws, proc)
        if proc is None or self._config.in_process or proc.exitcode is not None:
            return True
        else:
            # its process ends milliseconds after its socket closed (or it is a
            # stuck child that kept it): wait on it in a thread, never here, where
            # every other node's messages wait behind us
            threading.Thread(
                target=self._reap, args=(link, proc), name=f"localactors-reap-{ws.name}", daemon=True
            ).start()
            return False

    def _reap(self, link: Any, proc: Runner) -> None:
        proc.join(REAP_TIMEOUT)  # returns once the process ended: its sentinel is ready
        self._post(Reaped(link))

    def reaped(self, link: Any) -> WorkerState | None:
        """Announce a dropped worker's death, with its exit code if it has one; replace it.

        Returns the worker, if its death was news.
        """
        entry = self._dying.pop(link, None)
        if entry is None:
            return None
        ws, proc = entry
        code = None
        if proc is None:
            reason = "left the cluster"
        elif self._config.in_process:
            # a thread has no exit code or signal: 0 or 1 would be read as one
            reason = "left the cluster" if ws.retiring else THREAD_WORKER_DIED
        else:
            code = proc.exitcode
            reason = exit_reason(code, ws.retiring)
            shm.sweep(shm.prefix_for(self._config.authkey), proc.pid)  # what it wrote and never sent
        reason = self._kill_reasons.pop(ws.name, reason)
        if code not in (0, None) or not ws.retiring:
            logger.warning("%s %s", ws.name, reason)
        else:
            self._start_failures = 0
        notice = self._scheduler.remove_worker(ws.name, reason, code)
        if notice is not None:
            # after the per-key messages: a node with the notice has seen them
            self._scheduler.broadcast(notice)
        if self._replacing and not ws.retiring and len(self._scheduler.workers) < self.target:
            self.spawn()  # keep n_workers
        return ws

    # -- stopping ----------------------------------------------------------------------

    def stop(self, grace: float) -> None:
        """Stop replacing; wait ``grace`` s for the workers asked to leave, then SIGTERM, then SIGKILL."""
        self._replacing = False
        procs = list(self._processes.values())
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

    def stop_replacing(self) -> None:
        """The manager is on its way out: a death from now on is not replaced."""
        self._replacing = False
