"""``LocalCluster``: start the manager (which starts the workers), close it all.

Runs in: the user's process.

The cluster owns a private 0700 directory for the sockets and a random
authkey. Start blocks until every worker has registered. ``close()`` is
idempotent and bounded: it asks the manager to stop, waits, then terminates,
then kills, and removes the directory. If this process dies, the manager sees
its control pipe close and takes the workers down with it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Generator
from typing import Any

from . import _protocol as P
from ._errors import ClusterBrokenError, ClusterClosedError
from ._manager import ManagerConfig, manager_main

logger = logging.getLogger("localactors.cluster")

_live: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


def _parse_memory(limit: int | str | None) -> int | None:
    if limit is None or isinstance(limit, int):
        return limit
    text = limit.strip().upper().replace(" ", "")
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))


class LocalCluster:
    """A manager process and ``n_workers`` worker processes on this machine.

    Use it as a context manager (``with`` or ``async with``), or call
    :meth:`close`. ``n_workers`` defaults to the number of CPUs.
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
    ) -> None:
        self.n_workers = n_workers if n_workers is not None else (os.cpu_count() or 1)
        self.threads_per_worker = threads_per_worker
        self.resources = dict(resources or {})
        self.memory_limit = _parse_memory(memory_limit)
        self.start_method = start_method or "spawn"
        self.asynchronous = asynchronous
        self.timeout = timeout
        self.allowed_failures = allowed_failures
        self.log_level = log_level
        self.directory = ""
        self.authkey = b""
        self.manager_address = ""
        self.workers: tuple[P.WorkerInfo, ...] = ()
        self.status = "created"
        self._process: Any = None
        self._control: Any = None
        self._lock = threading.Lock()
        self._req = 0
        if not asynchronous:
            self._start()

    def __repr__(self) -> str:
        return f"<LocalCluster {self.status} workers={len(self.workers)} dir={self.directory!r}>"

    @property
    def scheduler_address(self) -> str:
        """The manager's socket (dask.distributed calls the manager a scheduler)."""
        return self.manager_address

    # -- start ---------------------------------------------------------------

    def _start(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="localactors-")  # mode 0700
        os.chmod(self.directory, 0o700)
        self.authkey = os.urandom(32)
        ctx: Any = multiprocessing.get_context(self.start_method)
        config = ManagerConfig(
            directory=self.directory,
            authkey=self.authkey,
            n_workers=self.n_workers,
            threads_per_worker=self.threads_per_worker,
            resources=tuple(sorted(self.resources.items())),
            memory_limit=self.memory_limit,
            start_method=self.start_method,
            allowed_failures=self.allowed_failures,
            log_level=self.log_level,
        )
        ours, theirs = ctx.Pipe()
        self._control = ours
        self._process = ctx.Process(target=manager_main, args=(config, theirs), name="localactors-manager")
        try:
            self._process.start()
            theirs.close()
            if not ours.poll(self.timeout):
                raise ClusterBrokenError(f"the cluster did not start within {self.timeout} s")
            try:
                reply = ours.recv()
            except EOFError:
                raise ClusterBrokenError("the manager process died while starting") from None
        except BaseException:
            self.status = "running"
            self.close()
            raise
        _, self.manager_address, self.workers = reply
        self.status = "running"
        _live.add(self)

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
            self._req += 1
            req = self._req
            self._control.send(("scale", n, req))
            if not self._control.poll(timeout if timeout is not None else self.timeout):
                raise TimeoutError(f"scale({n}) not done in time")
            reply = self._control.recv()
        assert reply == ("scaled", req), reply
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
        with self._lock:
            if self.status in ("closed", "created"):
                self.status = "closed"
                return
            self.status = "closing"
        deadline = time.monotonic() + timeout
        proc = self._process
        children = self._children() if proc is not None else []
        if self._control is not None:
            try:
                self._control.send("shutdown")
            except OSError:
                pass
        if proc is not None:
            proc.join(max(0.1, deadline - time.monotonic() - 1.0))
            if proc.is_alive():
                proc.terminate()
                proc.join(0.5)
            if proc.is_alive():
                proc.kill()
                proc.join(0.5)
        self._kill_stragglers(children)
        if self._control is not None:
            self._control.close()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.status = "closed"
        _live.discard(self)

    def _children(self) -> list[Any]:
        import psutil

        try:
            return list(psutil.Process(self._process.pid).children(recursive=True))
        except (psutil.Error, AttributeError, ValueError):
            return []

    @staticmethod
    def _kill_stragglers(children: list[Any]) -> None:
        """Workers leave by themselves once their manager is gone; make sure."""
        import psutil

        _, alive = psutil.wait_procs(children, timeout=1.0)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=1.0)

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
