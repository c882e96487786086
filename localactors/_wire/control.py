"""The control pipe: what ``LocalCluster`` and its manager say to each other.

Runs in: the user's process (``LocalCluster``) and the manager.

The pipe is the ``multiprocessing`` pipe the cluster made when it started
the manager; it carries these messages pickled (not framed by ``codec``: the
manager reads it on its own thread, and nothing else travels on it). Every
request carries a ``req_id`` that its answer repeats, so a late answer to a
request that timed out is told apart from the next one's::

    cluster -> manager : StopCluster  ScaleTo  ListWorkers
    manager -> cluster : Ready | StartFailed   (once, at start)
                         Scaled  WorkerList    (answers, by req_id)

Both sides dispatch with ``match`` and ``assert_never`` (:mod:`~localactors._wire.exhaustive`), so a new message
that one side forgets to handle fails the type check.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Union

from .protocol import WorkerInfo

__all__ = [
    "ListWorkers",
    "Ready",
    "ScaleTo",
    "Scaled",
    "StartFailed",
    "StopCluster",
    "ToCluster",
    "ToManager",
    "WorkerList",
]


def _plain_reduce(self: Any) -> tuple[Any, ...]:
    # frozen slotted dataclasses do not unpickle on every supported Python
    return (type(self), tuple(getattr(self, f.name) for f in fields(self)))


# ---------------------------------------------------------------- cluster -> manager


@dataclass(frozen=True, slots=True)
class StopCluster:
    """Stop every worker, then exit (``LocalCluster.close``)."""


@dataclass(frozen=True, slots=True)
class ScaleTo:
    """Grow or shrink to ``n`` workers; answered by :class:`Scaled` once done."""

    req_id: int
    n: int


@dataclass(frozen=True, slots=True)
class ListWorkers:
    """Which workers are live now (``LocalCluster.workers``); answered by :class:`WorkerList`."""

    req_id: int


# ---------------------------------------------------------------- manager -> cluster


@dataclass(frozen=True, slots=True)
class Ready:
    """Every worker asked for has registered: the cluster is up."""

    address: str  #: the manager's socket
    workers: tuple[WorkerInfo, ...]


@dataclass(frozen=True, slots=True)
class StartFailed:
    """The cluster cannot start; the manager exits after saying why."""

    why: str


@dataclass(frozen=True, slots=True)
class Scaled:
    """A :class:`ScaleTo` is done; ``error`` says why not, if workers kept dying while starting."""

    req_id: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class WorkerList:
    req_id: int
    workers: tuple[WorkerInfo, ...]


ToManager = Union[StopCluster, ScaleTo, ListWorkers]
ToCluster = Union[Ready, StartFailed, Scaled, WorkerList]

for _cls in (StopCluster, ScaleTo, ListWorkers, Ready, StartFailed, Scaled, WorkerList):
    _cls.__reduce__ = _plain_reduce  # type: ignore[method-assign,assignment]
