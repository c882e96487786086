"""Actors end to end: creation, placement, the proxy, ActorFuture, execution, errors.

Each test uses the module's 2-worker cluster unless it needs a special one
(resources, a worker to kill, a cluster to close). Classes live at module
level so the workers can import them by reference.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import re
import signal
import threading
import time
import weakref
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest
from helpers import wait_until

from localactors import (
    FIRST_COMPLETED,
    Actor,
    ActorFuture,
    ActorLostError,
    Client,
    ClusterClosedError,
    LocalCluster,
    RemoteTraceback,
    WorkerLostError,
    as_completed,
    get_client,
    get_worker,
    wait,
)

T = 30.0  # seconds: generous, the CPU is shared; a hang fails instead of blocking CI

# ---------------------------------------------------------------- actor classes


class Counter:
    """The seed's counter."""

    n = 0

    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n

    def add(self, x: int) -> int:
        self.n += x
        return self.n


class Token:
    def __init__(self, i: int) -> None:
        self.i = i


class Probe:
    """An actor with every kind of member, reporting where its code runs."""

    cls_attr = "class-level"

    def __init__(self, x: int = 0, *, label: str = "") -> None:
        self.x = x  # set only here: the proxy must still know it
        self.label = label
        self._hidden = "private"
        self.made: list[int] = []
        self.freed: list[int] = []

    @property
    def doubled(self) -> int:
        return self.x * 2

    def set_x(self, x: int) -> int:
        self.x = x
        return x

    def echo(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return args, kwargs

    def fail(self, message: str) -> None:
        raise KeyError(message)

    def thread_name(self) -> str:
        return threading.current_thread().name

    async def async_thread_name(self) -> str:
        return threading.current_thread().name

    def worker_name(self) -> str:
        return str(get_worker().name)

    async def async_worker_name(self) -> str:
        return str(get_worker().name)

    def client_sum(self, xs: list[int]) -> int:
        return int(get_client().submit(sum, xs).result(timeout=T))

    def make_result(self) -> Token:
        """Return a fresh object and watch it: the worker must not keep it."""
        value = Token(len(self.made))
        self.made.append(1)
        weakref.finalize(value, self.freed.append, 1)
        return value

    def fresh_list(self) -> list[int]:
        return [1, 2, 3]

    def describe(self, other: Actor) -> dict[str, Any]:
        """How a handle received by an actor looks inside the worker."""
        return _describe_handle(other)

    def call(self, other: Actor, name: str, *args: Any) -> Any:
        """Call ``other.name(*args)`` and wait (sync: nested wait on the actor thread)."""
        return getattr(other, name)(*args).result(timeout=T)

    def read(self, other: Actor, name: str) -> Any:
        return getattr(other, name)

    async def acall(self, other: Actor, name: str, *args: Any) -> Any:
        return await getattr(other, name)(*args)

    async def aread(self, other: Actor, name: str) -> Any:
        return await getattr(other, name)

    def keep(self, other: Actor) -> None:
        self.kept = other

    def use_kept(self) -> int:
        return int(self.kept.increment().result(timeout=T))


class Waiter:
    """The seed's waiter, on asyncio (the seed says Tornado and ``def Waiter``)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def set(self) -> None:
        self.event.set()

    async def wait(self) -> str:
        await self.event.wait()
        return "set"

    def is_set(self) -> bool:
        return self.event.is_set()


class Broken:
    def __init__(self, reason: str) -> None:
        raise ValueError(reason)


class Big:
    def __init__(self) -> None:
        self.blob = b"x" * (1 << 20)


_SHARED: dict[str, ActorFuture] = {}  # per worker process: one future two actors wait on


class SharedWaiter:
    """Two of these on one worker wait on the *same* ActorFuture."""

    def start(self, gate: Actor) -> str:
        _SHARED["f"] = gate.wait()
        return str(_SHARED["f"].result(timeout=T))

    def join(self) -> str:
        return str(_SHARED["f"].result(timeout=T))


# ---------------------------------------------------------------- task functions


def _describe_handle(a: Actor) -> dict[str, Any]:
    node = a._node
    peer = node.peer(a._address)
    return {
        "is_actor": isinstance(a, Actor),
        "node_is_worker": node is get_worker().node,
        "direct": peer.link is not None,
        "address": a._address,
    }


def describe_in_task(a: Actor) -> dict[str, Any]:
    return _describe_handle(a)


def increment_in_task(a: Actor) -> int:
    return int(a.increment().result(timeout=T))


def identity(x: Any) -> Any:
    return x


def thread_name() -> str:
    return threading.current_thread().name


def block_until(gate: Actor) -> str:
    """A long plain task: occupies the worker's only task thread until the gate opens."""
    return str(gate.wait().result(timeout=T))


def actor_count() -> int:
    """How many actors this task's worker holds, after its queued drops ran."""
    worker = get_worker()
    flushed = threading.Event()
    worker.actor_thread.submit("<probe>", flushed.set)  # runs after every drop queued before it
    assert flushed.wait(T)
    return len(worker.actors)


# ---------------------------------------------------------------- helpers


def worker_names(client: Client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def wait_for_no_actors(client: Client) -> None:
    """Let earlier tests' actors be released, so placement starts from zero."""

    def counts() -> list[int]:
        gc.collect()
        return [client.submit(actor_count, workers=[w], pure=False).result(timeout=T) for w in worker_names(client)]

    wait_until(lambda: not any(counts()), T, lambda: f"actors never released: {counts()}", interval=0)


# ================================================================ creation and placement


def test_placement_spreads_actors_evenly(client: Client) -> None:
    wait_for_no_actors(client)
    futures = [client.submit(Counter, actor=True) for _ in range(4)]
    actors = client.gather(futures, timeout=T)
    assert Tally(a.worker for a in actors) == Tally({w: 2 for w in worker_names(client)})
    del actors, futures
    # map places the same way
    wait_for_no_actors(client)
    futures = client.map(Probe, range(4), actors=True)
    assert Tally(f.result(timeout=T).worker for f in futures) == Tally({w: 2 for w in worker_names(client)})


def test_submit_actor_and_actors_alias(client: Client) -> None:
    for kw in ({"actor": True}, {"actors": True}):
        future = client.submit(Counter, **kw)
        counter = future.result(timeout=T)
        assert isinstance(counter, Actor)
        assert counter.key == future.key
        assert counter.increment().result(timeout=T) == 1


def test_constructor_arguments(client: Client) -> None:
    probe = client.submit(Probe, 7, label="seven", actor=True).result(timeout=T)
    assert (probe.x, probe.label, probe.doubled) == (7, "seven", 14)


def test_map_creates_one_actor_per_element(client: Client) -> None:
    futures = client.map(Probe, [1, 2, 3], actors=True)
    probes = [f.result(timeout=T) for f in futures]
    assert [p.x for p in probes] == [1, 2, 3]
    assert len({p.key for p in probes}) == 3  # actors are never shared like pure tasks


def test_workers_restriction(client: Client) -> None:
    last = worker_names(client)[-1]
    probes = [client.submit(Probe, i, actor=True, workers=[last]).result(timeout=T) for i in range(3)]
    assert {p.worker for p in probes} == {last}
    assert {p.worker_name().result(timeout=T) for p in probes} == {last}
    one = client.submit(Probe, actor=True, workers=last).result(timeout=T)  # a plain string works too
    assert one.worker == last


def test_allow_other_workers(client: Client) -> None:
    stuck = client.submit(Probe, actor=True, workers=["no-such-worker"])
    with pytest.raises(TimeoutError):
        stuck.result(timeout=0.5)  # no worker may take it
    placed = client.submit(Probe, actor=True, workers=["no-such-worker"], allow_other_workers=True)
    assert placed.result(timeout=T).worker in worker_names(client)


def test_constructor_error_reraises_at_result(client: Client) -> None:
    future = client.submit(Broken, "bad input", actor=True)
    with pytest.raises(ValueError, match="bad input") as info:
        future.result(timeout=T)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in __init__" in str(info.value.__cause__) and "raise ValueError(reason)" in str(info.value.__cause__)
    assert isinstance(future.exception(timeout=T), ValueError)
    assert future.status == "error"


@pytest.fixture(scope="module")
def gpu_client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, resources={"GPU": 1}) as cluster, Client(cluster) as client:
        yield client


class Slow:
    def __init__(self, gate: Actor) -> None:
        gate.wait().result(timeout=T)


def test_resources_are_held_for_the_actors_life(gpu_client: Client) -> None:
    client = gpu_client
    first = client.submit(Counter, actor=True, resources={"GPU": 1})
    second = client.submit(Counter, actor=True, resources={"GPU": 1})
    a, b = first.result(timeout=T), second.result(timeout=T)
    assert a.worker != b.worker  # each worker has one GPU
    # a live actor keeps its GPU, even idle: a third must wait
    third = client.submit(Counter, actor=True, resources={"GPU": 1})
    with pytest.raises(TimeoutError):
        third.result(timeout=1.0)
    freed = a.worker
    del a, first
    gc.collect()
    c = third.result(timeout=T)  # placed once the first actor is gone
    assert c.worker == freed
    assert c.increment().result(timeout=T) == 1


def test_resources_come_back_when_released_during_construction(gpu_client: Client) -> None:
    client = gpu_client
    gate = client.submit(Waiter, actor=True).result(timeout=T)
    holders = [client.submit(Slow, gate, actor=True, resources={"GPU": 1}) for _ in range(2)]
    del holders  # released while their constructors still run
    gc.collect()
    client.scheduler_info()  # the manager has seen the release
    gate.set().result(timeout=T)  # the constructors finish; nobody wants the actors
    again = [client.submit(Counter, actor=True, resources={"GPU": 1}) for _ in range(2)]
    assert sorted(f.result(timeout=T).worker for f in again) == worker_names(client)


# ================================================================ the proxy


def test_repr_and_dir(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=T)
    assert re.fullmatch(r"<Actor: Counter, key=Counter-[0-9a-f]{32}>", repr(counter))
    assert dir(counter) == ["add", "increment", "n"]
    probe = client.submit(Probe, actor=True).result(timeout=T)
    names = dir(probe)
    for name in ("x", "label", "made", "doubled", "cls_attr", "set_x", "async_thread_name", "fail"):
        assert name in names
    assert "_hidden" not in names and "__init__" not in names
    assert names == sorted(names)


def test_equality_hash_and_pickle(client: Client) -> None:
    future = client.submit(Counter, actor=True)
    a, b = future.result(timeout=T), future.result(timeout=T)
    other = client.submit(Counter, actor=True).result(timeout=T)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != other and len({a, b, other}) == 2
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(a))
        assert copy == a and repr(copy) == repr(a)
        assert copy.increment().result(timeout=T) == a.n


