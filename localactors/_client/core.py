"""``ClientCore``: the machinery under a ``Client``, a :class:`Node`.

Runs in: the user's process (and in workers, under their ``get_client()``).

It holds the manager link and reads it in its reader thread: ``KeyDone``,
``KeyErred``, ``KeyLost`` and ``KeyReset`` update the shared
:class:`TaskState` of each key; replies complete pending requests. Futures
and actor handles point here, and it fetches task values straight from the
workers holding them, waiting out a recomputation when a holder died.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

from .._base.errors import ClusterBrokenError, ClusterClosedError, WorkerLostError, load_exception
from .._base.futures import CANCELLED, LOST, Completion, Future, TaskState
from .._base.serialize import SerialContext, loads
from .._caller.actor import Actor
from .._caller.node import Node
from .._wire import protocol as P
from .._wire.connection import Link, LinkClosed, connect, in_reader_thread

if TYPE_CHECKING:
    from .client import Client


class ClientCore(Node):
    """The machinery under a :class:`Client`; futures and actors point here."""

    def __init__(self, client: Client, address: str, authkey: bytes, name: str, direct: bool) -> None:
        super().__init__(name, authkey, direct)
        self._client_ref = weakref.ref(client)
        self.address = address
        self.states: weakref.WeakValueDictionary[str, TaskState] = weakref.WeakValueDictionary()
        self._requests: dict[int, Completion] = {}
        self._req_ids = itertools.count()
        self._workers: dict[str, str] = {}  # address -> name
        self.closed = False
        self.broken: BaseException | None = None
        link = connect(address, authkey, f"{name}->manager")
        link.send(P.Hello(name, os.getpid()))
        self.attach_manager(link)
        link.start_reader(self._on_manager_message, self._on_manager_close)

    @property
    def client(self) -> Client | None:
        return self._client_ref()

    def in_async_context(self) -> bool:
        if not self.asynchronous or self.loop is None:
            return False
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def worker_name(self, address: str) -> str:
        return self._workers.get(address) or os.path.basename(address)

    def check(self) -> None:
        if self.closed:
            raise ClusterClosedError("the client is closed")
        if self.broken is not None:
            raise self.broken

    def send(self, msg: P.Message) -> None:
        self.check()
        assert self.manager_link is not None
        try:
            self.manager_link.send(msg)
        except LinkClosed:
            self.check()
            raise ClusterBrokenError("lost the link to the manager") from None

    def relay(self, address: str, frames: list[Any]) -> None:
        self.send(P.RelayTo(address, tuple(bytes(f) for f in frames)))

    # -- manager messages (reader thread) ---------------------------------------

    def _on_manager_message(self, link: Link, msg: P.Message) -> None:
        match msg:
            case P.KeyDone(key, worker, address, _type_name, actor):
                self._workers[address] = worker
                state = self.states.get(key)
                if state is not None:
                    state.address, state.worker, state.actor = address, worker, actor
                    state.set_result(None)
            case P.KeyErred(key, error):
                state = self.states.get(key)
                if state is not None:
                    exc = load_exception(error)
                    if isinstance(exc, CancelledError):
                        state.cancel(exc)  # even if it had finished: its data is being released
                    else:
                        state.set_exception(exc, "error")
            case P.KeyLost(key, error):
                state = self.states.get(key)
                if state is not None and not state.set_exception(load_exception(error), LOST):
                    state.status = LOST  # it had finished: the data is gone now
                    state.error = load_exception(error)
            case P.InfoReply(req_id) | P.Ack(req_id):
                comp = self._requests.pop(req_id, None)
                if comp is not None:
                    comp.set_result(msg)
            case P.RelayFrom(address, frames):
                self.on_relay_from(address, frames)
            case P.Goodbye():
                self.mark_broken(ClusterClosedError("the cluster was closed"))
            case P.KeyReset(key):
                state = self.states.get(key)
                if state is not None:
                    state.reset()  # its data died with a worker and is being recomputed
            case P.WorkerDied() | P.ActorMoved() | P.ActorRestartFailed():
                self.on_notice(msg)
            case _:
                pass

    def _on_manager_close(self, link: Link, error: BaseException | None) -> None:
        if self.broken is None and not self.closed:
            self.mark_broken(ClusterBrokenError("the manager went away"))
        err = self.broken or ClusterClosedError("the client is closed")
        for state in list(self.states.values()):
            state.set_exception(err, "error")
        for comp in list(self._requests.values()):
            comp.set_exception(err)
        self.close_peers()

    def request(self, make: Callable[[int], P.Message]) -> Completion:
        comp = Completion()
        req_id = next(self._req_ids)
        self._requests[req_id] = comp
        self.send(make(req_id))
        return comp

    # -- futures ------------------------------------------------------------------

    def future(self, key: str) -> Future:
        state = self.states.get(key)
        if state is None or state.status == CANCELLED:  # a cancelled key submitted again starts afresh
            state = TaskState()
            self.states[key] = state
        return Future(key, self, state)

    def _value(self, fut: Future, items: dict[str, bytes], missing: tuple[str, ...]) -> Any:
        if fut.key in missing or fut.key not in items:
            raise WorkerLostError(f"the data of {fut.key!r} is gone from worker {fut._state.worker}")
        ctx = SerialContext(node=self)
        try:
            return loads(items[fut.key], ctx, what=f"the result of {fut.key!r}")
        finally:
            self.refs.unpin(ctx.unpins)

    def _actor_of(self, fut: Future) -> Actor | None:
        state = fut._state
        if state.actor is None:
            return None
        assert state.address is not None and state.worker is not None
        return Actor(fut.key, state.address, state.worker, state.actor, self)

    def fetch_one(self, fut: Future, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            actor = self._actor_of(fut)
            if actor is not None:
                return actor
            address = fut._state.address
            assert address is not None
            comp = self.request_data(address, (fut.key,))
            comp._wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if comp.error is not None:
                if not _recomputing(comp.error, [fut], address):
                    raise comp.error
                # the holder died and the manager is computing the key again: wait for it
                fut._state._wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
                if fut._state.error is not None:
                    raise fut._state.error
                continue
            items, missing = comp.value
            return self._value(fut, items, missing)

    async def afetch_one(self, fut: Future) -> Any:
        actor = self._actor_of(fut)
        if actor is not None:
            return actor
        address = fut._state.address
        assert address is not None
        comp = self.request_data(address, (fut.key,))
        await comp._await_done()
        if comp.error is not None:
            if not _recomputing(comp.error, [fut], address):
                raise comp.error
            await fut._state._await_done()  # computed again after its holder died
            if fut._state.error is not None:
                raise fut._state.error
            return await self.afetch_one(fut)
        items, missing = comp.value
        return self._value(fut, items, missing)

    def fetch_many(self, futures: list[Future]) -> tuple[dict[str, Any], list[tuple[list[Future], Completion]]]:
        """Start fetching: actor handles at once, data grouped by worker."""
        values: dict[str, Any] = {}
        by_worker: dict[str, list[Future]] = {}
        for fut in futures:
            if fut.key in values:
                continue
            if fut._state.error is not None:
                raise fut._state.error
            actor = self._actor_of(fut)
            if actor is not None:
                values[fut.key] = actor
            else:
                assert fut._state.address is not None
                by_worker.setdefault(fut._state.address, []).append(fut)
        requests = [
            (fs, self.request_data(address, tuple(dict.fromkeys(f.key for f in fs))))
            for address, fs in by_worker.items()
        ]
        return values, requests

    def finish_fetch(self, values: dict[str, Any], requests: list[tuple[list[Future], Completion]]) -> dict[str, Any]:
        for fs, comp in requests:
            if comp.error is not None:
                raise comp.error
            items, missing = comp.value
            for fut in fs:
                if fut.key not in values:
                    values[fut.key] = self._value(fut, items, missing)
        return values

    def cancel(self, futures: Iterable[Future], timeout: float | None = 30.0) -> Any:
        """Cancel the futures' keys; returns once the manager has (as dask does).

        In this client's event loop it returns an awaitable instead.
        """
        futures = list(futures)
        comp = self.request(lambda r: P.Cancel(tuple(f.key for f in futures), r))
        if self.in_async_context():
            return self._acancel(futures, comp)
        if not in_reader_thread():  # a done-callback must not wait for a reply its own thread reads
            comp._wait(timeout)
        _mark_cancelled(futures)
        return None

    async def _acancel(self, futures: list[Future], comp: Completion) -> None:
        await comp._await_done()
        _mark_cancelled(futures)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        link = self.manager_link
        if link is not None:
            try:
                link.send(P.Goodbye())
            except LinkClosed:
                pass
        self.stop_refs()
        if link is not None:
            link.close()
        self.close_peers()
        if link is not None:
            link.join_reader(2.0)


def _mark_cancelled(futures: list[Future]) -> None:
    # the manager's KeyErred came before its Ack; this covers keys it no longer knew
    for fut in futures:
        if fut._state.status != CANCELLED:
            fut._state.cancel(CancelledError(f"{fut.key} was cancelled"))


#: how long a failed fetch waits for the manager's word on the worker that left
DEATH_NOTICE_GRACE = 5.0


def _recomputing(error: BaseException, futures: list[Future], address: str | None) -> bool:
    """Did a fetch fail because its worker died, with the manager now recomputing?

    The manager's ``KeyReset`` precedes its death notice, and the failed fetch
    waited for that notice, so by now the states say so.
    """
    if not isinstance(error, WorkerLostError):
        return False
    if address is not None and futures:
        # the fetch may have failed before the notice came (a node waits for it only
        # briefly, and the manager may be slow to reap a leaving worker): wait for it
        # here, bounded, as the KeyResets we look for precede it
        futures[0]._core.await_death_notice(address, DEATH_NOTICE_GRACE)
    return any(not f._state.done() or f._state.address != address for f in futures)
