"""How long an actor lives: while anyone can still reach it, and not longer.

An actor lives while a Future or an Actor handle for it exists in the client
or in any worker (handles in flight included), or while a pending task
depends on it; when the last one goes, its worker drops the object.

"Still alive" is checked without sleeping: once ``client.scheduler_info()``
has answered, the manager has applied every reference change this client
made before it; had it released the actor, the ``FreeKeys`` it sent the
worker would be handled before the probe task that follows on the same link,
and the probe runs after every actor operation queued before it.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import psutil
from helpers import wait_until

from localactors import Actor, Client, get_worker

T = 30.0

# ---------------------------------------------------------------- actors and tasks

_DROPPED: list[str] = []  # per worker process: labels of actor objects that were freed
_NOTES: list[int] = []  # per worker process: what Tracked.note was given


class Tracked:
    """Notes in its worker when the object itself is freed."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.n = 0

    def __del__(self) -> None:
        _DROPPED.append(self.label)

    def increment(self) -> int:
        self.n += 1
        return self.n

    def note(self, i: int) -> None:
        _NOTES.append(i)


class Holder:
    """An actor that keeps handles to other actors, or uses them later."""

    def __init__(self) -> None:
        self.kept: list[Actor] = []

    def keep(self, other: Actor) -> int:
        self.kept.append(other)
        return len(self.kept)

    def forget(self) -> None:
        self.kept.clear()

    def use_all(self) -> list[int]:
        return [a.increment().result(timeout=T) for a in self.kept]

    def block(self, gate: Actor) -> None:
        """Keep this actor busy until the gate opens: its later calls stay queued."""
        gate.wait().result(timeout=T)

    def use(self, other: Actor) -> int:
        return int(other.increment().result(timeout=T))


class Gate:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def open(self) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


class Big:
    """One megabyte of real (touched) memory."""

    def __init__(self, i: int) -> None:
        self.blob = bytes([i % 251]) * (1 << 20)


def probe() -> dict[str, Any]:
    """This worker's actors and freed labels, after its queued drops have run."""
    worker = get_worker()
    flushed = threading.Event()
    worker.actor_thread.submit("<probe>", flushed.set)
    assert flushed.wait(T)
    return {"keys": set(worker.actors), "dropped": list(_DROPPED), "notes": list(_NOTES)}


def wait_on(gate: Actor) -> str:
    gate.wait().result(timeout=T)
    return "opened"


def use_with(other: Actor, _after: str) -> int:
    return int(other.increment().result(timeout=T))


def hand_back(other: Actor) -> Actor:
    return other


# ---------------------------------------------------------------- helpers


def settle(client: Client) -> None:
    """Let this client's dropped handles reach the manager, and be applied."""
    gc.collect()
    client.scheduler_info()


def on(client: Client, worker: str) -> dict[str, Any]:
    result: dict[str, Any] = client.submit(probe, workers=[worker], pure=False).result(timeout=T)
    return result


def make(client: Client, label: str, **kw: Any) -> tuple[Any, Actor]:
    future = client.submit(Tracked, label, actor=True, **kw)
    return future, future.result(timeout=T)


# ---------------------------------------------------------------- client handles


def test_a_future_alone_keeps_the_actor(client: Client) -> None:
    future, actor = make(client, "future-alone")
    worker, key = actor.worker, actor.key
    assert actor.increment().result(timeout=T) == 1
    del actor
    settle(client)
    assert key in on(client, worker)["keys"]
    again = future.result(timeout=T)  # a new proxy, to the same object
    assert again.increment().result(timeout=T) == 2
    del future, again
    settle(client)
    state = on(client, worker)
    assert key not in state["keys"] and "future-alone" in state["dropped"]


def test_a_proxy_alone_keeps_the_actor(client: Client) -> None:
    future, actor = make(client, "proxy-alone")
    worker, key = actor.worker, actor.key
    del future
    settle(client)
    assert key in on(client, worker)["keys"]
    assert actor.increment().result(timeout=T) == 1
    del actor
    settle(client)
    state = on(client, worker)
    assert key not in state["keys"] and "proxy-alone" in state["dropped"]


def test_many_proxies_count_as_one_holder(client: Client) -> None:
    future, actor = make(client, "many-proxies")
    worker, key = actor.worker, actor.key
    proxies = [future.result(timeout=T) for _ in range(5)]
    del future, actor
    for i in range(4):
        proxies.pop()
        settle(client)
        assert key in on(client, worker)["keys"], f"dropped with {len(proxies)} proxies left (step {i})"
    proxies.clear()
    settle(client)
    assert key not in on(client, worker)["keys"]


def test_a_call_on_a_dropped_temporary_proxy_still_runs(client: Client) -> None:
    where = sorted(client.scheduler_info()["workers"])[0]
    before = len(on(client, where)["notes"])
    for i in range(50):
        # proxy and future are dropped at once: the call must keep the actor until it ran
        client.submit(Tracked, "temporary", actor=True, workers=[where]).result(timeout=T).note(i)
    settle(client)
    wait_until(lambda: len(on(client, where)["notes"]) - before == 50, T, "all 50 calls ran")
    assert on(client, where)["notes"][before:] == list(range(50))


