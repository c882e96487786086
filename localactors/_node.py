"""What every calling process has: references, and links to workers.

Runs in: the user's process (inside a client) and in every worker.

A *node* is one process's seat in the cluster as a caller. It keeps

* a :class:`RefTracker`: local handle counts per key. The first and last
  handle of a key, and every handle sent or received, become a ``RefDelta``
  to the manager, which frees what nobody holds any more;
* one :class:`PeerLink` per worker it talks to: a direct authenticated
  connection (or, with ``direct_to_workers=False``, a path relayed through
  the manager) with the table of calls and data requests awaiting replies.
  When a link breaks, everything pending on it fails with ``ActorLostError``
  or ``WorkerLostError``; later calls to that worker fail at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from queue import SimpleQueue
from typing import Any

from . import _protocol as P
from ._connection import Link, LinkClosed, connect
from ._errors import ActorLostError, WorkerLostError, load_exception
from ._futures import ActorFuture, Completion
from ._serialize import SerialContext, loads

logger = logging.getLogger("localactors.node")

#: calls a caller may have in flight to one worker before it blocks
DEFAULT_MAX_IN_FLIGHT = 10_000


class RefTracker:
    """Counts local handles per key; produces ordered ``RefDelta`` messages.

    ``incref``/``decref``/``unpin`` only append to a queue (safe from
    ``__del__`` in any thread); ``drain`` runs under the manager link's send
    lock, so changes reach the manager in the order they happened.
    """

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[int, str, str]] = SimpleQueue()
        self._counts: dict[str, int] = {}
        self.wake: SimpleQueue[None] = SimpleQueue()
        self.closed = False

    def incref(self, key: str) -> None:
        self._queue.put((0, key, ""))
        self.wake.put(None)

    def decref(self, key: str) -> None:
        if not self.closed:
            self._queue.put((1, key, ""))
            self.wake.put(None)

    def pin(self, pins: list[tuple[str, str]]) -> None:
        for token, key in pins:
            self._queue.put((2, key, token))

    def unpin(self, tokens: list[str]) -> None:
        for token in tokens:
            self._queue.put((3, "", token))
        if tokens:
            self.wake.put(None)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def drain(self) -> P.RefDelta | None:
        changes: list[tuple[str, int]] = []
        pins: list[tuple[str, str]] = []
        unpins: list[str] = []
        counts = self._counts
        while not self._queue.empty():
            kind, key, token = self._queue.get_nowait()
            if kind == 0:
                n = counts.get(key, 0) + 1
                counts[key] = n
                if n == 1:
                    changes.append((key, 1))
            elif kind == 1:
                n = counts.get(key, 0) - 1
                if n <= 0:
                    counts.pop(key, None)
                    changes.append((key, -1))
                else:
                    counts[key] = n
            elif kind == 2:
                pins.append((token, key))
            else:
                unpins.append(token)
        if changes or pins or unpins:
            return P.RefDelta(tuple(changes), tuple(pins), tuple(unpins))
        return None


class PeerLink:
    """A caller's path to one worker, with its calls awaiting replies."""

    def __init__(self, node: Node, address: str, worker: str, link: Link | None) -> None:
        self.node = node
        self.address = address
        self.worker = worker
        self.link = link  # None when relayed through the manager
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.pending: dict[int, tuple[Completion, str]] = {}
        self.lost: BaseException | None = None
        self._slots = threading.BoundedSemaphore(node.max_in_flight)

    def _lost_error(self, what: str) -> BaseException:
        reason = self.node.worker_death_reason(self.worker)
        cls = ActorLostError if what.startswith("actor") else WorkerLostError
        return cls(f"{what} lost: worker {self.worker} ({self.address}) {reason}", self.worker, None)

    def request(self, make: Any, comp: Completion, label: str) -> None:
        """Register ``comp`` under a fresh id and send ``make(id)``."""
        self._slots.acquire()
        with self._lock:
            if self.lost is not None:
                self._slots.release()
                comp.set_exception(self._lost_error(label))
                return
            req_id = next(self._ids)
            self.pending[req_id] = (comp, label)
        try:
            self.send(make(req_id))
        except LinkClosed:
            self.fail_all()

    def send(self, msg: P.Message) -> None:
        if self.link is not None:
            self.link.send(msg)
        else:
            self.node.relay(self.address, P.encode(msg))

    def reply(self, req_id: int) -> tuple[Completion, str] | None:
        with self._lock:
            entry = self.pending.pop(req_id, None)
        if entry is not None:
            self._slots.release()
        return entry

    def fail_all(self) -> None:
        """The worker is gone: fail every pending request, refuse new ones."""
        with self._lock:
            if self.lost is None:
                self.lost = WorkerLostError(f"worker {self.worker} lost")
            pending, self.pending = self.pending, {}
        for comp, label in pending.values():
            self._slots.release()
            comp.set_exception(self._lost_error(label))