def test_method_call_returns_future_at_once(client: Client) -> None:
    waiter = client.submit(Waiter, actor=True).result(timeout=T)
    future = waiter.wait()  # returns although the method cannot finish yet
    assert isinstance(future, ActorFuture)
    assert not future.done()
    waiter.set()
    assert future.result(timeout=T) == "set"


def test_fire_and_forget_runs(client: Client) -> None:
    probe = client.submit(Probe, actor=True).result(timeout=T)
    probe.set_x(41)  # the future is dropped at once
    gc.collect()
    assert probe.x == 41
    for i in range(50):
        probe.set_x(i)
    assert probe.x == 49


def test_attribute_and_property_reads_block_and_return(client: Client) -> None:
    probe = client.submit(Probe, 3, actor=True).result(timeout=T)
    assert probe.x == 3 and probe.doubled == 6 and probe.cls_attr == "class-level"
    probe.set_x(5)
    assert probe.doubled == 10


def test_unknown_name_raises_at_once(client: Client) -> None:
    waiter = client.submit(Waiter, actor=True).result(timeout=T)
    blocked = waiter.wait()  # the actor is busy: an answer from it would hang
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        waiter.nope  # noqa: B018
    with pytest.raises(AttributeError):
        waiter._private  # noqa: B018
    assert not hasattr(waiter, "__array__")
    waiter.set()
    blocked.result(timeout=T)


