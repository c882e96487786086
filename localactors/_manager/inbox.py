"""What the manager's main thread is told: the records on its one inbox.

Runs in: the manager process (put by reader, reaper and control
threads; taken by the main thread, which handles them one at a time).

Every record is a small frozen dataclass, and the manager dispatches them with
``match`` and ``assert_never``: a new kind of record it forgets to handle fails
the type check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from .._wire import protocol as P
from .._wire.control import ToManager
from .._wire.link import Link


@dataclass(frozen=True, slots=True)
class Received:
    """A message arrived on a link (a client's, a worker's, a cluster's output link)."""

    link: Link
    msg: P.Message


@dataclass(frozen=True, slots=True)
class LinkDropped:
    """A link closed (its peer went away, or its framing was garbled)."""

    link: Link
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class Reaped:
    """A dropped worker's process has ended (or its reaper ran out of time)."""

    link: Link


@dataclass(frozen=True, slots=True)
class RelayGone:
    """A relay link to the worker at ``address`` closed; tell ``client`` once it may know why."""

    client: Link
    address: str


@dataclass(frozen=True, slots=True)
class Order:
    """The cluster asked something on the control pipe."""

    order: ToManager


@dataclass(frozen=True, slots=True)
class ParentGone:
    """The cluster's process is gone (its control pipe closed, or we were reparented)."""


InboxItem = Union[Received, LinkDropped, Reaped, RelayGone, Order, ParentGone]

#: how a collaborator puts a record on the manager's inbox (from any thread)
Post = Callable[[InboxItem], None]
