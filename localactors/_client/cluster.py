"""``LocalCluster``: start the manager (which starts the workers), close it all.

Runs in: the user's process.

The cluster owns a private 0700 directory for the sockets and a random
authkey, and talks to its manager over a control pipe in the typed messages
of :mod:`~localactors._wire.control`. Start blocks until every worker has
registered. The manager leads its own process group, which the workers join:
a thread here waits on the manager and kills that group when it ends, so no
worker outlives it, not even a stopped one. ``close()`` is idempotent, safe
from several threads at once (one closes, the others wait) and bounded: it
asks the manager to stop, waits, then terminates, then kills, and removes the
directory. If this process dies, the manager sees its control pipe close and
takes the workers down with it. ``kill_worker``/``pause_worker``/``resume_worker``
inject faults for tests.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Generator
from multiprocessing.connection import wait as wait_for_ready
from typing import Any

from .._base import context as _context
from .._base.config import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_WORKER_TIMEOUT,
    MANAGER_ENTRY,
    WORKER_ENTRY,
    parse_memory,
)
from .._base.errors import ClusterBrokenError, ClusterClosedError, WorkerStartError
from .._base.runner import make_runner
from .._wire import control as C
from .._wire import protocol as P
from .._wire import shm, threads
from .._wire.exhaustive import assert_never
from . import lifecycle as _lifecycle
from .cluster_file import write_cluster_file
from .output import OutputSink
from .signals import children_of, kill_group, kill_stragglers, signal_worker
from .start import await_ready, manager_config, private_directory

logger = logging.getLogger("localactors.cluster")


class LocalCluster:
    """A manager process and ``n_workers`` worker processes on this machine.

    Use it as a context manager (``with`` or ``async with``), or call
    :meth:`close`. ``n_workers`` defaults to the number of CPUs.

    ``processes=False`` runs the manager and the workers as threads of this
    process instead (for tests and debugging: it starts in milliseconds and
    ``breakpoint()`` works in actor code); arguments and results are still
    pickled, and each worker keeps its own event loop and actor thread.
    ``forward_output`` (on by default) sends what worker processes write to
    stdout, stderr and logging to this process's ``sys.stdout`` and
    ``sys.stderr``, each line prefixed ``(worker-1 pid=123)``.

    Failures (see docs/failures.md): a worker that dies is replaced;
    a task running on workers that died ``allowed_failures`` + 1 times fails
    with ``KilledWorker``; a worker whose RSS exceeds ``memory_limit`` (bytes,
    or a string such as ``"2GiB"``) is killed and replaced; ``max_in_flight``
    bounds the unanswered calls on each worker-to-worker link. A worker that
    leaves the manager's heartbeat unanswered for ``worker_timeout`` seconds
    (default 60; ``None``: never) is declared hung, killed and replaced.
    The manager drops a link whose frame header claims more than
    ``max_frame_size`` bytes (default 1 TiB) as malformed.
    ``worker_entry`` names the function each worker starts from, as
    ``"module:function"``; tests use it to start workers that fail on purpose.
    """

    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        resources: dict[str, float] | None = None,
        memory_limit: int | str | None = None,
        start_method: str | None = None,
        asynchronous: bool = False,
        *,
        timeout: float = 60.0,
        allowed_failures: int = 3,
        log_level: int = logging.WARNING,
        processes: bool = True,
        forward_output: bool = True,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        worker_entry: str = WORKER_ENTRY,
        worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        if not processes and memory_limit is not None:
            raise ValueError("memory_limit is enforced per worker process: it needs processes=True")
        self.n_workers = n_workers if n_workers is not None else (os.cpu_count() or 1)
        self.threads_per_worker = threads_per_worker
        self.resources = dict(resources or {})
        self.memory_limit = parse_memory(memory_limit)
        self.start_method = start_method or "spawn"
        self.asynchronous = asynchronous
        self.timeout = timeout
        self.allowed_failures = allowed_failures
        self.log_level = log_level
        self.processes = processes  # False: manager and workers are threads of this process
        self.forward_output = forward_output  # workers' stdout/stderr/logging reach us, prefixed
        self.max_in_flight = max_in_flight  # calls unanswered per worker-to-worker link
        self.worker_entry = worker_entry  # "module:function" each worker starts from
        self.worker_timeout = worker_timeout  # heartbeat: silent this long, a worker is killed
        self.max_frame_size = max_frame_size  # the manager drops a link whose frame header claims more
        self._output: Any = None
        self._theirs: Any = None
        self.directory = ""
        self.authkey = b""
        self.manager_address = ""
        self._workers: tuple[P.WorkerInfo, ...] = ()  # as last heard from the manager
        self.status = "created"
        self._process: Any = None
        self._control: Any = None
        self._lock = threading.Lock()  # one control-pipe exchange at a time
        self._closing = threading.Lock()  # guards the move to "closing": one closer
        self._closed = threading.Event()  # set once the closer is done: other closers wait for it
        self._watcher: threading.Thread | None = None  # kills the process group when the manager ends
        self._req = 0
        if not asynchronous:
            try:
                self._start()
            except _lifecycle.MainGuardError as err:  # the user's line, then this one: nothing of ours
                raise err.with_traceback(None) from None

    def __repr__(self) -> str:
        return f"<LocalCluster {self.status} workers={len(self._workers)} dir={self.directory!r}>"

    def _repr_html_(self) -> str:
        from .html import cluster_html

        return cluster_html(self)

    @property
    def workers(self) -> tuple[P.WorkerInfo, ...]:
        """The live workers, in start order (asks the manager: a live view).

        Reflects :meth:`scale` and workers replaced after dying; once the
        cluster is closed, the workers it had last.
        """
        if self.status != "running":
            return self._workers
        with self._lock:
            if self.status != "running":
                return self._workers
            try:
                reply = self._ask(C.ListWorkers, self.timeout)
            except TimeoutError:
                raise ClusterBrokenError("the manager did not answer within the cluster timeout") from None
            except (OSError, EOFError):
                raise ClusterBrokenError("lost the control pipe to the manager") from None
        assert isinstance(reply, C.WorkerList)
        self._workers = reply.workers
        return self._workers

    def _ask(self, order: Callable[[int], C.ToManager], timeout: float) -> C.Scaled | C.WorkerList:
        """Send ``order(req_id)`` to the manager; return its answer. Under ``_lock``."""
        self._req += 1
        req = self._req
        request = order(req)
        self._control.send(request)
        deadline = time.monotonic() + timeout
        while True:
            if not self._control.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"the manager did not answer {type(request).__name__} within {timeout} s")
            reply: C.ToCluster = self._control.recv()
            match reply:
                case C.Scaled(req_id) | C.WorkerList(req_id) if req_id == req:
                    return reply
                case C.Scaled() | C.WorkerList() | C.Ready() | C.StartFailed():
                    pass  # a late answer to an earlier request that timed out: not ours
                case _:
                    assert_never(reply)

    @property
    def scheduler_address(self) -> str:
        """The manager's socket (dask.distributed calls the manager a scheduler)."""
        return self.manager_address

    # -- start ---------------------------------------------------------------

    def _start(self) -> None:
        if self.processes:
            _lifecycle.check_main_guard(self.start_method)  # one clear line, before anything starts
        self.directory, self.authkey = private_directory()
        config = manager_config(self, self.directory, self.authkey)
        ctx: Any = multiprocessing.get_context(self.start_method)
        ours, theirs = ctx.Pipe()
        self._control = ours
        self._process = make_runner(
            not self.processes, self.start_method, MANAGER_ENTRY, (config, theirs), "localactors-manager"
        )
        try:
            self._process.start()
            if self.processes:
                theirs.close()
                self._watcher = threading.Thread(
                    target=self._watch_manager, name="localactors-cluster-deathwatch", daemon=True
                )
                threads.start(self._watcher)
            else:
                self._theirs = theirs  # the manager thread reads it; closed after it ends
            self.manager_address, self._workers = await_ready(ours, self.timeout)
        except BaseException:
            self.status = "running"
            self._close()  # not close(): in async mode that only makes a coroutine
            raise
        self.status = "running"
        _lifecycle.track_cluster(self)  # closed at interpreter exit if the user does not
        write_cluster_file(self.directory, self.manager_address, self.authkey)  # for `localactors top`
        if self.forward_output and self.processes:
            self._output = OutputSink(self.manager_address, self.authkey, f"cluster-{os.getpid()}->manager")

    async def _astart(self) -> LocalCluster:
        if self.status == "created":
            await asyncio.to_thread(self._start)
        return self

    def __await__(self) -> Generator[Any, None, LocalCluster]:
        return self._astart().__await__()

    # -- control -----------------------------------------------------------------

    def scale(self, n: int, timeout: float | None = None) -> Any:
        """Grow or shrink to ``n`` workers; blocks until it is done."""
        if self.asynchronous:
            return asyncio.to_thread(self._scale, n, timeout)
        return self._scale(n, timeout)

    def _scale(self, n: int, timeout: float | None) -> None:
        if self.status != "running":
            raise ClusterClosedError("the cluster is closed")
        with self._lock:
            try:
                reply = self._ask(lambda req: C.ScaleTo(req, n), timeout if timeout is not None else self.timeout)
            except TimeoutError:
                raise TimeoutError(f"scale({n}) not done in time") from None
        if isinstance(reply, C.Scaled) and reply.error:
            raise WorkerStartError(f"scale({n}) could not start its workers: {reply.error}")
        self.n_workers = n

    # -- close ---------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> Any:
        """Stop the manager and workers and remove the socket directory.

        Idempotent; returns within about ``timeout`` seconds, escalating from
        asking, to SIGTERM, to SIGKILL.
        """
        if self.asynchronous:
            return asyncio.to_thread(self._close, timeout)
        self._close(timeout)
        return None

    def _close(self, timeout: float = 5.0) -> None:
        with self._closing:
            if self.status in ("closed", "created"):
                self.status = "closed"
                return
            closer = self.status != "closing"
            self.status = "closing"
        if not closer:  # another thread is closing: wait for it to finish, then return
            self._closed.wait(timeout + 10.0)
            return
        try:
            self._close_now(timeout)
        finally:
            self.status = "closed"
            self._closed.set()

    def _close_now(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = self._process
        children = children_of(proc.pid) if proc is not None and self.processes else []
        # closing wins every race: this process's clients of this cluster learn it now, not
        # from the manager's Goodbye, which can reach them after a worker's link dropped,
        # so that a call the close ends fails with ClusterClosedError, not ActorLostError
        for core in _context.clients_of(self.manager_address):
            core.mark_broken(ClusterClosedError("the cluster was closed"))
        if self._control is not None:
            try:
                self._control.send(C.StopCluster())
            except OSError:
                pass
        if proc is not None and self.processes:
            # waited on through its sentinel, not joined: it stays unreaped (its pid, which
            # is its process group's id, not reusable) until the watcher has killed its group
            if not self._manager_ended(max(0.1, deadline - time.monotonic() - 1.0)):
                proc.terminate()
                if not self._manager_ended(0.5):
                    proc.kill()
                    # SIGKILL cannot be refused: wait until it is gone, or a loaded machine
                    # could see our dead manager linger as a child after close() returned
                    self._manager_ended(5.0)
            if self._watcher is not None:
                self._watcher.join(5.0)
            proc.join(1.0)
        elif proc is not None:
            proc.join(max(0.1, deadline - time.monotonic() - 1.0))
        kill_stragglers(children)
        if self._output is not None:
            self._output.close()  # after the manager: it passes on the workers' last lines first
        if self._control is not None and self._lock.acquire(timeout=2.0):
            try:  # not under a thread still reading it (``workers``, ``scale``): its fd could be reused
                self._control.close()
            finally:
                self._lock.release()
        # in-process, the manager's end of the pipe closes with its last reference,
        # once its control thread has seen our end close: closing it under that
        # thread's poll() could hand the fd number to someone else mid-call
        self._theirs = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.authkey:
            shm.sweep(shm.prefix_for(self.authkey))  # whatever a killed process left behind

    def _manager_ended(self, timeout: float) -> bool:
        """Has the manager process ended (without reaping it)?"""
        return bool(wait_for_ready([self._process.sentinel], timeout))

    def _watch_manager(self) -> None:
        """Wait for the manager process to end (a close, or its death), then kill its process group."""
        proc = self._process
        wait_for_ready([proc.sentinel])  # ends when the manager does: close() makes sure it does
        kill_group(proc.pid, shm.prefix_for(self.authkey))

    # -- faults, for tests ------------------------------------------------------------

    def kill_worker(self, name: str) -> None:
        """SIGKILL worker ``name``: a crash, as a test would inject it. It is replaced."""
        self._signal_worker(name, signal.SIGKILL, "kill_worker")

    def pause_worker(self, name: str) -> None:
        """SIGSTOP worker ``name`` and return once it has stopped: it hangs, alive.

        Past ``worker_timeout`` it is killed and replaced.
        """
        self._signal_worker(name, signal.SIGSTOP, "pause_worker")

    def resume_worker(self, name: str) -> None:
        """SIGCONT worker ``name`` (paused by :meth:`pause_worker`)."""
        self._signal_worker(name, signal.SIGCONT, "resume_worker")

    def _signal_worker(self, name: str, sig: signal.Signals, verb: str) -> None:
        if not self.processes:
            raise NotImplementedError(
                f"{verb}() needs worker processes: this cluster runs its workers as threads"
                " (processes=False), which cannot be signalled; use LocalCluster(processes=True)"
            )
        if self.status != "running":
            raise ClusterClosedError("the cluster is closed")
        pids = {w.name: w.pid for w in self.workers}
        if name not in pids:
            raise ValueError(f"no live worker is named {name!r}; the live ones: {', '.join(pids) or 'none'}")
        signal_worker(pids[name], sig)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    async def __aenter__(self) -> LocalCluster:
        return await self._astart()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._close)

    def __del__(self) -> None:
        if getattr(self, "status", "closed") == "running":
            try:
                self._close(timeout=2.0)
            except Exception:
                pass
