"""Shared fixtures: a module-wide cluster, and an autouse leak check.

Every test must leave no ``localactors-*`` thread and no child process it
started alive: the ``no_leaks`` fixture checks after each test.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from localactors import Client, LocalCluster
from localactors._client.lifecycle import live_clients, live_clusters
from localactors.testing import check_no_leaks, close_opened_since, localactors_threads, opened_since

faulthandler.enable(file=sys.stderr)

START_METHODS = ["spawn", "forkserver"]


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a localactors thread or a child process behind."""
    threads = localactors_threads() | {t for t in threading.enumerate() if not t.name.startswith("localactors-")}
    before = _children()
    clients, clusters = set(live_clients()), set(live_clusters())
    yield
    opened = opened_since(clients, clusters)  # by what the test made: a Client, a LocalCluster
    close_opened_since(clients, clusters)  # so that the next test starts clean
    new = sorted(_children() - before)
    # forkserver's server and the resource tracker are shared and live as long as the session
    new = [pid for pid in new if not any(s in " ".join(_cmdline(pid)) for s in ("forkserver", "resource_tracker"))]
    leaks = opened + check_no_leaks(threads, new)
    if leaks:
        pytest.fail(f"left behind after {request.node.name}: {', '.join(leaks)}")


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One 2-worker cluster shared by the tests of a module."""
    with LocalCluster(n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as c:
        yield c


@pytest.fixture
def shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private shared-memory directory for this test's segments (``LOCALACTORS_SHM_DIR``)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="la-test-", dir=base) as d:
        monkeypatch.setenv("LOCALACTORS_SHM_DIR", d)
        yield Path(d)
