"""Signals to the cluster's processes: faults injected for tests, and the last-resort kill.

Runs in: the user's process (``LocalCluster.kill_worker``, ``pause_worker``,
``resume_worker``, and ``close()``).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def signal_worker(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a worker process; for SIGSTOP, return once it has stopped (2 s at most).

    A stop is not done when ``kill()`` returns: each thread stops when the
    kernel next runs it, which on a loaded machine can be after the worker
    has served the next call.
    """
    os.kill(pid, sig)
    if sig == signal.SIGSTOP:
        deadline = time.monotonic() + 2.0
        while not _stopped(pid) and time.monotonic() < deadline:
            time.sleep(0.001)


def _stopped(pid: int) -> bool:
    """Has every thread of process ``pid`` stopped (or is it gone)? Linux; elsewhere, assume so."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return not os.path.exists("/proc/self") or not os.path.exists(f"/proc/{pid}")
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue  # that thread has ended
        if state not in (b"T", b"t"):
            return False
    return True


def children_of(pid: int | None) -> list[Any]:
    """The processes below ``pid`` (psutil), to make sure of at close."""
    import psutil

    if pid is None:  # psutil.Process(None) is this process
        return []
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except (psutil.Error, ValueError, TypeError):
        return []


def kill_stragglers(children: list[Any]) -> None:
    """Workers leave by themselves once their manager is gone; make sure."""
    import psutil

    _, alive = psutil.wait_procs(children, timeout=1.0)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=1.0)
