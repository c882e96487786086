"""End-to-end tests of tasks on real processes: submit, map, gather, dependencies,
scatter, cancel, retries, placement, keys, errors, get_worker/get_client, memory."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import gated, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localactors import (
    Client,
    Future,
    LocalCluster,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    get_client,
    get_worker,
    wait,
)
from localactors._wire import codec as W
from localactors._wire import protocol as P

T = 30.0  # generous: the CI machine is small and shared


def inc(x: int) -> int:
    return x + 1


def add(a: int, b: int) -> int:
    return a + b


def identity(x: Any) -> Any:
    return x


def where(*args: Any, **kwargs: Any) -> str:
    return str(get_worker().name)


def where_and_value(x: Any) -> tuple[str, Any]:
    return get_worker().name, x


def slow(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def block_on(path: str, value: Any = None, started: str | None = None) -> Any:
    """Run until ``path`` exists (a test's way to hold a task in "processing")."""
    if started is not None:
        Path(started).touch()
    return gated(path, value, T)


def append_line(path: str, text: str) -> str:
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def fail_first(path: str, failures: int) -> int:
    """Fail ``failures`` times (counting in a file), then return the attempt number."""
    attempt = len(Path(path).read_text().splitlines()) if os.path.exists(path) else 0
    append_line(path, "attempt")
    if attempt < failures:
        raise ValueError(f"attempt {attempt} fails")
    return attempt


def quick_or_gated(path: str | None) -> int:
    return 0 if path is None else gated(path, 1)


def raise_key_error(x: Any) -> None:
    def deeper() -> None:
        raise KeyError(x)

    deeper()


def worker_keys(_: Any = None) -> list[str]:
    return sorted(get_worker().data)


def big_result(n: int) -> bytes:
    return b"\x01" * n


# -- submit, map, gather ---------------------------------------------------------------


def test_submit_and_result(client: Client) -> None:
    fut = client.submit(add, 1, b=2)
    assert isinstance(fut, Future)
    assert fut.result(timeout=T) == 3
    assert fut.status == "finished"
    assert fut.done()


def test_map_over_several_iterables(client: Client) -> None:
    futures = client.map(add, range(10), range(100, 110))
    assert len(futures) == 10
    assert client.gather(futures, timeout=T) == [a + b for a, b in zip(range(10), range(100, 110))]


def test_map_with_kwargs_and_empty_input(client: Client) -> None:
    assert client.gather(client.map(add, [1, 2], b=10), timeout=T) == [11, 12]
    assert client.map(inc, []) == []


def test_a_large_map_of_plain_calls_goes_in_chunks_and_keeps_its_order(
    client: Client, manager_traffic: list[P.Message]
) -> None:
    from localactors._client.submit import MAP_CHUNK

    args: list[Any] = list(range(2 * MAP_CHUNK + 10))
    args[MAP_CHUNK + 5] = "__main__"  # its pickle says __main__: cloudpickle's, so its chunk goes as SubmitTasks
    futures = client.map(identity, args)
    assert client.gather(futures, timeout=T) == args
    sent = [type(m).__name__ for m in manager_traffic if not isinstance(m, P.RefDelta)]
    assert sent == ["SubmitPlain", "SubmitTasks", "SubmitPlain"]
    assert [f.key for f in client.map(identity, [1, 2], key=["one", "two"], pure=False)] == ["one", "two"]
    with pytest.raises(IndexError):
        client.map(identity, [1, 2], key=["one"])


def test_a_quick_task_queued_before_a_long_one_is_reported_while_the_long_one_runs(
    client: Client, tmp_path: Path
) -> None:
    gate = str(tmp_path / "gate")
    worker = client.cluster.workers[0].name  # one thread: the two run one after the other
    quick, long = client.map(quick_or_gated, [None, gate], workers=[worker], pure=False)
    wait_until(quick.done, T, "the quick task's report came while the long one ran")
    assert not long.done()
    Path(gate).touch()
    assert (quick.result(timeout=T), long.result(timeout=T)) == (0, 1)


def test_gather_nested_structure(client: Client) -> None:
    a, b = client.submit(inc, 1), client.submit(inc, 2)
    got = client.gather({"x": [a, (b, 5)], "y": {"z": a}, "plain": "text"}, timeout=T)
    assert got == {"x": [2, (3, 5)], "y": {"z": 2}, "plain": "text"}


def test_lambda_closure_and_local_class_run_on_workers(client: Client) -> None:
    base = 10

    class Local:
        def __init__(self, v: int) -> None:
            self.v = v

    assert client.submit(lambda x: x * 3, 4).result(timeout=T) == 12
    assert client.submit(lambda: base + 1).result(timeout=T) == 11
    obj = client.submit(Local, 5).result(timeout=T)
    assert obj.v == 5
    assert client.submit(lambda o: o.v * 2, Local(21)).result(timeout=T) == 42


# -- futures as arguments ---------------------------------------------------------------


def test_futures_nested_in_arguments_are_dependencies(client: Client) -> None:
    a = client.submit(slow, 0.2, 1, pure=False)
    b = client.submit(inc, 10)
    total = client.submit(lambda d, t: d["a"][0] + d["b"] + t[1], {"a": [a], "b": b}, t=(0, b))
    assert total.result(timeout=T) == 1 + 11 + 11


def test_dependency_moves_worker_to_worker_not_through_the_client(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, ...]] = []
    real = client.core.request_data

    def spy(address: str, keys: tuple[str, ...]) -> Any:
        asked.append(keys)
        return real(address, keys)

    monkeypatch.setattr(client.core, "request_data", spy)
    first = client.submit(where_and_value, "payload", workers="worker-0", pure=False)
    second = client.submit(where_and_value, first, workers=["worker-1"], pure=False)
    wait([first, second], timeout=T)
    assert asked == []  # the client fetched nothing: worker-1 got it from worker-0
    name, (dep_worker, value) = second.result(timeout=T)
    assert (name, dep_worker, value) == ("worker-1", "worker-0", "payload")


