"""The user code every system runs: the same classes and functions for all.

Runs in: the benchmark process and the workers of every system (imported by
name, so it must stay importable from the repository root).
"""

from __future__ import annotations

import os
import time
from typing import Any


class Counter:
    """The seed's counter, plus a sink for large arguments."""

    n = 0  # dask.distributed's proxy finds attributes on the class

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def increment(self) -> int:
        self.n += 1
        return self.n

    def size(self, data: Any) -> int:
        return len(data)

    def blob(self, n: int) -> bytes:
        """``n`` bytes, made once: the result's transfer is timed, not its making."""
        if len(getattr(self, "_blob", b"")) != n:
            self._blob = b"\x01" * n
        return self._blob

    def array(self, n: int) -> Any:
        """A NumPy array of ``n`` bytes, made once."""
        import numpy as np

        if getattr(getattr(self, "_array", None), "nbytes", -1) != n:
            self._array = np.ones(n, dtype=np.uint8)
        return self._array

    def pid(self) -> int:
        return os.getpid()


class AsyncCounter:
    """A counter whose method is a coroutine (kept apart: Ray turns a class
    with any async method into an asyncio actor, which changes its sync path)."""

    def __init__(self) -> None:
        self.n = 0

    async def increment(self) -> int:
        self.n += 1
        return self.n


class Pinger:
    """Calls another actor from inside a worker and times each round trip there."""

    def ping(self, other: Any, n: int, style: str) -> list[float]:
        samples = []
        if style == "ray":
            import ray

            for _ in range(n):
                t0 = time.perf_counter()
                ray.get(other.increment.remote())
                samples.append(time.perf_counter() - t0)
        else:
            for _ in range(n):
                t0 = time.perf_counter()
                other.increment().result()
                samples.append(time.perf_counter() - t0)
        return samples


def inc(x: int) -> int:
    return x + 1


def noop(x: int) -> None:
    return None
