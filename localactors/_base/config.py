"""What a child is told when it starts: the manager's and each worker's configuration.

Runs in: the user's process (building the manager's), the manager (building
each worker's) and the children that read them.

Children are started by *entry point name*, a ``"module:function"`` string
carried in the configuration (see :mod:`~localactors._base.runner`): the
user's process never imports manager code to start the manager, nor the
manager worker code to start a worker. Tests inject faults by naming another
entry point (``LocalCluster(worker_entry=...)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .._wire.framing import MAX_FRAME_SIZE

#: unanswered calls allowed on one caller-to-worker link before a caller waits
DEFAULT_MAX_IN_FLIGHT = 10_000
#: seconds a worker may leave the manager's heartbeat unanswered before it is
#: declared hung, killed and replaced. Long: a false alarm destroys an actor's
#: state, a late one only delays an error; and a C call that holds the GIL (a
#: sort of 10^8 items, a pickle of gigabytes) stalls every thread for seconds.
DEFAULT_WORKER_TIMEOUT = 60.0
#: bytes a frame header may claim on the manager's links (generous: a bound on garbage, not on data)
DEFAULT_MAX_FRAME_SIZE = MAX_FRAME_SIZE

#: ``manager_main(config, control)``: the manager, in a process or a thread
MANAGER_ENTRY = "localactors._manager.manager:manager_main"
#: ``worker_main(config, output)``: a worker, in a process or a thread
WORKER_ENTRY = "localactors._worker.worker:worker_main"


@dataclass(frozen=True)
class WorkerConfig:
    """One worker's settings, made by the manager."""

    name: str
    directory: str
    authkey: bytes
    manager_address: str
    nthreads: int = 1
    resources: tuple[tuple[str, float], ...] = ()
    memory_limit: int | None = None
    log_level: int = logging.WARNING
    in_process: bool = False  #: a thread of the user's process (``processes=False``)
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT  #: calls unanswered per link to another worker


@dataclass(frozen=True)
class ManagerConfig:
    """The manager's settings, made by ``LocalCluster`` from its arguments."""

    directory: str
    authkey: bytes
    n_workers: int
    threads_per_worker: int = 1
    resources: tuple[tuple[str, float], ...] = ()
    memory_limit: int | None = None
    start_method: str = "spawn"
    allowed_failures: int = 3
    log_level: int = logging.WARNING
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT  #: per worker-to-worker link
    in_process: bool = False  #: workers are threads of this process (``processes=False``)
    forward_output: bool = True  #: workers' stdout/stderr go to the cluster, prefixed
    worker_entry: str = WORKER_ENTRY  #: how each worker starts (``"module:function"``)
    worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT  #: heartbeat; None: off
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE  #: bytes; a larger frame header drops the link


def parse_memory(limit: int | str | None) -> int | None:
    """A memory limit in bytes, from bytes or a string such as ``"2GiB"`` or ``"500 MB"``."""
    if limit is None or isinstance(limit, int):
        return limit
    text = limit.strip().upper().replace(" ", "")
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))
