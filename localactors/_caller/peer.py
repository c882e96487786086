"""PeerLink: a caller's path to one worker, its pending requests and flow control.

Runs in: the user's process (inside a client) and in every worker.

Each request (an actor call or a data request) gets an id and waits in
``pending`` for its reply. When the link breaks, everything pending fails with
``ActorLostError`` or ``WorkerLostError``, worded after the manager's notice of
the death when it arrives in time, and later requests fail at once. While many
requests are in flight, small actor calls are deferred to be written many at a
time (the link's :class:`~localactors._caller.outbox.Outbox`).
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from .._base.errors import ActorLostError, ClusterBrokenError, ClusterClosedError, WorkerLostError
from .._base.futures import Completion
from .._wire import codec as W
from .._wire import protocol as P
from .._wire import threads
from .._wire.framing import frame_call
from .._wire.link import Link, LinkClosed
from .outbox import DEFER_AT, MAX_FRAME, Outbox

#: how long a caller whose link to a worker broke (its reader saw EOF, or a send
#: failed) waits for the manager's notice of that worker's death (it carries the
#: exit code or signal, and which actors are being restarted) before failing the
#: calls with what it knows
DEATH_NOTICE_WAIT = 1.0

#: builds a request's message once it has its id
MakeRequest = Callable[[int], P.Message]


class PeerOwner(Protocol):
    """What a peer link asks of the caller side that owns it (a ``Node``)."""

    name: str
    broken: BaseException | None

    def closed_error(self) -> BaseException | None: ...
    def death_notice(self, address: str) -> P.WorkerDied | None: ...
    def await_death_notice(self, address: str, timeout: float) -> None: ...
    def is_restarting(self, key: str) -> bool: ...
    def may_block(self) -> bool: ...
    def relay(self, address: str, frames: list[Any]) -> None: ...


class PendingRequest(NamedTuple):
    """A request sent and awaiting its reply."""

    comp: Completion  # set with the reply
    label: str  # what it is, for error messages: "call Counter.add to actor ..."
    key: str  # the actor's key for an actor call, "" for a data or statistics request


#: ``_pending((comp, label, key))`` is ``PendingRequest(comp, label, key)`` without a Python frame
_pending: Callable[[tuple[Completion, str, str]], PendingRequest] = functools.partial(tuple.__new__, PendingRequest)


class _Unsent(NamedTuple):
    """A request waiting in the backlog for room: it gets its id when sent."""

    make: MakeRequest
    request: PendingRequest


class PeerLink:
    """A caller's path to one worker: requests awaiting replies, and flow control.

    At most ``limit`` requests are in flight. Past that, a caller that may
    block (a plain thread) waits for room; one that must not (an event loop,
    the actor thread, a link's reader thread) leaves its request in
    ``backlog``, which a helper thread sends, in order, as replies make room:
    its future just takes longer, and the loop never stalls.
    """

    def __init__(self, node: PeerOwner, address: str, worker: str, link: Link | None, limit: int) -> None:
        self.node = node
        self.address = address
        self.worker = worker
        self.link = link  # None when relayed through the manager
        self._ids = itertools.count()
        self._lock = threading.Lock()  # taken bare on the hot path (Condition.__enter__ is a Python call)
        self._cond = threading.Condition(self._lock)
        self.pending: dict[int, PendingRequest] = {}  # by request id
        self.lost: BaseException | None = None
        self.limit = max(1, limit)
        self.backlog: deque[_Unsent] = deque()
        self.blocked = 0  # callers waiting for room
        self._flusher: threading.Thread | None = None
        self._flushing = False  # a backlog request has its id but is not sent yet
        #: pipelined calls deferred to be written many at a time (see outbox)
        self.outbox = Outbox(link, f"{node.name}-{worker}") if link is not None else None

    def _lost_error(self, label: str, key: str) -> BaseException:
        closed = self.node.closed_error()
        if closed is not None:
            # the caller (or the cluster's owner) closed it: not a worker's death
            return ClusterClosedError(f"{label} abandoned: {closed}")
        if self.node.broken is not None:
            return ClusterBrokenError(f"{label} abandoned: {self.node.broken}")
        death = self.node.death_notice(self.address)
        if death is not None:
            reason, exitcode = death.reason, death.exitcode
        else:
            reason, exitcode = "closed its connection (no word from the manager on why)", None
        text = f"{label} lost: worker {self.worker} {reason}"
        if key and self.node.is_restarting(key):
            text += "; the actor is being restarted, and later calls reach the new instance"
        cls = ActorLostError if key else WorkerLostError
        return cls(text, self.worker, exitcode)

    def request(
        self, make: MakeRequest, comp: Completion, label: str, key: str = "", block: bool | None = None
    ) -> None:
        """Register ``comp`` under a fresh id and send ``make(id)``, room permitting.

        ``block``: may this thread wait for room (``None``: ask the owner, only when full).
        """
        comp.reply_comes_on(self.link)
        request = PendingRequest(comp, label, key)
        with self._cond:
            while self.lost is None and (len(self.pending) >= self.limit or self.backlog or self._flushing):
                if block is None:  # asked only when full: the common path stays cheap
                    block = self.node.may_block()
                if not block:
                    self.backlog.append(_Unsent(make, request))
                    if self._flusher is None:
                        self._flusher = threading.Thread(
                            target=self._flush, name=f"localactors-flush-{self.node.name}-{self.worker}", daemon=True
                        )
                        threads.start(self._flusher)
                    return
                self.blocked += 1
                try:
                    self._cond.wait()
                finally:
                    self.blocked -= 1
            lost = self.lost is not None
            if not lost:
                req_id = next(self._ids)
                self.pending[req_id] = request
        if lost:
            comp.set_exception(self._lost_error(label, key))
            return
        try:
            self.send(make(req_id))
        except LinkClosed:  # the worker is gone: say how, once the manager has told us
            self.fail_all(DEATH_NOTICE_WAIT)

    def call(self, comp: Completion, key: str, name: str, kind: P.CallKind, payload: Any, label: str) -> None:
        """Send actor call ``name`` to ``key``: :meth:`request`, made lean for the common case
        (a direct link with room), which builds no message object and no closure."""
        link = self.link
        if link is not None:
            comp._link = link.read_point  # comp.reply_comes_on(link), inlined: the waiter reads it there
            with self._lock:
                pending = self.pending
                n = len(pending)
                if self.lost is None and n < self.limit and not self.backlog and not self._flushing:
                    req_id = next(self._ids)
                    defer = n >= DEFER_AT  # many in flight ahead of it: it may go with others
                    pending[req_id] = _pending((comp, f"call {label} to actor {key}", key))
                else:
                    req_id = -1
            if req_id >= 0:
                try:
                    if defer and type(payload) is bytes and len(payload) < MAX_FRAME:
                        outbox: Outbox = self.outbox  # type: ignore[assignment]  # (a direct link has one)
                        comp._link = outbox.read_point
                        outbox.add(frame_call(req_id, key, name, kind, payload))  # (Link.send_call's frame)
                    else:
                        link.send_call(req_id, key, name, kind, payload)
                except LinkClosed:  # the worker is gone: say how, once the manager has told us
                    self.fail_all(DEATH_NOTICE_WAIT)
                return
        self.request(
            lambda call_id: P.ActorCall(call_id, key, name, kind, payload), comp, f"call {label} to actor {key}", key
        )

    def _flush(self) -> None:
        """Send the backlog in order as replies make room; end when it is empty."""
        while True:
            with self._cond:
                while self.lost is None and self.backlog and len(self.pending) >= self.limit:
                    self._cond.wait()
                if self.lost is not None or not self.backlog:
                    self._flusher = None
                    return
                make, request = self.backlog.popleft()
                req_id = next(self._ids)
                self.pending[req_id] = request
                self._flushing = True
            try:
                self.send(make(req_id))
            except LinkClosed:
                self.fail_all(DEATH_NOTICE_WAIT)
            finally:
                with self._cond:
                    self._flushing = False
                    self._cond.notify_all()

    def send(self, msg: P.Message) -> None:
        if self.link is not None:
            self.link.send(msg)
        else:
            self.node.relay(self.address, W.encode(msg))

    def reply(self, req_id: int) -> PendingRequest | None:
        """The request a reply answers, no longer pending (``None``: unknown or failed already)."""
        with self._lock:
            entry = self.pending.pop(req_id, None)
            if self.blocked or self.backlog:
                self._cond.notify_all()
        return entry

    def replies(self, replies: tuple[tuple[int, bytes], ...]) -> list[tuple[PendingRequest, bytes]]:
        """:meth:`reply` for a batch: the requests still pending, each with its payload, in order."""
        with self._lock:
            pop = self.pending.pop
            found = [(request, payload) for req_id, payload in replies if (request := pop(req_id, None)) is not None]
            if self.blocked or self.backlog:
                self._cond.notify_all()
        return found

    def fail_all(self, wait: float = 0.0) -> None:
        """The worker is gone: fail every pending request, refuse new ones.

        With ``wait``, first give the manager's notice of the death up to that
        long to arrive, so the errors can say how the worker died.
        """
        if wait > 0 and self.lost is None and self.node.closed_error() is None:
            self.node.await_death_notice(self.address, wait)
        if self.outbox is not None:
            self.outbox.close()
        with self._cond:
            if self.lost is None:
                self.lost = WorkerLostError(f"worker {self.worker} lost")
            pending, self.pending = self.pending, {}
            backlog, self.backlog = list(self.backlog), deque()
            self._cond.notify_all()
        for comp, label, key in [*pending.values(), *(unsent.request for unsent in backlog)]:
            comp.set_exception(self._lost_error(label, key))
