"""Corners of the dask-shaped API: a live ``LocalCluster.workers``, ``gather(errors="skip")``,
``scatter(workers=<address>)``, ``Actor.worker`` after a restart, and a fast,
named failure when workers die before registering."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from helpers import eventually, wait_until

from localactors import Client, LocalCluster, WorkerStartError, get_worker

T = 60.0  # generous: a bound on a hang, not a performance claim


def inc(x: int) -> int:
    return x + 1


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def where(_: Any = None) -> str:
    return get_worker().name


class Pid:
    def pid(self) -> int:
        return os.getpid()


# -- LocalCluster.workers is a live view ------------------------------------------------


def test_cluster_workers_follow_scale_and_replacement() -> None:
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        assert [w.name for w in cluster.workers] == ["worker-0"]
        cluster.scale(2)
        names = [w.name for w in cluster.workers]
        assert names == sorted(client.scheduler_info()["workers"], key=lambda n: int(n.split("-")[1]))
        assert len(names) == 2
        # a worker that dies is replaced: the view shows the replacement, not the dead one
        victim = cluster.workers[0]
        os.kill(victim.pid, 9)

        def replaced() -> bool:
            now = cluster.workers
            return len(now) == 2 and victim.name not in {w.name for w in now}

        wait_until(replaced, T, lambda: f"{victim.name} replaced in {cluster.workers}", interval=0.05)
        cluster.scale(1)
        assert len(cluster.workers) == 1
    assert len(cluster.workers) == 1  # closed: the last view, without asking anyone


# -- gather(errors="skip") ----------------------------------------------------------------


def test_gather_skip_drops_failed_futures(client: Client) -> None:
    good = client.map(inc, range(3))
    bad = client.submit(boom, 1)
    with pytest.raises(ValueError, match="boom 1"):
        client.gather([*good, bad], timeout=T)
    assert client.gather([good[0], bad, good[1], bad, good[2]], errors="skip", timeout=T) == [1, 2, 3]
    assert client.gather((bad, good[0]), errors="skip", timeout=T) == (1,)
    assert client.gather({"a": good[0], "b": bad, "c": [bad, good[2]]}, errors="skip", timeout=T) == {
        "a": 1,
        "c": [3],
    }
    assert client.gather(bad, errors="skip", timeout=T) is None
    with pytest.raises(ValueError, match="errors"):
        client.gather(good, errors="ignore")


def test_gather_skip_async() -> None:
    async def main() -> Any:
        async with (
            LocalCluster(n_workers=1, asynchronous=True, processes=False) as cluster,
            Client(cluster, asynchronous=True) as client,
        ):
            good = client.submit(inc, 1)
            bad = client.submit(boom, 2)
            return await asyncio.wait_for(client.gather([good, bad], errors="skip"), T)

    assert asyncio.run(main()) == [2]


# -- scatter(workers=...) takes addresses too ---------------------------------------------


def test_scatter_to_a_worker_named_by_address(client: Client, cluster: LocalCluster) -> None:
    for info in cluster.workers:
        [fut] = client.scatter([info.name + "-data"], workers=info.address, hash=False)
        assert client.submit(where, fut, workers=info.address).result(timeout=T) == info.name
        assert fut.state.worker == info.name
        [fut] = client.scatter([info.name + "-data"], workers=[info.name], hash=False)
        assert fut.result(timeout=T) == info.name + "-data"


# -- Actor.worker after a restart ---------------------------------------------------------


def test_actor_worker_names_the_current_worker_after_a_restart() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        actor = client.submit(Pid, actor=True, max_restarts=1).result(timeout=T)
        old_name, old_pid = actor.worker, actor.pid().result(timeout=T)
        assert old_name in {w.name for w in cluster.workers}
        os.kill(old_pid, 9)

        def restarted() -> int | None:
            try:
                pid: int = actor.pid().result(timeout=T)
            except Exception:  # the calls in flight at the death fail; later ones reach the new one
                return None
            return pid if pid != old_pid else None

        new_pid = wait_until(restarted, T, "the actor answers from a new process", interval=0.05)
        assert actor.worker != old_name
        assert {w.name: w.pid for w in cluster.workers}[actor.worker] == new_pid


# -- workers dying before they register ---------------------------------------------------


def _dying_worker(config: Any, output: Any) -> None:
    if config.in_process:
        raise RuntimeError("this worker cannot start")
    os._exit(3)


@pytest.mark.parametrize("processes", [True, False])
def test_workers_dying_before_registering_fail_the_start_fast(processes: bool) -> None:
    # the manager imports the entry point by name (this module is importable there)
    entry = f"{__name__}:_dying_worker"
    start = time.monotonic()
    with pytest.raises(WorkerStartError, match="died before registering") as info:
        LocalCluster(n_workers=2, processes=processes, timeout=T, worker_entry=entry)
    elapsed = time.monotonic() - start
    assert elapsed < T / 2, elapsed  # not the start timeout
    assert "exited with code" in str(info.value)


# -- a Future in a task's or actor method's result ----------------------------------------


def make_future(x: int) -> Any:
    from localactors import get_client

    return get_client().submit(inc, x, pure=False)


def make_futures(n: int) -> dict[str, Any]:
    from localactors import get_client

    return {"list": [get_client().submit(inc, i, pure=False) for i in range(n)]}


def value_of_inner(outer: Any) -> int:
    return int(outer.result(timeout=T))


class Maker:
    def make(self, x: int) -> Any:
        return make_future(x)

    def value_of(self, box: dict[str, Any]) -> int:
        return int(box["future"])


def test_a_future_returned_by_a_task_arrives_as_a_future(client: Client) -> None:
    outer = client.submit(make_future, 1, pure=False)
    inner = outer.result(timeout=T)
    assert type(inner).__name__ == "Future"
    assert inner.result(timeout=T) == 2
    nested = client.submit(make_futures, 3, pure=False).result(timeout=T)
    assert client.gather(nested, timeout=T) == {"list": [1, 2, 3]}
    # the value travels on to another task, where it is that worker's Future
    assert client.submit(value_of_inner, outer, pure=False).result(timeout=T) == 2
    # an actor method may return one too
    maker = client.submit(Maker, actor=True).result(timeout=T)
    assert maker.make(5).result(timeout=T).result(timeout=T) == 6
    # in an actor call's arguments a Future arrives as its value, as in a task's;
    # in scattered data it stays a Future
    assert maker.value_of({"future": inner}).result(timeout=T) == 2
    box = client.scatter({"future": inner}, hash=False)
    assert client.submit(value_of_inner, box["future"]).result(timeout=T) == 2


def test_a_returned_future_outlives_the_task_that_made_it(client: Client) -> None:
    outer = client.submit(make_future, 10, pure=False)
    inner = outer.result(timeout=T)
    key = inner.key
    del outer  # the worker frees the outer result, and with it its own Future for the inner key
    eventually(lambda: client.core.refs.count(key) == 1, T)  # let the release arrive; the checks follow
    assert inner.result(timeout=T) == 11  # our reference keeps it alive
    assert client.submit(inc, inner).result(timeout=T) == 12


def holds(key: str) -> bool:
    return key in get_worker().data


def test_a_returned_future_is_released_when_nobody_holds_it(client: Client, cluster: LocalCluster) -> None:
    outer = client.submit(make_future, 20, pure=False)
    inner = outer.result(timeout=T)
    key = inner.key
    assert inner.result(timeout=T) == 21
    del outer, inner  # no pin left behind in flight: the worker frees the value

    def anywhere() -> bool:
        checks = [client.submit(holds, key, workers=w.name, pure=False) for w in cluster.workers]
        return any(client.gather(checks, timeout=T))

    wait_until(lambda: not anywhere(), T, "the value is freed everywhere")
