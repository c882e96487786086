"""The ordering and composition contract of docs/semantics.md, clause by clause.

1. Per caller, operations on one actor begin in the order issued (per thread).
2. Read-your-writes.
3. Sync code of a worker's actors runs one operation at a time; async methods
   interleave only at ``await``.
4. An ActorFuture's value arrives by itself, is cached, and never changes.

Deterministic tests first, then hypothesis properties: random programs of
sync calls, async calls and reads, awaited or fire-and-forget, from 1 to 4
threads (or asyncio tasks), checked against a sequential model.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localactors import Actor, ActorFuture, Client, LocalCluster, wait

T = 30.0

# ---------------------------------------------------------------- actors


class Log:
    """Records ``(caller, seq)`` as the first thing every operation does."""

    def __init__(self) -> None:
        self.log: list[tuple[int, int]] = []

    def _mine(self, tid: int) -> list[int]:
        return [s for t, s in self.log if t == tid]

    def op(self, tid: int, seq: int) -> list[int]:
        self.log.append((tid, seq))
        return self._mine(tid)

    def op_with(self, tid: int, seq: int, payload: bytes) -> int:
        self.log.append((tid, seq))
        return len(payload)

    async def aop(self, tid: int, seq: int) -> list[int]:
        self.log.append((tid, seq))  # before any await: part of the ordered start
        mine = self._mine(tid)
        await asyncio.sleep(0)
        return mine

    def burst(self, tag: int, n: int) -> None:
        for i in range(n):
            self.log.append((tag, i))

    async def aburst(self, tag: int, n: int) -> None:
        for i in range(n):
            self.log.append((tag, i))  # no await: nothing else of the loop can run
        await asyncio.sleep(0)
        for i in range(n, 2 * n):
            self.log.append((tag, i))


_GUARD = threading.Lock()
_RUNNING = [0, 0]  # in the worker process: [running now, most ever seen]


def _enter() -> None:
    with _GUARD:
        _RUNNING[0] += 1
        _RUNNING[1] = max(_RUNNING[1], _RUNNING[0])


def _leave() -> None:
    with _GUARD:
        _RUNNING[0] -= 1


class Exclusive:
    """Counts how many sync operations of this worker's actors execute at once."""

    def work(self, spins: int) -> int:
        _enter()
        try:
            x = 0
            for i in range(spins):  # hold the CPU, drop the GIL now and then
                x += i
                if i % 100 == 0:
                    time.sleep(0)
            return x
        finally:
            _leave()

    def work_and_wait(self, other: Actor, spins: int) -> int:
        """Executes, waits on another actor (not executing), executes again."""
        self.work(spins)
        value = other.work(spins).result(timeout=T)
        self.work(spins)
        return int(value)

    def peak(self) -> int:
        return _RUNNING[1]

    def reset(self) -> None:
        _RUNNING[1] = 0


class Driver:
    """A caller living in a worker: its own handles obey the same contract."""

    def drive(self, log: Actor, n: int) -> tuple[list[tuple[int, int]], list[list[int]]]:
        futures = []
        for seq in range(n):
            method = log.op if seq % 2 else log.aop
            futures.append(method(7, seq))  # fire and forget: no waiting between calls
        seen = log.log  # a read: must see every call above
        return seen, [f.result(timeout=T) for f in futures]

    async def adrive(self, log: Actor, n: int) -> list[tuple[int, int]]:
        for seq in range(n):
            (log.op if seq % 2 else log.aop)(8, seq)
        return list(await log.log)


# ---------------------------------------------------------------- clause 1: per-caller order


def test_order_from_one_thread_mixed_kinds(client: Client) -> None:
    log = client.submit(Log, actor=True).result(timeout=T)
    futures = [(log.aop if i % 3 == 0 else log.op)(0, i) for i in range(200)]
    assert log.log == [(0, i) for i in range(200)]  # the read began after all of them
    assert [f.result(timeout=T) for f in futures] == [list(range(i + 1)) for i in range(200)]


