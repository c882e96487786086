"""pytest plugin: cluster and client fixtures, and a leak check.

Runs in: the test process (registered through the ``pytest11`` entry point).

Fixtures (named so they cannot clash with other plugins' ``client``)::

    localactors_cluster       a LocalCluster, closed after the test
    localactors_client        a sync Client on it
    localactors_async_client  an async Client on it (for async tests)

Options per test with the marker::

    @pytest.mark.localactors(n_workers=1, threads_per_worker=2)

After each test that used them, the plugin fails the test if a process the
cluster started, or a ``localactors-*`` thread, is still alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ._client import Client
from ._cluster import LocalCluster

DEFAULTS: dict[str, Any] = {"n_workers": 2}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "localactors(**options): LocalCluster options for the localactors_* fixtures")


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options = dict(DEFAULTS)
    marker = request.node.get_closest_marker("localactors")
    if marker is not None:
        options.update(marker.kwargs)
    return options


def localactors_threads() -> set[threading.Thread]:
    """Live ``localactors-*`` threads, except those of clients still open."""
    from ._client import open_client_names

    names = open_client_names()

    def owned_by_open_client(t: threading.Thread) -> bool:
        return any(f"-{n}-" in t.name or f"-{n}->" in t.name or t.name.endswith(f"-{n}") for n in names)

    return {
        t
        for t in threading.enumerate()
        if t.name.startswith("localactors-") and t.is_alive() and not owned_by_open_client(t)
    }


def check_no_leaks(before_threads: set[threading.Thread], pids: list[int], timeout: float = 5.0) -> list[str]:
    """What is left behind: names of threads and pids of processes still alive."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        threads = localactors_threads() - before_threads
        procs = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if (not threads and not procs) or time.monotonic() > deadline:
            break
        time.sleep(0.02)  # polling a condition with a deadline, not synchronising
    return [f"thread {t.name}" for t in threads] + [f"process {pid}" for pid in procs]


@pytest.fixture
def localactors_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A fresh LocalCluster for this test; checked for leaks afterwards."""
    before = localactors_threads()
    cluster = LocalCluster(**_options(request))
    pids = [w.pid for w in cluster.workers] + [cluster._process.pid]
    try:
        yield cluster
    finally:
        cluster.close()
        leaks = check_no_leaks(before, pids)
        if leaks:
            pytest.fail(f"localactors left behind: {', '.join(leaks)}")


@pytest.fixture
def localactors_client(localactors_cluster: LocalCluster) -> Iterator[Client]:
    """A synchronous Client on :func:`localactors_cluster`."""
    with Client(localactors_cluster) as client:
        yield client


@pytest.fixture
async def localactors_async_client(localactors_cluster: LocalCluster) -> Any:
    """An asynchronous Client (needs an async test runner such as pytest-asyncio)."""
    async with Client(localactors_cluster, asynchronous=True) as client:
        yield client
