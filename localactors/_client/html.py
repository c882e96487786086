"""``_repr_html_`` for the objects a notebook shows: Client, LocalCluster, Actor and the futures.

Runs in: the user's process (a Jupyter kernel renders what a cell returns).

As dask's objects do, a client or a cluster shows its workers: threads,
memory, results held and actors per worker. Asking the workers is bounded
(:data:`ASK_TIMEOUT`): a busy or broken cluster renders what is known,
never hangs the notebook. Everything shown is escaped.
"""

from __future__ import annotations

import html
from typing import Any

#: how long a repr may wait for the workers' statistics
ASK_TIMEOUT = 1.0

_STYLE = "text-align: left; padding: 2px 8px;"


def _e(x: object) -> str:
    return html.escape(str(x))


def _mib(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _rss(pid: int) -> int:
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.Error, ValueError):
        return 0


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th style="{_STYLE}">{_e(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{_STYLE}">{_e(c)}</td>' for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(title: str, facts: list[tuple[str, str]]) -> str:
    items = "".join(f"<li><strong>{_e(k)}:</strong> {_e(v)}</li>" for k, v in facts)
    return f'<div><h3 style="margin: 4px 0;">{_e(title)}</h3><ul style="margin: 0;">{items}</ul></div>'


def _workers(infos: tuple[Any, ...], stats: dict[str, Any] | None) -> tuple[str, dict[str, int]]:
    """The workers table, and totals: threads, memory, actors (``-1``: not known)."""
    rows = []
    totals = {"threads": 0, "memory": 0, "actors": 0 if stats is not None else -1, "results": 0}
    for w in infos:
        s = stats.get(w.name) if stats is not None else None
        memory = s.rss if s is not None else _rss(w.pid)
        totals["threads"] += w.nthreads
        totals["memory"] += memory
        if s is not None:
            totals["actors"] += s.n_actors
            totals["results"] += s.n_data
        rows.append(
            [
                w.name,
                str(w.pid),
                str(w.nthreads),
                _mib(memory),
                _mib(w.memory_limit) if w.memory_limit else "none",
                str(s.n_data) if s is not None else "?",
                str(s.n_actors) if s is not None else "?",
            ]
        )
    table = _table(["worker", "pid", "threads", "memory", "memory limit", "results", "actors"], rows)
    return table, totals


def _stats(client: Any) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """The workers and their statistics, asked within :data:`ASK_TIMEOUT`; ``((), None)`` when unknown."""
    from .._wire import protocol as P
    from .diagnostics import _gather

    try:
        core = client.core
        comp = core.request(lambda r: P.InfoRequest(r))
        if not comp._event.wait(ASK_TIMEOUT) or comp.error is not None:
            return (), None
        infos = tuple(comp.value.workers)
        snap = _gather(core, {w.name: w.address for w in infos}, ASK_TIMEOUT)
    except Exception:
        return (), None
    return infos, {s.name: s for s in snap.workers}


def _overview(infos: tuple[Any, ...], stats: dict[str, Any] | None) -> tuple[list[tuple[str, str]], str]:
    table, totals = _workers(infos, stats)
    facts = [
        ("workers", str(len(infos))),
        ("threads", str(totals["threads"])),
        ("memory", _mib(totals["memory"])),
        ("actors", str(totals["actors"]) if totals["actors"] >= 0 else "?"),
    ]
    return facts, table if infos else ""


def client_html(client: Any) -> str:
    """A client: its name and status, its cluster, and the cluster's workers."""
    facts = [("status", client.status)]
    cluster = client.cluster
    if cluster is not None:
        facts.append(("cluster", f"LocalCluster in {cluster.directory}"))
    table = ""
    if client.status == "running":
        infos, stats = _stats(client)
        more, table = _overview(infos, stats)
        facts += more
    return f"<div>{_summary(f'Client {client._name}', facts)}{table}</div>"


def cluster_html(cluster: Any) -> str:
    """A cluster: its status and directory, and its workers (memory from the OS; results and actors via a client)."""
    facts = [("status", cluster.status), ("directory", cluster.directory), ("start method", cluster.start_method)]
    if not cluster.processes:
        facts.append(("in-process", "manager and workers are threads of this process"))
    table = ""
    if cluster.status == "running":
        stats = None
        client = _client_of(cluster)
        if client is not None:
            infos, stats = _stats(client)
        if stats is None:
            try:
                infos = tuple(cluster.workers)
            except Exception:
                infos = ()
        more, table = _overview(infos, stats)
        facts += more
    return f"<div>{_summary('LocalCluster', facts)}{table}</div>"


def _client_of(cluster: Any) -> Any:
    """A running client of this process on ``cluster``, to ask its workers with."""
    from .lifecycle import live_clients

    for client in live_clients():
        if client.cluster is cluster and client._core is not None:
            return client
    return None


def actor_html(actor: Any) -> str:
    """An actor handle: its class, key, worker, and its public methods and attributes."""
    info = actor._info
    facts = [
        ("key", actor._key),
        ("worker", actor._worker),
        ("methods", ", ".join(sorted(info.methods)) or "-"),
        ("attributes", ", ".join(sorted(info.attributes)) or "-"),
    ]
    return _summary(f"Actor: {info.cls_name}", facts)


def future_html(future: Any) -> str:
    """A task's future: its key and status (and its error, if it failed)."""
    status = future.status
    facts = [("key", future.key), ("status", status)]
    error = future._state.error
    if error is not None:
        facts.append(("error", f"{type(error).__name__}: {error}"))
    return _summary("Future", facts)


def actor_future_html(future: Any) -> str:
    """An actor call's future: the method called, its status, and its value or error once done."""
    facts = [("call", str(future._label) or "?"), ("status", future.status)]
    if future.done():
        if future.error is not None:
            facts.append(("error", f"{type(future.error).__name__}: {future.error}"))
        else:
            text = repr(future.value)
            facts.append(("value", text if len(text) <= 200 else text[:199] + "…"))
    return _summary("ActorFuture", facts)
