"""Functions and actor classes the portable tests send to workers.

Runs in: the test process and in workers (imported by name, ``portable.tasks``).
Nothing here imports either engine at module level.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

T = 30.0


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def identity(x: Any) -> Any:
    return x


def type_name(x: Any) -> str:
    return type(x).__name__


def boom(x: Any = None) -> Any:
    raise ValueError(f"boom {x}")


def user_frame_raises(x: Any = None) -> Any:
    """The user's frame a remote traceback must reach quickly."""
    raise KeyError(f"user error {x}")


def gated(path: str, value: Any = None) -> Any:
    """Return ``value`` once ``path`` exists: the test decides when the task ends."""
    deadline = time.monotonic() + T
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return value


def release(path: str) -> None:
    with open(path, "w"):
        pass


def flaky(path: str) -> str:
    """Fails the first time (and leaves a mark), succeeds once the mark is there."""
    if not os.path.exists(path):
        release(path)
        raise RuntimeError("first attempt fails")
    return "ok"


def pid(*_: Any) -> int:
    return os.getpid()


def import_attr(module: str, attr: str) -> Any:
    return getattr(importlib.import_module(module), attr)


def worker_name(get_worker: Any) -> Any:
    """The name of the worker running this task (``get_worker`` is the engine's)."""
    return get_worker().name


async def async_inc(x: int) -> int:
    return x + 1


class Counter:
    n = 0

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def fail(self) -> None:
        raise ZeroDivisionError("actor method failed")

    def slow_increment(self, delay: float) -> int:
        time.sleep(delay)
        self.n += 1
        return self.n


def call_actor(counter: Any) -> int:
    """A task that calls an actor handle it was given."""
    return int(counter.increment().result(timeout=T))


def gated_boom(path: str) -> Any:
    """Fail once ``path`` exists."""
    gated(path)
    raise ValueError("failed after the gate")