def test_assignment_is_a_clear_error(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=T)
    with pytest.raises(AttributeError, match="calling one of its methods"):
        counter.n = 5
    with pytest.raises(AttributeError):
        del counter.n
    assert counter.n == 0


def test_handle_passed_to_a_task_calls_its_worker_directly(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=T)
    elsewhere = next(w for w in worker_names(client) if w != counter.worker)
    info = client.submit(describe_in_task, counter, workers=[elsewhere], pure=False).result(timeout=T)
    assert info == {"is_actor": True, "node_is_worker": True, "direct": True, "address": counter._address}
    assert client.submit(increment_in_task, counter, pure=False).result(timeout=T) == 1
    assert counter.n == 1


def test_handle_passed_through_a_relaying_client_is_direct_in_the_worker(cluster: LocalCluster) -> None:
    with Client(cluster, direct_to_workers=False) as relayed:
        counter = relayed.submit(Counter, actor=True).result(timeout=T)
        assert counter.increment().result(timeout=T) == 1  # through the manager
        info = relayed.submit(describe_in_task, counter, pure=False).result(timeout=T)
        assert info["direct"] and info["node_is_worker"]
        assert relayed.submit(increment_in_task, counter, pure=False).result(timeout=T) == 2
        del counter


def test_handle_passed_to_another_actor(client: Client) -> None:
    names = worker_names(client)
    counter = client.submit(Counter, actor=True, workers=[names[0]]).result(timeout=T)
    probe = client.submit(Probe, actor=True, workers=[names[1]]).result(timeout=T)
    info = probe.describe(counter).result(timeout=T)
    assert info == {"is_actor": True, "node_is_worker": True, "direct": True, "address": counter._address}
    assert probe.call(counter, "add", 5).result(timeout=T) == 5
    assert probe.read(counter, "n").result(timeout=T) == 5
    probe.keep(counter)
    assert probe.use_kept().result(timeout=T) == 6


