"""``ClientCore``: the machinery under a ``Client``, a :class:`Node`.

Runs in: the user's process (and in workers, under their ``get_client()``).

It holds the manager link and reads it in its reader thread: ``KeyDone``
(``KeysDone`` for many), ``KeyErred``, ``KeyLost`` and ``KeyReset`` update the shared
:class:`TaskState` of each key; replies complete pending requests. Futures
and actor handles point here (a Future knows it as a ``FutureOwner``); it
fetches task values straight from the workers holding them (``fetch.py``),
and decides for them whether a call blocks or returns an awaitable
(:meth:`ClientCore.in_async_context`, the one rule).
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from typing import Any

from .._base.blocking import awaits_here
from .._base.errors import ClusterBrokenError, ClusterClosedError, load_exception, without_our_frames
from .._base.futures import CANCELLED, ERROR, Completion, Future, TaskState
from .._caller.node import Node
from .._wire import protocol as P
from .._wire.connection import Link, LinkClosed, connect, in_reader_thread
from .fetch import fetch_plan, run_awaiting, run_blocking


class ClientCore(Node):
    """The machinery under a :class:`Client`; futures and actors point here."""

    def __init__(self, client: object, address: str, authkey: bytes, name: str, direct: bool) -> None:
        super().__init__(name, authkey, direct)
        self._client_ref = weakref.ref(client)  # the Client facade, not kept alive by its core
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
    def client(self) -> Any:
        """The ``Client`` this core is under (``None`` once it is gone)."""
        return self._client_ref()

    def in_async_context(self) -> bool:
        """Return awaitables here? Yes in this asynchronous client's event loop (the one rule)."""
        return self.asynchronous and awaits_here(self.loop)

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
            case P.KeysDone(worker, address, done):
                self._workers[address] = worker
                get = self.states.get
                for key, _type_name in done:
                    state = get(key)
                    if state is not None:
                        state.address, state.worker, state.actor = address, worker, None
                        state.set_result(None)
            case P.KeyErred(key, error):
                state = self.states.get(key)
                if state is not None:
                    exc = load_exception(error)
                    if isinstance(exc, CancelledError):
                        state.cancel(exc)  # even if it had finished: its data is being released
                    else:
                        state.set_exception(exc, ERROR)
            case P.KeyLost(key, error):
                state = self.states.get(key)
                if state is not None:
                    state.lose(load_exception(error))  # even if it had finished: the data is gone now
            case P.InfoReply(req_id) | P.Ack(req_id) | P.RunReply(req_id) | P.WhoHasReply(req_id):
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
            state.set_exception(err, ERROR)
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

    def fetch(self, fut: Future, timeout: float | None) -> Any:
        """``fut``'s value, blocking up to ``timeout`` seconds (``Future.result()``)."""
        try:
            return run_blocking(self, fetch_plan(self, fut), timeout)
        except BaseException as err:
            raise without_our_frames(err)  # the remote error, not our machinery's frames

    async def afetch(self, fut: Future, timeout: float | None) -> Any:
        """``fut``'s value, awaited (``Future.result()`` and ``await fut`` in async code)."""
        try:
            return await run_awaiting(self, fetch_plan(self, fut), timeout)
        except BaseException as err:
            raise without_our_frames(err)  # the remote error, not our machinery's frames

    def retry(self, futures: Iterable[Future]) -> Any:
        """Run the failed futures' tasks again (``Future.retry``, ``Client.retry``).

        Their states are pending again before the manager hears of it, so
        its next word on the keys is taken. Awaitable in this client's loop.
        """
        keys = []
        for fut in futures:
            if fut.state.status == ERROR:
                fut.state.again()
                keys.append(fut.key)
        if keys:
            self.send(P.Retry(tuple(dict.fromkeys(keys))))
        if self.in_async_context():
            return _done()
        return None

    def cancel(
        self, futures: Iterable[Future], timeout: float | None = 30.0, force: bool = False, reason: str | None = None
    ) -> Any:
        """Cancel the futures' keys for this client (for all, with ``force``); returns once the
        manager has (as dask does). In this client's event loop it returns an awaitable instead.
        """
        futures = list(futures)
        if reason is not None:
            for fut in futures:
                fut.state.cancel(CancelledError(f"{fut.key} was cancelled: {reason}"))
        comp = self.request(lambda r: P.Cancel(tuple(f.key for f in futures), r, force))
        if self.in_async_context():
            return self._acancel(futures, comp, timeout)
        if not in_reader_thread():  # a done-callback must not wait for a reply its own thread reads
            comp.wait_done(timeout)
        _mark_cancelled(futures)
        return None

    async def _acancel(self, futures: list[Future], comp: Completion, timeout: float | None) -> None:
        await comp.await_done(timeout)
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


async def _done() -> None:
    return None


def _mark_cancelled(futures: list[Future]) -> None:
    # the manager's KeyErred came before its Ack; this covers keys it no longer knew
    for fut in futures:
        if fut.state.status != CANCELLED:
            fut.state.cancel(CancelledError(f"{fut.key} was cancelled"))
