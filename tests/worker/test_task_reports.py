"""A worker's task reports and task pool alone: when ``TaskDone`` goes, and how tasks are queued.

No process and no manager: ``send`` appends to a list, the pool's queue length
and the worker loop's ``call_later`` are stand-ins the test controls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from localactors._base.blocking import blocked
from localactors._wire import protocol as P
from localactors._worker import tasks as T
from localactors._worker.taskpool import TaskPool

TIMEOUT = 10.0


class Reports:
    def __init__(self) -> None:
        self.sent: list[P.Message] = []
        self.queued = 0
        self.later: list[tuple[float, Callable[[], None]]] = []
        self.reports = T.DoneReports(self.sent.append, lambda: self.queued, self._later)

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        self.later.append((delay, fn))


def test_a_lone_task_is_reported_at_once_as_its_own_task_done() -> None:
    r = Reports()
    r.reports.add("x", 8, "int")
    assert r.sent == [P.TaskDone("x", 8, "int")] and r.later == []


def test_while_tasks_are_queued_reports_are_held_then_go_together_when_the_queue_runs_empty() -> None:
    r = Reports()
    r.queued = 2
    r.reports.add("x", 8, "int")
    r.reports.add("y", 8, "int")
    assert r.sent == []
    assert [delay for delay, _ in r.later] == [T.HOLD_FOR]  # one deadline for the held batch
    r.queued = 0
    r.reports.add("z", 8, "NoneType")
    assert r.sent == [P.TasksDone((("x", 8, "int"), ("y", 8, "int"), ("z", 8, "NoneType")))]
    r.later[0][1]()  # the deadline comes: nothing is left to send
    assert len(r.sent) == 1


def test_the_deadline_sends_what_is_held_while_a_long_task_runs() -> None:
    r = Reports()
    r.queued = 1
    r.reports.add("quick", 8, "int")
    assert r.sent == []
    r.later[0][1]()  # the next task runs long: the worker's loop flushes
    assert r.sent == [P.TaskDone("quick", 8, "int")]
    r.reports.add("next", 8, "int")  # a new batch arms a new deadline
    assert len(r.later) == 2


def test_at_most_max_held_reports_wait() -> None:
    r = Reports()
    r.queued = 10**6
    for i in range(T.MAX_HELD):
        r.reports.add(f"t{i}", 8, "int")
    [msg] = r.sent
    assert isinstance(msg, P.TasksDone) and [k for k, _, _ in msg.done] == [f"t{i}" for i in range(T.MAX_HELD)]


def test_with_the_loop_closed_reports_go_at_once() -> None:
    sent: list[P.Message] = []

    def closed(delay: float, fn: Callable[[], None]) -> None:
        raise RuntimeError("Event loop is closed")

    reports = T.DoneReports(sent.append, lambda: 1, closed)
    reports.add("x", 8, "int")
    assert sent == [P.TaskDone("x", 8, "int")]


@pytest.fixture
def pool() -> Iterator[TaskPool]:
    p = TaskPool(1, "test")
    yield p
    p.shutdown(wait=True)


def test_submit_many_runs_the_calls_in_order(pool: TaskPool) -> None:
    ran: list[int] = []
    finished = threading.Event()

    def task(i: int) -> None:
        ran.append(i)
        if i == 99:
            finished.set()

    pool.submit_many(task, [(i,) for i in range(100)])
    assert finished.wait(TIMEOUT)
    assert ran == list(range(100))
    assert len(pool.threads) == 1  # one thread took them all, one after the other


def test_a_task_about_to_wait_calls_on_block_first(pool: TaskPool) -> None:
    calls: list[str] = []
    pool.on_block = lambda: calls.append("on_block")
    done = threading.Event()

    def waits() -> None:
        with blocked():  # what a wait on a future does in a task thread
            calls.append("waiting")
        done.set()

    pool.submit(waits)
    assert done.wait(TIMEOUT)
    assert calls == ["on_block", "waiting"]


def test_queued_counts_the_tasks_waiting_for_a_thread(pool: TaskPool) -> None:
    gate, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(TIMEOUT)

    pool.submit(hold)
    assert started.wait(TIMEOUT)
    pool.submit_many(lambda: None, [(), ()])
    assert pool.queued() == 2
    gate.set()
