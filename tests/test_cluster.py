"""End-to-end tests of the cluster's life: start methods, scheduler_info, scale,
relaying, owning clients, closing, the private directory, authkeys, no orphans."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing import AuthenticationError
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import START_METHODS
from helpers import gated, wait_until

from localactors import Client, ClusterClosedError, LocalCluster, get_client, get_worker, wait
from localactors._wire.connection import connect

T = 30.0


def inc(x: int) -> int:
    return x + 1


def where(_: Any = None) -> str:
    return str(get_worker().name)


def fan_out(n: int) -> int:
    client = get_client()
    return sum(client.gather(client.map(inc, range(n), pure=False), timeout=T))


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if not _gone(p)]


def _wait_gone(pids: list[int], timeout: float = T) -> None:
    wait_until(lambda: not _alive(pids), timeout, lambda: f"still alive: {_alive(pids)}")


# -- both start methods ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=START_METHODS)
def method_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    with LocalCluster(n_workers=2, start_method=request.param) as cluster, Client(cluster) as client:
        yield client


def test_start_method_is_the_one_asked_for(method_client: Client) -> None:
    cluster = method_client.cluster
    assert cluster is not None
    manager = psutil.Process(cluster._process.pid)
    for w in method_client.scheduler_info()["workers"].values():
        parent = psutil.Process(w["pid"]).parent()
        assert parent is not None
        if cluster.start_method == "spawn":
            assert parent.pid == manager.pid  # the manager spawned it
        else:
            assert "forkserver" in " ".join(parent.cmdline())  # forked by the manager's fork server


def test_tasks_dependencies_and_lambdas(method_client: Client) -> None:
    a = method_client.submit(inc, 1, workers="worker-0")
    b = method_client.submit(lambda x, y: x * y, a, 10, workers="worker-1")
    assert b.result(timeout=T) == 20
    assert method_client.gather(method_client.map(inc, range(5)), timeout=T) == [1, 2, 3, 4, 5]


def test_get_client_inside_a_task(method_client: Client) -> None:
    assert method_client.submit(fan_out, 4).result(timeout=T) == 10


def test_actor_calls(method_client: Client) -> None:
    counter = method_client.submit(Counter, actor=True).result(timeout=T)
    assert counter.increment().result(timeout=T) == 1
    assert counter.increment(5).result(timeout=T) == 6


# -- scheduler_info -------------------------------------------------------------------------


def test_scheduler_info_shape(client: Client, cluster: LocalCluster) -> None:
    info = client.scheduler_info()
    assert set(info) >= {"workers"}
    workers = info["workers"]
    assert sorted(workers) == ["worker-0", "worker-1"]
    manager = psutil.Process(cluster._process.pid)
    for name, w in workers.items():
        assert w["name"] == name
        assert isinstance(w["pid"], int) and psutil.pid_exists(w["pid"])
        assert w["pid"] in {p.pid for p in manager.children()}
        assert w["nthreads"] == 1
        assert w["resources"] == {}
        assert w["memory_limit"] is None
        assert isinstance(w["memory"], int) and w["memory"] > 1_000_000  # a Python process's RSS
        assert w["address"].startswith(cluster.directory)


def test_scheduler_info_reports_configuration() -> None:
    with (
        LocalCluster(n_workers=1, threads_per_worker=3, resources={"GPU": 2}, memory_limit="1 GiB") as cluster,
        Client(cluster) as client,
    ):
        (w,) = client.scheduler_info()["workers"].values()
        assert w["nthreads"] == 3
        assert w["resources"] == {"GPU": 2}
        assert w["memory_limit"] == 2**30


# -- scale ---------------------------------------------------------------------------------------


def test_scale_up_and_down() -> None:
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        first = client.scheduler_info()["workers"]
        cluster.scale(3)
        info = client.scheduler_info()["workers"]
        assert len(info) == 3 and set(first) < set(info)
        new = sorted(set(info) - set(first))
        assert client.gather([client.submit(where, n, workers=n) for n in new], timeout=T) == new
        cluster.scale(1)  # returns once the retired workers are gone
        after = client.scheduler_info()["workers"]
        assert len(after) == 1
        retired = [info[n]["pid"] for n in info if n not in after]
        _wait_gone(retired, timeout=5.0)
        assert client.gather(client.map(inc, range(10), pure=False), timeout=T) == list(range(1, 11))
        cluster.scale(2)
        assert len(client.scheduler_info()["workers"]) == 2


def test_scale_down_keeps_data_that_is_still_wanted() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        futures = [
            client.submit(inc, i, workers=f"worker-{i % 2}", allow_other_workers=True, pure=False) for i in range(4)
        ]
        wait(futures, timeout=T)
        cluster.scale(1)
        # task results that lived on the retired worker are computed again: nothing is lost
        assert client.gather(futures, timeout=T) == [1, 2, 3, 4]


# -- relaying: direct_to_workers=False --------------------------------------------------------


def test_relay_through_the_manager_for_tasks_and_actors(cluster: LocalCluster) -> None:
    with Client(cluster, direct_to_workers=False) as client:
        a = client.submit(inc, 1, workers="worker-0")
        b = client.submit(inc, a, workers="worker-1")
        assert b.result(timeout=T) == 3
        assert client.gather([a, b], timeout=T) == [2, 3]
        big = client.submit(bytes, 3 << 20)  # large data: out-of-band frames through the relay
        assert big.result(timeout=T) == bytes(3 << 20)
        counter = client.submit(Counter, actor=True).result(timeout=T)
        futures = [counter.increment() for _ in range(50)]
        assert [f.result(timeout=T) for f in futures] == list(range(1, 51))
        assert counter.n == 50
        peers = list(client.core._peers.values())
        assert peers and all(p.link is None for p in peers)  # no direct link was opened


def test_direct_clients_open_direct_links(client: Client) -> None:
    assert client.submit(inc, 1).result(timeout=T) == 2
    peers = list(client.core._peers.values())
    assert peers and all(p.link is not None for p in peers)


# -- owning, closing -----------------------------------------------------------------------------


def test_client_owns_its_own_cluster() -> None:
    with Client(n_workers=1) as client:
        cluster = client.cluster
        assert isinstance(cluster, LocalCluster) and cluster.status == "running"
        assert client.submit(inc, 1).result(timeout=T) == 2
        pids = [w["pid"] for w in client.scheduler_info()["workers"].values()] + [cluster._process.pid]
        directory = cluster.directory
    assert cluster.status == "closed"
    assert not os.path.exists(directory)
    _wait_gone(pids, timeout=5.0)


def test_client_close_is_idempotent_and_later_use_fails(cluster: LocalCluster) -> None:
    client = Client(cluster)
    fut = client.submit(inc, 1)
    assert fut.result(timeout=T) == 2
    client.close()
    client.close()
    assert client.status == "closed"
    with pytest.raises(ClusterClosedError):
        client.submit(inc, 2)
    with pytest.raises(ClusterClosedError):
        client.scheduler_info()
    with pytest.raises(ClusterClosedError):
        client.scatter([1])
    assert cluster.status == "running"  # not the client's to close


def test_closing_the_cluster_fails_pending_work_with_cluster_closed(tmp_path: Path) -> None:
    cluster = LocalCluster(n_workers=1)
    client = Client(cluster)
    try:
        pending = client.submit(gated, str(tmp_path / "never"))
        pids = [w.pid for w in cluster.workers] + [cluster._process.pid]
        t0 = time.monotonic()
        cluster.close()
        cluster.close()
        assert time.monotonic() - t0 < 15
        assert cluster.status == "closed"
        with pytest.raises(ClusterClosedError):
            pending.result(timeout=T)
        with pytest.raises(ClusterClosedError):
            client.submit(inc, 1)
        with pytest.raises(ClusterClosedError):
            cluster.scale(2)
        _wait_gone(pids, timeout=5.0)
    finally:
        client.close()
        cluster.close()


def test_socket_directory_is_private_and_removed_on_close() -> None:
    with LocalCluster(n_workers=1) as cluster:
        directory = cluster.directory
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        entries = {e.name: e for e in os.scandir(directory)}
        assert {"manager", "worker-0"} <= set(entries)
        for name in ("manager", "worker-0"):
            assert stat.S_ISSOCK(os.stat(entries[name].path).st_mode)
    assert not os.path.exists(directory)


def test_each_cluster_has_its_own_authkey() -> None:
    with LocalCluster(n_workers=1) as a, LocalCluster(n_workers=1) as b:
        assert len(a.authkey) >= 32 and a.authkey != b.authkey
        with pytest.raises(AuthenticationError):
            connect(b.manager_address, a.authkey, "wrong-key")
        with pytest.raises(AuthenticationError):
            connect(b.workers[0].address, a.authkey, "wrong-key")
        # the right key opens the door, also for a client given only the address
        with Client(b.manager_address, authkey=b.authkey) as client:
            assert client.submit(inc, 1).result(timeout=T) == 2
        with pytest.raises(ValueError):
            Client(b.manager_address)  # an address alone is not enough


def test_closing_many_clients_while_opening_new_ones(cluster: LocalCluster) -> None:
    # exercised a double close of a descriptor that a new socket had already reused
    for _ in range(10):
        relayed = Client(cluster, direct_to_workers=False)
        assert relayed.submit(inc, 1).result(timeout=T) == 2
        relayed.close()
        direct = Client(cluster)
        assert direct.submit(inc, 2).result(timeout=T) == 3
        direct.close()


# -- no orphans --------------------------------------------------------------------------------

ORPHAN_SCRIPT = """
import sys, time
from localactors import LocalCluster
cluster = LocalCluster(n_workers=2, start_method=sys.argv[1])
print(cluster._process.pid, *[w.pid for w in cluster.workers], flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_no_orphans_when_the_user_process_is_killed(method: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, method], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(T)
        assert line and line[0].strip(), "the script did not report its cluster"
        pids = [int(p) for p in line[0].split()]
        assert len(pids) == 3 and not any(_gone(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(T)
        _wait_gone(pids, timeout=10.0)  # manager and workers leave by themselves
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(T)
        if proc.stdout is not None:
            proc.stdout.close()
