"""Notices: what a node has heard from the manager about failures, and the calls it parks.

Runs in: the user's process (inside a client) and in every worker (``record``
on the manager link's reader thread; the questions on any thread).

The manager tells every node when a worker dies (``WorkerDied``: why, and which
of its actors it restarts), when a restarted actor is up again elsewhere
(``ActorMoved``) and when it could not be restarted (``ActorRestartFailed``).
A :class:`Notices` keeps those books, answers from them (is this worker dead,
and why; is this actor restarting; where does it live now) and holds each call
made to a restarting actor (a :class:`ParkedCall`) until its new instance is
up, to send them there in order, or fails them if it never comes back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from .._base.errors import ActorLostError, load_exception
from .._base.futures import ActorFuture
from .._wire import protocol as P
from .._wire.exhaustive import assert_never


class ParkedCall(NamedTuple):
    """An actor call, kept while its actor restarts: sent, in order, once it is back."""

    key: str  # the actor's key
    name: str  # the method or attribute
    kind: P.CallKind
    payload: bytes  # the pickled arguments
    future: ActorFuture  # the caller's future, set by the reply
    label: str  # "Counter.add", for error messages


class Notices:
    """A node's book of failure notices and of the calls parked while actors restart.

    ``resend(address, call)`` sends a parked call to its actor's new instance
    (without blocking: it runs on the manager link's reader); ``gone()`` says
    the node will hear no more (closed, or the cluster broken): waiting for a
    notice then ends.
    """

    def __init__(self, resend: Callable[[str, ParkedCall], None], gone: Callable[[], bool]) -> None:
        self._resend = resend
        self._gone = gone
        self._cond = threading.Condition()  # guards the books below; notified on each notice
        self._dead_workers: dict[str, P.WorkerDied] = {}  # address -> notice
        self._restarting: dict[str, list[ParkedCall]] = {}  # actor key -> calls parked until it is back
        self._moved: dict[str, str] = {}  # actor key -> address of its restarted instance
        self._failed_restarts: dict[str, bytes] = {}  # actor key -> why it could not be restarted
        #: has any actor been restarted (or is being, or was lost)? Until then no call
        #: needs ``concerns``/``route`` (read without the lock, by the hot path)
        self.active = False

    # -- questions -------------------------------------------------------------

    def death_notice(self, address: str) -> P.WorkerDied | None:
        return self._dead_workers.get(address)

    def is_restarting(self, key: str) -> bool:
        return key in self._restarting

    def actor_address(self, key: str, address: str) -> str:
        """Where actor ``key`` lives now: ``address``, unless it was restarted elsewhere."""
        return self._moved.get(key, address)

    def concerns(self, key: str) -> bool:
        """Must a call to actor ``key`` be routed by :meth:`route` (restarted, restarting or lost)?"""
        return key in self._restarting or key in self._moved or key in self._failed_restarts

    def await_death_notice(self, address: str, timeout: float) -> None:
        """Wait (bounded) until the manager says why the worker at ``address`` left."""
        with self._cond:
            self._cond.wait_for(lambda: address in self._dead_workers or self._gone(), timeout)

    @contextmanager
    def waking(self) -> Iterator[None]:
        """Change what ``gone()`` says inside this block: wakes every thread awaiting a notice."""
        with self._cond:
            yield
            self._cond.notify_all()

    # -- notices -----------------------------------------------------------------

    def record(self, msg: P.WorkerDied | P.ActorMoved | P.ActorRestartFailed) -> None:
        """Book a failure notice; send or fail the calls it releases."""
        match msg:
            case P.WorkerDied(_name, address):
                with self._cond:
                    self._dead_workers[address] = msg
                    for key in msg.restarting:
                        self._restarting.setdefault(key, [])
                        self.active = True
                    self._cond.notify_all()
            case P.ActorMoved(key, _worker, address):
                with self._cond:
                    self._moved[key] = address
                    self.active = True
                    self._failed_restarts.pop(key, None)
                    # sent under the lock: a call made meanwhile queues behind these
                    for call in self._restarting.pop(key, []):
                        try:
                            self._resend(address, call)
                        except Exception as err:  # e.g. closed meanwhile
                            call.future.set_exception(err)
            case P.ActorRestartFailed(key, error):
                with self._cond:
                    self._failed_restarts[key] = error
                    self.active = True
                    parked = self._restarting.pop(key, [])
                for call in parked:
                    call.future.set_exception(restart_error(key, error))
            case _:
                assert_never(msg)

    # -- calls to restarted actors ---------------------------------------------------

    def route(self, address: str, call: ParkedCall) -> str | None:
        """Where to send ``call`` to an actor that was restarted, or is being (the rare path).

        ``None`` when it is taken care of: parked until the new instance is up
        (then sent, in order), or failed because the actor could not be restarted.
        """
        key = call.key
        with self._cond:
            parked = self._restarting.get(key)
            if parked is not None:
                parked.append(call)  # sent, in order, when the new instance is up
                return None
            error = self._failed_restarts.get(key)
            address = self._moved.get(key, address)
        if error is not None:
            call.future.set_exception(restart_error(key, error))
            return None
        return address

    def abandon_parked(self) -> list[ParkedCall]:
        """Take every parked call (the node is closing: the caller fails them)."""
        with self._cond:
            parked = [call for calls in self._restarting.values() for call in calls]
            self._restarting.clear()
        return parked


def restart_error(key: str, error: bytes) -> ActorLostError:
    """The error of a call to actor ``key``, which could not be restarted (``error``: why)."""
    cause = load_exception(error)
    err = ActorLostError(f"actor {key} was lost and could not be restarted: {type(cause).__name__}: {cause}")
    err.__cause__ = cause
    return err
