"""localactors: stateful actors and tasks on one machine, the dask.distributed way.

Data flow (``Client`` in the user's process; one manager; N workers)::

      user process                      manager process            worker process(es)
    +-----------------+   SubmitTasks   +-----------------+  RunTask  +---------------------+
    | Client          | --------------> | Scheduler       | --------> | task pool (threads) |
    |  Future  <------|-- KeyDone ------|  tasks, refs,   | <-------- | data {key: value}   |
    |                 |   RefDelta ---> |  placement      | TaskDone  |                     |
    |  Actor proxy    |                 +-----------------+           | actor thread        |
    |   .method() ----|------- ActorCall (direct link) --------------> |  -> sync methods    |
    |  ActorFuture <--|------- CallOk / CallErr ---------------------- |  -> starts async on |
    |  .result() -----|------- GetData / DataReply ------------------> |     the event loop  |
    +-----------------+                                               +---------------------+
                          workers call each other's actors and fetch
                          dependencies over direct worker-worker links

Every link is an authenticated AF_UNIX connection in a private directory.
With ``Client(direct_to_workers=False)`` the direct links run through the
manager instead. The manager keeps the books (who holds what, who refers to
what) and is off the path of every actor call.
"""

import logging

from ._base.context import get_client, get_worker
from ._base.errors import (
    ActorLostError,
    ClusterBrokenError,
    ClusterClosedError,
    KilledWorker,
    LocalActorsError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    WorkerLostError,
    WorkerStartError,
)
from ._base.futures import ActorFuture, Future
from ._base.waiting import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait
from ._caller.actor import Actor
from ._client.client import Client
from ._client.cluster import LocalCluster
from ._client.progress import progress

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Actor",
    "ActorFuture",
    "ActorLostError",
    "Client",
    "ClusterBrokenError",
    "ClusterClosedError",
    "Future",
    "KilledWorker",
    "LocalActorsError",
    "LocalCluster",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "WorkerLostError",
    "WorkerStartError",
    "as_completed",
    "get_client",
    "get_worker",
    "progress",
    "wait",
]

logging.getLogger("localactors").addHandler(logging.NullHandler())