def test_chain_of_dependencies(client: Client) -> None:
    fut = client.submit(inc, 0)
    for _ in range(20):
        fut = client.submit(inc, fut)
    assert fut.result(timeout=T) == 21


# random nested structures of futures and plain values: gather equals the model

_leaf = st.one_of(
    st.integers(-5, 5).map(lambda v: ("plain", v)),
    st.integers(-5, 5).map(lambda v: ("future", v)),
)
_tree = st.recursive(
    _leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from("abcd"), children, max_size=3),
    ),
    max_leaves=8,
)


def _build(tree: Any, client: Client) -> tuple[Any, Any]:
    """(structure with futures, the model of what gathering it gives)."""
    if isinstance(tree, tuple) and len(tree) == 2 and tree[0] in ("plain", "future") and isinstance(tree[1], int):
        kind, v = tree
        return (client.submit(inc, v), v + 1) if kind == "future" else (v, v)
    if isinstance(tree, dict):
        pairs = {k: _build(v, client) for k, v in tree.items()}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    built = [_build(v, client) for v in tree]
    cls = type(tree)
    return cls(b[0] for b in built), cls(b[1] for b in built)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_tree)
def test_gather_of_random_nested_structures_equals_the_model(client: Client, tree: Any) -> None:
    structure, model = _build(tree, client)
    assert client.gather(structure, timeout=T) == model
    # the same structure as an argument: the task receives the model
    assert client.submit(identity, structure, pure=False).result(timeout=T) == model


# -- scatter ------------------------------------------------------------------------------


def test_scatter_list_dict_and_single_value(client: Client) -> None:
    listed = client.scatter([1, 2, 3])
    assert isinstance(listed, list) and all(isinstance(f, Future) for f in listed)
    assert client.gather(listed, timeout=T) == [1, 2, 3]
    mapped = client.scatter({"x": 10, "y": 20})
    assert set(mapped) == {"x", "y"}
    assert client.gather(mapped, timeout=T) == {"x": 10, "y": 20}
    one = client.scatter(42)
    assert one.result(timeout=T) == 42
    assert client.submit(add, one, listed[2]).result(timeout=T) == 45


def test_scatter_to_a_chosen_worker(client: Client) -> None:
    fut = client.scatter([7], workers="worker-1")[0]
    assert client.submit(where_and_value, fut, workers="worker-1").result(timeout=T) == ("worker-1", 7)
    assert fut.key in client.submit(worker_keys, fut.key, workers="worker-1", pure=False).result(timeout=T)


