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
import itertools
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from .._base import context as _context
from .._base.blocking import awaits_here
from .._base.config import DEFAULT_MAX_IN_FLIGHT
from .._base.errors import ClusterClosedError
from .._base.futures import Future
from .._base.nested import futures_in
from .._base.timeouts import Timeout, seconds
from . import lifecycle as _lifecycle
from . import requests
from .cluster import LocalCluster
from .connect import connect
from .core import ClientCore
from .diagnostics import actor_stats
from .fetch import gather
from .remote import install_file
from .scatter import scatter_plan, send_scatter
from .submit import submit_many, submit_one
from .sync import sync_call

_client_ids = itertools.count()


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
            try:
                self._start()
            except _lifecycle.MainGuardError as err:  # the user's line, then this one: nothing of ours
                raise err.with_traceback(None) from None

    def _start(self) -> None:
        self.cluster, self._owns_cluster, self._core = connect(
            self, self._address, self._authkey, self._name, self._direct, self._max_in_flight, self._cluster_kwargs
        )
        self.status = "running"
        _lifecycle.track_client(self)  # this process's open clients; closed at interpreter exit if the user does not
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
        return submit_one(
            self.core, fn, args, kwargs, key, pure, workers, resources, allow_other_workers, retries,
            actor or actors, max_restarts,
        )  # fmt: skip

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
        calls = list(zip(*iterables))
        if not calls:
            return []  # nothing to send: the client is not even needed (an unstarted one included)
        return submit_many(
            self.core, fn, calls, kwargs, key, pure, workers, resources, allow_other_workers, retries,
            actor or actors,
        )  # fmt: skip

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
        plan = scatter_plan(data)  # a bad shape fails before the client is needed
        return send_scatter(self.core, plan, workers, hash, self._awaits())

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
        return gather(self.core, futures, errors, seconds(timeout), self._awaits())

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
        awaits = bool(asynchronous) if asynchronous is not None else self._awaits()
        return sync_call(self._core, func, args, kwargs, awaits, seconds(callback_timeout))

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
        return requests.run(self.core, function, args, kwargs, workers, wait, on_error, self._awaits())

    def restart(self, timeout: Timeout = None, wait_for_workers: bool = True) -> Any:
        """Replace every worker with a new process, as dask's ``restart``: every task and
        its data is forgotten, and every future of every client is cancelled.

        Returns once the new workers are in (``TimeoutError`` after ``timeout``,
        default 60 s). Awaitable in async code.
        """
        limit = seconds(timeout)
        return requests.restart(self.core, limit, self._awaits())

    def wait_for_workers(self, n_workers: int, timeout: Timeout = None) -> Any:
        """Block until at least ``n_workers`` workers are in; ``TimeoutError`` after ``timeout``.

        ``ValueError`` for ``n_workers < 1``, as dask. Awaitable in async code.
        """
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, not {n_workers!r}")
        limit = seconds(timeout)
        return requests.wait_for_workers(self.core, n_workers, limit, timeout, self._awaits())

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
        return requests.who_has(self.core, futures, self._awaits())

    def nthreads(self, workers: Any = None) -> Any:
        """``{worker address: threads}`` for every worker (or those named in ``workers``); awaitable in async code."""
        return requests.nthreads(self.core, workers, self._awaits())

    ncores = nthreads  # dask's older name

    def has_what(self, workers: Any = None) -> Any:
        """``{worker address: (key, ...)}``: the keys each worker (or each in ``workers``) holds.

        The other side of :meth:`who_has`. Awaitable in async code.
        """
        return requests.has_what(self.core, workers, self._awaits())

    def shutdown(self) -> Any:
        """Close this client and its cluster, even one it did not start (as dask's)."""
        if self._awaits():
            return asyncio.to_thread(self._shutdown)
        self._shutdown()
        return None

    def _shutdown(self) -> None:
        cluster = self.cluster
        if cluster is None and self._core is not None:
            requests.close_cluster(self._core)  # known by its address only: its manager closes it
        self._close()
        if cluster is not None:
            cluster._close(5.0)

    def actor_stats(self, timeout: float = 5.0) -> Any:
        """Per-actor statistics from every worker (dask.distributed has none).

        ``{key: {"class", "worker", "calls", "errors", "mean_latency",
        "max_latency", "queued", "running"}}``; latencies in seconds, from a
        call's arrival at the worker to its reply. Awaitable in async code.
        """
        return actor_stats(self, timeout, self._awaits())

    def scheduler_info(self) -> Any:
        """``{"workers": {name: {...}}}`` with pid, nthreads, resources and memory."""
        return requests.scheduler_info(self.core, self._awaits())

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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
