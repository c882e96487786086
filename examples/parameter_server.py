"""A parameter server: one actor holds the model, tasks on every worker train it.

Run it: ``python examples/parameter_server.py``. Shared API (runs on
dask.distributed with the import changed).

We fit ``y = w*x + b`` to points on the line ``y = 3x + 2``. The data is split
into shards; one task per shard repeatedly pulls the current weights from the
``ParameterServer`` actor, computes the gradient on its shard, and pushes it
back. The tasks run concurrently on both workers and update the same model
without any locks: the actor applies one push at a time.
"""

from localactors import Client, wait


class ParameterServer:
    updates = 0  # declared on the class: readable through the proxy on Dask too

    def __init__(self, learning_rate):
        self.weights = [0.0, 0.0]  # w, b
        self.learning_rate = learning_rate
        self.updates = 0

    def pull(self):
        return list(self.weights)

    def push(self, gradient):
        self.weights = [p - self.learning_rate * g for p, g in zip(self.weights, gradient)]
        self.updates += 1
        return self.updates


def gradient(weights, shard):
    """d(mean squared error)/d(w, b) on one shard."""
    w, b = weights
    gw = gb = 0.0
    for x, y in shard:
        err = w * x + b - y
        gw += 2 * err * x / len(shard)
        gb += 2 * err / len(shard)
    return [gw, gb]


def train(server, shard, steps):
    """A task: pull, compute, push -- ``steps`` times."""
    for _ in range(steps):
        server.push(gradient(server.pull().result(), shard)).result()
    return steps


def main():
    points = [(i / 100, 3 * (i / 100) + 2) for i in range(100)]
    shards = [points[i::4] for i in range(4)]  # four interleaved shards
    with Client(n_workers=2) as client:
        # a small learning rate: concurrent tasks push gradients of slightly stale weights
        server = client.submit(ParameterServer, 0.1, actor=True).result()
        tasks = [client.submit(train, server, shard, 200, pure=False) for shard in shards]
        wait(tasks)
        w, b = server.pull().result()
        print("updates applied:", server.updates)  # 800
        print(f"learned: y = {w:.2f}x + {b:.2f}")  # y = 3.00x + 2.00


if __name__ == "__main__":
    main()