def test_scatter_the_same_value_twice_shares_one_key_and_frees_it(client: Client) -> None:
    first = client.scatter([b"same" * 10], hash=True)[0]
    assert first.result(timeout=T) == b"same" * 10
    second = client.scatter([b"same" * 10], hash=True)[0]
    assert second.key == first.key
    assert second.result(timeout=T) == b"same" * 10
    key = first.key
    del first, second
    _assert_freed_everywhere(client, key)


# -- keys --------------------------------------------------------------------------------------


def test_pure_tasks_share_a_key_and_run_once(client: Client, tmp_path: Path) -> None:
    path = str(tmp_path / "runs")
    a = client.submit(append_line, path, "ran")
    b = client.submit(append_line, path, "ran")
    assert a.key == b.key
    assert a.key.startswith("append_line-")
    assert client.gather([a, b], timeout=T) == ["ran", "ran"]
    assert Path(path).read_text().splitlines() == ["ran"]


def test_impure_tasks_get_fresh_keys_and_each_run(client: Client, tmp_path: Path) -> None:
    path = str(tmp_path / "runs")
    a = client.submit(append_line, path, "ran", pure=False)
    b = client.submit(append_line, path, "ran", pure=False)
    assert a.key != b.key
    client.gather([a, b], timeout=T)
    assert Path(path).read_text().splitlines() == ["ran", "ran"]


def test_explicit_key(client: Client) -> None:
    fut = client.submit(inc, 1, key="my-own-key")
    assert fut.key == "my-own-key"
    assert fut.result(timeout=T) == 2
    futures = client.map(inc, [1, 2], key=["k-a", "k-b"])
    assert [f.key for f in futures] == ["k-a", "k-b"]
    assert client.gather(futures, timeout=T) == [2, 3]


# -- errors --------------------------------------------------------------------------------


def test_task_exception_keeps_type_and_remote_traceback(client: Client) -> None:
    fut = client.submit(raise_key_error, "missing")
    with pytest.raises(KeyError) as info:
        fut.result(timeout=T)
    assert info.value.args == ("missing",)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "raise_key_error" in str(cause) and "deeper" in str(cause)
    assert fut.status == "error"
    assert isinstance(fut.exception(timeout=T), KeyError)
    with pytest.raises(KeyError):
        client.gather([fut], timeout=T)


class TwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")  # pickle cannot rebuild it from its args


def raise_two_args() -> None:
    raise TwoArgs(1, 2)


def test_unrebuildable_task_exception_arrives_as_remote_error(client: Client) -> None:
    with pytest.raises(RemoteError) as info:
        client.submit(raise_two_args).result(timeout=T)
    assert info.value.type_name.endswith("TwoArgs")
    assert "1 and 2" in str(info.value)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "raise_two_args" in str(info.value.__cause__)


def test_local_exception_class_raised_in_a_task(client: Client) -> None:
    class Local(ValueError):
        pass

    def boom() -> None:
        raise Local("here")

    with pytest.raises(ValueError, match="here") as info:
        client.submit(boom).result(timeout=T)
    assert type(info.value).__name__ == "Local"


def test_error_flows_to_dependents(client: Client) -> None:
    bad = client.submit(raise_key_error, 1)
    dependent = client.submit(inc, bad)
    with pytest.raises(KeyError):
        dependent.result(timeout=T)


class _Locked:
    def __init__(self) -> None:
        self.lock = threading.Lock()


@pytest.fixture
def manager_traffic(client: Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[P.Message]]:
    """Every message this client writes to the manager while the test runs."""
    link = client.core.manager_link
    assert link is not None
    sent: list[P.Message] = []
    real = link._write

    def spy(frames: list[Any]) -> None:
        sent.append(W.decode(bytes(frames[0]), [bytes(f) for f in frames[1:]]))
        real(frames)

    client.core.flush_refs()  # what earlier tests left to send goes now, not during the test
    monkeypatch.setattr(link, "_write", spy)
    yield sent


def _only_releases(sent: list[P.Message]) -> bool:
    return all(isinstance(m, P.RefDelta) and all(d < 0 for _, d in m.changes) and not m.pins for m in sent)


