"""A Monte-Carlo estimate of pi, accumulated in an actor.

Run it: ``python examples/monte_carlo.py``. Shared API (runs on
dask.distributed with the import changed).

Many independent tasks throw random darts at the unit square; each reports
its hits to one ``Accumulator`` actor as soon as it is done, so the running
estimate can be read at any time -- no need to gather every result first.
"""

import random

from localactors import Client, as_completed


class Accumulator:
    total = 0  # declared on the class: readable through the proxy on Dask too

    def __init__(self):
        self.inside = 0
        self.total = 0

    def add(self, inside, total):
        self.inside += inside
        self.total += total
        return self.total

    def estimate(self):
        return 4 * self.inside / self.total


def throw(accumulator, seed, n):
    """A task: ``n`` darts; how many land inside the quarter circle."""
    rng = random.Random(seed)
    inside = sum(rng.random() ** 2 + rng.random() ** 2 <= 1 for _ in range(n))
    accumulator.add(inside, n).result()
    return inside


def main():
    batches, per_batch = 20, 20_000
    with Client(n_workers=2) as client:
        acc = client.submit(Accumulator, actor=True).result()
        futures = client.map(throw, [acc] * batches, range(batches), [per_batch] * batches)
        for i, _ in enumerate(as_completed(futures), 1):
            if i % 5 == 0:  # a running estimate, read while tasks still run
                print(f"after {i:2d} batches: pi ~ {acc.estimate().result():.4f}")
        print(f"final: pi ~ {acc.estimate().result():.4f} from {acc.total} darts")  # 3.1433 from 400000 darts (seeded)


if __name__ == "__main__":
    main()
