"""The Counter of dask's actor documentation: a stateful object that lives on a worker.

Run it: ``python examples/counter.py``. Written to the API localactors shares
with dask.distributed: change the import to ``from dask.distributed import
Client`` and it runs there unchanged.
"""

from localactors import Client


class Counter:
    """A simple class to manage an incrementing counter."""

    n = 0

    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n

    def add(self, x):
        self.n += x
        return self.n


def main():
    with Client(n_workers=2) as client:
        future = client.submit(Counter, actor=True)  # create a Counter on a worker
        counter = future.result()  # ...and get back a proxy for it
        print(repr(counter))  # <Actor: Counter, key=Counter-...>

        future = counter.increment()  # a method call returns a future at once
        print("increment() ->", future.result())  # block until the result is here: 1
        print("add(10) ->", counter.add(10).result())  # 11
        print("counter.n ->", counter.n)  # an attribute read blocks by itself: 11

        # Calls do not wait for each other: send 100, then collect the answers.
        # The actor runs one call at a time, so no increment is lost.
        futures = [counter.increment() for _ in range(100)]
        print("after 100 more increments ->", max(f.result() for f in futures))  # 111


if __name__ == "__main__":  # workers are new processes: they import this file, so guard the start
    main()