@pytest.mark.parametrize(
    "call",
    [
        lambda c, lk: c.submit(inc, lk),
        lambda c, lk: c.submit(inc, x=[1, {"a": lk}]),
        lambda c, lk: c.map(add, [1, 2, 3], [4, lk, 6]),
        lambda c, lk: c.submit(identity, _Locked()),
        lambda c, lk: c.scatter([1, lk]),
    ],
    ids=["arg", "nested-kwarg", "map-middle", "attribute", "scatter"],
)
def test_unpicklable_argument_fails_at_the_call_site_and_nothing_is_sent(
    client: Client, manager_traffic: list[P.Message], call: Any
) -> None:
    before = client.scheduler_info()["workers"].keys()
    manager_traffic.clear()
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        call(client, threading.Lock())
    client.core.flush_refs()
    assert _only_releases(manager_traffic), manager_traffic
    assert client.scheduler_info()["workers"].keys() == before


def test_unpicklable_result_fails_at_result_with_its_type(client: Client) -> None:
    fut = client.submit(threading.Lock)
    with pytest.raises(SerializationError, match="lock"):
        fut.result(timeout=T)


def test_too_deep_argument_gives_a_clear_error(client: Client) -> None:
    x: list[Any] = []
    for _ in range(100_000):
        x = [x]
    with pytest.raises(SerializationError, match="nested too deeply"):
        client.submit(identity, x)


# -- retries ---------------------------------------------------------------------------------


def test_retries_rerun_a_failing_task(client: Client, tmp_path: Path) -> None:
    path = str(tmp_path / "attempts")
    assert client.submit(fail_first, path, 2, retries=2).result(timeout=T) == 2
    assert len(Path(path).read_text().splitlines()) == 3


def test_retries_exhausted_raise_the_last_error(client: Client, tmp_path: Path) -> None:
    path = str(tmp_path / "attempts")
    fut = client.submit(fail_first, path, 5, retries=1)
    with pytest.raises(ValueError, match="attempt 1 fails"):
        fut.result(timeout=T)
    assert len(Path(path).read_text().splitlines()) == 2


# -- placement ---------------------------------------------------------------------------------


def test_workers_restriction_by_name_and_address(client: Client) -> None:
    info = client.scheduler_info()["workers"]
    for name, w in info.items():
        assert client.submit(where, name, workers=name, pure=False).result(timeout=T) == name
        assert client.submit(where, w["address"], workers=[w["address"]], pure=False).result(timeout=T) == name


