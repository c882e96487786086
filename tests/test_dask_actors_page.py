"""The examples of the dask.distributed "Actors" documentation page, verbatim but for the import line.

Two changes, both forced: ``from dask.distributed import Client`` becomes
``from localactors import Client``, and the Waiter (written there as
``def Waiter(object):`` -- a typo for ``class`` -- on a Tornado event) uses
``asyncio.Event``. The page's lines carry no timeouts; pytest-timeout bounds
each test instead, and a hang fails it.

The classes are defined at module level exactly as on the page.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

# ---------------------------------------------------------------- the seed's classes


class Counter:
    """A simple class to manage an incrementing counter"""

    n = 0

    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n

    def add(self, x):
        self.n += x
        return self.n


class Waiter(object):  # the seed: "def Waiter(object):"  # noqa: UP004
    def __init__(self):
        self.event = asyncio.Event()  # the seed: tornado.locks.Event()

    async def set(self):
        self.event.set()

    async def wait(self):
        await self.event.wait()


KEY = re.compile(r"<Actor: Counter, key=Counter-[0-9a-f]+>")


# ---------------------------------------------------------------- the seed's sessions


@pytest.mark.timeout(120)
def test_seed_counter_session() -> None:
    from localactors import Client  # Start a Dask Client

    client = Client()
    try:
        future = client.submit(Counter, actor=True)  # Create a Counter on a worker
        counter = future.result()  # Get back a pointer to that object

        assert KEY.fullmatch(repr(counter))  # counter -> <Actor: Counter, key=Counter-1234abcd>

        future = counter.increment()  # Call remote method
        assert future.result() == 1  # Get back result

        future = counter.add(10)  # Call remote method
        assert future.result() == 11  # Get back result

        # "Create an Actor"
        future = client.submit(Counter, actors=True)
        counter = future.result()
        assert KEY.fullmatch(repr(counter))  # <Actor: Counter, key=...>
        assert dir(counter) == ["add", "increment", "n"]

        # "Call Remote Methods"
        future = counter.increment()  # Immediately returns an ActorFuture
        assert future.result() == 1  # Block until finished and result arrives

        # "Access Attributes"
        assert counter.n == 1  # Blocks until finished
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_seed_waiter_session() -> None:
    from localactors import Client

    client = Client()
    try:
        waiter = client.submit(Waiter, actor=True).result()
        pending = waiter.wait()  # the seed: "waits until set, without consuming a worker thread"
        assert not pending.done()
        assert client.submit(Counter, actor=True).result().increment().result() == 1  # workers are free
        waiter.set()
        assert pending.result() is None
        waiter.wait().result()  # waits until set
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_seed_async_session() -> None:
    from localactors import Client, LocalCluster

    result = {}

    async def main():
        async with LocalCluster(asynchronous=True) as cluster, Client(cluster, asynchronous=True) as client:

            async def f():
                counter = await client.submit(Counter, actor=True)

                await counter.increment()
                n = await counter.n
                return n

            result["n"] = await f()

    asyncio.run(main())
    assert result == {"n": 1}


@pytest.mark.timeout(120)
def test_demo_walks_through_the_seed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "localactors", "demo"], capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert KEY.search(out)
    assert "['add', 'increment', 'n']" in out
    assert ">>> counter.increment().result()\n1" in out
    assert ">>> counter.add(10).result()\n11" in out
