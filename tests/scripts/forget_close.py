"""A script that never closes its client: it must exit promptly all the same.

argv[1]: "client" (Client(n_workers=2)), "cluster" (LocalCluster + Client),
"raise" (dies of an uncaught exception). Prints each child's pid and the
private directory, then the moment its own code ends.
"""

import sys
import time

from localactors import Client, LocalCluster


class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "cluster":
        cluster = LocalCluster(n_workers=2)
        client = Client(cluster)
    else:
        client = Client(n_workers=2)
        cluster = client.cluster
    counter = client.submit(Counter, actor=True).result()
    print("result", counter.increment().result())
    print("dir", cluster.directory)
    print("manager", cluster._process.pid)
    for w in cluster.workers:
        print("worker", w.pid)
    print("end", time.time(), flush=True)
    if mode == "raise":
        raise ValueError("the user's own bug")
