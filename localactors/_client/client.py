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
method that waits: ``Client.scatter``, ``gather``, ``cancel``,
``scheduler_info``, ``actor_stats`` and ``close``; ``Future.result``,
``exception`` and ``cancel``; ``ActorFuture.result`` and ``exception``;
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
import itertools
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Generator, Iterable
from typing import Any

from .._base import context as _context
from .._base.blocking import awaits_here
from .._base.completion import Completion
from .._base.config import DEFAULT_MAX_IN_FLIGHT
from .._base.errors import ClusterClosedError
from .._base.futures import ActorFuture, Future
from .._base.nested import futures_in
from .._base.serialize import SerialContext, dumps
from .._wire import protocol as P
from . import lifecycle as _lifecycle
from .cluster import LocalCluster
from .core import ClientCore
from .diagnostics import actor_table, collect
from .fetch import gather_plan, run_awaiting, run_blocking
from .info import scheduler_info
from .spec import funcname, make_spec, ship_function

#: how long ``scheduler_info()`` waits for the manager's answer
INFO_TIMEOUT = 30.0

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
        """``submit`` over zipped iterables, sent to the manager in one message."""
        specs, contexts = [], []
        keys = key if isinstance(key, list) else None
        shipped = ship_function(self.core, fn)  # a function pickled by value: pickled once
        for i, args in enumerate(zip(*iterables)):
            k = keys[i] if keys is not None else (f"{key}-{i}" if isinstance(key, str) else None)
            spec, ctx = make_spec(
                self.core, shipped, args, kwargs, k, pure, workers, resources, allow_other_workers, retries,
                actor or actors, 0,
            )  # fmt: skip
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
        if self._awaits():
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
        plan = gather_plan(self.core, futures, errors)
        if self._awaits():
            return run_awaiting(self.core, plan, timeout)
        return run_blocking(self.core, plan, timeout)

    def cancel(self, futures: Any, timeout: float | None = 30.0) -> Any:
        """Cancel futures (nested in lists, tuples, dicts); their dependents too.

        Returns once the manager has cancelled them; awaitable in async code.
        """
        return self.core.cancel([f for f in futures_in(futures) if isinstance(f, Future)], timeout)

    # -- cluster ------------------------------------------------------------------------

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

    def close(self, timeout: float = 5.0) -> Any:
        """Close the client (and the cluster it started); idempotent."""
        if self._awaits():
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


async def _ready(value: Any) -> Any:
    return value


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
