"""Per-actor statistics of a running cluster, pulled from its workers.

Runs in: the user's process (``client.actor_stats()``) and in
``python -m localactors top``.

Statistics are pulled, not pushed: :func:`collect` sends one
``StatsRequest`` to every worker over the caller's own links (direct, or
relayed through the manager) and merges the replies. The workers keep the
counters (:mod:`localactors._worker.stats`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .._base.completion import Completion
from .._wire import protocol as P


@dataclass(frozen=True)
class Snapshot:
    """One reading of the whole cluster."""

    workers: tuple[P.WorkerStat, ...]
    actors: tuple[tuple[str, P.ActorStat], ...]  #: (worker name, stats)
    unreachable: tuple[str, ...]  #: workers that did not answer


def actor_stats(client: Any, timeout: float, awaits: bool) -> Any:
    """``client.actor_stats()``: :func:`actor_table` of :func:`collect`.

    Awaitable when ``awaits`` (the one sync/async rule): then collected in a thread.
    """
    if awaits:
        return _actor_stats_async(client, timeout)
    return actor_table(collect(client, timeout))


async def _actor_stats_async(client: Any, timeout: float) -> dict[str, dict[str, Any]]:
    return actor_table(await asyncio.to_thread(collect, client, timeout))


def collect(client: Any, timeout: float = 5.0) -> Snapshot:
    """Ask every worker of ``client``'s cluster for its statistics (blocks)."""
    core = client.core
    comp = core.request(lambda r: P.InfoRequest(r))
    comp.wait_done(timeout)
    workers = {w.name: w.address for w in comp.value.workers}
    return gather_stats(core, workers, timeout)


def gather_stats(core: Any, workers: dict[str, str], timeout: float) -> Snapshot:
    """Ask each of ``workers`` (name -> address) over ``core``'s links; wait ``timeout`` in all."""
    pending = []
    for name, address in workers.items():
        comp = Completion()
        core.peer(address).request(lambda r: P.StatsRequest(r), comp, f"statistics of {name}")
        pending.append((name, comp))
    deadline = time.monotonic() + timeout
    stats: list[P.WorkerStat] = []
    actors: list[tuple[str, P.ActorStat]] = []
    unreachable: list[str] = []
    for name, comp in pending:
        try:
            comp.wait_done(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            unreachable.append(name)
            continue
        if comp.error is not None:
            unreachable.append(name)
            continue
        reply: P.StatsReply = comp.value
        stats.append(reply.worker)
        actors.extend((reply.worker.name, a) for a in reply.actors)
    return Snapshot(tuple(stats), tuple(actors), tuple(unreachable))


def actor_table(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """``{actor key: {...}}``: what ``client.actor_stats()`` returns."""
    out: dict[str, dict[str, Any]] = {}
    for worker, a in snapshot.actors:
        out[a.key] = {
            "class": a.cls_name,
            "worker": worker,
            "calls": a.calls,
            "errors": a.errors,
            "mean_latency": a.total_time / a.calls if a.calls else 0.0,
            "max_latency": a.max_time,
            "queued": a.queued,
            "running": a.running,
        }
    return out
