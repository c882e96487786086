"""Where am I? The worker and client of the running process or thread.

Runs in: every process.

A worker process registers itself here when it starts; ``get_worker()`` and
``get_client()`` read it. Each worker thread also registers thread-locally:
in-process (``LocalCluster(processes=False)``) several workers share the
user's process, and only the thread knows which worker it belongs to. In
the user's process the most recent client is the default node for handles
unpickled outside any message (e.g. by hand); :func:`future_owner` says which
client holds the task Futures unpickled here.
"""

from __future__ import annotations

import os
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


_cores: weakref.WeakSet[Any] = weakref.WeakSet()  # every client core of this process


def set_default_client(core: Any) -> None:
    if getattr(_local, "worker", None) is not None:
        return  # a worker's own client (in-process: a thread of the user's process) is not the user's
    _process["client"] = weakref.ref(core)
    _cores.add(core)
    _recent[:] = [r for r in _recent if r() is not None] + [weakref.ref(core)]


def clients_of(address: str) -> list[Any]:
    """This process's client cores connected to the manager at ``address`` (closed ones too)."""
    return [core for core in list(_cores) if getattr(core, "address", None) == address]


_recent: list[weakref.ref[Any]] = []  # the user's client cores, oldest first


def _newest_open_core() -> Any:
    # as dask.distributed does: when the newest client closes, the one before it is the default again
    for ref in reversed(_recent):
        core = ref()
        if core is not None and not core.closed:
            return core
    return None


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
    core = _newest_open_core()
    if core is None or core.client is None:
        raise ValueError("no client: create one with Client()")
    return core.client


def default_node(address: str | None = None) -> Any:
    """The node that owns handles unpickled outside a message.

    Given the ``address`` of the worker a handle points to, prefer an open
    client of that worker's cluster (its sockets share one directory): with
    two clusters in one process, the most recent client may be the wrong one.
    """
    worker = getattr(_local, "worker", None) or _process["worker"]
    if worker is not None:
        return worker.node
    if address is not None:
        home = os.path.dirname(address)
        for core in list(_cores):
            if not core.closed and os.path.dirname(core.address) == home:
                return core
    ref = _process["client"]
    return ref() if ref is not None else None


def future_owner(node: Any = None) -> Any:
    """The client core that holds task Futures unpickled by ``node`` (default: :func:`default_node`).

    A client's Futures belong to itself; a worker's to its own client
    (``get_client()`` there), which it starts on first use. ``None`` when no
    client can hold them.
    """
    if node is None:
        node = default_node()
    worker = getattr(node, "worker", None)  # a worker's node knows its worker
    if worker is not None:
        return worker.get_client().core
    return node if node is not None and hasattr(node, "future") else None
