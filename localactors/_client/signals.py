"""Signals to the cluster's processes: faults injected for tests, and the last-resort kills.

Runs in: the user's process (``LocalCluster.kill_worker``, ``pause_worker``,
``resume_worker``, ``close()`` and the cluster's death-watch thread).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from .._wire import shm

#: how long the death-watch waits for a killed process group to be gone before sweeping
GROUP_GONE_TIMEOUT = 2.0


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


def kill_group(pgid: int, shm_prefix: str) -> None:
    """SIGKILL process group ``pgid`` (the manager's, which every worker joins), then sweep its shared memory.

    Called once the manager has ended but before it is reaped, so the group
    id cannot have been reused: a worker the manager could not stop
    (SIGSTOPped, or the manager was SIGKILLed) dies with it. Killed processes
    unlink nothing, so once they are gone their segments under ``shm_prefix`` go too.
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return  # every member had ended already (and unlinked its shared memory)
    deadline = time.monotonic() + GROUP_GONE_TIMEOUT
    while time.monotonic() < deadline and _group_runs(pgid):
        time.sleep(0.01)  # nothing to wait on: the members are not our children
    shm.sweep(shm_prefix)


def _group_runs(pgid: int) -> bool:
    """Does a member of process group ``pgid`` still run (zombies, which write nothing, aside)?"""
    import psutil

    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False