# ---------------------------------------------------------------- handles in workers


def test_a_handle_held_by_another_actor_keeps_the_actor(client: Client) -> None:
    names = sorted(client.scheduler_info()["workers"])
    holder = client.submit(Holder, actor=True, workers=[names[1]]).result(timeout=T)
    future, actor = make(client, "held-by-actor", workers=[names[0]])
    key = actor.key
    assert holder.keep(actor).result(timeout=T) == 1
    del future, actor
    settle(client)
    assert key in on(client, names[0])["keys"]
    assert holder.use_all().result(timeout=T) == [1]
    holder.forget().result(timeout=T)  # the last handle was in the holder's worker
    wait_until(lambda: key not in on(client, names[0])["keys"], T, "the worker drops the actor")
    assert "held-by-actor" in on(client, names[0])["dropped"]


def test_a_handle_in_a_task_result_keeps_the_actor(client: Client) -> None:
    future, actor = make(client, "in-a-result")
    worker, key = actor.worker, actor.key
    boxed = client.submit(hand_back, actor, pure=False)
    assert boxed.result(timeout=T) == actor
    del future, actor
    settle(client)
    assert key in on(client, worker)["keys"]
    del boxed
    wait_until(lambda: (settle(client), key not in on(client, worker)["keys"])[1], T, "the actor is dropped")


def test_a_handle_in_flight_to_a_task_keeps_the_actor(client: Client) -> None:
    gate = client.submit(Gate, actor=True).result(timeout=T)
    future, actor = make(client, "in-flight-task")
    worker, key = actor.worker, actor.key
    blocker = client.submit(wait_on, gate, pure=False)
    # the handle is only inside the task's pickled arguments: the task cannot
    # start (and unpickle it) before the blocker is done
    task = client.submit(use_with, actor, blocker, pure=False)
    del future, actor
    settle(client)
    assert key in on(client, worker)["keys"]
    gate.open()
    assert task.result(timeout=T) == 1
    del task, blocker
    wait_until(lambda: (settle(client), key not in on(client, worker)["keys"])[1], T, "dropped after the task")


def test_a_handle_in_flight_to_an_actor_method_keeps_the_actor(client: Client) -> None:
    names = sorted(client.scheduler_info()["workers"])
    gate = client.submit(Gate, actor=True, workers=[names[1]]).result(timeout=T)
    holder = client.submit(Holder, actor=True, workers=[names[1]]).result(timeout=T)
    future, actor = make(client, "in-flight-call", workers=[names[0]])
    key = actor.key
    holder.block(gate)
    call = holder.use(actor)  # queued, arguments still pickled, behind the blocked call
    del future, actor
    settle(client)
    assert key in on(client, names[0])["keys"]
    gate.open()
    assert call.result(timeout=T) == 1
    wait_until(lambda: key not in on(client, names[0])["keys"], T, "dropped after the call returned")


def test_a_pending_dependent_task_keeps_the_actor(client: Client) -> None:
    gate = client.submit(Gate, actor=True).result(timeout=T)
    future = client.submit(Tracked, "dependency", actor=True)
    worker = future.result(timeout=T).worker
    key = future.key
    blocker = client.submit(wait_on, gate, pure=False)
    task = client.submit(use_with, future, blocker, pure=False)  # waits for blocker, needs the actor
    del future
    settle(client)
    assert key in on(client, worker)["keys"]
    gate.open()
    assert task.result(timeout=T) == 1
    del task, blocker
    wait_until(lambda: (settle(client), key not in on(client, worker)["keys"])[1], T, "dropped after the task")


# ---------------------------------------------------------------- memory


def _rss(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def test_memory_comes_back_after_a_thousand_actors(client: Client) -> None:
    workers = client.scheduler_info()["workers"]
    pids = [w["pid"] for w in workers.values()]
    before = _rss(pids)
    futures = client.map(Big, range(1000), actors=True)
    actors = client.gather(futures, timeout=120)
    assert len({a.key for a in actors}) == 1000
    grown = _rss(pids) - before
    assert grown > 800 << 20, f"1,000 actors of 1 MiB grew the workers by only {grown >> 20} MiB"
    for w in workers:  # spread evenly, at scale too (a few other actors may still be around)
        assert abs(sum(k.startswith("Big-") for k in on(client, w)["keys"]) - 500) <= 10
    del futures, actors
    gc.collect()
    client.scheduler_info()

    def back() -> bool:
        return _rss(pids) - before < 100 << 20

    wait_until(back, 60, lambda: f"worker RSS back near {before >> 20} MiB (now {_rss(pids) >> 20} MiB)")
    assert all(not any(k.startswith("Big-") for k in on(client, w)["keys"]) for w in workers)
