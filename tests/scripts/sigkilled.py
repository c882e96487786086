"""Starts a cluster, prints its directory and pids, then waits to be SIGKILLed."""

import time

from localactors import LocalCluster

if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2)
    print("dir", cluster.directory)
    print("manager", cluster._process.pid)
    for w in cluster.workers:
        print("worker", w.pid)
    print("ready", flush=True)
    time.sleep(120)  # the test kills us long before this ends
