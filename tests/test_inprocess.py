"""``LocalCluster(processes=False)``: the same semantics, in threads of this process."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest

from localactors import Client, LocalCluster, SerializationError, get_client, get_worker, wait

T = 10  # every blocking call's timeout


def _spawned_children() -> set[int]:
    found = set()
    for p in psutil.Process().children():
        try:
            if "spawn_main" in " ".join(p.cmdline()):
                found.add(p.pid)
        except psutil.Error:
            pass  # gone meanwhile
    return found


@pytest.fixture
def spawned_before() -> set[int]:
    """Processes spawned before this test's cluster started (a previous module's, still ending)."""
    return _spawned_children()


@pytest.fixture
def client() -> Iterator[Client]:
    """A fresh in-process cluster per test: it costs milliseconds, and its close is checked each time."""
    with LocalCluster(n_workers=2, processes=False) as cluster, Client(cluster) as c:
        yield c


class Box:
    """Holds what it was given; tells where it runs."""

    def __init__(self, item: object = None) -> None:
        self.item = item

    def put(self, item: object) -> object:
        self.item = item
        if isinstance(item, list):
            item.append("touched by the actor")
        return item

    def get(self) -> object:
        return self.item

    def where(self) -> tuple[int, str, str]:
        return os.getpid(), threading.current_thread().name, get_worker().name

    async def where_async(self) -> tuple[str, str, int]:
        loop = asyncio.get_running_loop()
        return threading.current_thread().name, get_worker().name, id(loop)

    def call(self, other: object, method: str) -> object:
        return getattr(other, method)().result(timeout=T)

    def ping_with_breakpoint(self) -> str:
        breakpoint()  # the point of the test: it reaches this process's hook
        return "after the breakpoint"


def worker_names(client: Client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def test_workers_are_threads_of_this_process(spawned_before: set[int], client: Client) -> None:
    info = client.scheduler_info()["workers"]
    assert {w["pid"] for w in info.values()} == {os.getpid()}
    # this cluster spawned no manager or worker process (multiprocessing's helpers may be
    # about, and so may the processes of a cluster closed just before, not yet reaped)
    assert not _spawned_children() - spawned_before
    names = {t.name for t in threading.enumerate()}
    assert {"localactors-manager", "localactors-worker-0", "localactors-worker-1"} <= names


def test_arguments_and_results_are_copies(client: Client) -> None:
    box = client.submit(Box, actor=True).result(timeout=T)
    mine = ["mine"]
    theirs = box.put(mine).result(timeout=T)
    assert mine == ["mine"]  # the actor changed its own copy
    assert theirs == ["mine", "touched by the actor"]
    assert theirs is not mine
    assert box.get().result(timeout=T) is not box.get().result(timeout=T)


def test_unpicklable_arguments_fail_in_the_caller(client: Client) -> None:
    box = client.submit(Box, actor=True).result(timeout=T)
    with pytest.raises(SerializationError):
        box.put(threading.Lock())


def test_one_actor_thread_and_one_loop_per_worker(client: Client) -> None:
    names = worker_names(client)
    boxes = [client.submit(Box, actor=True, workers=[n]).result(timeout=T) for n in names]
    seen = [b.where().result(timeout=T) for b in boxes]
    assert [s[2] for s in seen] == names  # get_worker() knows its thread's worker
    assert [s[1] for s in seen] == [f"localactors-actor-{n}" for n in names]
    loops = [b.where_async().result(timeout=T) for b in boxes]
    assert [(t, w) for t, w, _ in loops] == [(f"localactors-{n}", n) for n in names]
    assert loops[0][2] != loops[1][2]  # each worker its own event loop
    # and both actors on one worker share its one actor thread
    again = client.submit(Box, actor=True, workers=[names[0]]).result(timeout=T)
    assert again.where().result(timeout=T)[1] == seen[0][1]


def test_breakpoint_reaches_this_process(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    hits: list[str] = []
    monkeypatch.setattr(sys, "breakpointhook", lambda *a, **k: hits.append(threading.current_thread().name))
    box = client.submit(Box, actor=True).result(timeout=T)
    assert box.ping_with_breakpoint().result(timeout=T) == "after the breakpoint"
    assert hits == [f"localactors-actor-{box.worker}"]


def test_tasks_and_actors_calling_actors(client: Client) -> None:
    names = worker_names(client)
    a = client.submit(Box, "a", actor=True, workers=[names[0]]).result(timeout=T)
    b = client.submit(Box, "b", actor=True, workers=[names[1]]).result(timeout=T)
    c = client.submit(Box, "c", actor=True, workers=[names[0]]).result(timeout=T)
    assert a.call(b, "get").result(timeout=T) == "b"  # worker to worker
    assert a.call(c, "get").result(timeout=T) == "c"  # same worker, same actor thread

    def task(box: object) -> object:
        return box.get().result(timeout=T), get_worker().name  # type: ignore[attr-defined]

    assert client.submit(task, b).result(timeout=T)[0] == "b"


def test_get_client_in_a_worker_does_not_replace_ours(client: Client) -> None:
    def uses_client() -> int:
        return int(get_client().submit(sum, [1, 2]).result(timeout=T))

    assert client.submit(uses_client).result(timeout=T) == 3
    assert get_client() is client


def test_scale_in_process(client: Client) -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        cluster.scale(3)
        assert len(c.scheduler_info()["workers"]) == 3
        futures = c.map(Box, range(6), actor=True)
        done, _ = wait(futures, timeout=T)
        assert len(done) == 6
        cluster.scale(1)  # returns once the others have left
        assert len(c.scheduler_info()["workers"]) == 1


def test_close_leaves_no_thread_even_with_async_calls_pending() -> None:
    before = set(threading.enumerate())

    class Waiter:
        def __init__(self) -> None:
            self.event = asyncio.Event()

        async def wait(self) -> None:
            await self.event.wait()

    with LocalCluster(n_workers=2, processes=False) as cluster, Client(cluster) as c:
        waiter = c.submit(Waiter, actor=True).result(timeout=T)
        pending = waiter.wait()
    with pytest.raises(Exception):  # noqa: B017 -- which error is the failure docs' business
        pending.result(timeout=T)
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    for t in set(threading.enumerate()) - before:
        t.join(timeout=T)
    assert not [t.name for t in set(threading.enumerate()) - before], left


def test_async_client_on_an_in_process_cluster() -> None:
    async def main() -> int:
        async with (
            LocalCluster(n_workers=1, processes=False, asynchronous=True) as cluster,
            Client(cluster, asynchronous=True) as c,
        ):
            box = await c.submit(Box, 41, actor=True)
            await box.put(42)
            return int(await box.item)

    assert asyncio.run(main()) == 42


def test_memory_limit_needs_processes() -> None:
    with pytest.raises(ValueError, match="processes=True"):
        LocalCluster(n_workers=1, processes=False, memory_limit="1 GiB")
