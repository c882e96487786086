"""Fetching task values from the workers that hold them: written once, run blocking or awaited.

Runs in: the user's process (and in workers, under their ``get_client()``).

Each fetch (``Future.result()``, ``client.gather()``) is a *plan*: a
generator that yields what it must wait for, a :class:`Completion` or a
:class:`DeathNotice`, and returns the value. :func:`run_blocking` waits for
each step in the calling thread, under one deadline; :func:`run_awaiting`
awaits each, and never blocks the event loop: the bounded wait for a dead
worker's notice (a condition variable in ``Node``) runs in a thread.

When a holder dies before its data is fetched, the manager computes the key
again: it sends ``KeyReset`` before the worker's death notice, so once the
notice is in, the task states tell whether to wait and fetch again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from .._base.completion import Completion
from .._base.errors import WorkerLostError, without_our_frames
from .._base.futures import Future
from .._base.nested import SKIP, futures_in, replace, without_erred
from .._base.serialize import SerialContext, loads
from .._caller.actor import Actor
from .._caller.node import Node

T = TypeVar("T")

#: how long a failed fetch waits for the manager's word on the worker that left
DEATH_NOTICE_GRACE = 5.0


@dataclass(frozen=True)
class DeathNotice:
    """A step: wait (up to :data:`DEATH_NOTICE_GRACE`) for the manager's word on the worker at ``address``."""

    address: str


Step = Completion | DeathNotice
Plan = Generator[Step, None, T]


class DataRequest(NamedTuple):
    """One ``GetData`` to one worker, for these futures' keys."""

    futures: list[Future]
    reply: Completion


# -- running a plan ---------------------------------------------------------------------


def run_blocking(node: Node, plan: Plan[T], timeout: float | None) -> T:
    """Run ``plan`` in this thread; ``TimeoutError`` once ``timeout`` seconds have passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        step = next(plan)
        while True:
            if isinstance(step, DeathNotice):
                node.await_death_notice(step.address, DEATH_NOTICE_GRACE)
            else:
                step.wait_done(None if deadline is None else max(0.0, deadline - time.monotonic()))
            step = plan.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def run_awaiting(node: Node, plan: Plan[T], timeout: float | None) -> T:
    """Run ``plan`` in a coroutine, awaiting every step."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        step = next(plan)
        while True:
            if isinstance(step, DeathNotice):
                if node.death_notice(step.address) is None:  # not in yet: wait for it off the loop
                    await asyncio.to_thread(node.await_death_notice, step.address, DEATH_NOTICE_GRACE)
            else:
                await step.await_done(None if deadline is None else max(0.0, deadline - time.monotonic()))
            step = plan.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result


def gather(node: Node, futures: Any, errors: str, timeout: float | None, awaits: bool) -> Any:
    """``Client.gather``: run :func:`gather_plan`, blocking, or awaited when ``awaits``."""
    plan = gather_plan(node, futures, errors)
    if awaits:
        return _trimmed(run_awaiting(node, plan, timeout))
    try:
        return run_blocking(node, plan, timeout)
    except BaseException as err:
        raise without_our_frames(err)  # the remote error, not our machinery's frames