def test_actor_returned_from_an_actor_method(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=T)
    probe = client.submit(Probe, actor=True).result(timeout=T)
    (back,), _ = probe.echo(counter).result(timeout=T)
    assert back == counter and back.increment().result(timeout=T) == 1


# ================================================================ ActorFuture


def test_actor_future_interface(client: Client) -> None:
    waiter = client.submit(Waiter, actor=True).result(timeout=T)
    future = waiter.wait()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.2)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0.2)
    seen: list[Any] = []
    called = threading.Event()

    def callback(f: Any) -> None:
        seen.append(f)
        called.set()

    future.add_done_callback(callback)
    assert not future.done() and not seen
    waiter.set()
    assert called.wait(T)
    assert seen == [future] and future.done()
    assert future.exception(timeout=T) is None
    assert future.result(timeout=T) == "set"
    # on a finished future a callback runs at once, in this thread
    here: list[str] = []
    future.add_done_callback(lambda f: here.append(threading.current_thread().name))
    assert here == [threading.current_thread().name]
    assert "Waiter.wait" in repr(future)


def test_result_is_cached_and_the_same_object(client: Client) -> None:
    probe = client.submit(Probe, actor=True).result(timeout=T)
    future = probe.fresh_list()
    first = future.result(timeout=T)
    assert first == [1, 2, 3]
    assert future.result(timeout=T) is first
    first.append(4)  # it is the caller's object now; the future hands out that same object
    assert future.result(timeout=T) == [1, 2, 3, 4]


def test_exception_reraises_each_time_with_remote_traceback(client: Client) -> None:
    probe = client.submit(Probe, actor=True).result(timeout=T)
    future = probe.fail("no such key")
    errors = []
    for _ in range(2):
        with pytest.raises(KeyError, match="no such key") as info:
            future.result(timeout=T)
        errors.append(info.value)
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "in fail" in str(cause) and "KeyError" in str(cause)
    assert errors[0] is errors[1]
    assert isinstance(future.exception(timeout=T), KeyError)
    assert probe.x == 0  # the actor is fine after its method raised


def test_results_are_not_kept_on_the_worker(client: Client) -> None:
    probe = client.submit(Probe, actor=True).result(timeout=T)
    results = [probe.make_result() for _ in range(5)]
    assert [f.result(timeout=T).i for f in results] == [0, 1, 2, 3, 4]
    # every returned object was released on the worker once its reply was sent
    assert probe.freed == [1] * 5


