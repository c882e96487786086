"""What ``Client.scheduler_info()`` reports: the manager's worker list, with memory.

Runs in: the user's process (and in workers, under their ``get_client()``).

The manager answers an ``InfoRequest`` with what it knows of each worker;
the memory figures are read here, from the OS (every worker runs on this
machine), and put where dask.distributed keeps them too.
"""

from __future__ import annotations

from typing import Any

from .._wire import protocol as P


def scheduler_info(address: str, reply: P.InfoReply) -> dict[str, Any]:
    """``{"type", "address", "workers": {name: {...}}}`` from the manager's ``InfoReply``."""
    workers = {}
    for w in reply.workers:
        workers[w.name] = {
            "name": w.name,
            "address": w.address,
            "pid": w.pid,
            "nthreads": w.nthreads,
            "resources": dict(w.resources),
            "memory_limit": w.memory_limit,
            "memory": _rss(w.pid),
            "metrics": {"memory": _rss(w.pid)},  # where dask.distributed keeps it
        }
    return {"type": "localactors", "address": address, "workers": workers}


def _rss(pid: int) -> int:
    """Resident memory of a worker process, in bytes (same machine: ask the OS)."""
    import psutil  # lazily: a worker that never asks keeps its start-up small

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0