async def _trimmed(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except BaseException as err:
        raise without_our_frames(err)  # the remote error, not our machinery's frames


# -- the plans ---------------------------------------------------------------------------


def fetch_plan(node: Node, fut: Future) -> Plan[Any]:
    """``fut.result()``: wait for the task, then fetch its value (or make its actor's proxy)."""
    while True:
        state = fut.state
        yield state
        if state.error is not None:
            raise state.error
        actor = actor_of(node, fut)
        if actor is not None:
            return actor
        address = state.address
        assert address is not None
        reply = node.request_data(address, (fut.key,))
        yield reply
        if reply.error is None:
            items, missing = reply.value
            return value_of(node, fut, items, missing)
        if not (yield from recomputing(reply.error, [fut], address)):
            raise reply.error
        # the holder died and the manager is computing the key again: wait for it, fetch again


def gather_plan(node: Node, futures: Any, errors: str) -> Plan[Any]:
    """``client.gather(futures)``: wait for all, fetch the values by worker, rebuild ``futures``."""
    found = futures_in(futures)
    while True:
        for f in found:
            yield f.state if isinstance(f, Future) else f
        structure = futures
        if errors == "skip":
            structure = without_erred(futures)
            if structure is SKIP:
                return None  # a lone failed future gathers to None
        task_futures = [f for f in futures_in(structure) if isinstance(f, Future)]
        asked = {f.key: f.state.address for f in task_futures}
        values, requests = fetch_many(node, task_futures)
        for request in requests:
            yield request.reply
        failed = [(r.futures, r.reply.error) for r in requests if r.reply.error is not None]
        again = bool(failed)
        for fs, error in failed:
            if not (yield from recomputing(error, fs, asked[fs[0].key])):
                again = False
                break
        if not again:
            return replace(structure, _valuer(finish_fetch(node, values, requests)))


def _valuer(values: dict[str, Any]) -> Callable[[Any], Any]:
    """What a gathered future becomes: its fetched value (an actor call's, its own)."""
    return lambda f: values[f.key] if isinstance(f, Future) else f.outcome()


def recomputing(error: BaseException, futures: list[Future], address: str | None) -> Plan[bool]:
    """Did a fetch fail because its worker died, with the manager now recomputing?

    The fetch may have failed before the manager's notice came (a node waits
    for it only briefly, and the manager may be slow to reap a leaving
    worker): wait for it, bounded, as the ``KeyReset``\\ s we look for precede it.
    """
    if not isinstance(error, WorkerLostError):
        return False
    if address is not None and futures:
        yield DeathNotice(address)
    return any(not f.state.done() or f.state.address != address for f in futures)


# -- the pieces --------------------------------------------------------------------------


def actor_of(node: Node, fut: Future) -> Actor | None:
    """A proxy for the actor ``fut``'s task made, or ``None`` for a plain task."""
    state = fut.state
    if state.actor is None:
        return None
    assert state.address is not None and state.worker is not None
    return Actor(fut.key, state.address, state.worker, state.actor, node)


def value_of(node: Node, fut: Future, items: dict[str, bytes], missing: tuple[str, ...]) -> Any:
    """Unpickle ``fut``'s value out of a ``DataReply``'s items."""
    if fut.key in missing or fut.key not in items:
        raise WorkerLostError(f"the data of {fut.key!r} is gone from worker {fut.state.worker}")
    ctx = SerialContext(node=node)
    try:
        return loads(items[fut.key], ctx, what=f"the result of {fut.key!r}")
    finally:
        node.refs.unpin(ctx.unpins)


def fetch_many(node: Node, futures: list[Future]) -> tuple[dict[str, Any], list[DataRequest]]:
    """Start fetching: actor handles at once, data grouped by worker."""
    values: dict[str, Any] = {}
    by_worker: dict[str, list[Future]] = {}
    for fut in futures:
        if fut.key in values:
            continue
        if fut.state.error is not None:
            raise fut.state.error
        actor = actor_of(node, fut)
        if actor is not None:
            values[fut.key] = actor
        else:
            assert fut.state.address is not None
            by_worker.setdefault(fut.state.address, []).append(fut)
    requests = [
        DataRequest(fs, node.request_data(address, tuple(dict.fromkeys(f.key for f in fs))))
        for address, fs in by_worker.items()
    ]
    return values, requests


def finish_fetch(node: Node, values: dict[str, Any], requests: list[DataRequest]) -> dict[str, Any]:
    """The values of every key once the replies are in; raise the first failed reply's error."""
    for request in requests:
        if request.reply.error is not None:
            raise request.reply.error
        items, missing = request.reply.value
        for fut in request.futures:
            if fut.key not in values:
                values[fut.key] = value_of(node, fut, items, missing)
    return values
