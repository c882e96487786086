"""``Client``: submit tasks, create actors, gather results.

Runs in: the user's process (and in workers, via ``get_client()``).

``submit`` pickles in the calling thread (so a bad argument fails right
there) and sends one ``SubmitTasks`` to the manager; the manager's
``KeyDone`` marks the key's shared :class:`TaskState`; ``result()`` fetches
the value straight from the worker holding it. The names and shapes follow
``dask.distributed.Client`` so that code moves between the two unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import CancelledError
from typing import Any

from . import _context
from . import _protocol as P
from ._actor import Actor
from ._cluster import LocalCluster
from ._connection import Link, LinkClosed, connect, in_reader_thread
from ._errors import ClusterBrokenError, ClusterClosedError, WorkerLostError, load_exception
from ._futures import CANCELLED, LOST, ActorFuture, Completion, Future, TaskState
from ._node import DEFAULT_MAX_IN_FLIGHT, Node
from ._serialize import SerialContext, dumps, loads

_client_ids = itertools.count()
_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def open_client_names() -> set[str]:
    """Names of clients in this process that are still open."""
    return {c._name for c in list(_live_clients) if c.status == "running"}


def _funcname(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return str(name).replace("<", "").replace(">", "")


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


def _walk(obj: Any, found: list[Any], depth: int = 0) -> None:
    if isinstance(obj, (Future, ActorFuture)):
        found.append(obj)
    elif depth > 100:  # deeper than anyone nests futures: let pickling judge it
        return
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for o in obj:
            _walk(o, found, depth + 1)
    elif isinstance(obj, dict):
        for o in obj.values():
            _walk(o, found, depth + 1)


def _erred(obj: Any) -> bool:
    if isinstance(obj, Future):
        return obj._state.error is not None
    return isinstance(obj, ActorFuture) and obj.error is not None


def _skip_erred(obj: Any, depth: int = 0) -> Any:
    """``obj`` without its futures that failed: dropped from lists, their entries from dicts."""
    if depth > 100 or isinstance(obj, (Future, ActorFuture)):
        return obj
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_skip_erred(o, depth + 1) for o in obj if not _erred(o))
    if isinstance(obj, dict):
        return {k: _skip_erred(v, depth + 1) for k, v in obj.items() if not _erred(v)}
    return obj


def _rebuild(obj: Any, values: dict[str, Any]) -> Any:
    if isinstance(obj, Future):
        return values[obj.key]
    if isinstance(obj, ActorFuture):
        return obj.result()
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_rebuild(o, values) for o in obj)
    if isinstance(obj, dict):
        return {k: _rebuild(v, values) for k, v in obj.items()}
    return obj


class Client:
    """Connects to a :class:`LocalCluster` (starting one if none is given).

    ``Client()`` starts and owns a cluster (keyword arguments go to
    :class:`LocalCluster`); ``Client(cluster)`` connects to one;
    ``Client(asynchronous=True)`` is awaited, or used with ``async with``.

    ``max_in_flight`` (default 10,000) bounds this client's unanswered calls
    per worker: past it, a thread that calls blocks until replies make room,
    and async code gets its futures at once while the requests wait their
    turn, in order, so memory stays bounded without stalling the event loop.
    """

    def __init__(
        self,
        address: LocalCluster | str | None = None,
        *,
        asynchronous: bool = False,
        direct_to_workers: bool = True,
        authkey: bytes | None = None,
        name: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        **cluster_kwargs: Any,
    ) -> None:
        self.asynchronous = asynchronous
        self._direct = direct_to_workers
        # calls this client may have unanswered per worker: past it, a thread
        # calling blocks and async code's futures wait their turn (backpressure)
        self._max_in_flight = max_in_flight
        self._name = name or f"client-{os.getpid()}-{next(_client_ids)}"
        self._address = address
        self._authkey = authkey
        self._cluster_kwargs = cluster_kwargs
        self.cluster: LocalCluster | None = address if isinstance(address, LocalCluster) else None
        self._owns_cluster = False
        self._core: ClientCore | None = None
        self.status = "newly-created"
        if not asynchronous:
            self._start()

    def _start(self) -> None:
        address = self._address
        if address is None:
            self.cluster = LocalCluster(**self._cluster_kwargs)
            self._owns_cluster = True
            address = self.cluster
        if isinstance(address, LocalCluster):
            if address.status == "created":
                address._start()
            authkey, manager = address.authkey, address.manager_address
        else:
            if self._authkey is None:
                raise ValueError("Client(address) needs authkey=")
            authkey, manager = self._authkey, address
        self._core = ClientCore(self, manager, authkey, self._name, self._direct)
        self._core.max_in_flight = self._max_in_flight
        self.status = "running"
        _live_clients.add(self)
        _context.set_default_client(self._core)

    async def _astart(self) -> Client:
        if self._core is None:
            await asyncio.to_thread(self._start)
            assert self._core is not None
            self._core.asynchronous = True
            self._core.loop = asyncio.get_running_loop()
        return self

    def __await__(self) -> Generator[Any, None, Client]:
        return self._astart().__await__()

    def __repr__(self) -> str:
        return f"<Client {self._name} {self.status}>"

    @property
    def core(self) -> ClientCore:
        if self._core is None:
            raise ClusterClosedError("the client is not started (await it first)")
        return self._core

    # -- tasks --------------------------------------------------------------------

    def _spec(
        self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None, pure: bool,
        workers: Any, resources: dict[str, float] | None, allow_other_workers: bool, retries: int,
        actor: bool, max_restarts: int,
    ) -> tuple[P.TaskSpec, SerialContext]:  # fmt: skip
        core = self.core
        ctx = SerialContext(node=core, collect_deps=True)
        payload = dumps((fn, args, kwargs), ctx, what=f"the call of {_funcname(fn)}")
        if key is None:
            if pure and not actor:
                token = hashlib.blake2b(payload, digest_size=16).hexdigest()
            else:
                token = uuid.uuid4().hex
            key = f"{_funcname(fn)}-{token}"
        if isinstance(workers, str):
            workers = (workers,)
        spec = P.TaskSpec(
            key=key,
            payload=payload,
            deps=tuple(ctx.deps),
            workers=tuple(workers or ()),
            resources=tuple(sorted((resources or {}).items())),
            allow_other_workers=allow_other_workers,
            retries=retries,
            actor=actor,
            max_restarts=max_restarts,
        )
        return spec, ctx

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        key: str | None = None,
        pure: bool = True,
        workers: Any = None,
        resources: dict[str, float] | None = None,
        allow_other_workers: bool = False,
        retries: int = 0,
        actor: bool = False,
        actors: bool = False,
        max_restarts: int = 0,
        **kwargs: Any,
    ) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker; with ``actor=True``, create an actor.

        Futures among the arguments (also in lists, tuples and dicts) are
        dependencies: the task runs after them and receives their values.
        """
        pending: list[Any] = []
        _walk((args, kwargs), pending)
        waits = [f for f in pending if isinstance(f, ActorFuture) and not f.done()]
        spec, ctx = self._spec(
            fn, args, kwargs, key, pure, workers, resources, allow_other_workers, retries,
            actor or actors, max_restarts,
        ) if not waits else (None, None)  # fmt: skip
        if spec is None:
            return self._submit_later(
                fn,
                args,
                kwargs,
                waits,
                key,
                workers,
                resources,
                allow_other_workers,
                retries,
                actor or actors,
                max_restarts,
            )
        fut = self.core.future(spec.key)
        self.core.send_pins(ctx)  # type: ignore[arg-type]
        self.core.send(P.SubmitTasks((spec,)))
        return fut

    def _submit_later(
        self, fn: Any, args: Any, kwargs: Any, waits: list[ActorFuture], key: str | None, *rest: Any
    ) -> Future:
        """Some arguments are actor calls still running: send when they finish."""
        key = key or f"{_funcname(fn)}-{uuid.uuid4().hex}"
        fut = self.core.future(key)
        remaining = [len(waits)]
        lock = threading.Lock()

        def go(_: Any) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            try:
                spec, ctx = self._spec(fn, args, kwargs, key, False, *rest)
                self.core.send_pins(ctx)
                self.core.send(P.SubmitTasks((spec,)))
            except BaseException as err:
                fut._state.set_exception(err)

        for w in waits:
            w.add_done_callback(go)
        return fut

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        key: str | list[str] | None = None,
        pure: bool = True,
        workers: Any = None,
        resources: dict[str, float] | None = None,
        allow_other_workers: bool = False,
        retries: int = 0,
        actor: bool = False,
        actors: bool = False,
        **kwargs: Any,
    ) -> list[Future]:
        """``submit`` over zipped iterables, sent to the manager in one message."""
        specs, contexts = [], []
        keys = key if isinstance(key, list) else None
        for i, args in enumerate(zip(*iterables)):
            k = keys[i] if keys is not None else (f"{key}-{i}" if isinstance(key, str) else None)
            spec, ctx = self._spec(
                fn, args, kwargs, k, pure, workers, resources, allow_other_workers, retries, actor or actors, 0
            )
            specs.append(spec)
            contexts.append(ctx)
        # only now, with every argument pickled: a bad one must leave nothing behind
        futures = [self.core.future(spec.key) for spec in specs]
        for ctx in contexts:
            if ctx.pins:
                self.core.refs.pin(ctx.pins)
        if specs:
            self.core.send(P.SubmitTasks(tuple(specs)))
        return futures

    def scatter(self, data: Any, workers: Any = None, hash: bool = True) -> Any:
        """Put local data on workers; returns Futures shaped like ``data``."""
        if isinstance(data, dict):
            items = list(data.items())
        elif isinstance(data, (list, tuple, set)):
            items = list(enumerate(data))
        else:
            items = [(None, data)]
        sent = []
        ctx = SerialContext(node=self.core)
        for _, value in items:
            payload = dumps(value, ctx, what=f"scattered {type(value).__name__}")
            token = hashlib.blake2b(payload, digest_size=16).hexdigest() if hash else uuid.uuid4().hex
            sent.append((f"{type(value).__name__}-{token}", payload))
        # only now, with every value pickled: a bad one must leave nothing behind
        futures = [self.core.future(key) for key, _ in sent]
        if isinstance(workers, str):
            workers = (workers,)
        self.core.send_pins(ctx)  # actor handles among the data stay alive in flight
        self.core.send(P.Scatter(tuple(sent), tuple(workers or ())))
        if isinstance(data, dict):
            result: Any = dict(zip(data, futures))
        elif isinstance(data, (list, tuple, set)):
            result = type(data)(futures) if not isinstance(data, set) else list(futures)
        else:
            result = futures[0]
        if self.asynchronous:
            return _ready(result)
        return result

    def gather(self, futures: Any, errors: str = "raise", timeout: float | None = None) -> Any:
        """Wait for and fetch the values of futures in a nested structure.

        ``errors="raise"`` (the default) raises the first failed future's
        exception; ``errors="skip"`` leaves failed futures out, as dask does:
        dropped from lists, tuples and sets, their entries dropped from dicts
        (a lone failed future gathers to ``None``).
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        found: list[Any] = []
        _walk(futures, found)
        if self.asynchronous and self.core.in_async_context():
            return self._gather_async(futures, found, errors)
        while True:
            for f in found:
                (f._state if isinstance(f, Future) else f)._wait(timeout)
            if errors == "skip":
                if _erred(futures):
                    return None
                futures = _skip_erred(futures)
                found = []
                _walk(futures, found)
            task_futures = [f for f in found if isinstance(f, Future)]
            asked = {f.key: f._state.address for f in task_futures}
            values, requests = self.core.fetch_many(task_futures)
            for _, comp in requests:
                comp._wait(timeout)
            failed = [(fs, comp.error) for fs, comp in requests if comp.error is not None]
            if failed and all(_recomputing(err, fs, asked[fs[0].key]) for fs, err in failed):
                continue  # a holder died; its keys are being computed again
            return _rebuild(futures, self.core.finish_fetch(values, requests))

    async def _gather_async(self, futures: Any, found: list[Any], errors: str = "raise") -> Any:
        for f in found:
            await (f._state if isinstance(f, Future) else f)._await_done()
        if errors == "skip":
            if _erred(futures):
                return None
            futures = _skip_erred(futures)
            found = []
            _walk(futures, found)
        task_futures = [f for f in found if isinstance(f, Future)]
        values, requests = self.core.fetch_many(task_futures)
        for _, comp in requests:
            await comp._await_done()
        return _rebuild(futures, self.core.finish_fetch(values, requests))

    def cancel(self, futures: Any, timeout: float | None = 30.0) -> Any:
        """Cancel futures (nested in lists, tuples, dicts); their dependents too.

        Returns once the manager has cancelled them; awaitable in async code.
        """
        found: list[Any] = []
        _walk(futures, found)
        result = self.core.cancel([f for f in found if isinstance(f, Future)], timeout)
        if self.asynchronous and result is None:
            return _ready(None)
        return result

    # -- cluster ------------------------------------------------------------------------

    def actor_stats(self, timeout: float = 5.0) -> Any:
        """Per-actor statistics from every worker (dask.distributed has none).

        ``{key: {"class", "worker", "calls", "errors", "mean_latency",
        "max_latency", "queued", "running"}}``; latencies in seconds, from a
        call's arrival at the worker to its reply. Awaitable in async code.
        """
        from ._diagnostics import actor_stats

        return actor_stats(self, timeout)

    def scheduler_info(self) -> Any:
        """``{"workers": {name: {...}}}`` with pid, nthreads, resources and memory."""
        if self.asynchronous:
            return self._scheduler_info_async()
        comp = self.core.request(lambda r: P.InfoRequest(r))
        comp._wait(30)
        return self._info(comp.value)

    async def _scheduler_info_async(self) -> dict[str, Any]:
        comp = self.core.request(lambda r: P.InfoRequest(r))
        await comp._await_done()
        return self._info(comp.value)

    def _info(self, reply: P.InfoReply) -> dict[str, Any]:
        workers = {}
        for w in reply.workers:
            workers[w.name] = {
                "name": w.name,
                "address": w.address,
                "pid": w.pid,
                "nthreads": w.nthreads,
                "resources": dict(w.resources),
                "memory_limit": w.memory_limit,
                "memory": _rss(w.pid),
                "metrics": {"memory": _rss(w.pid)},  # where dask.distributed keeps it
            }
        return {"type": "localactors", "address": self.core.address, "workers": workers}

    def close(self, timeout: float = 5.0) -> Any:
        """Close the client (and the cluster it started); idempotent."""
        if self.asynchronous:
            return asyncio.to_thread(self._close, timeout)
        self._close(timeout)
        return None

    def _close(self, timeout: float = 5.0) -> None:
        if self.status == "closed":
            return
        self.status = "closed"
        if self._core is not None:
            self._core.close()
        if self._owns_cluster and self.cluster is not None:
            self.cluster._close(timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    async def __aenter__(self) -> Client:
        return await self._astart()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._close)

    def __del__(self) -> None:
        if getattr(self, "status", "closed") == "running" and self._owns_cluster:
            try:
                self._close(2.0)
            except Exception:
                pass


def _rss(pid: int) -> int:
    """Resident memory of a worker process, in bytes (same machine: ask the OS)."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


async def _ready(value: Any) -> Any:
    return value
