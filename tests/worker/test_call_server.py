"""Where a worker serves its callers' requests (an in-process cluster: one interpreter).

The idle actor thread reads the latest actor caller's link itself; a data
request it reads there must not be served on it (pickling a large result
would hold up every actor's queued calls).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import localactors
from localactors import Client, LocalCluster

T = 10.0


class PickledWhere:
    """Unpickles as the name of the thread that pickled it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (threading.current_thread().name,))


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, x: int) -> int:
        self.n += x
        return self.n


def make_where(i: int) -> PickledWhere:
    return PickledWhere()


def test_a_data_request_read_by_the_idle_actor_thread_is_not_served_there() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result()
        served_on = set()
        for i in range(20):
            counter.add(1).result()  # the actor thread now idle-reads this client's link
            served_on.add(c.submit(make_where, i).result())
        assert counter.add(0).result() == 20
    assert not [name for name in served_on if name.startswith("localactors-actor-")], served_on


def test_a_data_request_answers_the_same_from_any_thread() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result()
        futures = [c.submit(lambda i: list(range(i)), i) for i in range(30)]
        for i, fut in enumerate(futures):
            counter.add(1).result()
            assert fut.result() == list(range(i))
        assert counter.add(0).result() == 30


# -- pipelined calls: runs of calls to one actor, one operation each ---------------------


class Mixed:
    """Records where each call's first step ran, in the order they began."""

    def __init__(self) -> None:
        self.began: list[int] = []
        self.n = 0

    def step(self, i: int) -> int:
        self.began.append(i)
        self.n += 1
        return self.n

    def plain(self) -> int:
        self.n += 1
        return self.n

    async def astep(self, i: int) -> int:
        self.began.append(i)  # the first step: before any later call of this caller begins
        await asyncio.sleep(0)
        return i

    def fail(self) -> None:
        raise ValueError("no")

    def log(self) -> list[int]:
        return self.began


def test_a_burst_mixing_sync_async_and_failing_calls_begins_in_order() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        actor = c.submit(Mixed, actor=True).result(timeout=T)
        futures = []
        for i in range(600):  # one burst: the worker takes it in runs (an async call ends a run)
            if i % 7 == 3:
                futures.append(actor.astep(i))
            elif i % 11 == 5:
                futures.append(actor.fail())
            else:
                futures.append(actor.step(i))
        expected = [i for i in range(600) if i % 11 != 5 or i % 7 == 3]
        assert actor.log().result(timeout=T) == expected
        for i, fut in enumerate(futures):
            if i % 7 == 3:
                assert fut.result(timeout=T) == i
            elif i % 11 == 5:
                with pytest.raises(ValueError):
                    fut.result(timeout=T)


def test_pipelined_calls_are_counted_once_each() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        actor = c.submit(Mixed, actor=True).result(timeout=T)
        futures = [actor.plain() for _ in range(1000)] + [actor.fail() for _ in range(5)]
        localactors.wait(futures, timeout=T)
        assert [f.result(timeout=0) for f in futures[:1000]] == list(range(1, 1001))
        s = c.actor_stats()[actor.key]
        assert (s["calls"], s["errors"], s["queued"], s["running"]) == (1005, 5, 0, 0)
        assert 0 < s["mean_latency"] <= s["max_latency"]

