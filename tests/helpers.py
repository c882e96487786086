"""Small helpers shared by the test modules (imported by name: tests/ is on sys.path).

Runs in: the test process, and in workers for functions sent as tasks.

Polling, the one way the tests wait for something decided in another thread or
process (a deadline, never a sleep-to-synchronise):

* :func:`wait_until` -- poll until true, else fail the test with a message that
  says what never happened. Returns the truthy value it saw.
* :func:`eventually` -- poll until true, else return the last (falsy) value
  quietly: for ``assert eventually(check), context`` when the assertion's own
  message says more, and for waits that only give something time to settle.
* :func:`gated` -- a task's or an actor method's body: return once a file
  exists, so the test decides when work finishes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = 30.0  #: default deadline, seconds: generous (a shared CPU), a bound on a hang

V = TypeVar("V")


def eventually(check: Callable[[], V], timeout: float = T, interval: float = 0.02) -> V:
    """Poll ``check`` until it returns something truthy, and return that; at the deadline the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(
    condition: Callable[[], V], timeout: float = T, what: str | Callable[[], str] = "", interval: float = 0.02
) -> V:
    """Poll ``condition`` until truthy and return its value; else ``AssertionError`` saying ``what``.

    ``what`` is a description, or a function making one at the deadline (to show the state then).
    """
    value = eventually(condition, timeout, interval)
    if not value:
        said = what() if callable(what) else what
        raise AssertionError(f"not true after {timeout} s: {said or condition}")
    return value


def gated(path: str, value: Any = None, timeout: float = T) -> Any:
    """Return ``value`` once ``path`` exists: the test decides the finishing order.

    Raises ``TimeoutError`` if the file never comes (the work then fails instead of finishing).
    """
    if not eventually(lambda: os.path.exists(path), timeout, 0.005):
        raise TimeoutError(path)
    return value
