"""Where am I? The worker and client of the running process or thread.

Runs in: every process.

A worker process registers itself here when it starts; ``get_worker()`` and
``get_client()`` read it. In the user's process the most recent client is the
default node for handles unpickled outside any message (e.g. by hand).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_local = threading.local()
_process: dict[str, Any] = {"worker": None, "client": None}


def set_worker(worker: Any, thread_only: bool = False) -> None:
    """Register the worker that owns this process (or only this thread)."""
    if thread_only:
        _local.worker = worker
    else:
        _process["worker"] = worker


def set_default_client(core: Any) -> None:
    _process["client"] = weakref.ref(core)


def get_worker() -> Any:
    """The worker running the current task or actor method.

    Raises ``ValueError`` outside a worker.
    """
    worker = getattr(_local, "worker", None) or _process["worker"]
    if worker is None:
        raise ValueError("get_worker() called outside a worker")
    return worker


def get_client(timeout: float | None = None) -> Any:
    """A client usable from here: in a worker, that worker's own client."""
    worker = getattr(_local, "worker", None) or _process["worker"]
    if worker is not None:
        return worker.get_client()
    ref = _process["client"]
    core = ref() if ref is not None else None
    if core is None or core.closed:
        raise ValueError("no client: create one with Client()")
    return core.client


def default_node() -> Any:
    """The node that owns handles unpickled outside a message."""
    worker = getattr(_local, "worker", None) or _process["worker"]
    if worker is not None:
        return worker.node
    ref = _process["client"]
    return ref() if ref is not None else None
