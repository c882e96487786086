"""What every calling process has: references, and links to workers.

Runs in: the user's process (inside a client) and in every worker.

A *node* (:class:`Node`) is one process's *caller side*, not a machine: its
seat in the cluster as a caller of actors and a holder of handles. A client's
``ClientCore`` is one, and so is each worker's ``WorkerNode``. It keeps

* a :class:`~localactors._caller.refs.RefTracker`: local handle counts per key. The first and last
  handle of a key, and every handle sent or received, become a ``RefDelta``
  to the manager, which frees what nobody holds any more (sent by its
  :class:`~localactors._caller.refs.RefSender`, which runs the refs thread);
* one :class:`~localactors._caller.peer.PeerLink` per worker it talks to: a direct authenticated
  connection (or, with ``direct_to_workers=False``, a path relayed through
  the manager) with the table of calls and data requests awaiting replies.
  When a link breaks, everything pending on it fails with ``ActorLostError``
  or ``WorkerLostError``; later calls to that worker fail at once;
* its :class:`~localactors._caller.notices.Notices`: what the manager said
  about failures (dead workers, restarted actors), and the calls parked while
  an actor restarts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pickle
import threading
from typing import Any, NamedTuple

from .._base.blocking import nested_waiter
from .._base.config import DEFAULT_MAX_IN_FLIGHT
from .._base.errors import ClusterBrokenError, ClusterClosedError, WorkerLostError, load_exception
from .._base.futures import FINISHED, ActorFuture, Completion
from .._base.serialize import SerialContext, loads
from .._wire import codec as W
from .._wire import protocol as P
from .._wire.connection import connect
from .._wire.link import Link
from .._wire.shared_read import in_reader_thread
from .notices import Notices, ParkedCall
from .peer import DEATH_NOTICE_WAIT, PeerLink, PendingRequest
from .refs import RefSender, RefTracker

logger = logging.getLogger("localactors.node")

_GUARD = Completion._lock  # the lock every completion's state changes under


def _finish_all(done: list[tuple[Completion, Any]]) -> None:
    """``comp.set_result(value)`` for each pair, under one hold of the completions' lock.

    ``Completion._finish``, inlined on purpose (the replies of pipelined calls
    arrive dozens to a frame: one lock and no Python frame per reply). As
    there: the state changes under the lock; sleepers wake and callbacks run
    after it, and only then are the kept proxies dropped (dropping the last
    one may release its actor).
    """
    woken: list[tuple[Completion, Any, Any]] = []
    keeps: list[object] = []
    with _GUARD:
        for comp, value in done:
            if comp._done:
                continue
            comp.status, comp.value, comp.error = FINISHED, value, None
            comp._done = True
            if comp._keep is not None:
                keeps.append(comp._keep)
                comp._keep = None
            if comp._waiter is not None or comp._callbacks is not None:
                woken.append((comp, comp._waiter, comp._callbacks))
                comp._callbacks = None
    for comp, waiter, callbacks in woken:
        if waiter is not None:
            waiter.release()  # wakes the first sleeper, which hands it on
        if callbacks is not None:
            for fn in callbacks:
                comp._run_callback(fn)
    del keeps  # (after the callbacks, outside the lock)


class FetchedData(NamedTuple):
    """The value of a ``request_data`` completion: what the worker had, and what it had not."""

    items: dict[str, bytes]  # key -> the pickled value
    missing: tuple[str, ...]


class Node:
    """A process's caller side: reference tracking and links to workers."""

    def __init__(self, name: str, authkey: bytes, direct: bool = True) -> None:
        self.name = name
        self.authkey = authkey
        self.direct = direct
        self.refs = RefTracker()
        self._ref_sender = RefSender(self.refs, name)  # the refs thread, once attach_manager starts it
        self.max_in_flight = DEFAULT_MAX_IN_FLIGHT
        self._peers: dict[str, PeerLink] = {}
        self._peers_lock = threading.Lock()
        self.manager_link: Link | None = None
        self.asynchronous = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the owner's event loop, when it has one
        self.closed = False  # set by the owner's close()
        self.broken: BaseException | None = None  # set when the manager says goodbye or vanishes
        # what the manager told us about failures, and the calls parked while actors restart
        self._notices = Notices(
            lambda address, call: self._send_call(address, call, block=False),
            lambda: self.closed or self.broken is not None,
        )

    # -- to be provided by subclasses ---------------------------------------

    def relay(self, address: str, frames: list[Any]) -> None:
        raise NotImplementedError

    def worker_name(self, address: str) -> str:
        return os.path.basename(address)

    def may_block(self) -> bool:
        """May this thread wait for room on a link?

        Not an event loop, not the actor thread (it must keep serving the
        replies it waits for) and not a link's reader thread.
        """
        if self.in_async_context() or in_reader_thread():
            return False
        return nested_waiter() is None

    def in_async_context(self) -> bool:
        return False

    def closed_error(self) -> BaseException | None:
        """Why this node may no longer call, if it was closed on purpose."""
        if self.closed:
            return ClusterClosedError("the client is closed")
        if isinstance(self.broken, ClusterClosedError):
            return self.broken
        return None

    def mark_broken(self, error: BaseException) -> None:
        """The cluster is gone (or closed by its owner): wake callers waiting for notices."""
        with self._notices.waking():
            if self.broken is None:
                self.broken = error

    # -- failure notices from the manager ----------------------------------------

    def death_notice(self, address: str) -> P.WorkerDied | None:
        return self._notices.death_notice(address)

    def is_restarting(self, key: str) -> bool:
        return self._notices.is_restarting(key)

    def actor_address(self, key: str, address: str) -> str:
        """Where actor ``key`` lives now: ``address``, unless it was restarted elsewhere."""
        return self._notices.actor_address(key, address)

    def await_death_notice(self, address: str, timeout: float) -> None:
        """Wait (bounded) until the manager says why the worker at ``address`` left."""
        self._notices.await_death_notice(address, timeout)

    def on_notice(self, msg: P.WorkerDied | P.ActorMoved | P.ActorRestartFailed) -> None:
        """Handle a failure notice; runs on the manager link's reader thread."""
        self._notices.record(msg)
        if type(msg) is P.WorkerDied:
            peer = self._peers.get(msg.address)
            if peer is not None:
                peer.fail_all()  # do not wait for our own link to notice
                if peer.link is not None:  # a child of the dead worker may hold its end open:
                    peer.link.close()  # only this wakes a caller reading its own reply

    def check(self) -> None:
        """Raise if this node can no longer call out (closed, or cluster gone)."""
        closed = self.closed_error()
        if closed is not None:
            raise closed
        if self.broken is not None:
            raise self.broken

    # -- references ------------------------------------------------------------

    def attach_manager(self, link: Link) -> None:
        self.manager_link = link
        self._ref_sender.attach(link)

    def flush_refs(self) -> None:
        self._ref_sender.flush()

    def stop_refs(self) -> None:
        self._ref_sender.stop()

    def send_pins(self, ctx: SerialContext) -> None:
        """Register handles put in flight, before the message carrying them."""
        if ctx.pins:
            self.refs.pin(ctx.pins)
            self._ref_sender.flush()

    # -- links to workers -----------------------------------------------------

    def peer(self, address: str) -> PeerLink:
        """The path to the worker at ``address``: opened on first use, kept (failed, if it died)."""
        peer = self._peers.get(address)
        if peer is not None:
            return peer
        with self._peers_lock:
            peer = self._peers.get(address)
            if peer is None:
                self.check()  # closed or broken: never open a new link
                peer = self._open_peer(address, self.worker_name(address))
                self._peers[address] = peer
            return peer

    def _open_peer(self, address: str, worker: str) -> PeerLink:
        if self._notices.death_notice(address) is not None:  # known dead: fail at once, do not try
            return self._lost_peer(address, worker, f"worker {worker} is dead")
        if not self.direct:
            return PeerLink(self, address, worker, None, self.max_in_flight)
        try:
            link = connect(address, self.authkey, f"{self.name}->{worker}")
        except OSError:
            return self._lost_peer(address, worker, f"worker {worker} unreachable")
        peer = PeerLink(self, address, worker, link, self.max_in_flight)
        link.send(P.Hello(self.name, os.getpid()))
        # shared: a caller waiting for a reply may read it itself (Link.read_until)
        link.start_reader(
            functools.partial(self._on_peer_message, peer), functools.partial(self._on_peer_close, peer), shared=True
        )
        return peer

    def _lost_peer(self, address: str, worker: str, why: str) -> PeerLink:
        peer = PeerLink(self, address, worker, None, self.max_in_flight)
        peer.lost = WorkerLostError(why)
        return peer

    def _on_peer_close(self, peer: PeerLink, link: Link, error: BaseException | None) -> None:
        peer.fail_all(DEATH_NOTICE_WAIT)

    def _on_peer_message(self, peer: PeerLink, link: Link, msg: P.Message) -> None:
        outbox = peer.outbox
        if outbox is not None and outbox.frames:  # a reply came: deferred requests may go now
            outbox.flush_nowait()
        if type(msg) is P.CallOk:  # the hot path
            request = peer.reply(msg.call_id)
            if request is not None:
                payload = msg.payload
                if type(payload) is bytes and b"\x93" not in payload:
                    # no STACK_GLOBAL opcode: nothing in it can call code, so no handle can be
                    # in it and it needs no context (a plain value: an int, a str, a list...)
                    try:
                        value = pickle.loads(payload)
                    except Exception:
                        self._call_ok(request, payload)  # the same error, raised the usual way
                        return
                    request.comp._finish(FINISHED, value)
                else:
                    self._call_ok(request, payload)
            return
        if type(msg) is P.CallOks:  # the replies of pipelined calls (as above, for each)
            done: list[tuple[Completion, Any]] = []
            for request, payload in peer.replies(msg.replies):
                if type(payload) is bytes and b"\x93" not in payload:
                    try:
                        done.append((request.comp, pickle.loads(payload)))
                        continue
                    except Exception:
                        pass  # the same error, raised the usual way below
                if done:  # (in order)
                    _finish_all(done)
                    done = []
                self._call_ok(request, payload)
            if done:
                _finish_all(done)
            return
        self.handle_peer_message(peer, msg)

    def handle_peer_message(self, peer: PeerLink, msg: P.Message) -> None:
        """A reply from a worker (read by the link's reader, or by a caller waiting on it)."""
        match msg:
            case P.CallOk(call_id, payload):
                request = peer.reply(call_id)
                if request is not None:
                    self._call_ok(request, payload)
            case P.CallOks(replies):
                for request, payload in peer.replies(replies):
                    self._call_ok(request, payload)
            case P.CallErr(call_id, error):
                request = peer.reply(call_id)
                if request is not None:
                    request.comp.set_exception(load_exception(error))
            case P.DataReply(req_id, items, missing, error):
                request = peer.reply(req_id)
                if request is not None:
                    if error:
                        request.comp.set_exception(load_exception(error))
                    else:
                        request.comp.set_result(FetchedData(dict(items), missing))
            case P.StatsReply(req_id):
                request = peer.reply(req_id)
                if request is not None:
                    request.comp.set_result(msg)
            case _:
                logger.warning("%s: unexpected %s from %s", self.name, type(msg).__name__, peer.worker)

    def _call_ok(self, request: PendingRequest, payload: bytes) -> None:
        ctx = SerialContext(node=self)
        try:
            value = loads(payload, ctx, what=f"result of {request.label}")
        except Exception as err:
            request.comp.set_exception(err)
        else:
            request.comp.set_result(value)
        self.refs.unpin(ctx.unpins)

    def close_peers(self) -> None:
        for call in self._notices.abandon_parked():
            error = self.closed_error() or ClusterBrokenError(f"{call.label} abandoned: {self.broken}")
            call.future.set_exception(error)
        with self._peers_lock:
            peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            peer.fail_all()  # first: so its reader, seeing EOF, has no death notice to wait for
            if peer.link is not None:
                peer.link.close()
        for peer in peers:
            if peer.link is not None:
                peer.link.join_reader(1.0)

    # -- operations ----------------------------------------------------------------

    def call_actor(
        self,
        address: str,
        actor_key: str,
        name: str,
        kind: P.CallKind,
        payload: bytes,
        label: str,
        keep: object = None,
    ) -> ActorFuture:
        """Call ``name`` on actor ``actor_key``; ``keep`` is held until the reply (its proxy)."""
        if self.closed or self.broken is not None:
            self.check()  # a closed client must not quietly reconnect to the worker
        # (a node without an event loop, as a plain client's, never returns awaitables)
        fut = ActorFuture(label, self.loop if self.loop is not None and self.in_async_context() else None)
        # the pending call keeps the proxy (so the actor) alive: dropping the last
        # handle right after a fire-and-forget call must not let the release,
        # which goes through the manager, overtake the call (dropped with the reply)
        fut._keep = keep
        if self._notices.active and self._notices.concerns(actor_key):  # restarted, restarting or lost
            self._call_moved_actor(address, ParkedCall(actor_key, name, kind, payload, fut, label))
            return fut
        peer = self._peers.get(address)
        if peer is None:
            peer = self.peer(address)
        peer.call(fut, actor_key, name, kind, payload, label)
        return fut

    def _call_moved_actor(self, address: str, call: ParkedCall) -> None:
        """The rare path: the actor was restarted, or is being (or could not be)."""
        routed = self._notices.route(address, call)
        if routed is not None:  # else parked until the new instance is up, or failed
            self._send_call(routed, call, None)

    def _send_call(self, address: str, call: ParkedCall, block: bool | None) -> None:
        key, name, kind, payload, fut, label = call  # unpacked: the lambda keeps only what it sends
        self.peer(address).request(
            lambda call_id: P.ActorCall(call_id, key, name, kind, payload),
            fut,
            f"call {label} to actor {key}",
            key,
            block,
        )

    def request_data(self, address: str, keys: tuple[str, ...]) -> Completion:
        """Ask the worker at ``address`` for the pickled values of ``keys``: a :class:`FetchedData`."""
        comp = Completion()
        self.peer(address).request(lambda req_id: P.GetData(req_id, keys), comp, f"data of {keys[0]!r}")
        return comp

    def on_relay_from(self, address: str, frames: tuple[bytes, ...]) -> None:
        peer = self._peers.get(address)
        if peer is None:
            return
        if not frames:  # the manager says the worker's path is gone (after its death notice)
            peer.fail_all()
            return
        self.handle_peer_message(peer, W.decode(frames[0], list(frames[1:])))