def test_unknown_worker_waits_unless_others_are_allowed(client: Client) -> None:
    allowed = client.submit(where, 1, workers=["nobody"], allow_other_workers=True)
    assert allowed.result(timeout=T) in client.scheduler_info()["workers"]
    stuck = client.submit(where, 2, workers=["nobody"])
    with pytest.raises(TimeoutError):
        stuck.result(timeout=0.5)
    assert stuck.status == "pending"
    client.cancel(stuck)
    assert stuck.cancelled()


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_pending_task_and_its_dependents(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    blockers = [client.submit(block_on, gate, i, workers=w) for i, w in enumerate(["worker-0", "worker-1"])]
    queued = client.submit(inc, 1, workers="worker-0")
    dependent = client.submit(inc, queued)
    client.cancel(queued)
    assert queued.cancelled() and queued.status == "cancelled"  # at once, as in dask
    with pytest.raises(CancelledError):
        queued.result(timeout=T)
    with pytest.raises(CancelledError):
        dependent.result(timeout=T)
    Path(gate).touch()
    assert client.gather(blockers, timeout=T) == [0, 1]


def test_cancel_running_task_gives_its_resources_back(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    with LocalCluster(n_workers=1, resources={"GPU": 1}) as cluster, Client(cluster) as client:
        started = str(tmp_path / "started")
        running = client.submit(block_on, gate, "first", started, resources={"GPU": 1})
        wait_until(lambda: os.path.exists(started), T, f"{started} appears")
        queued = client.submit(inc, 1, resources={"GPU": 1})
        running.cancel()
        assert running.cancelled()
        Path(gate).touch()
        # the cancelled task ends on its worker and must hand the GPU back
        assert queued.result(timeout=T) == 2


def test_cancel_finished_task_frees_its_data(client: Client) -> None:
    fut = client.submit(big_result, 1000, pure=False)
    key = fut.key
    fut.result(timeout=T)
    client.cancel([fut])
    assert fut.cancelled()
    with pytest.raises(CancelledError):
        fut.result(timeout=T)
    _assert_freed_everywhere(client, key)


def test_cancel_from_a_done_callback_does_not_hang(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    pending = client.submit(block_on, gate, workers="worker-0")
    trigger = client.submit(inc, 1, workers="worker-1")
    called = threading.Event()

    def on_done(_: Future) -> None:
        pending.cancel()  # runs on the client's reader thread: it cannot wait for the reply
        called.set()

    trigger.add_done_callback(on_done)
    assert called.wait(T)
    assert pending.cancelled()
    Path(gate).touch()


def test_resubmit_after_cancel_runs_again(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    blockers = [client.submit(block_on, gate, i, workers=w) for i, w in enumerate(["worker-0", "worker-1"])]
    first = client.submit(add, 40, 2)
    client.cancel(first)
    again = client.submit(add, 40, 2)
    assert again.key == first.key
    Path(gate).touch()
    assert again.result(timeout=T) == 42
    assert first.cancelled()
    client.gather(blockers, timeout=T)


# -- resources ----------------------------------------------------------------------------------


def spans(tag: int, seconds: float) -> tuple[str, float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return get_worker().name, start, time.monotonic()


def test_resources_limit_concurrency_per_worker() -> None:
    with LocalCluster(n_workers=2, threads_per_worker=2, resources={"GPU": 1}) as cluster, Client(cluster) as client:
        info = client.scheduler_info()["workers"]
        assert all(w["resources"] == {"GPU": 1} and w["nthreads"] == 2 for w in info.values())
        runs = client.gather([client.submit(spans, i, 0.1, resources={"GPU": 1}) for i in range(6)], timeout=T)
        by_worker: dict[str, list[tuple[float, float]]] = {}
        for name, start, end in runs:
            by_worker.setdefault(name, []).append((start, end))
        for intervals in by_worker.values():  # one GPU per worker: never two at once there
            intervals.sort()
            assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(intervals))
        too_big = client.submit(spans, 99, 0, resources={"GPU": 2})
        with pytest.raises(TimeoutError):
            too_big.result(timeout=0.5)
        assert too_big.status == "pending"
        client.cancel(too_big)


# -- get_worker / get_client inside tasks -------------------------------------------------------


def about_worker(_: Any) -> dict[str, Any]:
    w = get_worker()
    return {"name": w.name, "address": w.address, "pid": os.getpid(), "nthreads": w.nthreads}


def test_get_worker_inside_a_task(client: Client) -> None:
    info = client.scheduler_info()["workers"]
    got = client.submit(about_worker, 1, workers="worker-1").result(timeout=T)
    assert got == {k: info["worker-1"][k] for k in ("name", "address", "pid", "nthreads")}


def test_get_worker_outside_a_worker_raises() -> None:
    with pytest.raises(ValueError):
        get_worker()


def fan_out(n: int) -> int:
    client = get_client()
    futures = client.map(inc, range(n), pure=False)
    return sum(client.gather(futures, timeout=T))


def fan_out_nested(depth: int) -> int:
    if depth == 0:
        return 1
    client = get_client()
    parts = [client.submit(fan_out_nested, depth - 1, pure=False) for _ in range(2)]
    return sum(f.result(timeout=T) for f in parts)


def test_task_submits_and_gathers_through_get_client(client: Client) -> None:
    # every worker has one thread: the waiting task must lend it to the ones it waits for
    assert client.submit(fan_out, 6).result(timeout=T) == sum(range(1, 7))


def test_tasks_waiting_on_tasks_waiting_on_tasks(client: Client) -> None:
    assert client.submit(fan_out_nested, 3, pure=False).result(timeout=T) == 8


def test_get_client_in_the_user_process_returns_the_client(client: Client) -> None:
    assert get_client() is not None


# -- results are freed ----------------------------------------------------------------------


def _assert_freed_everywhere(client: Client, key: str) -> None:
    names = list(client.scheduler_info()["workers"])

    def held() -> list[str]:
        return [n for n in names if key in client.submit(worker_keys, time.monotonic(), workers=n).result(timeout=T)]

    wait_until(lambda: not held(), T, lambda: f"{key} still held by {held()}", interval=0.05)


def test_result_is_freed_on_the_worker_when_the_last_future_goes(client: Client) -> None:
    fut = client.submit(add, 40, 2, workers="worker-0")
    also = client.submit(add, 40, 2, workers="worker-0")  # pure: a second Future for the same key
    key = fut.key
    assert also.key == key
    assert fut.result(timeout=T) == 42
    del fut
    client.core.flush_refs()
    assert key in client.submit(worker_keys, "still", pure=False, workers="worker-0").result(timeout=T)
    assert also.result(timeout=T) == 42  # still held through the other Future
    del also
    _assert_freed_everywhere(client, key)


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_memory_really_comes_back_after_release(client: Client) -> None:
    size = 200_000_000
    pid = client.scheduler_info()["workers"]["worker-0"]["pid"]
    base = _rss(pid)
    fut = client.submit(big_result, size, workers="worker-0", pure=False)
    wait(fut, timeout=T)
    assert fut.status == "finished"
    assert _rss(pid) > base + size * 0.9
    assert client.scheduler_info()["workers"]["worker-0"]["memory"] > size
    del fut
    wait_until(lambda: _rss(pid) <= base + size * 0.25, T, lambda: f"worker RSS still {_rss(pid)} (base {base})")


# -- the worker's task pool, in-process ---------------------------------------------------------


def test_task_pool_runs_at_most_nthreads_at_once() -> None:
    from localactors._worker.taskpool import TaskPool

    pool = TaskPool(2, "unit")
    lock = threading.Lock()
    running, peak = [0], [0]
    release = threading.Event()
    finished = threading.Semaphore(0)

    def job() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(T)
        with lock:
            running[0] -= 1
        finished.release()

    try:
        for _ in range(5):
            pool.submit(job)
        wait_until(lambda: running[0] >= 2, T, "two jobs run at once")
        release.set()
        for _ in range(5):
            assert finished.acquire(timeout=T)
        assert peak[0] == 2
        assert len(pool.threads) <= 2
    finally:
        pool.shutdown(wait=True)


def test_task_pool_lends_the_slot_of_a_waiting_task() -> None:
    from localactors._base.futures import Completion
    from localactors._worker.taskpool import TaskPool

    seen: list[str] = []
    pool = TaskPool(1, "unit", initializer=lambda tag: seen.append(tag), initargs=("init",))
    handoff, done = Completion(), Completion()

    def waiter() -> None:
        handoff.wait_done(T)  # blocks: with one thread, `setter` could never run without the loan
        done.set_result(handoff.value)

    try:
        pool.submit(waiter)
        pool.submit(lambda: handoff.set_result("from the second task"))
        done.wait_done(T)
        assert done.value == "from the second task"
        assert seen and set(seen) == {"init"}  # every pool thread ran the initializer
        wait_until(lambda: len(pool.threads) <= 1, T, lambda: f"threads left: {pool.threads}")  # the lent one goes
    finally:
        pool.shutdown(wait=True)


def test_task_pool_shutdown_drops_queued_work() -> None:
    from localactors._worker.taskpool import TaskPool

    pool = TaskPool(1, "unit")
    gate, ran = threading.Event(), []
    pool.submit(gate.wait, T)
    pool.submit(ran.append, "queued")
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    for t in pool.threads:
        t.join(T)
    assert ran == []
    with pytest.raises(RuntimeError):
        pool.submit(ran.append, "late")


def test_a_function_pickled_by_value_is_shipped_once_per_map_and_unpickled_once_per_worker(client: Client) -> None:
    import pickle

    from localactors._client import spec

    offset = 1000

    def shifted(x: int) -> tuple[int, int]:  # a closure: pickled by value
        return x + offset, id(shifted)

    shipped = spec.ship_function(client.core, shifted)
    assert isinstance(shipped, spec.ShippedFunction)
    assert pickle.loads(pickle.dumps(shipped)) is pickle.loads(pickle.dumps(shipped))  # cached by its hash
    assert spec.ship_function(client.core, inc) is inc  # by reference: nothing to cache
    results = client.gather(client.map(shifted, range(40)))
    assert [r[0] for r in results] == [x + 1000 for x in range(40)]
    assert len({ident for _, ident in results}) <= len(client.cluster.workers)  # one function per worker
    offset = 2000  # a new map pickles the function afresh: its captured value too
    assert client.gather(client.map(shifted, [1]))[0][0] == 2001
