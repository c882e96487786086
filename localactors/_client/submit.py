"""Sending tasks: one (``Client.submit``), many in one message (``Client.map``), or one later.

Runs in: the user's process (and in workers, under their ``get_client()``).

Every call is pickled into a ``TaskSpec`` (``spec.py``) in the calling thread,
so a bad argument fails right there and leaves nothing behind; only then are
the futures made and one ``SubmitTasks`` sent. A ``map`` whose calls are all
plain (nothing in them can fail to pickle) is sent in chunks instead, each as
soon as it is pickled. A call with actor calls still
running among its arguments is sent once they have finished; a call with a
cancelled future among them is cancelled, not sent (as in dask).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

from .._base.futures import ActorFuture, Future
from .._base.nested import futures_in
from .._base.serialize import SerialContext, plain_values
from .._wire import protocol as P
from .._wire.protocol import OUT_OF_BAND
from .core import ClientCore
from .spec import SpecMaker, funcname, make_spec, ship_function

#: a map of plain calls is sent in messages of this many tasks, each as soon as it is pickled
MAP_CHUNK = 1000


def submit_one(
    core: ClientCore,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str | None,
    pure: bool,
    workers: Any,
    resources: dict[str, float] | None,
    allow_other_workers: bool,
    retries: int,
    actor: bool,
    max_restarts: int,
) -> Future:
    """``Client.submit``: one task (or actor), sent now, or once the actor calls among its arguments finish."""
    rest = (workers, resources, allow_other_workers, retries, actor, max_restarts)
    waits = [f for f in futures_in((args, kwargs)) if isinstance(f, ActorFuture) and not f.done()]
    if waits:
        return _submit_later(core, fn, args, kwargs, waits, key, *rest)
    spec, ctx = make_spec(core, fn, args, kwargs, key, pure, *rest)
    fut = core.future(spec.key)
    core.send_pins(ctx)
    if not _cancel_if_input_cancelled(fut, ctx):
        core.send(P.SubmitTasks((spec,)))
    return fut


def _submit_later(
    core: ClientCore, fn: Any, args: Any, kwargs: Any, waits: list[ActorFuture], key: str | None, *rest: Any
) -> Future:
    """Some arguments are actor calls still running: send when they finish."""
    key = key or f"{funcname(fn)}-{uuid.uuid4().hex}"
    fut = core.future(key)
    remaining = [len(waits)]
    lock = threading.Lock()

    def go(_: Any) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        try:
            spec, ctx = make_spec(core, fn, args, kwargs, key, False, *rest)
            core.send_pins(ctx)
            if not _cancel_if_input_cancelled(fut, ctx):
                core.send(P.SubmitTasks((spec,)))
        except BaseException as err:
            fut.state.set_exception(err)

    for w in waits:
        w.add_done_callback(go)
    return fut


def submit_many(
    core: ClientCore,
    fn: Callable[..., Any],
    calls: list[tuple[Any, ...]],
    kwargs: dict[str, Any],
    key: str | list[str] | None,
    pure: bool,
    workers: Any,
    resources: dict[str, float] | None,
    allow_other_workers: bool,
    retries: int,
    actor: bool,
) -> list[Future]:
    """``Client.map``: one task per tuple of ``calls``' arguments, sent in one ``SubmitTasks``,
    or, when every call is plain (:class:`SpecMaker`), in one ``SubmitPlain`` per :data:`MAP_CHUNK` calls.

    ``key``: a prefix (a string) or each key exactly (a list); see ``Client.map``.
    """
    keys = key if isinstance(key, list) else None
    if keys is not None and len(keys) < len(calls):
        raise IndexError(f"map() got {len(keys)} keys for {len(calls)} calls")
    prefix = key if isinstance(key, str) else None
    shipped = ship_function(core, fn)  # a function pickled by value: pickled once for them all
    maker = SpecMaker(core, shipped, kwargs, pure, workers, resources, allow_other_workers, retries, actor, prefix)
    if maker.lean and all(plain_values(args, OUT_OF_BAND) for args in calls):
        # nothing here can fail to pickle: each chunk goes as soon as it is pickled, so
        # the manager and the workers start on it while the rest is being pickled
        futures: list[Future] = []
        future = core.future
        for start in range(0, len(calls), MAP_CHUNK):
            chunk = calls[start : start + MAP_CHUNK]
            chunk_keys = keys[start : start + MAP_CHUNK] if keys is not None else [None] * len(chunk)
            items = [maker.plain(args, k) for args, k in zip(chunk, chunk_keys)]
            if None in items:  # some go through make_spec after all (an argument pickles as __main__)
                futures += _send_made(core, [maker.spec(args, k) for args, k in zip(chunk, chunk_keys)])
                continue
            plain: list[P.PlainItem] = items  # type: ignore[assignment]
            futures += [future(k) for k, _ in plain]
            core.send(maker.submit_plain(tuple(plain)))
        return futures
    made = [maker.spec(args, keys[i] if keys is not None else None) for i, args in enumerate(calls)]
    # only now, with every argument pickled: a bad one must leave nothing behind
    return _send_made(core, made)


def _send_made(core: ClientCore, made: list[tuple[P.TaskSpec, SerialContext | None]]) -> list[Future]:
    """The futures of ``made``'s specs; then the specs go in one ``SubmitTasks``."""
    future = core.future
    futures = [future(spec.key) for spec, _ in made]
    send = []
    for (spec, ctx), fut in zip(made, futures):
        if ctx is not None:  # pickled with a context: it may hold handles and futures
            if ctx.pins:
                core.refs.pin(ctx.pins)
            if _cancel_if_input_cancelled(fut, ctx):
                continue
        send.append(spec)
    if send:
        core.send(P.SubmitTasks(tuple(send)))
    return futures


def _cancel_if_input_cancelled(fut: Future, ctx: SerialContext) -> bool:
    """A call with a cancelled future among its arguments is cancelled, not sent (as in dask)."""
    gone = [dep for dep in ctx.deps.values() if isinstance(dep, Future) and dep.cancelled()]
    if not gone:
        return False
    fut.state.cancel(CancelledError(f"{fut.key}: its input {gone[0].key} was cancelled"))
    return True
