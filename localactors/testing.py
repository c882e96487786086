"""pytest plugin: cluster and client fixtures, a marker, and a leak check.

Runs in: the test process (registered through the ``pytest11`` entry point,
so installing localactors is enough; see docs/testing.md).

Fixtures (named so they cannot clash with other plugins' ``client``)::

    localactors_cluster       a fresh LocalCluster for the test, closed after it
    localactors_client        a synchronous Client on it
    localactors_async_client  an asynchronous Client on it, for ``async def`` tests

Options per test (or per module, with ``pytestmark``) through the marker::

    @pytest.mark.localactors(n_workers=1, processes=False, check_leaks=True)

Every keyword but ``check_leaks`` goes to :class:`~localactors.LocalCluster`.
``pytest --localactors-in-process`` makes ``processes=False`` the default:
the whole suite then runs on in-process clusters, which start in milliseconds.

Async tests need no other plugin: an ``async def`` test that asks for
``localactors_async_client`` (or carries the ``localactors`` marker) is run by
this plugin in a fresh event loop, and the client is started inside that
loop. A test that another async plugin (pytest-asyncio, anyio) runs instead
gets a clear error from the fixture; such tests can open their own
``Client(localactors_cluster, asynchronous=True)``.

After each test the cluster fixture fails the test (an error at teardown)
when something is left behind, named by what the test made:

* an **actor handle** still alive in the test process (kept in a global, a
  module-level list, a class attribute): the actor's class and key;
* an **actor** still alive on the cluster once the test's clients are
  closed (actors holding handles to each other in a cycle);
* a **Client** or a **LocalCluster** the test opened and never closed;
* a **process** the cluster started (manager, workers) still running, or a
  ``localactors-*`` **thread** that no open client explains.

A clean test costs the check a few milliseconds; a leaking one, about a
second at most (the cycle check waits for frees to settle).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ._base.errors import LocalActorsError
from ._caller.actor import Actor
from ._client import lifecycle
from ._client.client import Client
from ._client.cluster import LocalCluster

#: LocalCluster options the fixtures use unless the marker says otherwise
DEFAULTS: dict[str, Any] = {"n_workers": 2}
ASYNC_FIXTURE = "localactors_async_client"
_FOREIGN_ASYNC_MARKERS = ("asyncio", "anyio", "trio")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("localactors")
    group.addoption(
        "--localactors-in-process",
        action="store_true",
        default=False,
        help="start the localactors_* fixtures' clusters in-process (processes=False) unless a marker says otherwise",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "localactors(**options): LocalCluster options for the localactors_* fixtures (and check_leaks=False)",
    )


def _options(request: pytest.FixtureRequest) -> tuple[dict[str, Any], bool]:
    options = dict(DEFAULTS)
    if request.config.getoption("--localactors-in-process", default=False):
        options["processes"] = False
    # closest marker last: a test's marker overrides its module's pytestmark
    for marker in reversed(list(request.node.iter_markers("localactors"))):
        options.update(marker.kwargs)
    check = bool(options.pop("check_leaks", True))
    return options, check


# ----------------------------------------------------------------- leak checks


def localactors_threads(strict: bool = False) -> set[threading.Thread]:
    """Live ``localactors-*`` threads, except (unless ``strict``) those of clients still open."""
    names = set() if strict else {c._name for c in lifecycle.live_clients()}

    def owned_by_open_client(t: threading.Thread) -> bool:
        return any(f"-{n}-" in t.name or f"-{n}->" in t.name or t.name.endswith(f"-{n}") for n in names)

    return {
        t
        for t in threading.enumerate()
        if t.name.startswith("localactors-") and t.is_alive() and not owned_by_open_client(t)
    }


def check_no_leaks(
    before_threads: set[threading.Thread], pids: Any, timeout: float = 5.0, strict: bool = False
) -> list[str]:
    """What is left behind: names of threads and pids of processes still alive.

    Waits up to ``timeout`` for them to go: closing is asynchronous. With
    ``strict``, threads of clients still open count too.
    """
    import psutil

    def alive(pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout
    while True:
        threads = localactors_threads(strict) - before_threads
        procs = [pid for pid in pids if alive(pid)]
        if (not threads and not procs) or time.monotonic() > deadline:
            break
        time.sleep(0.02)  # polling a condition with a deadline, not synchronising
    return [f"thread {t.name}" for t in sorted(threads, key=lambda t: t.name)] + [
        f"process {pid} ({_cmdline(pid)})" for pid in procs
    ]


def _cmdline(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline())[:80]
    except psutil.Error:
        return "?"


def cluster_pids(cluster: LocalCluster) -> set[int]:
    """The processes a cluster runs: its manager and the manager's children."""
    import psutil

    proc = getattr(cluster, "_process", None)
    pid = getattr(proc, "pid", None)
    if not cluster.processes or pid is None:
        return set()  # in-process: threads only, and this process is not ours to report
    try:
        return {pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))}
    except psutil.Error:
        return {pid}


