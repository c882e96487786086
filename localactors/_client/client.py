"""``Client``: submit tasks, create actors, gather results.

Runs in: the user's process (and in workers, via ``get_client()``).

``submit`` pickles in the calling thread (so a bad argument fails right
there) and sends one ``SubmitTasks`` to the manager; the manager's
``KeyDone`` marks the key's shared :class:`TaskState`; ``result()`` fetches
the value straight from the worker holding it (``fetch.py``). The names and
shapes follow ``dask.distributed.Client`` so that code moves between the two
unchanged.

Blocking or awaitable: the one rule, as in dask.distributed. A method that
waits returns an awaitable exactly when the object it is called on belongs
to an asynchronous client (``Client(asynchronous=True)``) and it is called
from that client's event-loop thread; everywhere else it blocks: a
synchronous client's, even inside a running loop (as in Jupyter), and an
asynchronous client's called from any other thread. It holds for every
method that waits: ``Client.scatter``, ``gather``, ``cancel``, ``retry``,
``scheduler_info``, ``actor_stats``, ``run``, ``upload_file``, ``restart``,
``wait_for_workers``, ``who_has``, ``has_what``, ``nthreads``, ``sync``,
``shutdown`` and ``close``; ``Future.result``, ``exception``,
``traceback``, ``retry`` and ``cancel``; ``ActorFuture.result`` and ``exception``;
reading an ``Actor``'s attribute; ``wait`` and ``progress`` (decided by
their futures' client). An actor *method* call never waits: it returns an
``ActorFuture`` at once, which async code awaits. ``as_completed`` blocks in
``for`` and awaits in ``async for``. An ``ActorFuture`` belongs to the loop
of the code that made the call; an asynchronous client not awaited yet, to
the loop that runs it; in a worker, the worker's event loop (where async
actor methods run) plays that loop for the handles and calls made there.
One function decides it all: ``_base/blocking.awaits_here``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import os
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError
from typing import Any

from .._base import context as _context
from .._base.blocking import awaits_here
from .._base.completion import Completion
from .._base.config import DEFAULT_MAX_IN_FLIGHT
from .._base.errors import ClusterClosedError, without_our_frames
from .._base.futures import ActorFuture, Future
from .._base.nested import futures_in
from .._base.serialize import SerialContext, dumps
from .._base.timeouts import Timeout, seconds
from .._wire import protocol as P
from . import lifecycle as _lifecycle
from .cluster import LocalCluster
from .core import ClientCore
from .diagnostics import actor_table, collect
from .fetch import gather_plan, run_awaiting, run_blocking
from .info import scheduler_info
from .remote import install_file, run_in_fresh_loop, run_results
from .spec import funcname, make_spec, ship_function

#: how long ``scheduler_info()`` waits for the manager's answer
INFO_TIMEOUT = 30.0
#: how long ``restart()`` waits for the new workers unless told
RESTART_TIMEOUT = 60.0
#: how often ``wait_for_workers()`` asks the manager
WORKER_POLL = 0.05

_client_ids = itertools.count()
_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def open_client_names() -> set[str]:
    """Names of clients in this process that are still open."""
    return {c._name for c in list(_live_clients) if c.status == "running"}


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
        _lifecycle.track_client(self)  # closed at interpreter exit if the user does not
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

    def _repr_html_(self) -> str:
        from .html import client_html

        return client_html(self)

    @property
    def core(self) -> ClientCore:
        if self._core is None:
            raise ClusterClosedError("the client is not started (await it first)")
        return self._core

    def _awaits(self) -> bool:
        """Should a method return an awaitable here? The one rule (module docstring)."""
        core = self._core
        if core is None:  # an asynchronous client not awaited yet belongs to the loop that runs it
            return self.asynchronous and awaits_here(_running_loop())
        return core.in_async_context()

    # -- tasks --------------------------------------------------------------------

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
        waits = [f for f in futures_in((args, kwargs)) if isinstance(f, ActorFuture) and not f.done()]
        spec, ctx = make_spec(
            self.core, fn, args, kwargs, key, pure, workers, resources, allow_other_workers, retries,
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
        if not _cancel_if_input_cancelled(fut, ctx):  # type: ignore[arg-type]
            self.core.send(P.SubmitTasks((spec,)))
        return fut

    def _submit_later(
        self, fn: Any, args: Any, kwargs: Any, waits: list[ActorFuture], key: str | None, *rest: Any
    ) -> Future:
        """Some arguments are actor calls still running: send when they finish."""
        key = key or f"{funcname(fn)}-{uuid.uuid4().hex}"
        fut = self.core.future(key)
        remaining = [len(waits)]
        lock = threading.Lock()

        def go(_: Any) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            try:
                spec, ctx = make_spec(self.core, fn, args, kwargs, key, False, *rest)
                self.core.send_pins(ctx)
                if not _cancel_if_input_cancelled(fut, ctx):
                    self.core.send(P.SubmitTasks((spec,)))
            except BaseException as err:
                fut.state.set_exception(err)

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
        """``submit`` over zipped iterables, sent to the manager in one message.

        Keys as dask names them: ``<function>-<token>``; ``key="INC"`` gives
        ``INC-<token>`` (the token hashes the function and the arguments, so
        two maps under one prefix share only the keys of equal calls);
        ``key=[...]`` gives each key exactly.
        """
        if any(isinstance(it, Iterator) for it in iterables):
            raise TypeError("map() does not take iterators or generators (as in dask): pass a list")
        specs, contexts = [], []
        keys = key if isinstance(key, list) else None
        prefix = key if isinstance(key, str) else None
        shipped = ship_function(self.core, fn)  # a function pickled by value: pickled once
        for i, args in enumerate(zip(*iterables)):
            spec, ctx = make_spec(
                self.core, shipped, args, kwargs, keys[i] if keys is not None else None, pure, workers, resources,
                allow_other_workers, retries, actor or actors, 0, prefix,
            )  # fmt: skip
            specs.append(spec)
            contexts.append(ctx)
        # only now, with every argument pickled: a bad one must leave nothing behind
        futures = [self.core.future(spec.key) for spec in specs]
        for ctx in contexts:
            if ctx.pins:
                self.core.refs.pin(ctx.pins)
        send = [spec for spec, fut, ctx in zip(specs, futures, contexts) if not _cancel_if_input_cancelled(fut, ctx)]
        if send:
            self.core.send(P.SubmitTasks(tuple(send)))
        return futures

    def scatter(
        self,
        data: Any,
        workers: Any = None,
        broadcast: bool | int = False,
        direct: bool | None = None,
        hash: bool = True,
        timeout: Timeout = None,
    ) -> Any:
        """Put local data on workers; returns Futures shaped like ``data``, as dask does.

        By exact type: a ``dict``'s keys become its futures' keys; a ``list``,
        ``tuple``, ``set``, ``frozenset`` or namedtuple gives the same type of
        futures, one per item; a ``range`` a list. Anything else (subclasses
        of those included) is one future, its value keeping its type. An
        iterator is a ``TypeError``. With ``hash=True`` equal values get equal
        keys. ``broadcast=`` and ``direct=`` are accepted for dask's sake: on
        one machine every worker fetches a value from the one worker holding
        it (docs/differences-from-dask.md).
        """
        seconds(timeout)  # checked: it is dask's, and the manager answers at once
        if isinstance(data, range):
            data = list(data)
        if isinstance(data, Iterator):
            raise TypeError("scatter() does not take iterators or generators (as in dask): pass a list")
        kind = type(data)
        is_namedtuple = isinstance(data, tuple) and hasattr(data, "_fields")
        if kind is dict:
            names: list[str | None] = [_scatter_key(k) for k in data]
            values = list(data.values())
        elif kind in (list, tuple, set, frozenset) or is_namedtuple:
            values = list(data)
            names = [None] * len(values)
        else:
            values, names = [data], [None]
        sent = []
        ctx = SerialContext(node=self.core)
        for name, value in zip(names, values):
            payload = dumps(value, ctx, what=f"scattered {type(value).__name__}")
            if name is None:
                token = hashlib.blake2b(payload, digest_size=16).hexdigest() if hash else uuid.uuid4().hex
                name = f"{type(value).__name__}-{token}"
            sent.append((name, payload))
        # only now, with every value pickled: a bad one must leave nothing behind
        futures = [self.core.future(key) for key, _ in sent]
        if isinstance(workers, str):
            workers = (workers,)
        self.core.send_pins(ctx)  # actor handles among the data stay alive in flight
        self.core.send(P.Scatter(tuple(sent), tuple(workers or ())))
        result: Any
        if kind is dict:
            result = dict(zip(data, futures))
        elif is_namedtuple:
            result = kind(*futures)
        elif kind in (list, tuple, set, frozenset):
            result = kind(futures)
        else:
            result = futures[0]
        if self._awaits():
            return _ready(result)
        return result

    def gather(
        self, futures: Any, errors: str = "raise", timeout: Timeout = None, *, direct: bool | None = None
    ) -> Any:
        """Wait for and fetch the values of futures in a nested structure.

        ``errors="raise"`` (the default) raises the first failed future's
        exception; ``errors="skip"`` leaves failed futures out, as dask does:
        dropped from lists, tuples and sets, their entries dropped from dicts
        (a lone failed future gathers to ``None``).
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        if isinstance(futures, Iterator):
            raise TypeError("gather() does not take iterators or generators (as in dask): pass a list")
        plan = gather_plan(self.core, futures, errors)
        if self._awaits():
            return _trimmed(run_awaiting(self.core, plan, seconds(timeout)))
        try:
            return run_blocking(self.core, plan, seconds(timeout))
        except BaseException as err:
            raise without_our_frames(err)  # the remote error, not our machinery's frames

    def cancel(
        self,
        futures: Any,
        asynchronous: bool | None = None,
        force: bool = False,
        reason: str | None = None,
        msg: str | None = None,
        timeout: Timeout = 30.0,
    ) -> Any:
        """Cancel this client's futures (nested in lists, tuples, dicts); their dependents too.

        As in dask, cancelling lets go of *this client's* claim: a key that
        another client holds a future of goes on for that client, unless
        ``force=True``. ``reason`` (or ``msg``) goes into the ``CancelledError``.
        Returns once the manager has done it; awaitable in async code.
        """
        fs = [f for f in futures_in(futures) if isinstance(f, Future)]
        return self.core.cancel(fs, seconds(timeout), force, reason or msg)

    def retry(self, futures: Any, asynchronous: bool | None = None) -> Any:
        """Run failed (or cancelled) futures' tasks again, and the failed tasks they need; awaitable in async code."""
        return self.core.retry([f for f in futures_in(futures) if isinstance(f, Future)])

    # -- cluster ------------------------------------------------------------------------

    def sync(
        self,
        func: Callable[..., Any],
        *args: Any,
        asynchronous: bool | None = None,
        callback_timeout: Timeout = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``func(*args, **kwargs)``; if it gives an awaitable, run it to its end and return its value.

        In this asynchronous client's loop (the one rule) it returns the awaitable
        instead, as dask's does. An asynchronous client's coroutine, called from
        another thread, runs on that client's loop; otherwise on a loop of its own,
        in a helper thread (so it works inside a running loop too, as in Jupyter).
        """
        limit = seconds(callback_timeout)
        if asynchronous or (asynchronous is None and self._awaits()):
            result = func(*args, **kwargs)
            return _awaited(result, limit) if limit is not None else result
        result = func(*args, **kwargs)
        if not inspect.isawaitable(result):
            return result
        core = self._core
        loop = core.loop if core is not None and core.asynchronous else None
        if loop is not None and loop.is_running() and not awaits_here(loop):
            return asyncio.run_coroutine_threadsafe(_awaited(result, limit), loop).result()
        return run_in_fresh_loop(_awaited(result, limit))

    def run(
        self,
        function: Callable[..., Any],
        *args: Any,
        workers: Any = None,
        wait: bool = True,
        nanny: bool = False,
        on_error: str = "raise",
        **kwargs: Any,
    ) -> Any:
        """Run ``function(*args, **kwargs)`` on every worker (or those in ``workers``), now.

        Returns ``{worker address: result}``, as dask's ``run``; it runs beside
        tasks and actors, not in a task slot. A coroutine function runs on the
        worker's event loop; a ``dask_worker`` parameter receives the worker.
        ``on_error``: ``"raise"`` (the first error, with its type), ``"return"``
        (the exception as that worker's result) or ``"ignore"`` (left out).
        ``nanny=True`` is dask's (there are no nannies here): ``ValueError``.
        Awaitable in async code.
        """
        if on_error not in ("raise", "return", "ignore"):
            raise ValueError(f"on_error must be 'raise', 'return' or 'ignore', not {on_error!r}")
        if nanny:
            raise ValueError("run(nanny=True): localactors workers have no nanny process")
        payload = dumps((function, args, kwargs), SerialContext(node=self.core), what=f"run({funcname(function)})")
        if isinstance(workers, str):
            workers = (workers,)
        comp = self.core.request(lambda r: P.RunOnWorkers(r, payload, tuple(workers or ())))
        if not wait:
            return None
        if self._awaits():
            return self._run_async(comp, on_error)
        comp.wait_done(None)
        try:
            return run_results(self.core, comp.outcome(), on_error)
        except BaseException as err:
            raise without_our_frames(err)

    async def _run_async(self, comp: Completion, on_error: str) -> dict[str, Any]:
        await comp.await_done(None)
        try:
            return run_results(self.core, comp.outcome(), on_error)
        except BaseException as err:
            raise without_our_frames(err)

    def restart(self, timeout: Timeout = None, wait_for_workers: bool = True) -> Any:
        """Replace every worker with a new process, as dask's ``restart``: every task and
        its data is forgotten, and every future of every client is cancelled.

        Returns once the new workers are in (``TimeoutError`` after ``timeout``,
        default 60 s). Awaitable in async code.
        """
        limit = seconds(timeout) or RESTART_TIMEOUT
        comp = self.core.request(lambda r: P.Restart(r))
        if self._awaits():
            return self._restart_async(comp, limit)
        comp.wait_done(limit)
        self._forget_all()
        return None

    async def _restart_async(self, comp: Completion, limit: float) -> None:
        await comp.await_done(limit)
        self._forget_all()

    def _forget_all(self) -> None:
        for key, state in list(self.core.states.items()):
            if state.status != "cancelled":
                state.cancel(CancelledError(f"{key} was cancelled: the cluster restarted"))

    def wait_for_workers(self, n_workers: int, timeout: Timeout = None) -> Any:
        """Block until at least ``n_workers`` workers are in; ``TimeoutError`` after ``timeout``.

        ``ValueError`` for ``n_workers < 1``, as dask. Awaitable in async code.
        """
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, not {n_workers!r}")
        limit = seconds(timeout)
        if self._awaits():
            return self._wait_for_workers_async(n_workers, limit)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            comp = self.core.request(lambda r: P.InfoRequest(r))
            comp.wait_done(INFO_TIMEOUT)
            if len(comp.outcome().workers) >= n_workers:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"wait_for_workers: fewer than {n_workers} workers after {timeout}")
            time.sleep(WORKER_POLL)

    async def _wait_for_workers_async(self, n_workers: int, limit: float | None) -> None:
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            comp = self.core.request(lambda r: P.InfoRequest(r))
            await comp.await_done(INFO_TIMEOUT)
            if len(comp.outcome().workers) >= n_workers:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"wait_for_workers: fewer than {n_workers} workers after {limit} s")
            await asyncio.sleep(WORKER_POLL)

    def upload_file(self, filename: str, load: bool = True) -> Any:
        """Copy a ``.py``, ``.zip`` or ``.egg`` file to every worker, importable there.

        A ``.py`` module is imported at once (reloaded if it was imported
        before) unless ``load=False``; an archive goes on ``sys.path``. Workers
        started later (a replacement, ``scale``, ``restart``) do not get it:
        upload again (dask's nanny-side plugin does it for them). Returns
        ``{worker address: None}``; awaitable in async code.
        """
        with open(filename, "rb") as f:
            data = f.read()
        return self.run(install_file, os.path.basename(filename), data, load)

    def who_has(self, futures: Any = None) -> Any:
        """``{key: (worker address, ...)}`` for these futures, or for every key the cluster knows.

        Awaitable in async code.
        """
        keys = () if futures is None else tuple(dict.fromkeys(f.key for f in futures_in(futures)))
        comp = self.core.request(lambda r: P.WhoHas(r, keys))
        if self._awaits():
            return self._who_has_async(comp)
        comp.wait_done(INFO_TIMEOUT)
        return {key: tuple(where) for key, where in comp.outcome().who_has}

    async def _who_has_async(self, comp: Completion) -> dict[str, tuple[str, ...]]:
        await comp.await_done(INFO_TIMEOUT)
        return {key: tuple(where) for key, where in comp.outcome().who_has}

    def nthreads(self, workers: Any = None) -> Any:
        """``{worker address: threads}`` for every worker (or those named in ``workers``); awaitable in async code."""
        comp = self.core.request(lambda r: P.InfoRequest(r))
        if self._awaits():
            return self._nthreads_async(comp, workers)
        comp.wait_done(INFO_TIMEOUT)
        return _nthreads(comp.outcome(), workers)

    async def _nthreads_async(self, comp: Completion, workers: Any) -> dict[str, int]:
        await comp.await_done(INFO_TIMEOUT)
        return _nthreads(comp.outcome(), workers)

    ncores = nthreads  # dask's older name

    def has_what(self, workers: Any = None) -> Any:
        """``{worker address: (key, ...)}``: the keys each worker (or each in ``workers``) holds.

        The other side of :meth:`who_has`. Awaitable in async code.
        """
        if self._awaits():
            return self._has_what_async(workers)
        return _has_what(self.nthreads(workers), self.who_has())

    async def _has_what_async(self, workers: Any) -> dict[str, tuple[str, ...]]:
        return _has_what(await self.nthreads(workers), await self.who_has())

    def shutdown(self) -> Any:
        """Close this client and its cluster, even one it did not start (as dask's)."""
        if self._awaits():
            return asyncio.to_thread(self._shutdown)
        self._shutdown()
        return None

    def _shutdown(self) -> None:
        cluster = self.cluster
        if cluster is None and self._core is not None and not self._core.closed:
            try:
                self._core.send(P.CloseCluster())
            except Exception:
                pass
        self._close()
        if cluster is not None:
            cluster._close(5.0)

    def actor_stats(self, timeout: float = 5.0) -> Any:
        """Per-actor statistics from every worker (dask.distributed has none).

        ``{key: {"class", "worker", "calls", "errors", "mean_latency",
        "max_latency", "queued", "running"}}``; latencies in seconds, from a
        call's arrival at the worker to its reply. Awaitable in async code.
        """
        if self._awaits():
            return self._actor_stats_async(timeout)
        return actor_table(collect(self, timeout))

    async def _actor_stats_async(self, timeout: float) -> dict[str, dict[str, Any]]:
        return actor_table(await asyncio.to_thread(collect, self, timeout))

    def scheduler_info(self) -> Any:
        """``{"workers": {name: {...}}}`` with pid, nthreads, resources and memory."""
        comp = self.core.request(lambda r: P.InfoRequest(r))
        if self._awaits():
            return self._scheduler_info_async(comp)
        comp.wait_done(INFO_TIMEOUT)
        return scheduler_info(self.core.address, comp.outcome())

    async def _scheduler_info_async(self, comp: Completion) -> dict[str, Any]:
        await comp.await_done(INFO_TIMEOUT)
        return scheduler_info(self.core.address, comp.outcome())

    def close(self, timeout: Timeout = 5.0) -> Any:
        """Close the client (and the cluster it started); idempotent."""
        limit = seconds(timeout) or 5.0
        if self._awaits():
            return asyncio.to_thread(self._close, limit)
        self._close(limit)
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


async def _ready(value: Any) -> Any:
    return value


async def _trimmed(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except BaseException as err:
        raise without_our_frames(err)  # the remote error, not our machinery's frames


def _has_what(nthreads: dict[str, int], who_has: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {address: [] for address in nthreads}
    for key, holders in who_has.items():
        for address in holders:
            if address in out:
                out[address].append(key)
    return {address: tuple(keys) for address, keys in out.items()}


def _nthreads(reply: P.InfoReply, workers: Any) -> dict[str, int]:
    if isinstance(workers, str):
        workers = [workers]
    wanted = set(workers or ())
    return {w.address: w.nthreads for w in reply.workers if not wanted or {w.name, w.address} & wanted}


async def _awaited(awaitable: Any, timeout: float | None = None) -> Any:
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(_awaited(awaitable), timeout)
    except asyncio.TimeoutError:  # not the builtin one on 3.10
        raise TimeoutError(f"not done after {timeout} s") from None


def _scatter_key(name: Any) -> str:
    """A scattered dict's key as a task key: a string as it is, anything else as its ``str``."""
    return name if isinstance(name, str) else str(name)


def _cancel_if_input_cancelled(fut: Future, ctx: SerialContext) -> bool:
    """A call with a cancelled future among its arguments is cancelled, not sent (as in dask)."""
    gone = [dep for dep in ctx.deps.values() if isinstance(dep, Future) and dep.cancelled()]
    if not gone:
        return False
    fut.state.cancel(CancelledError(f"{fut.key}: its input {gone[0].key} was cancelled"))
    return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
