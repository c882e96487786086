"""An actor with async methods: waiting without holding up the actor.

Run it: ``python examples/async_waiter.py``. Shared API (runs on
dask.distributed with the import changed).

``async def`` methods run on the worker's event loop, not on its one actor
thread. So while ``wait()`` is suspended on the event, the actor still
answers other calls -- including the ``set()`` that releases the waiters. A
plain ``def wait`` that blocked on a ``threading.Event`` would hold the actor
thread, and ``set()`` would queue behind it forever.
"""

import asyncio

from localactors import Client


class Waiter:
    def __init__(self):
        self.event = asyncio.Event()
        self.arrived = asyncio.Condition()
        self.waiting = 0

    async def wait(self):
        async with self.arrived:
            self.waiting += 1
            self.arrived.notify_all()
        await self.event.wait()  # suspends this call only; the actor stays free
        self.waiting -= 1
        return "released"

    async def until_waiting(self, n):  # returns once n callers wait: no polling
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.waiting >= n)

    async def set(self):
        self.event.set()

    def count_waiting(self):  # a plain method: runs on the actor thread
        return self.waiting


def main():
    with Client(n_workers=1) as client:
        waiter = client.submit(Waiter, actor=True).result()

        waits = [waiter.wait() for _ in range(3)]  # three callers start waiting
        waiter.until_waiting(3).result(timeout=30)  # the actor answers while they wait
        print("waiting:", waiter.count_waiting().result())  # 3
        print("any released yet?", any(w.done() for w in waits))  # False

        waiter.set().result()  # runs although three waits are in progress
        print("results:", [w.result(timeout=5) for w in waits])  # ['released', 'released', 'released']
        print("waiting:", waiter.count_waiting().result())  # 0


if __name__ == "__main__":
    main()