def test_order_per_thread_with_several_threads(client: Client) -> None:
    log = client.submit(Log, actor=True).result(timeout=T)
    n, per = 4, 150
    start = threading.Barrier(n)
    errors: list[str] = []

    def caller(tid: int) -> None:
        start.wait(T)
        pending = []
        for seq in range(per):
            pending.append((seq, (log.op if seq % 2 else log.aop)(tid, seq)))
            if seq % 50 == 49:
                mine = [s for t, s in log.log if t == tid]
                if mine != list(range(seq + 1)):
                    errors.append(f"thread {tid} read {mine[-3:]} after {seq}")
        for seq, f in pending:
            if f.result(timeout=T) != list(range(seq + 1)):
                errors.append(f"thread {tid} call {seq} saw {f.result()}")

    threads = [threading.Thread(target=caller, args=(tid,), name=f"test-caller-{tid}") for tid in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * T)
    assert not errors
    final = log.log
    assert len(final) == n * per
    for tid in range(n):
        assert [s for t, s in final if t == tid] == list(range(per))


def test_order_with_large_arguments(client: Client) -> None:
    log = client.submit(Log, actor=True).result(timeout=T)
    big = b"x" * (3 << 20)  # travels as its own out-of-band frames
    sizes = [log.op_with(0, i, big) if i % 3 == 0 else log.op(0, i) for i in range(30)]
    assert log.log == [(0, i) for i in range(30)]
    assert sizes[0].result(timeout=T) == len(big)


def test_order_holds_across_proxies_of_one_process(client: Client) -> None:
    log = client.submit(Log, actor=True).result(timeout=T)
    twin = pickle.loads(pickle.dumps(log))  # another proxy, same process: the same caller
    assert twin is not log and twin == log
    for i in range(100):
        (log if i % 2 else twin).op(0, i)
    assert twin.log == [(0, i) for i in range(100)]


def test_order_through_a_relaying_client(cluster: LocalCluster) -> None:
    with Client(cluster, direct_to_workers=False) as relayed:
        log = relayed.submit(Log, actor=True).result(timeout=T)
        for i in range(100):
            (log.aop if i % 2 else log.op)(0, i)
        assert log.log == [(0, i) for i in range(100)]
        del log


def test_order_from_a_worker(client: Client) -> None:
    workers = sorted(client.scheduler_info()["workers"])
    driver = client.submit(Driver, actor=True, workers=[workers[0]]).result(timeout=T)
    for where in workers:  # the log on the driver's own worker, then on the other one
        log = client.submit(Log, actor=True, workers=[where]).result(timeout=T)
        seen, results = driver.drive(log, 60).result(timeout=T)
        assert seen == [(7, i) for i in range(60)]
        assert results == [list(range(i + 1)) for i in range(60)]
        log2 = client.submit(Log, actor=True, workers=[where]).result(timeout=T)
        assert driver.adrive(log2, 60).result(timeout=T) == [(8, i) for i in range(60)]


def test_order_after_a_waiting_operation(client: Client) -> None:
    """An actor blocked in a method keeps its later operations queued, in order."""
    gate = client.submit(Log, actor=True).result(timeout=T)
    worker = gate.worker
    driver = client.submit(Driver, actor=True, workers=[worker]).result(timeout=T)
    log = client.submit(Log, actor=True, workers=[worker]).result(timeout=T)
    slow = driver.drive(log, 30)  # occupies the driver while it waits on its calls
    for i in range(30):
        log.op(1, i)
    seen, _ = slow.result(timeout=T)
    assert [s for t, s in seen if t == 7] == list(range(30))
    assert [s for t, s in log.log if t == 1] == list(range(30))


# ---------------------------------------------------------------- clause 2: read-your-writes


def test_read_your_writes(client: Client) -> None:
    log = client.submit(Log, actor=True).result(timeout=T)
    for i in range(50):
        log.op(0, i)  # fire and forget
        assert log.log[-1] == (0, i)
    log.aop(0, 50)  # an async call's steps before its first await count as written
    assert log.log[-1] == (0, 50)


