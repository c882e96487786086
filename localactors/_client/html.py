"""``_repr_html_`` of a Client and a LocalCluster: their workers, as dask's show them.

Runs in: the user's process (a Jupyter kernel renders what a cell returns).

As dask's objects do, a client or a cluster shows its workers: threads,
memory, results held and actors per worker. Asking the workers is bounded
(:data:`ASK_TIMEOUT`): a busy or broken cluster renders what is known,
never hangs the notebook. Everything shown is escaped; the futures' and the
Actor proxy's are in :mod:`localactors._base.html`.
"""

from __future__ import annotations

from typing import Any

from .._base.html import summary, table

#: how long a repr may wait for the workers' statistics
ASK_TIMEOUT = 1.0

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
    shown = table(["worker", "pid", "threads", "memory", "memory limit", "results", "actors"], rows)
    return shown, totals


def _stats(client: Any) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """The workers and their statistics, asked within :data:`ASK_TIMEOUT`; ``((), None)`` when unknown."""
    from .._wire import protocol as P
    from .diagnostics import gather_stats

    try:
        core = client.core
        comp = core.request(lambda r: P.InfoRequest(r))
        comp.wait_done(ASK_TIMEOUT)
        if comp.error is not None:
            return (), None
        infos = tuple(comp.value.workers)
        snap = gather_stats(core, {w.name: w.address for w in infos}, ASK_TIMEOUT)
    except Exception:  # TimeoutError included: show what is known
        return (), None
    return infos, {s.name: s for s in snap.workers}


def _overview(infos: tuple[Any, ...], stats: dict[str, Any] | None) -> tuple[list[tuple[str, str]], str]:
    shown, totals = _workers(infos, stats)
    facts = [
        ("workers", str(len(infos))),
        ("threads", str(totals["threads"])),
        ("memory", _mib(totals["memory"])),
        ("actors", str(totals["actors"]) if totals["actors"] >= 0 else "?"),
    ]
    return facts, shown if infos else ""


def client_html(client: Any) -> str:
    """A client: its name and status, its cluster, and the cluster's workers."""
    facts = [("status", client.status)]
    cluster = client.cluster
    if cluster is not None:
        facts.append(("cluster", f"LocalCluster in {cluster.directory}"))
    workers = ""
    if client.status == "running":
        infos, stats = _stats(client)
        more, workers = _overview(infos, stats)
        facts += more
    return f"<div>{summary(f'Client {client._name}', facts)}{workers}</div>"


def cluster_html(cluster: Any) -> str:
    """A cluster: its status and directory, and its workers (memory from the OS; results and actors via a client)."""
    facts = [("status", cluster.status), ("directory", cluster.directory), ("start method", cluster.start_method)]
    if not cluster.processes:
        facts.append(("in-process", "manager and workers are threads of this process"))
    workers = ""
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
        more, workers = _overview(infos, stats)
        facts += more
    return f"<div>{summary('LocalCluster', facts)}{workers}</div>"


def _client_of(cluster: Any) -> Any:
    """A running client of this process on ``cluster``, to ask its workers with."""
    from .lifecycle import live_clients

    for client in live_clients():
        if client.cluster is cluster and client._core is not None:
            return client
    return None