def test_actor_futures_with_wait_as_completed_and_gather(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=T)
    waiter = client.submit(Waiter, actor=True).result(timeout=T)
    calls = [counter.increment() for _ in range(10)]
    done, not_done = wait(calls, timeout=T)
    assert done == set(calls) and not not_done
    assert sorted(f.result(timeout=T) for f in as_completed(calls, timeout=T)) == list(range(1, 11))
    assert client.gather(calls, timeout=T) == list(range(1, 11))
    # gather really waits for a pending call, and mixes with task futures
    pending = waiter.wait()
    task = client.submit(identity, 5)
    first = wait([pending, counter.increment()], timeout=T, return_when=FIRST_COMPLETED)
    assert pending in first.not_done
    with pytest.raises(TimeoutError):
        wait([pending], timeout=0.2)
    waiter.set()
    assert client.gather({"a": pending, "b": [task, counter.add(0)]}, timeout=T) == {"a": "set", "b": [5, 11]}
    pairs = list(as_completed([counter.add(1), task], with_results=True, timeout=T))
    assert sorted(v for _, v in pairs) == [5, 12]


def test_gather_raises_the_actor_error(client: Client) -> None:
    probe = client.submit(Probe, actor=True).result(timeout=T)
    with pytest.raises(KeyError, match="gathered"):
        client.gather([probe.fail("gathered")], timeout=T)


def test_actor_futures_as_arguments(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=T)
    probe = client.submit(Probe, actor=True).result(timeout=T)
    waiter = client.submit(Waiter, actor=True).result(timeout=T)
    assert client.submit(identity, counter.add(3)).result(timeout=T) == 3
    assert client.submit(identity, [counter.add(1), {"k": counter.add(1)}]).result(timeout=T) == [4, {"k": 5}]
    assert probe.echo(counter.add(1), kw=counter.add(1)).result(timeout=T) == ((6,), {"kw": 7})
    # a call still running: the task starts once it has finished, with its value
    pending = waiter.wait()
    task = client.submit(identity, pending, pure=False)
    with pytest.raises(TimeoutError):
        task.result(timeout=0.3)
    waiter.set()
    assert task.result(timeout=T) == "set"


def test_actor_futures_in_async_code(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            counter = await client.submit(Counter, actor=True)
            waiter = await client.submit(Waiter, actor=True)
            assert await counter.increment() == 1
            assert await counter.n == 1  # a read is awaitable in async code
            calls = [counter.increment() for _ in range(5)]
            done, not_done = await wait(calls, timeout=T)
            assert len(done) == 5 and not not_done
            assert await client.gather(calls) == [2, 3, 4, 5, 6]
            seen = [f async for f in as_completed(calls)]
            assert set(seen) == set(calls)
            probe = await client.submit(Probe, actor=True)
            done_call = counter.add(0)
            await done_call
            assert await probe.echo(done_call) == ((6,), {})  # a finished call arrives as its value
            pending = waiter.wait()
            with pytest.raises(TypeError, match="await futures before passing them"):
                probe.echo(pending)  # would block the event loop: refused at once
            both = asyncio.gather(pending, pending)  # two awaiters of one future
            await waiter.set()
            assert await asyncio.wait_for(both, T) == ["set", "set"]

    asyncio.run(asyncio.wait_for(main(), 2 * T))


def test_two_threads_waiting_on_one_future(client: Client) -> None:
    waiter = client.submit(Waiter, actor=True).result(timeout=T)
    future = waiter.wait()
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(future.result(timeout=T))) for _ in range(2)]
    for t in threads:
        t.start()
    waiter.set()
    for t in threads:
        t.join(T)
    assert got == ["set", "set"]


# ================================================================ execution


def test_where_code_runs(client: Client) -> None:
    probe = client.submit(Probe, actor=True).result(timeout=T)
    worker = probe.worker
    assert probe.thread_name().result(timeout=T) == f"localactors-actor-{worker}"
    assert probe.async_thread_name().result(timeout=T) == "MainThread"  # the worker's event loop
    task_thread = client.submit(thread_name, workers=[worker], pure=False).result(timeout=T)
    assert task_thread.startswith(f"localactors-task-{worker}")