class Node:
    """A process's caller side: reference tracking and links to workers."""

    def __init__(self, name: str, authkey: bytes, direct: bool = True) -> None:
        self.name = name
        self.authkey = authkey
        self.direct = direct
        self.refs = RefTracker()
        self.max_in_flight = DEFAULT_MAX_IN_FLIGHT
        self._peers: dict[str, PeerLink] = {}
        self._peers_lock = threading.Lock()
        self.manager_link: Link | None = None
        self.asynchronous = False
        self.loop: Any = None
        self._dead_workers: dict[str, str] = {}

    # -- to be provided by subclasses ---------------------------------------

    def relay(self, address: str, frames: list[Any]) -> None:
        raise NotImplementedError

    def worker_name(self, address: str) -> str:
        return os.path.basename(address)

    def worker_death_reason(self, worker: str) -> str:
        return self._dead_workers.get(worker, "died or closed the connection")

    def in_async_context(self) -> bool:
        return False

    # -- references ------------------------------------------------------------

    def attach_manager(self, link: Link) -> None:
        self.manager_link = link
        link.before_send = self._flush_refs_locked
        threading.Thread(target=self._ref_loop, name=f"localactors-refs-{self.name}", daemon=True).start()

    def _flush_refs_locked(self) -> None:
        delta = self.refs.drain()
        if delta is not None and self.manager_link is not None:
            self.manager_link.send_unlocked(delta)

    def flush_refs(self) -> None:
        link = self.manager_link
        if link is None:
            return
        with link.send_lock:
            try:
                self._flush_refs_locked()
            except LinkClosed:
                pass

    def _ref_loop(self) -> None:
        while True:
            self.refs.wake.get()
            if self.refs.closed:
                return
            self.flush_refs()

    def stop_refs(self) -> None:
        self.refs.closed = True
        self.refs.wake.put(None)

    def send_pins(self, ctx: SerialContext) -> None:
        """Register handles put in flight, before the message carrying them."""
        if ctx.pins:
            self.refs.pin(ctx.pins)
            self.flush_refs()

    # -- links to workers -----------------------------------------------------

    def peer(self, address: str) -> PeerLink:
        peer = self._peers.get(address)
        if peer is not None:
            return peer
        with self._peers_lock:
            peer = self._peers.get(address)
            if peer is None:
                worker = self.worker_name(address)
                if self.direct:
                    try:
                        link = connect(address, self.authkey, f"{self.name}->{worker}")
                    except OSError:
                        peer = PeerLink(self, address, worker, None)
                        peer.lost = WorkerLostError(f"worker {worker} unreachable")
                        self._peers[address] = peer
                        return peer
                    peer = PeerLink(self, address, worker, link)
                    link.peer = peer
                    link.send(P.Hello(self.name, os.getpid()))
                    link.start_reader(self._on_peer_message, self._on_peer_close)
                else:
                    peer = PeerLink(self, address, worker, None)
                self._peers[address] = peer
            return peer

    def _on_peer_close(self, link: Link, error: BaseException | None) -> None:
        peer: PeerLink = link.peer
        peer.fail_all()

    def _on_peer_message(self, link: Link, msg: P.Message) -> None:
        self.handle_peer_message(link.peer, msg)

    def handle_peer_message(self, peer: PeerLink, msg: P.Message) -> None:
        match msg:
            case P.CallOk(call_id, payload):
                entry = peer.reply(call_id)
                if entry is not None:
                    comp, label = entry
                    ctx = SerialContext(node=self)
                    try:
                        value = loads(payload, ctx, what=f"result of {label}")
                    except Exception as err:
                        comp.set_exception(err)
                    else:
                        comp.set_result(value)
                    self.refs.unpin(ctx.unpins)
            case P.CallErr(call_id, error):
                entry = peer.reply(call_id)
                if entry is not None:
                    entry[0].set_exception(load_exception(error))
            case P.DataReply(req_id, items, missing, error):
                entry = peer.reply(req_id)
                if entry is not None:
                    if error:
                        entry[0].set_exception(load_exception(error))
                    else:
                        entry[0].set_result((dict(items), missing))
            case _:
                logger.warning("%s: unexpected %s from %s", self.name, type(msg).__name__, peer.worker)

    def close_peers(self) -> None:
        with self._peers_lock:
            peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            if peer.link is not None:
                peer.link.close()
            peer.fail_all()
        for peer in peers:
            if peer.link is not None:
                peer.link.join_reader(1.0)

    # -- operations ----------------------------------------------------------------

    def call_actor(
        self, address: str, actor_key: str, name: str, kind: P.CallKind, payload: bytes, label: str
    ) -> ActorFuture:
        fut = ActorFuture(label)
        self.peer(address).request(
            lambda call_id: P.ActorCall(call_id, actor_key, name, kind, payload), fut, f"actor {label}"
        )
        return fut

    def request_data(self, address: str, keys: tuple[str, ...]) -> Completion:
        comp = Completion()
        self.peer(address).request(lambda req_id: P.GetData(req_id, keys), comp, f"data of {keys[0]!r}")
        return comp

    def on_relay_from(self, address: str, frames: tuple[bytes, ...]) -> None:
        peer = self._peers.get(address)
        if peer is None:
            return
        if not frames:  # the manager says the worker's path is gone
            peer.fail_all()
            return
        self.handle_peer_message(peer, P.decode(frames[0], list(frames[1:])))
