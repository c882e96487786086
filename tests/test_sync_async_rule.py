"""The one sync/async rule (stated in ``localactors/_client/client.py``).

A method that waits returns an awaitable exactly when its object belongs to
an asynchronous client and it is called on that client's event-loop thread;
anywhere else it blocks. And the awaitable paths never block the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from localactors import Client, LocalCluster, WorkerLostError, progress, wait
from localactors._base.completion import Completion
from localactors._base.futures import ActorFuture

T = 30.0


def inc(x: int) -> int:
    return x + 1


def fail(message: str) -> None:
    raise KeyError(message)


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, x: int) -> int:
        self.n += x
        return self.n

    def fail(self) -> None:
        raise KeyError("actor")

    async def call_on_the_loop(self, other: Any) -> tuple[bool, int]:
        """In a worker's event loop, a call's ``result()`` is awaitable, as in a client's."""
        pending = other.add(1).result(timeout=T)
        return inspect.isawaitable(pending), await pending

    def call_on_the_actor_thread(self, other: Any) -> int:
        return int(other.add(1).result(timeout=T))


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 2 * T)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=1) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as c:
        yield c


def test_an_async_clients_methods_are_awaitable_on_its_loop_and_block_off_it(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            bad = client.submit(fail, "x", pure=False)
            on_loop = bad.exception()
            assert inspect.isawaitable(on_loop)
            assert isinstance(await on_loop, KeyError)
            off_loop = await asyncio.to_thread(bad.exception, T)
            assert isinstance(off_loop, KeyError)  # blocked in that thread, and returned the value

            info = client.scheduler_info()
            assert inspect.isawaitable(info)
            assert len((await info)["workers"]) == 1
            info = await asyncio.to_thread(client.scheduler_info)
            assert len(info["workers"]) == 1

            data = client.scatter([1, 2])
            assert inspect.isawaitable(data)
            futures = await data
            assert await client.gather(futures) == [1, 2]
            futures = await asyncio.to_thread(client.scatter, [3, 4])
            assert isinstance(futures, list)
            assert await asyncio.to_thread(client.gather, futures, "raise", T) == [3, 4]

            good = client.submit(inc, 1)
            assert await asyncio.to_thread(good.result, T) == 2
            assert await asyncio.to_thread(client.cancel, [good]) is None
            stats = await asyncio.to_thread(client.actor_stats)
            assert isinstance(stats, dict)

    run(main)


def test_progress_awaits_for_an_async_client_and_blocks_off_its_loop(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            futures = client.map(inc, range(3), pure=False)
            out = io.StringIO()
            bars = progress(futures, file=out, timeout=T)
            assert inspect.isawaitable(bars)
            await bars
            assert "3/3" in out.getvalue()
            more = client.map(inc, range(2), pure=False)
            out = io.StringIO()
            assert await asyncio.to_thread(progress, more, file=out, timeout=T) is None  # blocked there
            assert "2/2" in out.getvalue()

    run(main)


def test_a_sync_clients_progress_and_wait_block_inside_a_running_loop(client: Client) -> None:
    async def main() -> None:
        futures = client.map(inc, range(4), pure=False)
        out = io.StringIO()
        assert progress(futures, file=out, timeout=T) is None  # blocked and drew, loop or not (Jupyter)
        assert all(f.done() for f in futures)
        assert "4/4" in out.getvalue()
        done, not_done = wait(client.map(inc, range(2), pure=False), timeout=T)
        assert len(done) == 2 and not not_done
        fut = client.submit(inc, 41)
        assert fut.result(timeout=T) == 42
        assert client.gather([fut], timeout=T) == [42]
        assert isinstance(client.scheduler_info(), dict)

    run(main)


def test_a_sync_clients_progress_blocks_in_a_pool_thread_while_a_loop_runs(client: Client) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = client.map(inc, range(3), pure=False)
        out = io.StringIO()
        got = await loop.run_in_executor(None, lambda: progress(futures, file=out, timeout=T))
        assert got is None
        assert "3/3" in out.getvalue()

    run(main)


def test_actor_futures_follow_the_rule(cluster: LocalCluster, client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=T)

    async def in_a_loop() -> None:
        # a sync client's calls block even inside a running loop
        assert counter.add(1).result(timeout=T) == 1
        assert counter.n == 1
        assert isinstance(counter.fail().exception(timeout=T), KeyError)

    run(in_a_loop)

    async def main() -> None:
        async with Client(cluster, asynchronous=True) as aclient:
            acounter = await aclient.submit(Counter, actor=True)
            call = acounter.add(2)
            assert isinstance(call, ActorFuture)
            on_loop = call.result(timeout=T)
            assert inspect.isawaitable(on_loop)
            assert await on_loop == 2
            assert inspect.isawaitable(acounter.n)  # an attribute read: awaitable here
            assert await acounter.n == 2
            error = acounter.fail().exception(timeout=T)
            assert isinstance(await error, KeyError)
            off_loop_call = acounter.add(3)
            assert await asyncio.to_thread(off_loop_call.result, T) == 5  # blocks off the loop
            assert await asyncio.to_thread(getattr, acounter, "n") == 5

    run(main)


def test_a_workers_event_loop_plays_an_async_clients_loop_for_its_calls(client: Client) -> None:
    caller = client.submit(Counter, actor=True).result(timeout=T)
    other = client.submit(Counter, actor=True).result(timeout=T)
    assert caller.call_on_the_loop(other).result(timeout=T) == (True, 1)
    assert caller.call_on_the_actor_thread(other).result(timeout=T) == 2  # blocks there (serving others)


def _fail_the_next_fetch(monkeypatch: pytest.MonkeyPatch, core: Any, notice: threading.Event) -> list[float]:
    """The next data request fails as if its worker had died; the death notice waits on ``notice``."""
    waited: list[float] = []
    real_request = core.request_data

    def request_data(address: str, keys: tuple[str, ...]) -> Completion:
        monkeypatch.setattr(core, "request_data", real_request)
        comp = Completion()
        comp.set_exception(WorkerLostError("the worker holding it died"))
        return comp

    def await_death_notice(address: str, timeout: float) -> None:
        t0 = time.monotonic()
        notice.wait(T)  # set by a callback of the event loop: never, if this blocked the loop
        waited.append(time.monotonic() - t0)

    monkeypatch.setattr(core, "request_data", request_data)
    monkeypatch.setattr(core, "await_death_notice", await_death_notice)
    return waited


@pytest.mark.parametrize("how", ["gather", "await"])
def test_waiting_for_a_death_notice_does_not_block_the_loop(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            fut = client.submit(inc, 1, pure=False)
            assert await fut == 2
            notice = threading.Event()
            waited = _fail_the_next_fetch(monkeypatch, client.core, notice)
            asyncio.get_running_loop().call_later(0.05, notice.set)
            with pytest.raises(WorkerLostError):  # not recomputing: the fetch's error stands
                await (client.gather([fut]) if how == "gather" else fut)
            assert len(waited) == 1 and waited[0] < T / 2  # the loop ran the callback meanwhile
            monkeypatch.undo()
            assert await fut == 2  # and the next fetch asks the worker again

    run(main)