def test_get_worker_and_get_client_in_actor_methods(client: Client) -> None:
    probe = client.submit(Probe, actor=True).result(timeout=T)
    assert probe.worker_name().result(timeout=T) == probe.worker
    assert probe.async_worker_name().result(timeout=T) == probe.worker
    assert probe.client_sum([1, 2, 3]).result(timeout=T) == 6


def _same_worker_pair(client: Client) -> tuple[Actor, Actor, Actor]:
    where = worker_names(client)[0]
    probe = client.submit(Probe, actor=True, workers=[where]).result(timeout=T)
    counter = client.submit(Counter, actor=True, workers=[where]).result(timeout=T)
    waiter = client.submit(Waiter, actor=True, workers=[where]).result(timeout=T)
    return probe, counter, waiter


def test_sync_method_waits_on_an_actor_of_the_same_worker(client: Client) -> None:
    probe, counter, waiter = _same_worker_pair(client)
    assert probe.call(counter, "increment").result(timeout=T) == 1
    assert probe.read(counter, "n").result(timeout=T) == 1
    waiter.set().result(timeout=T)
    assert probe.call(waiter, "wait").result(timeout=T) == "set"  # an async method, same worker


def test_async_method_awaits_an_actor_of_the_same_worker(client: Client) -> None:
    probe, counter, waiter = _same_worker_pair(client)
    assert probe.acall(counter, "increment").result(timeout=T) == 1
    assert probe.aread(counter, "n").result(timeout=T) == 1
    pending = probe.acall(waiter, "wait")  # suspended on the event
    assert probe.acall(counter, "increment").result(timeout=T) == 2  # others go on meanwhile
    waiter.set()
    assert pending.result(timeout=T) == "set"


def test_two_actors_of_one_worker_wait_on_one_future(client: Client) -> None:
    names = worker_names(client)
    gate = client.submit(Waiter, actor=True, workers=[names[1]]).result(timeout=T)
    a = client.submit(SharedWaiter, actor=True, workers=[names[0]]).result(timeout=T)
    b = client.submit(SharedWaiter, actor=True, workers=[names[0]]).result(timeout=T)
    first = a.start(gate)  # blocks in a nested wait on the actor thread
    second = b.join()  # runs inside that wait, waits on the same future
    with pytest.raises(TimeoutError):
        first.result(timeout=0.2)
    gate.set()
    assert first.result(timeout=T) == "set" and second.result(timeout=T) == "set"


def test_waits_of_two_actors_do_not_stack(client: Client) -> None:
    """a waits on a gate; b then calls a and waits. When the gate opens, a must
    finish first (b's call is queued behind it) -- waits must not nest on one stack."""
    names = worker_names(client)
    gate = client.submit(Waiter, actor=True, workers=[names[1]]).result(timeout=T)
    a = client.submit(Probe, actor=True, workers=[names[0]]).result(timeout=T)
    b = client.submit(Probe, actor=True, workers=[names[0]]).result(timeout=T)
    first = a.call(gate, "wait")
    second = b.call(a, "set_x", 3)
    with pytest.raises(TimeoutError):
        second.result(timeout=0.2)
    gate.set()
    assert first.result(timeout=T) == "set"
    assert second.result(timeout=T) == 3


def test_an_async_call_starting_does_not_hold_up_other_actors(client: Client) -> None:
    """A constructor waits on a gate of its own worker while the gate's async
    method is being started: neither may wait for the other."""
    where = worker_names(client)[0]
    gate = client.submit(Waiter, actor=True, workers=[where]).result(timeout=T)
    slow = [client.submit(Slow, gate, actor=True, workers=[where]) for _ in range(3)]
    calls = [gate.wait() for _ in range(3)]
    gate.set()
    assert [f.result(timeout=T) for f in calls] == ["set"] * 3
    assert all(isinstance(f.result(timeout=T), Actor) for f in slow)


