"""Small helpers shared by the test modules (imported by name: tests/ is on sys.path).

Runs in: the test process, and in workers for functions sent as tasks.
"""

from __future__ import annotations

import os
import time
from typing import Any

T = 30.0


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``condition`` until true; a deadline, not a synchronisation sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what}")
        time.sleep(interval)


def gated(path: str, value: Any = None) -> Any:
    """Return ``value`` once ``path`` exists: the test decides the finishing order."""
    deadline = time.monotonic() + T
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return value