def leftover_actors(cluster: LocalCluster, timeout: float = 3.0, settle: float = 0.5) -> list[str]:
    """Actors still alive on ``cluster`` once every client let go of them.

    Freeing is asynchronous (the manager learns of the last handle, then
    tells the worker): it polls until none is left, or until the same ones
    have stayed for ``settle`` seconds (a cycle never goes), or ``timeout``.
    """
    if cluster.status != "running":
        return []
    deadline = time.monotonic() + timeout
    try:
        with Client(cluster, name="localactors-leak-check") as checker:
            seen: set[str] = set()
            since = time.monotonic()
            while True:
                stats = checker.actor_stats(timeout=max(0.5, deadline - time.monotonic()))
                now = time.monotonic()
                if set(stats) != seen:
                    seen, since = set(stats), now
                if not stats or now > deadline or now - since >= settle:
                    break
                time.sleep(0.02)  # polling a condition with a deadline, not synchronising
    except (LocalActorsError, OSError, TimeoutError):
        return []  # the test broke the cluster on purpose (a fault test): nothing to ask
    return [
        f"actor {s['class']} key={key} on {s['worker']}: still alive on the cluster after the test "
        "(actors holding handles to each other in a cycle?)"
        for key, s in sorted(stats.items())
    ]


def live_actor_handles(cluster: LocalCluster | None = None) -> list[Actor]:
    """Actor handles alive in this process that a client made (of ``cluster``'s actors, if given).

    Handles that workers of an in-process cluster hold are theirs, not the test's.
    """
    from ._client.core import ClientCore

    gc.collect()  # what only a cycle keeps alive is not a leak
    address = cluster.manager_address if cluster is not None else None
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, Actor):
            node = obj._node
            if isinstance(node, ClientCore) and (address is None or node.address == address):
                found.append(obj)
    return found


def describe_handles(handles: list[Actor]) -> list[str]:
    """One line per actor: its class and key, and where such handles are usually kept."""
    by_key: dict[str, Actor] = {}
    for h in handles:
        by_key.setdefault(h._key, h)
    return [
        f"actor {h._info.cls_name} key={key}: a handle is still alive in the test process "
        "(kept in a global, a module-level list or a class attribute?)"
        for key, h in sorted(by_key.items())
    ]


def opened_since(clients: set[Any], clusters: set[Any]) -> list[str]:
    """Clients and clusters started since the sets were taken and still open."""
    found = [
        f"Client {c._name}: opened in the test and never closed (use `with Client(...)` or client.close())"
        for c in lifecycle.live_clients()
        if c not in clients and c._name != "localactors-leak-check"
    ]
    found += [
        f"LocalCluster {c.directory}: started in the test and never closed (use `with LocalCluster(...)` "
        "or cluster.close())"
        for c in lifecycle.live_clusters()
        if c not in clusters
    ]
    return found


def close_opened_since(clients: set[Any], clusters: set[Any]) -> None:
    """Close what :func:`opened_since` reports, so that one test's leak does not fail the next."""
    for c in lifecycle.live_clients():
        if c not in clients:
            c._close(2.0)
    for c in lifecycle.live_clusters():
        if c not in clusters:
            c._close(2.0)


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def localactors_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A fresh LocalCluster for this test (see the ``localactors`` marker); checked for leaks after it."""
    options, check = _options(request)
    before = localactors_threads(strict=True)
    clients, clusters = set(lifecycle.live_clients()), set(lifecycle.live_clusters())
    cluster = LocalCluster(**options)
    pids = cluster_pids(cluster)
    try:
        yield cluster
    finally:
        problems: list[str] = []
        if check:
            problems += opened_since(clients, clusters | {cluster})
            close_opened_since(clients, clusters | {cluster})
            if not request.node.stash.get(_FAILED, False):  # a failing test's traceback holds its handles
                problems += describe_handles(live_actor_handles(cluster))
            problems += leftover_actors(cluster)
        pids |= cluster_pids(cluster)  # workers started during the test (restarts, scale)
        cluster.close()
        if check:
            problems += check_no_leaks(before, pids, timeout=3.0, strict=True)
        if problems:
            pytest.fail("localactors left behind:\n  " + "\n  ".join(problems), pytrace=False)


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember a failed test: its traceback keeps its actor handles alive, which is no leak."""
    outcome: Any = yield
    if call.when == "call" and outcome.get_result().failed:
        item.stash[_FAILED] = True


@pytest.fixture
def localactors_client(localactors_cluster: LocalCluster) -> Iterator[Client]:
    """A synchronous Client on :func:`localactors_cluster`, closed after the test."""
    with Client(localactors_cluster) as client:
        yield client


class _AsyncClientSlot:
    """Stands for the async client until the plugin starts it inside the test's event loop."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            "localactors_async_client works in `async def` tests that the localactors plugin runs; this test "
            "is not async, or another plugin (pytest-asyncio? anyio?) ran it. There, open your own client: "
            "`async with Client(localactors_cluster, asynchronous=True) as client:`"
        )


@pytest.fixture
def localactors_async_client(localactors_cluster: LocalCluster) -> Any:
    """An asynchronous Client on :func:`localactors_cluster`, for ``async def`` tests.

    Started and closed by the plugin inside the test's own event loop.
    """
    return _AsyncClientSlot(localactors_cluster)


def _ours_to_run(item: pytest.Function) -> bool:
    if not inspect.iscoroutinefunction(item.obj):
        return False
    if any(item.get_closest_marker(m) is not None for m in _FOREIGN_ASYNC_MARKERS):
        return False
    return bool(ASYNC_FIXTURE in item.funcargs or item.get_closest_marker("localactors") is not None)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run our ``async def`` tests in a fresh event loop, the async client started inside it."""
    if not _ours_to_run(pyfuncitem):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    test = pyfuncitem.obj

    async def main() -> None:
        slot = kwargs.get(ASYNC_FIXTURE)
        if not isinstance(slot, _AsyncClientSlot):
            await test(**kwargs)
            return
        async with Client(slot.cluster, asynchronous=True) as client:
            kwargs[ASYNC_FIXTURE] = client
            await test(**kwargs)

    asyncio.run(main())
    return True