def test_read_your_writes_in_async_code(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            log = await client.submit(Log, actor=True)
            for i in range(30):
                (log.aop if i % 2 else log.op)(0, i)
                assert (await log.log)[-1] == (0, i)

    asyncio.run(asyncio.wait_for(main(), 2 * T))


# ---------------------------------------------------------------- clause 3: one at a time


@pytest.fixture
def exclusive(client: Client) -> Iterator[list[Actor]]:
    where = sorted(client.scheduler_info()["workers"])[0]
    actors = [client.submit(Exclusive, actor=True, workers=[where]).result(timeout=T) for _ in range(3)]
    actors[0].reset().result(timeout=T)
    yield actors


def test_sync_operations_of_a_worker_run_one_at_a_time(client: Client, exclusive: list[Actor]) -> None:
    start = threading.Barrier(4)

    def caller(i: int) -> None:
        start.wait(T)
        futures = [exclusive[(i + j) % 3].work(2000) for j in range(30)]
        wait(futures, timeout=3 * T)

    threads = [threading.Thread(target=caller, args=(i,), name=f"test-caller-{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * T)
    assert exclusive[0].peak().result(timeout=T) == 1


def test_a_waiting_method_resumes_only_when_the_thread_is_free(client: Client, exclusive: list[Actor]) -> None:
    a, b, c = exclusive
    # a waits on b (same worker) twice per call; c keeps the worker busy meanwhile
    waits = [a.work_and_wait(b, 2000) for _ in range(5)]
    work = [c.work(2000) for _ in range(20)]
    wait(waits + work, timeout=3 * T)
    assert [f.exception(timeout=0) for f in waits + work] == [None] * 25
    assert a.peak().result(timeout=T) == 1


def test_async_methods_interleave_only_at_await(client: Client) -> None:
    log = client.submit(Log, actor=True).result(timeout=T)
    n = 200
    calls = [log.aburst(tag, n) for tag in range(4)] + [log.burst(9, n)]
    wait(calls, timeout=T)
    entries = log.log
    assert len(entries) == 4 * 2 * n + n
    runs: list[tuple[int, int]] = []  # (tag, length) of consecutive entries of one call
    for tag, _ in entries:
        if runs and runs[-1][0] == tag:
            runs[-1] = (tag, runs[-1][1] + 1)
        else:
            runs.append((tag, 1))
    assert all(length % n == 0 for _, length in runs), runs
    for tag in range(4):
        assert [i for t, i in entries if t == tag] == list(range(2 * n))


def test_not_promised_sync_method_runs_while_an_async_method_of_the_same_actor_awaits(client: Client) -> None:
    """Documented, not a guarantee to rely on: after an await, an async method's
    steps may overlap a sync method of the same actor (another thread)."""

    log = client.submit(Log, actor=True).result(timeout=T)
    started = log.aburst(1, 1)
    log.op(2, 0).result(timeout=T)
    started.result(timeout=T)
    assert sorted(log.log) == [(1, 0), (1, 1), (2, 0)]


# ---------------------------------------------------------------- clause 4: the future's value


def test_value_arrives_by_itself_is_cached_and_never_changes(client: Client) -> None:
    log = client.submit(Log, actor=True).result(timeout=T)
    arrived = threading.Event()
    future = log.op(0, 0)
    future.add_done_callback(lambda f: arrived.set())
    assert arrived.wait(T)  # pushed to the caller: nobody asked with result()
    assert future.done() and future.exception(timeout=0) is None
    first = future.result(timeout=0)
    for i in range(1, 20):
        log.op(0, i)  # the actor's state moves on
    assert log.log[-1] == (0, 19)
    assert future.result(timeout=0) is first and first == [0]


# ---------------------------------------------------------------- hypothesis: a sequential model

KINDS = st.sampled_from(["sync", "async", "read"])
OP = st.tuples(KINDS, st.booleans(), st.integers(0, 1))  # (kind, awaited, which actor)
PROGRAMS = st.lists(st.lists(OP, min_size=1, max_size=25), min_size=1, max_size=4)


def _check(observed: list[int], expected: list[int], what: str, errors: list[str]) -> None:
    if observed != expected:
        errors.append(f"{what}: saw {observed}, model says {expected}")


def _run_thread(tid: int, program: list[tuple[str, bool, int]], logs: list[Actor], errors: list[str]) -> None:
    """Issue ``program`` and check each answer against the model: per actor, the writes so far."""
    written: list[list[int]] = [[], []]
    pending: list[tuple[ActorFuture, list[int], str]] = []
    for seq, (kind, awaited, which) in enumerate(program):
        log = logs[which]
        if kind == "read":
            mine = [s for t, s in log.log if t == tid]
            _check(mine, written[which], f"thread {tid} read #{seq}", errors)
            continue
        written[which].append(seq)
        future = (log.op if kind == "sync" else log.aop)(tid, seq)
        expected = list(written[which])
        if awaited:
            _check(future.result(timeout=T), expected, f"thread {tid} {kind} #{seq}", errors)
        else:
            pending.append((future, expected, f"thread {tid} {kind} #{seq} (fire and forget)"))
    for future, expected, what in pending:
        _check(future.result(timeout=T), expected, what, errors)


def _final_check(
    programs: list[list[tuple[str, bool, int]]], finals: list[list[tuple[int, int]]], errors: list[str]
) -> None:
    """Each actor's final log, per thread, is exactly that thread's writes in issue order."""
    for tid, program in enumerate(programs):
        for which in (0, 1):
            expected = [seq for seq, (kind, _, w) in enumerate(program) if kind != "read" and w == which]
            _check([s for t, s in finals[which] if t == tid], expected, f"final log {which}, thread {tid}", errors)


@pytest.fixture(scope="module")
def worker_pair(client: Client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(programs=PROGRAMS, same_worker=st.booleans())
def test_property_threads_against_a_sequential_model(
    client: Client, worker_pair: list[str], programs: list[list[tuple[str, bool, int]]], same_worker: bool
) -> None:
    where = [worker_pair[0], worker_pair[0]] if same_worker else worker_pair  # fresh actors per example
    logs = [client.submit(Log, actor=True, workers=[w]).result(timeout=T) for w in where]
    errors: list[str] = []
    start = threading.Barrier(len(programs))

    def run(tid: int) -> None:
        try:
            start.wait(T)
            _run_thread(tid, programs[tid], logs, errors)
        except BaseException as err:
            errors.append(f"thread {tid}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=run, args=(tid,), name=f"test-program-{tid}") for tid in range(len(programs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * T)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    _final_check(programs, [log.log for log in logs], errors)
    assert not errors, errors[:5]


async def _run_task(tid: int, program: list[tuple[str, bool, int]], logs: list[Actor], errors: list[str]) -> None:
    written: list[list[int]] = [[], []]
    pending: list[tuple[ActorFuture, list[int], str]] = []
    for seq, (kind, awaited, which) in enumerate(program):
        log = logs[which]
        if kind == "read":
            mine = [s for t, s in await log.log if t == tid]
            _check(mine, written[which], f"task {tid} read #{seq}", errors)
            continue
        written[which].append(seq)
        future = (log.op if kind == "sync" else log.aop)(tid, seq)
        expected = list(written[which])
        if awaited:
            _check(await future, expected, f"task {tid} {kind} #{seq}", errors)
        else:
            pending.append((future, expected, f"task {tid} {kind} #{seq} (fire and forget)"))
    for future, expected, what in pending:
        _check(await future, expected, what, errors)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(programs=PROGRAMS)
def test_property_async_tasks_against_a_sequential_model(
    cluster: LocalCluster, worker_pair: list[str], programs: list[list[tuple[str, bool, int]]]
) -> None:
    errors: list[str] = []

    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            logs = [await client.submit(Log, actor=True, workers=[w]) for w in worker_pair]
            await asyncio.gather(*(_run_task(tid, p, logs, errors) for tid, p in enumerate(programs)))
            _final_check(programs, [await log.log for log in logs], errors)

    asyncio.run(asyncio.wait_for(main(), 3 * T))
    assert not errors, errors[:5]
