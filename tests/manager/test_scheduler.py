"""The manager's scheduler alone: real protocol messages in, sent messages out.

No process, no socket: links are plain objects and ``send`` appends to a list,
so each test drives :class:`~localactors._manager.scheduler.Scheduler` the way
the manager does and asserts on what it sent to whom.
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localactors._base.errors import ActorLostError, KilledWorker, WorkerLostError, dump_exception, load_exception
from localactors._manager.books import TaskStatus
from localactors._manager.scheduler import Scheduler
from localactors._wire import protocol as P

ACTOR = P.ActorInfo("Counter", ("add",), ())


class FakeLink:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Books:
    """A scheduler, one client holding whatever it asks for, and what was sent."""

    def __init__(self, allowed_failures: int = 3) -> None:
        self.sent: list[tuple[Any, P.Message]] = []
        self.sched = Scheduler(lambda link, msg: self.sent.append((link, msg)), allowed_failures)
        self.client = FakeLink("client")
        self.sched.client_links.add(self.client)
        self.links: dict[str, FakeLink] = {}

    def worker(self, name: str, nthreads: int = 1, resources: tuple[tuple[str, float], ...] = ()) -> Any:
        link = self.links[name] = FakeLink(name)
        return self.sched.add_worker(P.WorkerInfo(name, f"addr-{name}", 1, nthreads, resources, None), link)

    def hold(self, *keys: str, by: Any = None) -> None:
        self.sched.ref_delta(by or self.client, P.RefDelta(changes=tuple((k, 1) for k in keys)))

    def drop(self, *keys: str) -> None:
        self.sched.ref_delta(self.client, P.RefDelta(changes=tuple((k, -1) for k in keys)))

    def submit(self, key: str, *deps: str, hold: bool = True, **options: Any) -> None:
        if hold:
            self.hold(key)
        self.sched.submit((P.TaskSpec(key, b"", deps, **options),))

    def done(self, ws: Any, key: str, actor: P.ActorInfo | None = None) -> None:
        self.sched.task_done(ws, P.TaskDone(key, 8, "Counter" if actor else "int", actor))

    def erred(self, ws: Any, key: str, error: bytes = b"boom") -> None:
        self.sched.task_erred(ws, P.TaskErred(key, error))

    def take(self) -> list[tuple[Any, P.Message]]:
        sent, self.sent = self.sent, []
        return sent

    def runs(self) -> list[tuple[str, str]]:
        """(worker, key) of every RunTask sent since the last take()."""
        return [(link.name, msg.spec.key) for link, msg in self.take() if isinstance(msg, P.RunTask)]

    def to_client(self) -> list[P.Message]:
        return [msg for link, msg in self.take() if link is self.client]


def error_of(msg: P.Message) -> BaseException:
    assert isinstance(msg, (P.KeyErred, P.KeyLost))
    return load_exception(msg.error)


@pytest.fixture
def books() -> Books:
    return Books()


# -- placement -------------------------------------------------------------------------------


def test_actors_go_to_the_worker_with_fewest_counting_those_starting(books: Books) -> None:
    a, _ = books.worker("a"), books.worker("b")
    books.submit("c1", actor=True)
    books.submit("c2", actor=True)
    books.done(a, "c1", ACTOR)
    books.submit("c3", actor=True)  # a: 1 actor, b: 1 starting and busy
    assert books.runs() == [("a", "c1"), ("b", "c2"), ("a", "c3")]


def test_tasks_go_to_the_least_busy_worker_per_thread(books: Books) -> None:
    books.worker("a", nthreads=1)
    books.worker("b", nthreads=4)
    for i in range(6):
        books.submit(f"t{i}")
    assert [w for w, _ in books.runs()] == ["a", "b", "b", "b", "b", "a"]


def test_a_task_prefers_the_worker_holding_its_inputs(books: Books) -> None:
    books.worker("a")
    b = books.worker("b")
    books.submit("x", workers=("b",))
    books.done(b, "x")
    books.take()
    books.submit("y", "x")
    [(link, msg)] = books.take()
    assert link.name == "b" and msg == P.RunTask(P.TaskSpec("y", b"", ("x",)), (("x", "addr-b"),))


def test_resources_limit_what_runs_and_are_given_back(books: Books) -> None:
    a = books.worker("a", resources=(("GPU", 1),))
    books.worker("b")
    books.submit("g1", resources=(("GPU", 1),))
    books.submit("g2", resources=(("GPU", 1),))
    assert books.runs() == [("a", "g1")]  # g2 fits nowhere: no-worker
    books.done(a, "g1")
    assert books.runs() == [("a", "g2")]


def test_a_no_worker_task_is_placed_when_a_worker_arrives(books: Books) -> None:
    books.submit("t")
    assert books.runs() == []
    books.worker("a")
    assert books.runs() == [("a", "t")]


def test_workers_restriction_by_name_or_address(books: Books) -> None:
    books.worker("a")
    books.worker("b")
    books.submit("t", workers=("addr-b",))
    books.submit("u", workers=("nobody",))
    books.submit("v", workers=("nobody",), allow_other_workers=True)
    assert books.runs() == [("b", "t"), ("a", "v")]


def test_a_task_bound_to_a_dead_worker_errs(books: Books) -> None:
    books.worker("a")
    books.worker("b")
    books.sched.remove_worker("b", "was killed")
    books.take()
    books.submit("t", workers=("addr-b",))
    [msg] = books.to_client()
    assert isinstance(error_of(msg), WorkerLostError) and "was killed" in str(error_of(msg))


# -- task lifecycle --------------------------------------------------------------------------


def test_submit_run_done_tells_the_holders(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    assert books.take() == [(books.links["a"], P.RunTask(P.TaskSpec("x", b"", ()), ()))]
    books.done(a, "x")
    assert books.to_client() == [P.KeyDone("x", "a", "addr-a", "int", None)]


def test_tasks_done_reports_each_task_as_its_own_task_done(books: Books) -> None:
    a = books.worker("a")
    for key in ("x", "y", "z"):
        books.submit(key)
    books.drop("z")  # released while it runs: its value is freed when it ends
    books.take()
    books.sched.tasks_done(a, P.TasksDone((("x", 8, "int"), ("z", 8, "int"), ("y", 8, "NoneType"))))
    assert books.take() == [
        (books.client, P.KeyDone("x", "a", "addr-a", "int", None)),
        (books.links["a"], P.FreeKeys(("z",))),
        (books.client, P.KeyDone("y", "a", "addr-a", "NoneType", None)),
    ]
    assert books.sched.status("x") is books.sched.status("y") is TaskStatus.MEMORY
    assert a.processing == set() and a.has == {"x", "y"}


def test_submit_plain_stands_for_a_task_spec_each() -> None:
    msg = P.SubmitPlain((("x", b"p"), ("y", b"q")), ("a",), (("GPU", 1.0),), True, 2, False)
    options = {"workers": ("a",), "resources": (("GPU", 1.0),), "allow_other_workers": True, "retries": 2}
    assert msg.specs() == (P.TaskSpec("x", b"p", (), **options), P.TaskSpec("y", b"q", (), **options))


def test_the_usual_task_goes_to_the_least_busy_live_worker_the_oldest_on_ties(books: Books) -> None:
    books.worker("a")
    b = books.worker("b")
    books.worker("c", nthreads=2)
    for i in range(5):
        books.submit(f"t{i}")
    assert [w for w, _ in books.runs()] == ["a", "b", "c", "c", "a"]
    b.retiring = True
    books.submit("u")
    assert books.runs() == [("c", "u")]


def test_a_holder_arriving_after_the_result_is_told_at_once(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    books.done(a, "x")
    books.take()
    other = FakeLink("other")
    books.sched.client_links.add(other)
    books.hold("x", by=other)
    assert books.take() == [(other, P.KeyDone("x", "a", "addr-a", "int", None))]


def test_the_same_pure_task_submitted_twice_runs_once(books: Books) -> None:
    books.worker("a")
    books.submit("x")
    books.submit("x")
    assert books.runs() == [("a", "x")]


def test_a_task_waits_for_its_inputs(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    books.submit("y", "x")
    assert books.runs() == [("a", "x")]
    books.done(a, "x")
    sent = [msg for _, msg in books.take() if isinstance(msg, P.RunTask)]
    assert sent == [P.RunTask(P.TaskSpec("y", b"", ("x",)), (("x", "addr-a"),))]


def test_an_error_fails_the_dependents_too(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    books.submit("y", "x")
    books.take()
    books.erred(a, "x")
    assert books.to_client() == [P.KeyErred("x", b"boom"), P.KeyErred("y", b"boom")]


def test_retries_then_the_error(books: Books) -> None:
    a = books.worker("a")
    books.submit("x", retries=1)
    books.erred(a, "x")
    assert books.runs() == [("a", "x"), ("a", "x")]
    books.erred(a, "x", b"again")
    assert books.to_client() == [P.KeyErred("x", b"again")]


# -- workers leaving ---------------------------------------------------------------------------


def test_a_dead_workers_tasks_run_elsewhere(books: Books) -> None:
    books.worker("a")
    books.submit("t")
    books.worker("b")
    books.take()
    notice = books.sched.remove_worker("a", "was killed by signal 9", -9)
    assert notice == P.WorkerDied("a", "addr-a", "was killed by signal 9", -9, ())
    assert books.runs() == [("b", "t")]
    assert books.sched.remove_worker("a", "again") is None
    assert list(books.sched.workers) == ["b"]


def test_killed_worker_after_allowed_failures() -> None:
    books = Books(allowed_failures=1)
    books.worker("a")
    books.worker("b")
    books.submit("t")
    books.sched.remove_worker("a", "died")
    assert books.runs() == [("a", "t"), ("b", "t")]
    books.sched.remove_worker("b", "died too")
    [msg] = books.to_client()
    assert isinstance(error_of(msg), KilledWorker) and "running on 2 workers" in str(error_of(msg))


def test_an_actor_dies_with_its_worker(books: Books) -> None:
    a = books.worker("a")
    books.worker("b")
    books.submit("c", actor=True)
    books.done(a, "c", ACTOR)
    books.take()
    notice = books.sched.remove_worker("a", "died")
    assert notice is not None and notice.restarting == ()
    [msg] = books.to_client()
    assert isinstance(msg, P.KeyLost) and isinstance(error_of(msg), ActorLostError)
    assert books.runs() == []


def test_an_actor_with_restarts_left_moves(books: Books) -> None:
    a = books.worker("a")
    b = books.worker("b")
    books.submit("c", actor=True, max_restarts=1)
    books.done(a, "c", ACTOR)
    books.take()
    notice = books.sched.remove_worker("a", "died")
    assert notice is not None and notice.restarting == ("c",)
    assert books.runs() == [("b", "c")]
    books.done(b, "c", ACTOR)
    moved = P.ActorMoved("c", "b", "addr-b")
    assert books.take() == [
        (books.client, moved),
        (books.links["b"], moved),
        (books.client, P.KeyDone("c", "b", "addr-b", "Counter", ACTOR)),
    ]


def test_held_data_lost_with_its_worker_is_computed_again(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    books.submit("y", "x", "z")  # y keeps waiting on z while x is recomputed
    books.submit("z", workers=("a",), resources=(("GPU", 1),))  # fits nowhere: stays no-worker
    books.done(a, "x")
    books.worker("b")
    books.take()
    books.sched.remove_worker("a", "died")
    assert books.take() == [
        (books.client, P.KeyReset("x")),
        (books.links["b"], P.RunTask(P.TaskSpec("x", b"", ()), ())),
    ]


def test_scattered_data_lost_with_its_worker(books: Books) -> None:
    a = books.worker("a")
    books.hold("s")
    books.sched.scatter((("s", b"data"),), ())
    books.done(a, "s")
    books.take()
    books.sched.remove_worker("a", "died")
    [msg] = books.to_client()
    assert isinstance(msg, P.KeyLost) and type(error_of(msg)) is WorkerLostError


# -- references ------------------------------------------------------------------------------


def test_the_last_reference_dropped_frees_the_key_on_its_worker(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    books.done(a, "x")
    books.hold("x")  # a second handle
    books.take()
    books.drop("x")
    assert books.take() == []
    books.drop("x")
    assert books.take() == [(books.links["a"], P.FreeKeys(("x",)))]


def test_a_result_nobody_holds_is_freed_at_once(books: Books) -> None:
    a = books.worker("a")
    books.submit("x", hold=False)
    books.done(a, "x")
    assert books.take()[-1] == (books.links["a"], P.FreeKeys(("x",)))


def test_an_input_is_freed_once_a_dependent_released_while_running_ends(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    books.done(a, "x")
    books.take()
    books.submit("y", "x")
    assert books.runs() == [("a", "y")]
    books.drop("y")  # released while it runs
    books.drop("x")  # y still runs on x: keep it
    assert (books.links["a"], P.FreeKeys(("x",))) not in books.take()
    books.done(a, "y")
    sent = books.take()
    assert (books.links["a"], P.FreeKeys(("y",))) in sent
    assert (books.links["a"], P.FreeKeys(("x",))) in sent
    assert "x" not in books.sched.tasks


def test_an_input_is_freed_once_a_dependent_released_while_running_dies_with_its_worker(books: Books) -> None:
    a = books.worker("a")
    books.worker("b")
    books.submit("x", workers=("a",))
    books.done(a, "x")
    books.take()
    books.submit("y", "x", workers=("b",))
    assert books.runs() == [("b", "y")]
    books.drop("y")
    books.drop("x")
    books.take()
    books.sched.remove_worker("b", "killed")
    assert (books.links["a"], P.FreeKeys(("x",))) in books.take()
    assert "x" not in books.sched.tasks


def test_a_pin_keeps_the_key_until_unpinned_even_if_the_unpin_came_first(books: Books) -> None:
    a = books.worker("a")
    books.submit("x")
    books.done(a, "x")
    books.sched.ref_delta(books.client, P.RefDelta(pins=(("t1", "x"),)))
    books.sched.ref_delta(books.client, P.RefDelta(unpins=("t2",)))  # its pin is still on the way
    books.sched.ref_delta(books.client, P.RefDelta(changes=(("x", -1),), pins=(("t2", "x"),)))
    books.take()
    books.sched.ref_delta(books.client, P.RefDelta(unpins=("t1",)))
    assert books.take() == [(books.links["a"], P.FreeKeys(("x",)))]


def test_a_holder_going_away_drops_its_references(books: Books) -> None:
    a = books.worker("a")
    books.submit("c", actor=True)
    books.done(a, "c", ACTOR)
    books.take()
    books.sched.drop_holder(books.client)
    assert books.take() == [(books.links["a"], P.FreeKeys(("c",)))]
    assert books.sched.client_links == set()


def test_an_actors_resources_come_back_when_it_is_released(books: Books) -> None:
    a = books.worker("a", resources=(("slot", 1),))
    books.submit("c1", actor=True, resources=(("slot", 1),))
    books.submit("c2", actor=True, resources=(("slot", 1),))
    books.done(a, "c1", ACTOR)
    assert books.runs() == [("a", "c1")]  # an actor keeps its resources for its life
    books.drop("c1")
    assert books.runs() == [("a", "c2")]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["k0", "k1"]), st.sampled_from([0, 1]), st.booleans()), max_size=30))
def test_a_key_is_freed_exactly_when_its_count_reaches_zero(steps: list[tuple[str, int, bool]]) -> None:
    books = Books()
    a = books.worker("a")
    for key in ("k0", "k1"):
        books.submit(key)
        books.done(a, key)
    holders = [books.client, FakeLink("worker-holder")]
    count = {(key, h): int(h == 0) for key in ("k0", "k1") for h in (0, 1)}
    freed: list[str] = []
    for key, h, up in steps:
        if key in freed or (not up and count[key, h] == 0):
            continue
        count[key, h] += 1 if up else -1
        books.sched.ref_delta(holders[h], P.RefDelta(changes=((key, 1 if up else -1),)))
        if count[key, 0] + count[key, 1] == 0:
            freed.append(key)
    frees = [msg.keys[0] for _, msg in books.take() if isinstance(msg, P.FreeKeys)]
    assert frees == freed


# -- cancel and scatter ----------------------------------------------------------------------


def test_cancel_a_waiting_task_cancels_its_dependents(books: Books) -> None:
    books.submit("x")
    books.submit("y", "x")
    books.sched.cancel(("x",))
    cancelled = dump_exception(CancelledError("cancelled"))
    assert books.to_client() == [P.KeyErred("x", cancelled), P.KeyErred("y", cancelled)]
    books.worker("a")
    assert books.runs() == []


def test_a_cancelled_run_that_ends_is_freed_and_gives_back(books: Books) -> None:
    a = books.worker("a", resources=(("slot", 1),))
    books.submit("x", resources=(("slot", 1),))
    books.submit("y", resources=(("slot", 1),))
    books.sched.cancel(("x",))
    books.take()
    books.done(a, "x")
    assert books.take() == [
        (books.links["a"], P.RunTask(P.TaskSpec("y", b"", (), resources=(("slot", 1),)), ())),
        (books.links["a"], P.FreeKeys(("x",))),
    ]


def test_scatter_puts_data_on_the_emptiest_worker_then_round_robin(books: Books) -> None:
    a = books.worker("a")
    books.worker("b")
    books.hold("s")
    books.sched.scatter((("s", b"1"),), ())
    books.done(a, "s")
    books.take()
    books.sched.scatter((("t", b"2"),), ())
    books.sched.scatter((("u", b"3"), ("v", b"4"), ("w", b"5")), ())
    books.sched.scatter((("s", b"1"),), ())  # already there: one copy
    books.sched.scatter((("z", b"6"),), ("addr-a",))
    puts = [(link.name, msg.key) for link, msg in books.take() if isinstance(msg, P.PutData)]
    assert puts == [("b", "t"), ("a", "u"), ("b", "v"), ("a", "w"), ("a", "z")]
