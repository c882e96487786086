"""Engines for the portable API tests: one test body, run on localactors and on dask.distributed.

A test asks for ``eng`` (the engine's names: ``eng.Client``, ``eng.wait``,
``eng.as_completed``, ``eng.Actor`` ...) and ``client`` / ``cluster`` (a
module-wide 2-worker LocalCluster of that engine and a Client on it). The
bodies use nothing else from either library: only the import differs, which
is the promise we make (code moves to dask.distributed by changing one
import line).

Engines: ``localactors`` always; ``dask`` when ``import distributed`` works,
else that parameter is skipped ("dask.distributed not installed"). The
environment variable ``LOCALACTORS_ENGINES`` (comma-separated) picks engines
explicitly: ``LOCALACTORS_ENGINES=dask`` runs only the dask side, and then a
missing dask.distributed is an error, not a skip (``.ci/dask`` relies on it).
``-k dask`` / ``-k localactors`` select by parameter id as well.

Where localactors deliberately differs (docs/differences-from-dask.md), the
test calls ``eng.skip_on_dask("dask ...: reason")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

#: a bound on a hang, not a performance claim
T = 30.0

ALL_ENGINES = ("localactors", "dask")


def chosen_engines() -> tuple[str, ...]:
    raw = os.environ.get("LOCALACTORS_ENGINES", "").strip()
    if not raw:
        return ALL_ENGINES
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL_ENGINES]
    if unknown:
        raise pytest.UsageError(f"LOCALACTORS_ENGINES: unknown engine(s) {unknown}; known: {ALL_ENGINES}")
    return names


def dask_required() -> bool:
    """True when the run asked for dask by name: a missing dask is then an error."""
    return "dask" in os.environ.get("LOCALACTORS_ENGINES", "")


@dataclass
class Engine:
    """The names a test may use: the same on both engines."""

    name: str
    module: ModuleType  # localactors or distributed: only for package_dir
    Client: Any
    LocalCluster: Any
    Future: Any
    ActorFuture: Any
    Actor: Any
    wait: Any
    as_completed: Any
    get_worker: Any
    get_client: Any
    FIRST_COMPLETED: str
    ALL_COMPLETED: str

    #: both raise concurrent.futures.CancelledError for a cancelled future
    CancelledError: type[BaseException] = CancelledError
    #: both raise the builtin TimeoutError (asyncio.TimeoutError is it on 3.11+)
    TimeoutError: type[BaseException] = TimeoutError

    @property
    def is_dask(self) -> bool:
        return self.name == "dask"

    @property
    def package_dir(self) -> str:
        """The library's own code: frames from files under it are not the user's."""
        return os.path.dirname(os.path.abspath(self.module.__file__ or ""))

    def skip_on_dask(self, reason: str) -> None:
        """A deliberate difference: localactors promises more than dask does."""
        if self.is_dask:
            pytest.skip(reason)

    def cluster_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        """Keywords for a small LocalCluster of this engine.

        dask: worker processes (with nannies: ``restart()`` needs them, and
        values cross a process boundary as they do between machines); no
        dashboard (no port to clash on); 1 thread per worker unless asked.
        """
        kwargs.setdefault("n_workers", 2)
        kwargs.setdefault("threads_per_worker", 1)
        if self.is_dask:
            kwargs.setdefault("processes", True)
            kwargs.setdefault("dashboard_address", None)
            kwargs.setdefault("silence_logs", 40)  # logging.ERROR
        return kwargs

    def make_cluster(self, **kwargs: Any) -> Any:
        return self.LocalCluster(**self.cluster_kwargs(**kwargs))

    @contextlib.asynccontextmanager
    async def async_client(self, cluster: Any) -> AsyncIterator[Any]:
        """An asynchronous Client, in the running loop, on a (sync) cluster."""
        target = cluster.scheduler_address if self.is_dask else cluster
        async with self.Client(target, asynchronous=True) as c:
            yield c


def _localactors() -> Engine:
    import localactors as la

    return Engine(
        "localactors", la, la.Client, la.LocalCluster, la.Future, la.ActorFuture, la.Actor, la.wait,
        la.as_completed, la.get_worker, la.get_client, la.FIRST_COMPLETED, la.ALL_COMPLETED,
    )  # fmt: skip


def _dask() -> Engine:
    import distributed as dd

    return Engine(
        "dask", dd, dd.Client, dd.LocalCluster, dd.Future, dd.ActorFuture, dd.Actor, dd.wait,
        dd.as_completed, dd.get_worker, dd.get_client,
        # dask.distributed does not export these two names (distributed.client has them)
        "FIRST_COMPLETED", "ALL_COMPLETED",
    )  # fmt: skip


def run_async(coro: Any, debug: bool = False) -> Any:
    """Run a coroutine in a fresh event loop (no async test plugin needed)."""
    return asyncio.run(coro, debug=debug)