def test_sync_methods_run_while_async_methods_are_suspended(client: Client) -> None:
    probe, counter, waiter = _same_worker_pair(client)
    suspended = [waiter.wait() for _ in range(3)]
    assert [counter.increment().result(timeout=T) for _ in range(3)] == [1, 2, 3]
    assert probe.set_x(9).result(timeout=T) == 9
    assert waiter.is_set().result(timeout=T) is False  # a sync method of the waiting actor itself
    assert not any(f.done() for f in suspended)
    waiter.set()
    assert [f.result(timeout=T) for f in suspended] == ["set"] * 3


def test_a_long_task_does_not_block_actor_calls(client: Client) -> None:
    probe, counter, gate = _same_worker_pair(client)
    task = client.submit(block_until, gate, workers=[counter.worker], pure=False)  # takes the only task thread
    assert [counter.increment().result(timeout=T) for _ in range(3)] == [1, 2, 3]
    assert probe.doubled == 0
    assert not task.done()
    gate.set()
    assert task.result(timeout=T) == "set"


def test_sync_method_returning_a_coroutine_runs_it_on_the_loop(client: Client) -> None:
    class Wrapped:
        def __init__(self) -> None:
            self.value = 1

        def later(self) -> Any:  # a plain method handing back a coroutine, like a decorator would
            async def inner() -> tuple[int, str]:
                await asyncio.sleep(0)
                return self.value, threading.current_thread().name

            return inner()

    wrapped = client.submit(Wrapped, actor=True).result(timeout=T)
    assert wrapped.later().result(timeout=T) == (1, "MainThread")


# ================================================================ errors


class BlockableCounter(Counter):
    def block(self, seconds: float) -> None:
        time.sleep(seconds)  # holds the actor's later calls back (until its worker dies)


def test_actor_lost_when_its_worker_dies() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        victim = worker_names(client)[0]
        pid = client.scheduler_info()["workers"][victim]["pid"]
        future = client.submit(Waiter, actor=True, workers=[victim])
        waiter = future.result(timeout=T)
        counter = client.submit(BlockableCounter, actor=True, workers=[victim]).result(timeout=T)
        survivor = client.submit(Counter, actor=True, workers=[worker_names(client)[1]]).result(timeout=T)
        assert counter.increment().result(timeout=T) == 1
        # every one of these is still pending at the kill: the async waits wait for an event
        # nobody sets, and the increment queues behind the block (a bare increment could
        # finish before the signal lands, and then rightly not fail)
        pending = [waiter.wait() for _ in range(3)] + [counter.block(60), counter.increment()]
        os.kill(pid, signal.SIGKILL)
        for f in pending:
            with pytest.raises(ActorLostError) as info:
                f.result(timeout=T)  # pending calls fail, they do not hang
            assert isinstance(info.value, WorkerLostError)
        with pytest.raises(ActorLostError):
            waiter.wait().result(timeout=T)  # later calls too
        with pytest.raises(ActorLostError):
            counter.n  # noqa: B018  -- and reads
        with pytest.raises(ActorLostError):
            future.result(timeout=T)  # the actor's Future, too
        assert survivor.increment().result(timeout=T) == 1  # the other worker's actors live on


def test_cluster_closed_error_after_client_close(cluster: LocalCluster) -> None:
    client = Client(cluster)
    counter = client.submit(Counter, actor=True).result(timeout=T)
    waiter = client.submit(Waiter, actor=True).result(timeout=T)
    pending = waiter.wait()
    client.close()
    with pytest.raises(ClusterClosedError):
        pending.result(timeout=T)
    with pytest.raises(ClusterClosedError):
        counter.increment()
    with pytest.raises(ClusterClosedError):
        counter.n  # noqa: B018


def test_cluster_closed_error_after_cluster_close() -> None:
    cluster = LocalCluster(n_workers=1)
    client = Client(cluster)
    try:
        counter = client.submit(Counter, actor=True).result(timeout=T)
        assert counter.increment().result(timeout=T) == 1
        cluster.close()
        with pytest.raises(ClusterClosedError):
            counter.increment().result(timeout=T)
        with pytest.raises(ClusterClosedError):
            counter.n  # noqa: B018
    finally:
        client.close()
        cluster.close()
