"""Starting a cluster: its private directory and key, the manager's config, the manager's first word.

Runs in: the user's process (``LocalCluster`` starting).

The steps of ``LocalCluster._start`` that need nothing of the cluster but its
options: :func:`private_directory` makes the 0700 directory for the sockets
and the random authkey; :func:`manager_config` turns the cluster's options
into the :class:`ManagerConfig` the manager starts from; :func:`await_ready`
waits on the control pipe for the manager's answer to its start (every
worker registered) and raises if it failed or never came. Starting the
manager itself, and closing everything when a step fails, stay with the cluster.
"""

from __future__ import annotations

import os
import tempfile
from multiprocessing.connection import Connection
from typing import NamedTuple, Protocol

from .._base.config import ManagerConfig
from .._base.errors import ClusterBrokenError, WorkerStartError
from .._wire import control as C
from .._wire import protocol as P


class ClusterOptions(Protocol):
    """What the manager's config is made of: the options of a ``LocalCluster``."""

    @property
    def n_workers(self) -> int: ...
    @property
    def threads_per_worker(self) -> int: ...
    @property
    def resources(self) -> dict[str, float]: ...
    @property
    def memory_limit(self) -> int | None: ...
    @property
    def start_method(self) -> str: ...
    @property
    def allowed_failures(self) -> int: ...
    @property
    def log_level(self) -> int: ...
    @property
    def processes(self) -> bool: ...
    @property
    def forward_output(self) -> bool: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def worker_entry(self) -> str: ...
    @property
    def worker_timeout(self) -> float | None: ...
    @property
    def max_frame_size(self) -> int: ...


class Ready(NamedTuple):
    """The manager's word that the cluster is up: its socket, and the workers in it."""

    address: str
    workers: tuple[P.WorkerInfo, ...]


def private_directory() -> tuple[str, bytes]:
    """A new private directory for the cluster's sockets (mode 0700), and a random authkey."""
    directory = tempfile.mkdtemp(prefix="localactors-")  # mode 0700
    os.chmod(directory, 0o700)
    return directory, os.urandom(32)


def manager_config(options: ClusterOptions, directory: str, authkey: bytes) -> ManagerConfig:
    """The manager's settings, from the cluster's options."""
    return ManagerConfig(
        directory=directory,
        authkey=authkey,
        n_workers=options.n_workers,
        threads_per_worker=options.threads_per_worker,
        resources=tuple(sorted(options.resources.items())),
        memory_limit=options.memory_limit,
        start_method=options.start_method,
        allowed_failures=options.allowed_failures,
        log_level=options.log_level,
        in_process=not options.processes,
        forward_output=options.forward_output,
        max_in_flight=options.max_in_flight,
        worker_entry=options.worker_entry,
        worker_timeout=options.worker_timeout,
        max_frame_size=options.max_frame_size,
    )


def await_ready(control: Connection, timeout: float) -> Ready:
    """The manager's answer to its start, within ``timeout`` seconds.

    ``WorkerStartError`` if it could not start its workers, ``ClusterBrokenError``
    if it died, answered nothing in time, or answered something else.
    """
    if not control.poll(timeout):
        raise ClusterBrokenError(f"the cluster did not start within {timeout} s")
    try:
        reply = control.recv()
    except EOFError:
        raise ClusterBrokenError("the manager process died while starting") from None
    match reply:
        case C.Ready(address, workers):
            return Ready(address, workers)
        case C.StartFailed(why):
            raise WorkerStartError(f"the cluster could not start: {why}")
        case _:
            raise ClusterBrokenError(f"the manager answered {reply!r} to its start")
