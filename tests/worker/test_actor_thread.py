"""The worker's actor executor alone: mailboxes, the baton, helper threads.

No process and no link: operations are plain functions submitted to an
:class:`~localactors._worker.actor_thread.ActorThread`, and actor code waits
on an :class:`~localactors._base.futures.ActorFuture` that another operation sets.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterator

import pytest
from helpers import wait_until

from localactors._base.futures import ActorFuture, Completion
from localactors._worker.actor_thread import ActorThread

T = 10.0


@pytest.fixture
def executor() -> Iterator[ActorThread]:
    ex = ActorThread("unit")
    ex.start()
    yield ex
    ex.stop()
    for thread in list(ex.threads):
        thread.join(T)


def test_one_actor_runs_its_operations_in_order(executor: ActorThread) -> None:
    seen: list[int] = []
    finished = threading.Event()
    for i in range(50):
        executor.submit("a", lambda i=i: seen.append(i))
    executor.submit("a", finished.set)
    assert finished.wait(T)
    assert seen == list(range(50))


def test_actor_code_runs_on_the_actor_thread(executor: ActorThread) -> None:
    names: list[str] = []
    finished = threading.Event()
    executor.submit("a", lambda: names.append(threading.current_thread().name))
    executor.submit("a", finished.set)
    assert finished.wait(T)
    assert names == ["localactors-actor-unit"]


def test_a_waiting_actor_lends_the_baton_to_a_helper(executor: ActorThread) -> None:
    """``a`` waits for a future only ``b`` sets: ``b`` runs on a helper meanwhile."""
    fut = ActorFuture("unit")
    log: list[tuple[str, str]] = []
    finished = threading.Event()

    def a_waits() -> None:
        log.append(("a starts", threading.current_thread().name))
        value = fut.result(timeout=T)
        log.append((f"a got {value}", threading.current_thread().name))

    executor.submit("a", a_waits)
    executor.submit("a", lambda: log.append(("a next", threading.current_thread().name)))
    executor.submit("b", lambda: (log.append(("b sets", threading.current_thread().name)), fut.set_result(7)))
    executor.submit("a", finished.set)
    assert finished.wait(T)
    assert [what for what, _ in log] == ["a starts", "b sets", "a got 7", "a next"]
    threads = dict(log)
    assert threads["a starts"] == threads["a got 7"] == "localactors-actor-unit"  # the waiter resumes where it was
    assert threads["b sets"] == "localactors-actor-unit-1"


def test_helpers_leave_once_nobody_waits(executor: ActorThread) -> None:
    fut = ActorFuture("unit")
    finished = threading.Event()
    executor.submit("a", lambda: fut.result(timeout=T))
    executor.submit("b", lambda: fut.set_result(None))
    executor.submit("a", finished.set)
    assert finished.wait(T)
    wait_until(lambda: [t.name for t in executor.threads] == ["localactors-actor-unit"], T, "the helper left")


def test_waits_do_not_nest(executor: ActorThread) -> None:
    """A later wait of ``b`` does not hold up ``a``, whose future is done first."""
    fut_a, fut_b = ActorFuture("a"), ActorFuture("b")
    order: list[str] = []
    finished = threading.Event()

    def wait_for(fut: ActorFuture, name: str) -> None:
        fut.result(timeout=T)
        order.append(name)

    executor.submit("a", lambda: wait_for(fut_a, "a"))
    executor.submit("b", lambda: wait_for(fut_b, "b"))
    executor.submit("c", lambda: (fut_a.set_result(None), order.append("c")))
    wait_until(lambda: order == ["c", "a"], T, "a resumed while b still waits")
    fut_b.set_result(None)
    executor.submit("d", finished.set)
    assert finished.wait(T)
    wait_until(lambda: order == ["c", "a", "b"], T, "b resumed")


def test_a_pending_start_keeps_the_actor_busy(executor: ActorThread) -> None:
    """An operation returning a not-done Completion (an async call's start) holds back the actor's next one."""
    started = Completion()
    order: list[str] = []
    finished = threading.Event()
    executor.submit("a", lambda: started)
    executor.submit("a", lambda: order.append("a next"))
    executor.submit("b", lambda: order.append("b"))
    executor.submit("b", finished.set)
    assert finished.wait(T)
    assert order == ["b"]
    started.set_result(None)
    wait_until(lambda: order == ["b", "a next"], T, "a's next operation ran")


def test_an_operation_that_raises_is_logged_and_serving_goes_on(
    executor: ActorThread, caplog: pytest.LogCaptureFixture
) -> None:
    finished = threading.Event()
    executor.submit("a", lambda: 1 / 0)
    executor.submit("a", finished.set)
    assert finished.wait(T)
    assert "an actor operation failed" in caplog.text


def test_a_wait_ends_when_stopping() -> None:
    ex = ActorThread("unit")
    ex.start()
    fut = ActorFuture("unit")
    outcome: list[object] = []
    entered = threading.Event()

    def wait_forever() -> None:
        entered.set()
        try:
            fut.result()
        except BaseException as err:
            outcome.append(type(err))

    ex.submit("a", wait_forever)
    assert entered.wait(T)
    ex.stop()
    wait_until(lambda: bool(outcome), T, "the wait returned")
    for thread in list(ex.threads):
        thread.join(T)
    assert outcome == [TimeoutError]
    assert not any(t.is_alive() for t in ex.threads)


def test_the_idle_wait_is_woken_by_new_work() -> None:
    """With an idle wait, the idle primary thread sits in it; ``submit`` wakes it through the fd."""
    ex = ActorThread("unit")
    calls: list[int] = []

    def idle_wait(wake_fd: int) -> None:
        calls.append(wake_fd)
        select.select([wake_fd], [], [], T)  # as a worker's does when it has no link to read
        try:
            os.read(wake_fd, 4096)
        except BlockingIOError:
            pass

    ex.set_idle_wait(idle_wait)
    ex.start()
    try:
        wait_until(lambda: bool(calls), T, "the idle thread waits in idle_wait")
        finished = threading.Event()
        ex.submit("a", finished.set)
        assert finished.wait(T)
    finally:
        ex.stop()
        for thread in list(ex.threads):
            thread.join(T)
