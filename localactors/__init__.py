"""localactors: stateful actors and tasks on one machine, the dask.distributed way.

Three kinds of process; each arrow names the message (``_wire/protocol.py``) and
the module at each end (``client/core`` is ``localactors/_client/core.py``)::

     user's process                      manager process                     each worker process
    +---------------------+             +---------------------+             +---------------------+
    | LocalCluster        | starts, then| Manager             |    starts   | Worker              |
    |   client/cluster    | ==========> |   manager/manager   | ==========> |   worker/worker     |
    |                     | <==========>|                     |   by entry  |                     |
    |                     | control pipe|                     |  point name |                     |
    |   client/output     | <--Output---|   manager/output    | <--pipes--- |   worker/output     |
    |                     |             |                     |             |                     |
    | Client              | SubmitTasks | Scheduler           |   RunTask   | task pool           |
    |                     | SubmitPlain |   manager/outbox    |   RunTasks  |                     |
    |   client/client     | ----------> |   manager/scheduler | ----------> |   worker/tasks      |
    |   client/core       | <---------- |                     | <---------- |   worker/taskpool   |
    |   base/futures      |   KeyDone   |                     |   TaskDone  |                     |
    |                     |   KeysDone  |                     |  TasksDone  |                     |
    |                     |             |                     |             |                     |
    | refs thread         |   RefDelta  |                     |   RefDelta  | refs thread         |
    |   caller/refs       | ----------> |   manager/refcount  | <---------- |   caller/refs       |
    |   caller/node       | <---------- |   manager/supervise | ----------> |   caller/node       |
    |                     |  WorkerDied |                     |  WorkerDied |                     |
    |                     |  ActorMoved |                     |  ActorMoved |                     |
    |                     |             |   manager/supervise | --Ping----> |   worker/worker     |
    |                     |             |                     | <----Pong-- |   (its manager link)|
    |                     |             +---------------------+             |                     |
    | Future.result()     |                     GetData                     |                     |
    |   client/fetch      |    ----------------------------------------->   |   worker/calls      |
    |   caller/peer       |    <-----------------------------------------   |   (the link's reader|
    |                     |                    DataReply                    |    or the loop)     |
    | Actor proxy         |                    ActorCall                    |                     |
    |   caller/actor      |    ----------------------------------------->   |   worker/calls      |
    |   caller/node,peer  |    <-----------------------------------------   |   worker/           |
    | ActorFuture         |             CallOk, CallOks, CallErr            |     actor_thread    |
    |                     |                                                 |     reply_batch     |
    |   base/futures      |                                                 |                     |
    |   base/completion   |                                                 |                     |
    |   wire/shared_read  |                                                 |                     |
    +---------------------+                                                 +---------------------+

Every arrow but the control pipe is an authenticated AF_UNIX link
(``wire/connection``) carrying framed messages (``wire/link``, ``wire/codec``);
each link has a reader thread in each process. Workers call each other's actors
and fetch each other's data over the same direct links. With
``Client(direct_to_workers=False)`` the direct links run through the manager
(``RelayTo``/``RelayFrom``, ``manager/relay``). The manager keeps the books (who
holds what, who refers to what) and is off the path of every actor call and
every result. Large buffers in an actor call's arguments and result and in a
data reply travel through shared memory (``wire/shm``), the message naming
the segment.

Layers: a subpackage imports only the layers its row names (its own included),
counting imports under ``TYPE_CHECKING`` and inside functions, and no module
imports in a cycle (``tests/test_layers.py`` enforces both)::

    layer      may import                   holds
    _wire      stdlib only                  messages, codec, framed link, authenticated connection
    _base      _wire                        errors, serialization, futures, waiting, context, config, runner
    _caller    _base _wire                  node, peer links, reference tracking, the Actor proxy
    _manager   _base _wire                  the manager process (started by entry-point name)
    _client    _caller _base _wire          the user's process: Client, LocalCluster
    _worker    _client _caller _base _wire  a worker process (it hosts its own client, as in dask)
    _tools     anything                     ``demo``, ``top``; so may __init__, __main__, testing

docs/architecture.md walks one actor call and one task through these modules.
"""

import logging

from ._base.completed import as_completed
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
from ._base.waiting import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, wait
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
