"""The demo behind ``python -m localactors demo``: dask's actor Counter, then tasks.

Runs in: the user's process (the classes it sends run in workers).
"""

from __future__ import annotations

import time


class Counter:
    """A simple class to manage an incrementing counter (the example of dask's actor documentation)."""

    n = 0

    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n

    def add(self, x: int) -> int:
        self.n += x
        return self.n


def square(x: int) -> int:
    return x * x


def main() -> None:
    from .. import Client, as_completed

    print("localactors demo: a cluster on this machine, an actor on it, and some tasks.")
    print("Each step shows the code (after >>>) and what it returned.\n")
    t0 = time.perf_counter()
    with Client() as client:
        workers = client.scheduler_info()["workers"]
        pids = ", ".join(str(w["pid"]) for w in workers.values())
        print(
            f"Client() started a LocalCluster in {time.perf_counter() - t0:.2f} s: a manager and "
            f"{len(workers)} worker processes (pids {pids})"
        )

        print("\n# an actor: a Counter object that lives on a worker; each call runs there, in order")
        future = client.submit(Counter, actor=True)  # create a Counter on a worker
        counter = future.result()  # a pointer to that object
        print(">>> counter\n" + repr(counter))
        print(">>> dir(counter)\n" + repr(dir(counter)))
        print(">>> counter.increment().result()\n" + repr(counter.increment().result()))
        print(">>> counter.add(10).result()\n" + repr(counter.add(10).result()))
        print(">>> counter.n\n" + repr(counter.n))

        n = 2000
        t = time.perf_counter()
        for _ in range(n):
            counter.increment().result()
        rt = (time.perf_counter() - t) / n
        t = time.perf_counter()
        futures = [counter.increment() for _ in range(n)]
        last = futures[-1].result()
        rate = n / (time.perf_counter() - t)
        print(
            f"\nspeed: {n} calls one at a time took {rt * 1e6:.0f} us each; "
            f"{n} sent at once, then waited for: {rate:,.0f} calls/s"
        )
        print(f"counter.n == {counter.n} (== {last})")

        print("\n# tasks: plain functions run on the workers (map, futures as arguments, gather, as_completed)")
        squares = client.map(square, range(10))
        total = client.submit(sum, squares)
        print(">>> client.gather(squares)\n" + repr(client.gather(squares)))
        print(">>> client.submit(sum, squares).result()\n" + repr(total.result()))
        done = [f.result() for f in as_completed(client.map(square, range(5, 8)))]
        print(">>> sorted(f.result() for f in as_completed(...))\n" + repr(sorted(done)))
        # an actor future passed to a task arrives as its value
        print(">>> client.submit(square, counter.add(1)).result()")
        print(repr(client.submit(square, counter.add(1)).result()))
    print("\nThe cluster is closed (the `with` block ended): no process left behind.")
    print("Next: docs/tutorial.md walks from this counter to actors calling actors;")
    print("while a program of yours runs, `localactors top` shows its workers and actors live.")
