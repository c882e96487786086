"""The asynchronous client: ``async with``, ``await fut``, awaitable gather, wait,
as_completed (woken, not polling), scatter, cancel, scheduler_info, close."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest
from helpers import gated

from localactors import (
    FIRST_COMPLETED,
    Client,
    ClusterClosedError,
    LocalCluster,
    RemoteTraceback,
    as_completed,
    wait,
)

T = 30.0


def inc(x: int) -> int:
    return x + 1


def fail(message: str) -> None:
    raise KeyError(message)


def run(main: Callable[[], Awaitable[Any]], timeout: float = 2 * T) -> Any:
    """Run a test's coroutine with an overall deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


def test_async_client_that_owns_its_cluster() -> None:
    async def main() -> None:
        async with Client(n_workers=2, asynchronous=True) as client:
            assert client.status == "running"
            cluster = client.cluster
            assert cluster is not None and cluster.status == "running"
            fut = client.submit(inc, 1)
            assert await fut == 2
            assert await fut.result() == 2  # result() is awaitable in the loop too
            assert await client.gather([fut, client.submit(inc, 2), {"k": (fut,)}]) == [2, 3, {"k": (2,)}]
            info = await client.scheduler_info()
            assert len(info["workers"]) == 2
            assert all(w["pid"] > 0 and w["memory"] > 0 for w in info["workers"].values())
        assert client.status == "closed"
        assert cluster.status == "closed"
        await client.close()  # idempotent

    run(main)


@pytest.fixture(scope="module")
def cluster() -> Any:
    """This module's own cluster (its clients live in event loops)."""
    with LocalCluster(n_workers=2) as c:
        yield c


def test_await_client_then_close(cluster: LocalCluster) -> None:
    async def main() -> None:
        client = await Client(cluster, asynchronous=True)
        try:
            assert await client.submit(inc, 41) == 42
        finally:
            await client.close()
        await client.close()
        with pytest.raises(ClusterClosedError):
            client.submit(inc, 1)

    run(main)


def test_awaited_error_keeps_type_and_traceback(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            fut = client.submit(fail, "gone")
            with pytest.raises(KeyError) as info:
                await fut
            assert isinstance(info.value.__cause__, RemoteTraceback)
            with pytest.raises(KeyError):
                await client.gather([fut])

    run(main)


def test_scatter_and_cancel_are_awaitable(cluster: LocalCluster, tmp_path: Path) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            data = await client.scatter({"a": 1, "b": 2})
            assert await client.gather(data) == {"a": 1, "b": 2}
            assert await client.submit(lambda a, b: a + b, data["a"], data["b"]) == 3
            gate = tmp_path / "gate"
            pending = client.submit(gated, str(gate), pure=False)
            await client.cancel([pending])
            assert pending.cancelled()
            with pytest.raises(CancelledError):
                await pending
            gate.touch()  # a running task is not interrupted: let it end

    run(main)


def test_the_loop_keeps_running_while_a_future_is_awaited(cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    if ticks == 5:
                        gate.touch()  # only a running loop can open the gate
                    await asyncio.sleep(0.01)

            tick_task = asyncio.ensure_future(ticker())
            try:
                assert await client.submit(gated, str(gate), "opened", pure=False) == "opened"
            finally:
                tick_task.cancel()
            assert ticks >= 5

    run(main)


def test_async_wait(cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            futures = client.map(inc, range(4), pure=False)
            done, not_done = await wait(futures, timeout=T)
            assert done == set(futures) and not not_done
            slow = client.submit(gated, str(gate), pure=False)
            fast = client.submit(inc, 10, pure=False)
            done, not_done = await wait([slow, fast], timeout=T, return_when=FIRST_COMPLETED)
            assert done == {fast} and not_done == {slow}
            with pytest.raises(TimeoutError):
                await wait([slow], timeout=0.2)
            with pytest.raises(TimeoutError):
                await wait([slow], timeout=0.2, return_when=FIRST_COMPLETED)
            bad = client.submit(fail, "x", pure=False)
            done, _ = await wait([bad], timeout=T)  # an error is "done", and not raised here
            assert done == {bad}
            gate.touch()
            await wait([slow], timeout=T)

    run(main)


def test_async_as_completed(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            futures = client.map(inc, range(5), pure=False)
            seen = [await f async for f in as_completed(futures)]
            assert sorted(seen) == [1, 2, 3, 4, 5]
            pairs = [pair async for pair in as_completed(client.map(inc, range(3), pure=False), with_results=True)]
            assert sorted(r for _, r in pairs) == [1, 2, 3]
            ac = as_completed([client.submit(inc, 0, pure=False)])
            values = []
            async for fut in ac:
                values.append(await fut)
                if values[-1] < 3:
                    ac.add(client.submit(inc, values[-1], pure=False))
            assert values == [1, 2, 3]
            bad = client.submit(fail, "y", pure=False)
            got = [pair async for pair in as_completed([bad], with_results=True, raise_errors=False)]
            # as dask (issue 12): the result of a failed future is (type, exception, traceback)
            assert got[0][0] is bad and got[0][1][0] is KeyError and isinstance(got[0][1][1], KeyError)

    run(main)


def test_async_as_completed_is_woken_not_polling(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "gate"

    async def no_sleep(*args: Any) -> None:
        raise AssertionError("as_completed polled with asyncio.sleep")

    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            slow = client.submit(gated, str(gate), "late", pure=False)
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, gate.touch)
            monkeypatch.setattr(asyncio, "sleep", no_sleep)  # the module _futures uses
            try:
                got = [f async for f in as_completed([slow], timeout=T)]
            finally:
                monkeypatch.undo()
            assert got == [slow]
            assert await slow == "late"

    run(main)


def test_async_as_completed_timeout(cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def main() -> None:
        async with Client(cluster, asynchronous=True) as client:
            slow = client.submit(gated, str(gate), pure=False)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                async for _ in as_completed([slow], timeout=0.3):
                    pass
            assert time.monotonic() - t0 < T
            gate.touch()
            await wait([slow], timeout=T)

    run(main)


def test_async_cluster_context_manager() -> None:
    async def main() -> None:
        async with LocalCluster(n_workers=1, asynchronous=True) as cluster:
            assert cluster.status == "running"
            async with Client(cluster, asynchronous=True) as client:
                assert await client.submit(inc, 1) == 2
            directory = cluster.directory
        assert cluster.status == "closed"
        assert not os.path.exists(directory)

    run(main)
