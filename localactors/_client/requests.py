"""Requests about the whole cluster: run on every worker, restart, wait for workers, who has what.

Runs in: the user's process (and in workers, under their ``get_client()``).

The work of ``Client.run``, ``restart``, ``wait_for_workers``, ``who_has``,
``has_what``, ``nthreads``, ``scheduler_info`` and (for a client connected by
address) ``shutdown``, as functions of the :class:`ClientCore`: each sends its
request to the manager and reads the answer. Each that waits takes ``awaits``,
the client's answer under the one sync/async rule (stated in ``client.py``):
with it the function returns an awaitable, without it, it blocks. The
``Client`` methods check their arguments, decide ``awaits`` and call these.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any, TypeVar

from .._base.completion import Completion
from .._base.errors import without_our_frames
from .._base.nested import futures_in
from .._base.serialize import SerialContext, dumps
from .._wire import protocol as P
from .core import ClientCore
from .info import scheduler_info as info_dict
from .remote import run_results
from .spec import funcname

T = TypeVar("T")

#: how long ``scheduler_info()`` and the other queries wait for the manager's answer
INFO_TIMEOUT = 30.0
#: how long ``restart()`` waits for the new workers unless told
RESTART_TIMEOUT = 60.0
#: how often ``wait_for_workers()`` asks the manager
WORKER_POLL = 0.05


def answer(comp: Completion, limit: float | None, then: Callable[[Any], T], awaits: bool) -> Any:
    """``then(reply)`` once the manager's reply to ``comp`` is in (up to ``limit`` seconds): awaited or blocking."""
    if awaits:
        return _answer_async(comp, limit, then)
    comp.wait_done(limit)
    return then(comp.outcome())


async def _answer_async(comp: Completion, limit: float | None, then: Callable[[Any], T]) -> T:
    await comp.await_done(limit)
    return then(comp.outcome())


def run(
    core: ClientCore,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workers: Any,
    wait: bool,
    on_error: str,
    awaits: bool,
) -> Any:
    """``Client.run``: ``function(*args, **kwargs)`` on every worker (or those in ``workers``).

    ``{worker address: result}``, errors as ``on_error`` says; ``None`` at once without ``wait``.
    """
    payload = dumps((function, args, kwargs), SerialContext(node=core), what=f"run({funcname(function)})")
    if isinstance(workers, str):
        workers = (workers,)
    comp = core.request(lambda r: P.RunOnWorkers(r, payload, tuple(workers or ())))
    if not wait:
        return None

    def results(reply: P.RunReply) -> dict[str, Any]:
        try:
            return run_results(core, reply, on_error)
        except BaseException as err:
            raise without_our_frames(err)

    return answer(comp, None, results, awaits)


def restart(core: ClientCore, limit: float | None, awaits: bool) -> Any:
    """``Client.restart``: new workers for all; every future of this client is cancelled once they are in."""
    comp = core.request(lambda r: P.Restart(r))
    return answer(comp, limit or RESTART_TIMEOUT, lambda _: _forget_all(core), awaits)


def _forget_all(core: ClientCore) -> None:
    for key, state in list(core.states.items()):
        if state.status != "cancelled":
            state.cancel(CancelledError(f"{key} was cancelled: the cluster restarted"))


def wait_for_workers(core: ClientCore, n_workers: int, limit: float | None, timeout: Any, awaits: bool) -> Any:
    """``Client.wait_for_workers``: asks the manager until ``n_workers`` are in; ``TimeoutError`` after ``limit``.

    ``timeout`` is the limit as the caller gave it, for the blocking error's message.
    """
    if awaits:
        return _wait_for_workers_async(core, n_workers, limit)
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        comp = core.request(lambda r: P.InfoRequest(r))
        comp.wait_done(INFO_TIMEOUT)
        if len(comp.outcome().workers) >= n_workers:
            return None
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"wait_for_workers: fewer than {n_workers} workers after {timeout}")
        time.sleep(WORKER_POLL)


async def _wait_for_workers_async(core: ClientCore, n_workers: int, limit: float | None) -> None:
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        comp = core.request(lambda r: P.InfoRequest(r))
        await comp.await_done(INFO_TIMEOUT)
        if len(comp.outcome().workers) >= n_workers:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"wait_for_workers: fewer than {n_workers} workers after {limit} s")
        await asyncio.sleep(WORKER_POLL)


def who_has(core: ClientCore, futures: Any, awaits: bool) -> Any:
    """``Client.who_has``: ``{key: (worker address, ...)}`` for ``futures``, or every key if ``None``."""
    keys = () if futures is None else tuple(dict.fromkeys(f.key for f in futures_in(futures)))
    comp = core.request(lambda r: P.WhoHas(r, keys))
    return answer(comp, INFO_TIMEOUT, _who_has, awaits)


def _who_has(reply: P.WhoHasReply) -> dict[str, tuple[str, ...]]:
    return {key: tuple(where) for key, where in reply.who_has}


def nthreads(core: ClientCore, workers: Any, awaits: bool) -> Any:
    """``Client.nthreads``: ``{worker address: threads}`` for every worker, or those named in ``workers``."""
    comp = core.request(lambda r: P.InfoRequest(r))
    return answer(comp, INFO_TIMEOUT, lambda reply: _nthreads(reply, workers), awaits)


def _nthreads(reply: P.InfoReply, workers: Any) -> dict[str, int]:
    if isinstance(workers, str):
        workers = [workers]
    wanted = set(workers or ())
    return {w.address: w.nthreads for w in reply.workers if not wanted or {w.name, w.address} & wanted}


def has_what(core: ClientCore, workers: Any, awaits: bool) -> Any:
    """``Client.has_what``: ``{worker address: (key, ...)}``, from :func:`nthreads` and :func:`who_has`."""
    if awaits:
        return _has_what_async(core, workers)
    return _has_what(nthreads(core, workers, False), who_has(core, None, False))


async def _has_what_async(core: ClientCore, workers: Any) -> dict[str, tuple[str, ...]]:
    return _has_what(await nthreads(core, workers, True), await who_has(core, None, True))


def _has_what(nthreads: dict[str, int], who_has: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {address: [] for address in nthreads}
    for key, holders in who_has.items():
        for address in holders:
            if address in out:
                out[address].append(key)
    return {address: tuple(keys) for address, keys in out.items()}


def close_cluster(core: ClientCore) -> None:
    """``Client.shutdown`` of a client connected by address: ask the manager to close the cluster."""
    if core.closed:
        return
    try:
        core.send(P.CloseCluster())
    except Exception:
        pass  # gone already: nothing left to close


def scheduler_info(core: ClientCore, awaits: bool) -> Any:
    """``Client.scheduler_info``: ``{"workers": {name: {...}}}``, from the manager's ``InfoReply``."""
    comp = core.request(lambda r: P.InfoRequest(r))
    return answer(comp, INFO_TIMEOUT, lambda reply: info_dict(core.address, reply), awaits)
