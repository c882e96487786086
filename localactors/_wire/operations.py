"""The protocol's messages for diagnostics and cluster operations.

Runs in: every process.

Output forwarding, statistics, ``Client.run``, ``who_has``, ``retry``,
``restart`` and closing the cluster: messages off the path of calls and
tasks. :mod:`~localactors._wire.protocol` names them beside the others (its
"who sends what" table, and ``Message``); code reads them as ``P.<name>``
as it does every message.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import ActorStat, WorkerStat

# ---------------------------------------------------------------- diagnostics


@dataclass(frozen=True, slots=True)
class WatchOutput:
    """A cluster asks its manager for the workers' stdout and stderr (``Output``)."""


@dataclass(frozen=True, slots=True)
class Output:
    """Text a worker process wrote to its stdout (``stream`` 1) or stderr (2)."""

    worker: str
    pid: int
    stream: int
    text: str  #: whole lines, each ending in a newline


@dataclass(frozen=True, slots=True)
class StatsRequest:
    req_id: int


@dataclass(frozen=True, slots=True)
class StatsReply:
    req_id: int
    worker: WorkerStat
    actors: tuple[ActorStat, ...]


# ---------------------------------------------------------------- Client.run, who_has, retry, restart


@dataclass(frozen=True, slots=True)
class RunOnWorkers:
    """client -> manager: run pickled ``(fn, args, kwargs)`` on ``workers`` (names or addresses; all if empty).

    The manager answers ``RunReply`` once every one of them has answered (or died).
    """

    req_id: int
    payload: bytes
    workers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunFunction:
    """manager -> worker: run pickled ``(fn, args, kwargs)`` now, beside tasks and actors; answer ``RunResult``."""

    run_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class RunResult:
    """worker -> manager: ``payload`` is the pickled result if ``ok``, else from ``dump_exception``."""

    run_id: int
    ok: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class RunReply:
    """manager -> client: ``(worker address, ok, payload)`` per worker, as ``RunResult``."""

    req_id: int
    results: tuple[tuple[str, bool, bytes], ...]


@dataclass(frozen=True, slots=True)
class WhoHas:
    """client -> manager: where are these keys' values (every key held, if ``keys`` is empty)?"""

    req_id: int
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WhoHasReply:
    """manager -> client: ``(key, worker addresses)`` for each key asked about."""

    req_id: int
    who_has: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Retry:
    """client -> manager: run these failed or cancelled keys again (and the failed keys they need)."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Restart:
    """client -> manager: cancel every key, replace every worker; ``Ack`` once the new ones are in."""

    req_id: int


@dataclass(frozen=True, slots=True)
class CloseCluster:
    """A client asks the manager to stop the cluster (``Client.shutdown``, as dask's)."""
