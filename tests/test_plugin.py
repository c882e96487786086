"""The pytest plugin, tested with pytest's own ``pytester``.

Each test writes a small test file, runs pytest on it in this process, and
checks the outcomes. The inner clusters are in-process where the test is
about the plugin rather than about processes, to keep this module fast.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module", autouse=True)
def _resource_tracker() -> None:
    """Start multiprocessing's session-long helper before the leak check looks.

    The first spawned process starts it; here that happens inside an inner
    test run, and the autouse leak check would take it for a leaked child.
    """
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


COUNTER = """
import pytest
from localactors import Client, LocalCluster

class Counter:
    def __init__(self):
        self.n = 0
    def increment(self):
        self.n += 1
        return self.n
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=COUNTER + source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", *args)


def test_fixtures_marker_and_sync_client(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_default(localactors_cluster, localactors_client):
    assert localactors_client.cluster is localactors_cluster
    assert len(localactors_client.scheduler_info()["workers"]) == 2
    counter = localactors_client.submit(Counter, actor=True).result(timeout=10)
    assert counter.increment().result(timeout=10) == 1

@pytest.mark.localactors(n_workers=1, processes=False, threads_per_worker=3)
def test_marker(localactors_cluster, localactors_client):
    info = localactors_client.scheduler_info()["workers"]
    assert [w["nthreads"] for w in info.values()] == [3]
    assert localactors_cluster.processes is False
""",
    )
    result.assert_outcomes(passed=2)


def test_module_marker_and_in_process_option(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
pytestmark = pytest.mark.localactors(n_workers=3)

def test_module_level(localactors_cluster):
    assert len(localactors_cluster.workers) == 3
    assert localactors_cluster.processes is False  # from --localactors-in-process

@pytest.mark.localactors(n_workers=1)
def test_closest_wins(localactors_cluster):
    assert len(localactors_cluster.workers) == 1
""",
        "--localactors-in-process",
    )
    result.assert_outcomes(passed=2)


def test_async_client_without_another_plugin(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from localactors import wait

@pytest.mark.localactors(processes=False)
async def test_async(localactors_async_client):
    client = localactors_async_client
    assert client.asynchronous
    counter = await client.submit(Counter, actor=True)
    assert await counter.increment() == 1
    assert await counter.n == 1
    assert await client.submit(sum, [1, 2]) == 3

def test_misused_in_a_sync_test(localactors_async_client):
    localactors_async_client.submit(sum, [1])
""",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*localactors_async_client works in `async def` tests*"])


def test_leaked_actor_cycle_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
class Node:
    def __init__(self):
        self.other = None
    def link(self, other):
        self.other = other

@pytest.mark.localactors(n_workers=1, processes=False)
def test_cycle(localactors_client):
    a = localactors_client.submit(Node, actor=True).result(timeout=10)
    b = localactors_client.submit(Node, actor=True).result(timeout=10)
    a.link(b).result(timeout=10)
    b.link(a).result(timeout=10)  # each keeps the other alive: never freed

@pytest.mark.localactors(n_workers=1, processes=False, check_leaks=False)
def test_cycle_unchecked(localactors_client):
    a = localactors_client.submit(Node, actor=True).result(timeout=10)
    a.link(a).result(timeout=10)
""",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*localactors left behind:*", "*actor Node key=Node-* on worker-0: still alive on the cluster*"]
    )


def test_unclosed_client_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
leaked = []

@pytest.mark.localactors(n_workers=1, processes=False)
def test_forgets_to_close(localactors_cluster):
    leaked.append(Client(localactors_cluster, name="forgotten"))
""",
    )
    result.assert_outcomes(passed=1, errors=1)  # the test itself passed; its teardown failed
    result.stdout.fnmatch_lines(
        ["*localactors left behind:*", "*Client forgotten: opened in the test and never closed*"]
    )
    assert "thread localactors-" not in result.stdout.str()  # named by what the user made, not by a thread


def test_leaked_handles_are_named_by_class_and_key_quickly(pytester: pytest.Pytester) -> None:
    """Handles kept in a module-level list and in a class attribute, a LocalCluster left open: each
    reported by what the test made, without a wait of seconds per leaking test."""
    import time

    start = time.monotonic()
    result = run(
        pytester,
        """
KEPT = []

class Registry:
    counter = None

@pytest.mark.localactors(n_workers=1, processes=False)
def test_module_list(localactors_client):
    KEPT.append(localactors_client.submit(Counter, actor=True, key="Counter-in-a-list").result(timeout=10))

@pytest.mark.localactors(n_workers=1, processes=False)
def test_class_attribute(localactors_client):
    Registry.counter = localactors_client.submit(Counter, actor=True, key="Counter-in-a-class").result(timeout=10)

@pytest.mark.localactors(n_workers=1, processes=False)
def test_forgotten_cluster(localactors_cluster):
    KEPT.append(LocalCluster(n_workers=1, processes=False))

@pytest.mark.localactors(n_workers=1, processes=False)
def test_clean(localactors_client):
    counter = localactors_client.submit(Counter, actor=True).result(timeout=10)
    assert counter.increment().result(timeout=10) == 1

@pytest.mark.localactors(n_workers=1, processes=False)
def test_failing_test_is_not_a_leak_too(localactors_client):
    counter = localactors_client.submit(Counter, actor=True).result(timeout=10)
    assert counter.increment().result(timeout=10) == 2
""",
    )
    elapsed = time.monotonic() - start
    result.assert_outcomes(passed=4, failed=1, errors=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*actor Counter key=Counter-in-a-list: a handle is still alive in the test process*",
            "*actor Counter key=Counter-in-a-class: a handle is still alive in the test process*",
            "*LocalCluster *: started in the test and never closed*",
        ]
    )
    assert "ERROR at teardown of test_failing_test_is_not_a_leak_too" not in out
    assert elapsed < 10, f"{elapsed:.1f} s for 5 in-process tests, 3 of them leaking"


def test_processes_are_checked(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import psutil
STATE = {}

def test_real_processes(localactors_cluster, localactors_client):
    pids = {w["pid"] for w in localactors_client.scheduler_info()["workers"].values()}
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    STATE['pids'] = pids

def test_gone_after(localactors_cluster):
    assert not any(psutil.pid_exists(p) for p in STATE['pids'])
""",
    )
    result.assert_outcomes(passed=2)


def test_a_process_left_running_fails_the_test(pytester: pytest.Pytester) -> None:
    from localactors._client import lifecycle
    from localactors._client.cluster import LocalCluster

    result = run(
        pytester,
        """
@pytest.mark.localactors(n_workers=1)
def test_cluster_that_will_not_close(localactors_cluster):
    localactors_cluster._close = lambda timeout=5.0: None  # close() now leaves everything running
""",
    )
    try:
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*localactors left behind:*", "*process * (*python*"])
    finally:
        for cluster in lifecycle.live_clusters():
            LocalCluster._close(cluster)  # what the inner test kept from running
