"""Load and backpressure: bounded calls in flight, and no growth under a long run.

Backpressure: past ``max_in_flight`` unanswered calls on one caller-to-worker
link, a thread blocks, while async code and actor code (which must never
block) get futures whose requests are sent, in order, as room appears.

Soak: CI runs reduced counts; ``-m slow`` runs the issue's full counts
(1,000,000 calls, 10,000 actors, 200 threads).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import Any

import psutil
import pytest
from helpers import wait_until

from localactors import Actor, Client, LocalCluster, get_worker, wait

MiB = 2**20


class Gate:
    """Async calls that wait until released; remembers the order they began in."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.order: list[int] = []

    async def hold(self, i: int) -> int:
        self.order.append(i)
        await self.opened.wait()
        return i

    def release(self) -> None:
        get_worker().loop.call_soon_threadsafe(self.opened.set)

    def started(self) -> list[int]:
        return self.order


class Counter:
    def __init__(self, n: int = 0) -> None:
        self.n = n
        self.seen: list[int] = []

    def inc(self) -> int:
        self.n += 1
        return self.n

    def record(self, i: int) -> int:
        self.seen.append(i)
        return i

    def order(self) -> list[int]:
        return self.seen

    def fan(self, target: Any, n: int) -> list[int]:
        """From the actor thread: more calls than the link allows in flight."""
        futures = [target.record(i) for i in range(n)]
        return [f.result(timeout=60) for f in futures]

    async def afan(self, target: Any, n: int) -> list[int]:
        """From the worker's event loop: the same, awaited."""
        futures = [target.record(i) for i in range(n)]
        return list(await asyncio.gather(*futures))


def release(gate: Any) -> None:
    gate.release().result(timeout=30)


def peer_of(client: Client, actor: Actor) -> Any:
    return client.core.peer(actor._address)


# ---------------------------------------------------------------- backpressure


def test_a_thread_blocks_past_max_in_flight(cluster: LocalCluster) -> None:
    with Client(cluster, max_in_flight=2) as client:
        gate = client.submit(Gate, actor=True).result(timeout=30)
        held = [gate.hold(0), gate.hold(1)]
        peer = peer_of(client, gate)
        assert len(peer.pending) == 2
        third: list[Any] = []
        caller = threading.Thread(target=lambda: third.append(gate.hold(2)), name="test-blocked-caller")
        caller.start()
        wait_until(lambda: peer.blocked == 1, 10, "the third call waits for room")
        assert not third and len(peer.pending) == 2
        client.submit(release, gate, pure=False).result(timeout=30)  # not through the full link
        caller.join(30)
        assert not caller.is_alive()
        assert [f.result(timeout=30) for f in [*held, *third]] == [0, 1, 2]
        assert gate.started().result(timeout=10) == [0, 1, 2]


def test_async_callers_await_instead_of_blocking_the_loop(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True, max_in_flight=2) as client:
            gate = await client.submit(Gate, actor=True)
            futures = [gate.hold(i) for i in range(6)]  # returns at once: the loop is not held
            peer = peer_of(client, gate)
            assert len(peer.pending) == 2 and len(peer.backlog) == 4
            ticks = 0
            for _ in range(3):
                await asyncio.sleep(0)
                ticks += 1  # the loop runs
            assert ticks == 3
            await client.submit(release, gate, pure=False)
            assert list(await asyncio.wait_for(asyncio.gather(*futures), 30)) == list(range(6))
            assert await gate.started() == list(range(6))  # the backlog went out in order

    asyncio.run(main())


def test_actor_thread_and_loop_do_not_deadlock_on_a_full_link() -> None:
    with LocalCluster(n_workers=2, max_in_flight=3) as cluster, Client(cluster) as client:
        caller = client.submit(Counter, actor=True, workers=["worker-0"]).result(timeout=30)
        near = client.submit(Counter, actor=True, workers=["worker-0"]).result(timeout=30)
        far = client.submit(Counter, actor=True, workers=["worker-1"]).result(timeout=30)
        # the same worker: replies need the very actor thread that is calling
        assert caller.fan(near, 50).result(timeout=60) == list(range(50))
        assert caller.fan(far, 50).result(timeout=60) == list(range(50))
        assert caller.afan(far, 50).result(timeout=60) == list(range(50))
        assert caller.afan(near, 50).result(timeout=60) == list(range(50))
        assert far.order().result(timeout=10) == list(range(50)) * 2


