"""Tests of ``_futures``: Completion and ActorFuture on their own, then the task
Future API, ``wait`` and ``as_completed`` against a real cluster."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from helpers import gated

from localactors import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    ActorFuture,
    Client,
    Future,
    as_completed,
    wait,
)
from localactors._base.futures import Completion

T = 30.0


# -- Completion and ActorFuture, no cluster ------------------------------------------------


def test_completion_is_set_once() -> None:
    comp = Completion()
    assert not comp.done()
    assert comp.set_result(1)
    assert not comp.set_result(2)
    assert not comp.set_exception(ValueError())
    assert comp.done() and comp.value == 1 and comp.error is None


def test_callbacks_run_once_and_late_ones_run_at_once() -> None:
    comp = Completion()
    calls: list[tuple[str, Any]] = []
    comp.add_done_callback(lambda c: calls.append(("early", c.value)))
    comp.set_result("v")
    comp.set_result("again")
    comp.add_done_callback(lambda c: calls.append(("late", c.value)))
    assert calls == [("early", "v"), ("late", "v")]


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    comp = Completion()
    ran: list[int] = []

    def bad(_: Any) -> None:
        raise RuntimeError("callback bug")

    comp.add_done_callback(bad)
    comp.add_done_callback(lambda _: ran.append(1))
    with caplog.at_level(logging.ERROR, logger="localactors.futures"):
        comp.set_result(None)
    assert ran == [1]
    assert "callback bug" in caplog.text


def test_actor_future_result_exception_and_timeout() -> None:
    ok, bad = ActorFuture("ok"), ActorFuture("bad")
    with pytest.raises(TimeoutError):
        ok.result(timeout=0.01)
    threading.Timer(0.05, ok.set_result, args=([1, 2],)).start()
    value = ok.result(timeout=T)
    assert value == [1, 2] and ok.result(timeout=0) is value  # cached: the same object
    assert ok.exception(timeout=0) is None
    bad.set_exception(KeyError("k"))
    for _ in range(2):  # re-raises every time
        with pytest.raises(KeyError):
            bad.result(timeout=0)
    assert isinstance(bad.exception(timeout=0), KeyError)
    assert not bad.cancelled()


def test_wait_and_as_completed_on_actor_futures_alone() -> None:
    futures = [ActorFuture(str(i)) for i in range(3)]
    threading.Timer(0.05, futures[2].set_result, args=(2,)).start()
    done, not_done = wait(futures, timeout=T, return_when=FIRST_COMPLETED)
    assert done == {futures[2]} and not_done == set(futures[:2])
    futures[0].set_result(0)
    futures[1].set_exception(ValueError("x"))
    done, not_done = wait(futures, timeout=T)
    assert done == set(futures) and not not_done
    got = list(as_completed(futures, with_results=True, raise_errors=False))
    assert {f.label for f, _ in got} == {"0", "1", "2"}


def test_wait_on_nothing_returns_at_once() -> None:
    assert wait([], timeout=0) == (set(), set())
    assert list(as_completed([])) == []


# -- the task Future -------------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


def fail(message: str) -> None:
    raise ValueError(message)


class Gates:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> str:
        return str(self.root / name)

    def open(self, name: str) -> None:
        Path(self.path(name)).touch()


@pytest.fixture
def gates(tmp_path: Path) -> Gates:
    return Gates(tmp_path)


def test_future_api_through_its_life(client: Client, gates: Gates) -> None:
    fut = client.submit(gated, gates.path("a"), "value", pure=False)
    assert isinstance(fut, Future)
    assert fut.key.startswith("gated-")
    assert fut.status == "pending" and not fut.done() and not fut.cancelled()
    assert fut.key in repr(fut) and "pending" in repr(fut)
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        fut.exception(timeout=0.05)
    called: list[Future] = []
    seen = threading.Event()

    def on_done(f: Future) -> None:
        called.append(f)
        seen.set()

    fut.add_done_callback(on_done)
    gates.open("a")
    assert fut.result(timeout=T) == "value"
    assert seen.wait(T)
    assert called == [fut]  # the Future itself, once
    assert fut.status == "finished" and fut.done() and fut.exception(timeout=T) is None
    late: list[Future] = []
    fut.add_done_callback(late.append)  # already done: runs at once
    assert late == [fut]
    assert fut.client is client


def test_failed_future_api(client: Client) -> None:
    fut = client.submit(fail, "nope")
    err = fut.exception(timeout=T)
    assert isinstance(err, ValueError) and str(err) == "nope"
    assert fut.status == "error" and fut.done() and not fut.cancelled()
    with pytest.raises(ValueError, match="nope"):
        fut.result(timeout=T)


def test_result_is_fetched_fresh_each_time(client: Client) -> None:
    fut = client.submit(list, range(3))
    a, b = fut.result(timeout=T), fut.result(timeout=T)
    assert a == b == [0, 1, 2]


# -- wait ------------------------------------------------------------------------------------


def test_wait_all_completed(client: Client) -> None:
    futures = client.map(inc, range(5), pure=False)
    done, not_done = wait(futures, timeout=T, return_when=ALL_COMPLETED)
    assert done == set(futures) and not_done == set()
    done, not_done = wait(futures[0], timeout=T)  # a single future
    assert done == {futures[0]}


def test_wait_first_completed(client: Client, gates: Gates) -> None:
    slow = client.submit(gated, gates.path("slow"), pure=False)
    fast = client.submit(inc, 1, pure=False)
    done, not_done = wait([slow, fast], timeout=T, return_when=FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    gates.open("slow")
    wait(slow, timeout=T)


def test_wait_first_exception(client: Client, gates: Gates) -> None:
    slow = client.submit(gated, gates.path("slow"), pure=False)
    ok = client.submit(inc, 1, pure=False)
    wait(ok, timeout=T)
    bad = client.submit(fail, "x", pure=False)
    done, not_done = wait([slow, ok, bad], timeout=T, return_when=FIRST_EXCEPTION)
    assert bad in done and slow in not_done
    gates.open("slow")
    # with no error at all, FIRST_EXCEPTION waits for everything
    done, not_done = wait([slow, ok], timeout=T, return_when=FIRST_EXCEPTION)
    assert done == {slow, ok} and not not_done


def test_wait_timeout_raises(client: Client, gates: Gates) -> None:
    slow = client.submit(gated, gates.path("slow"), pure=False)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        wait([slow], timeout=0.2)
    with pytest.raises(TimeoutError):
        wait([slow], timeout=0.2, return_when=FIRST_COMPLETED)
    assert time.monotonic() - t0 < T
    gates.open("slow")
    wait([slow], timeout=T)


def test_wait_from_another_thread(client: Client) -> None:
    futures = client.map(inc, range(3), pure=False)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(wait(futures, timeout=T)))
    t.start()
    t.join(T)
    assert result and result[0].done == set(futures)


# -- as_completed --------------------------------------------------------------------------------


def test_as_completed_yields_in_completion_order(client: Client, gates: Gates) -> None:
    # one per worker (each has one thread), so none queues behind another
    futures = [client.submit(gated, gates.path(str(i)), i, workers=f"worker-{i}", pure=False) for i in range(2)]
    order: list[int] = []
    ac = as_completed(futures, timeout=T)
    assert ac.count() == 2 and not ac.is_empty()
    for name in ["1", "0"]:
        gates.open(name)
        fut = next(ac)
        order.append(fut.result(timeout=T))
    assert order == [1, 0]
    assert ac.is_empty()
    with pytest.raises(StopIteration):
        next(ac)


def test_as_completed_with_results(client: Client) -> None:
    futures = client.map(inc, range(4), pure=False)
    pairs = list(as_completed(futures, with_results=True, timeout=T))
    assert sorted(r for _, r in pairs) == [1, 2, 3, 4]
    assert {f for f, _ in pairs} == set(futures)
    assert all(f.result(timeout=T) == r for f, r in pairs)


def test_as_completed_errors_raise_or_are_yielded(client: Client) -> None:
    bad = client.submit(fail, "boom", pure=False)
    with pytest.raises(ValueError, match="boom"):
        list(as_completed([bad], with_results=True, timeout=T))
    ((fut, (typ, err, tb)),) = list(as_completed([bad], with_results=True, raise_errors=False, timeout=T))
    # as dask (issue 12): the result of a failed future is (type, exception, traceback)
    assert fut is bad and typ is ValueError and isinstance(err, ValueError)
    assert "fail" in [frame.name for frame in traceback.extract_tb(tb)]
    # without results, a failed future is simply yielded
    assert list(as_completed([bad], timeout=T)) == [bad]


def test_as_completed_add_while_iterating(client: Client) -> None:
    ac = as_completed([client.submit(inc, 0, pure=False)], timeout=T)
    seen = []
    for fut in ac:
        value = fut.result(timeout=T)
        seen.append(value)
        if value < 3:
            ac.add(client.submit(inc, value, pure=False))
    assert seen == [1, 2, 3]


def test_as_completed_timeout(client: Client, gates: Gates) -> None:
    slow = client.submit(gated, gates.path("slow"), pure=False)
    fast = client.submit(inc, 5, pure=False)
    ac = as_completed([slow, fast], timeout=0.5)
    assert next(ac) is fast
    with pytest.raises(TimeoutError):
        next(ac)
    gates.open("slow")
    wait(slow, timeout=T)
