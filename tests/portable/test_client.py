"""The Client and LocalCluster surface dask users call daily: run, sync, restart,
wait_for_workers, upload_file, who_has, nthreads, cluster keywords and worker names."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .engines import Engine, T, run_async
from .tasks import boom, import_attr, inc, pid, worker_name


def test_client_sync_runs_a_coroutine_function(client: Any) -> None:
    async def twice(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert client.sync(twice, 21) == 42


def test_client_run_on_every_worker_keyed_by_address(client: Any) -> None:
    pids = client.run(pid)
    assert isinstance(pids, dict) and len(pids) == 2
    assert set(pids) == set(client.nthreads())
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()


def test_client_run_passes_arguments_and_restricts_workers(client: Any) -> None:
    first = sorted(client.nthreads())[0]
    out = client.run(pid, 1, 2, workers=[first])
    assert list(out) == [first]


def test_client_run_raises_the_functions_error(client: Any) -> None:
    with pytest.raises(ValueError, match="boom"):
        client.run(boom, "run")


def test_client_nthreads(client: Any) -> None:
    nthreads = client.nthreads()
    assert isinstance(nthreads, dict) and len(nthreads) == 2
    assert list(nthreads.values()) == [1, 1]


def test_client_who_has(client: Any) -> None:
    f = client.submit(inc, 1, key=f"who-{uuid.uuid4().hex}")
    f.result(timeout=T)
    where = client.who_has([f])
    assert list(where) == [f.key]
    [holders] = where.values()
    assert len(holders) == 1 and holders[0] in client.nthreads()
    assert f.key in client.who_has()


def test_client_wait_for_workers(eng: Engine, client: Any) -> None:
    assert client.wait_for_workers(2, timeout=T) is None
    with pytest.raises(eng.TimeoutError):
        client.wait_for_workers(3, timeout=0.5)
    with pytest.raises(ValueError):
        client.wait_for_workers(0)


def test_client_upload_file_makes_a_module_importable_on_workers(client: Any, tmp_path: Path) -> None:
    name = f"uploaded_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text("VALUE = 'uploaded'\n")
    client.upload_file(str(path))
    assert client.submit(import_attr, name, "VALUE", pure=False).result(timeout=T) == "uploaded"
    assert set(client.run(import_attr, name, "VALUE").values()) == {"uploaded"}


def test_client_restart_gives_new_workers_and_cancels_futures(eng: Engine) -> None:
    with eng.make_cluster() as cluster, eng.Client(cluster) as client:
        f = client.submit(inc, 1)
        assert f.result(timeout=T) == 2
        before = set(client.run(pid).values())
        client.restart()
        after = set(client.run(pid).values())
        assert len(after) == 2 and not before & after
        assert f.status in ("cancelled", "lost")
        with pytest.raises(eng.CancelledError):
            f.result(timeout=T)
        assert client.submit(inc, 2).result(timeout=T) == 3


def test_client_status_and_close(eng: Engine, cluster: Any) -> None:
    c = eng.Client(cluster)
    assert c.status == "running"
    c.close()
    assert c.status == "closed"
    c.close()  # idempotent


def test_scheduler_info_lists_the_workers(client: Any) -> None:
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    for info in workers.values():
        assert info["nthreads"] == 1
        assert "name" in info and "memory_limit" in info


def test_worker_names_are_usable_in_workers_restrictions(eng: Engine, client: Any) -> None:
    names = [info["name"] for info in client.scheduler_info()["workers"].values()]
    for name in names:
        f = client.submit(worker_name, eng.get_worker, workers=[name], pure=False)
        assert f.result(timeout=T) == name


def test_workers_restriction_by_address(eng: Engine, client: Any) -> None:
    addresses = sorted(client.nthreads())
    for address in addresses:
        f = client.submit(pid, address, workers=[address], pure=False)
        f.result(timeout=T)
        assert list(client.who_has([f])[f.key]) == [address]


def test_get_worker_outside_a_worker_raises_value_error(eng: Engine, client: Any) -> None:
    with pytest.raises(ValueError):
        eng.get_worker()


def test_local_cluster_keywords(eng: Engine) -> None:
    kwargs = eng.cluster_kwargs(n_workers=1, threads_per_worker=2, memory_limit="2GiB", resources={"R": 1})
    with eng.LocalCluster(**kwargs) as cluster, eng.Client(cluster) as client:
        assert list(client.nthreads().values()) == [2]
        [info] = client.scheduler_info()["workers"].values()
        assert info["memory_limit"] == 2 * 2**30
        assert client.submit(inc, 1, resources={"R": 1}).result(timeout=T) == 2


def test_local_cluster_in_process(eng: Engine) -> None:
    with eng.LocalCluster(**eng.cluster_kwargs(n_workers=1, processes=False)) as cluster, eng.Client(cluster) as c:
        assert c.submit(inc, 1).result(timeout=T) == 2
        assert c.run(pid) == {next(iter(c.nthreads())): os.getpid()}


def test_asynchronous_local_cluster(eng: Engine) -> None:
    async def main() -> None:
        kwargs = eng.cluster_kwargs(n_workers=1, processes=False, asynchronous=True)
        async with eng.LocalCluster(**kwargs) as cluster, eng.Client(cluster, asynchronous=True) as c:
            assert await c.submit(inc, 1) == 2
            assert len(await c.gather(c.map(inc, range(3)))) == 3

    run_async(main())


def test_client_without_a_cluster_starts_and_closes_one(eng: Engine) -> None:
    with eng.Client(**eng.cluster_kwargs(n_workers=1, processes=False)) as c:
        assert c.submit(inc, 1).result(timeout=T) == 2
        cluster = c.cluster
    deadline = time.monotonic() + T
    while cluster.status not in ("closed",) and str(cluster.status) != "Status.closed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