def test_blocked_callers_fail_when_the_worker_dies() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster, max_in_flight=1) as client:
        gate = client.submit(Gate, actor=True).result(timeout=30)
        pid = client.scheduler_info()["workers"][gate.worker]["pid"]
        first = gate.hold(0)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                gate.hold(1).result(timeout=30)
            except BaseException as err:
                errors.append(err)

        caller = threading.Thread(target=call, name="test-blocked-caller")
        caller.start()
        wait_until(lambda: peer_of(client, gate).blocked == 1, 10, "the caller waits for room")
        os.kill(pid, 9)
        caller.join(10)
        assert not caller.is_alive()
        assert errors and "SIGKILL" in str(errors[0])
        with pytest.raises(Exception, match="SIGKILL"):
            first.result(timeout=10)


# ---------------------------------------------------------------- soak


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def pipelined_calls(actor: Actor, total: int, batch: int = 1_000) -> None:
    done = 0
    while done < total:
        n = min(batch, total - done)
        futures = [actor.inc() for _ in range(n)]
        wait(futures, timeout=120)
        assert futures[-1].result(timeout=1) > 0
        done += n


def soak(cluster: LocalCluster, client: Client, calls: int) -> dict[str, int]:
    """RSS growth per process over ``calls`` actor calls, after a warm-up."""
    actor = client.submit(Counter, actor=True).result(timeout=30)
    pids = {"client": os.getpid(), "manager": cluster._process.pid}
    pids.update({name: w["pid"] for name, w in client.scheduler_info()["workers"].items()})
    pipelined_calls(actor, 20_000)  # warm-up: buffers, caches and free lists reach their size
    gc.collect()
    before = {name: rss(pid) for name, pid in pids.items()}
    pipelined_calls(actor, calls)
    gc.collect()
    after = {name: rss(pid) for name, pid in pids.items()}
    assert actor.inc().result(timeout=10) == 20_000 + calls + 1
    return {name: after[name] - before[name] for name in pids}


def many_actors(client: Client, n: int) -> None:
    actors = client.gather(client.map(Counter, range(n), actors=True), timeout=300)
    assert len({a.worker for a in actors}) == 2
    futures = [a.inc() for a in actors]
    assert [f.result(timeout=300) for f in futures] == [i + 1 for i in range(n)]


def many_threads(client: Client, threads: int, calls: int) -> None:
    actor = client.submit(Counter, actor=True).result(timeout=30)
    barrier = threading.Barrier(threads)
    results: list[list[int]] = [[] for _ in range(threads)]

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        results[i] = [actor.inc().result(timeout=120) for _ in range(calls)]

    pool = [threading.Thread(target=run, args=(i,), name=f"test-caller-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(300)
    assert not any(t.is_alive() for t in pool)
    seen = sorted(v for r in results for v in r)
    assert seen == list(range(1, threads * calls + 1))  # every call ran exactly once
    assert all(r == sorted(r) for r in results)  # each thread saw its own calls in order


def test_soak_reduced(cluster: LocalCluster, client: Client) -> None:
    growth = soak(cluster, client, 30_000)
    assert all(g < 10 * MiB for g in growth.values()), growth


def test_many_actors_reduced(client: Client) -> None:
    many_actors(client, 1_000)


def test_many_threads_at_once(client: Client) -> None:
    many_threads(client, 200, 10)


@pytest.mark.slow
def test_soak_one_million_calls() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        growth = soak(cluster, client, 1_000_000)
        print("RSS growth over 1,000,000 calls (MiB):", {k: round(v / MiB, 2) for k, v in growth.items()})
        assert all(g < 10 * MiB for g in growth.values()), growth


@pytest.mark.slow
def test_ten_thousand_actors_on_two_workers() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        many_actors(client, 10_000)


@pytest.mark.slow
def test_two_hundred_threads_many_calls() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        many_threads(client, 200, 250)
