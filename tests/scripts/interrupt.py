"""Ctrl-C while blocked in a long ``.result()``: only the wait is interrupted.

The test sends SIGINT to this script's whole process group (as a terminal
does) once it prints "waiting"; the script catches KeyboardInterrupt, then
calls the same actor again, which must still hold its state.
"""

import os
import shutil
import sys
import tempfile
import time

from localactors import Client


class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


def wait_for(path, timeout):
    """A long task: done once ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(path)


if __name__ == "__main__":
    gate = os.path.join(tempfile.mkdtemp(), "gate")
    with Client(n_workers=2) as client:
        counter = client.submit(Counter, actor=True).result()
        print("before", counter.increment().result(timeout=30), flush=True)
        long = client.submit(wait_for, gate, 60)
        try:
            print("waiting", flush=True)
            long.result(timeout=60)
            print("not interrupted", flush=True)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("after", counter.increment().result(timeout=30), flush=True)
        open(gate, "w").close()
        print("long", long.result(timeout=30), flush=True)
        print("workers", len(client.scheduler_info()["workers"]), flush=True)
    shutil.rmtree(os.path.dirname(gate))
    print("closed", flush=True)
