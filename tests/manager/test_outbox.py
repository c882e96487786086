"""The manager's outbox alone: per-task messages in, batched messages out, order kept.

No socket: ``write`` appends what would be written to a list, so each test
asserts on the messages each link would get, and when.
"""

from __future__ import annotations

from typing import Any

from localactors._manager import outbox as O
from localactors._manager.outbox import Outbox
from localactors._wire import protocol as P

ACTOR = P.ActorInfo("Counter", ("add",), ())


class Writes:
    def __init__(self) -> None:
        self.written: list[tuple[str, list[P.Message]]] = []
        self.box = Outbox(lambda link, msgs: self.written.append((link, msgs)))

    def take(self) -> list[tuple[str, list[P.Message]]]:
        written, self.written = self.written, []
        return written


def run(key: str, payload: bytes = b"p", who_has: tuple[tuple[str, str], ...] = (), **options: Any) -> P.RunTask:
    return P.RunTask(P.TaskSpec(key, payload, tuple(d for d, _ in who_has), **options), who_has)


def done(key: str, worker: str = "a", actor: P.ActorInfo | None = None) -> P.KeyDone:
    return P.KeyDone(key, worker, f"addr-{worker}", "int", actor)


def test_neighbouring_runs_of_plain_tasks_become_one_run_tasks_in_order() -> None:
    w = Writes()
    for key in ("x", "y", "z"):
        w.box.add("a", run(key, who_has=(("d", "addr-b"),) if key == "y" else ()))
    assert w.take() == []  # nothing is written before the flush
    w.box.flush()
    assert w.take() == [("a", [P.RunTasks((("x", b"p", ()), ("y", b"p", (("d", "addr-b"),)), ("z", b"p", ())))])]


def test_a_lone_message_goes_as_it_came() -> None:
    w = Writes()
    w.box.add("a", run("x"))
    w.box.add("c", done("x"))
    w.box.add("a", P.FreeKeys(("old",)))
    w.box.flush()
    assert w.take() == [("a", [run("x"), P.FreeKeys(("old",))]), ("c", [done("x")])]


def test_only_neighbours_merge_so_a_free_still_comes_before_the_run_of_its_key() -> None:
    w = Writes()
    w.box.add("a", run("x"))
    w.box.add("a", P.FreeKeys(("k",)))
    w.box.add("a", P.FreeKeys(("l",)))
    w.box.add("a", run("k"))
    w.box.add("a", run("m"))
    w.box.flush()
    [(_, msgs)] = w.take()
    assert msgs == [run("x"), P.FreeKeys(("k", "l")), P.RunTasks((("k", b"p", ()), ("m", b"p", ())))]


def test_actors_and_large_payloads_go_as_their_own_run_task() -> None:
    w = Writes()
    big = b"b" * P.OUT_OF_BAND
    msgs_in = [run("x"), run("c", actor=True), run("y"), run("z"), run("big", big), run("w")]
    for msg in msgs_in:
        w.box.add("a", msg)
    w.box.flush()
    [(_, msgs)] = w.take()
    runs = P.RunTasks((("y", b"p", ()), ("z", b"p", ())))
    assert msgs == [run("x"), run("c", actor=True), runs, msgs_in[4], run("w")]


def test_key_done_of_one_worker_merge_into_keys_done() -> None:
    w = Writes()
    for msg in (done("x"), done("y"), done("z", "b"), done("c", "b", ACTOR), done("u", "b"), done("v", "b")):
        w.box.add("client", msg)
    w.box.flush()
    [(_, msgs)] = w.take()
    assert msgs == [
        P.KeysDone("a", "addr-a", (("x", "int"), ("y", "int"))),
        done("z", "b"),
        done("c", "b", ACTOR),
        P.KeysDone("b", "addr-b", (("u", "int"), ("v", "int"))),
    ]


def test_each_link_keeps_its_own_order() -> None:
    w = Writes()
    w.box.add("a", run("x"))
    w.box.add("b", run("y"))
    w.box.add("a", run("z"))
    w.box.flush()
    assert dict(w.take()) == {"a": [P.RunTasks((("x", b"p", ()), ("z", b"p", ())))], "b": [run("y")]}


def test_a_full_batch_is_written_at_once_so_a_worker_starts_early() -> None:
    w = Writes()
    w.box.add("a", P.FreeKeys(("k",)))
    for i in range(O.BATCH + 1):
        w.box.add("a", run(f"t{i}"))
    [(link, msgs)] = w.take()  # before any flush: the link's messages so far, in order
    assert link == "a" and msgs[0] == P.FreeKeys(("k",))
    assert [item[0] for item in msgs[1].tasks] == [f"t{i}" for i in range(O.BATCH)]  # type: ignore[union-attr]
    w.box.flush()
    assert w.take() == [("a", [run(f"t{O.BATCH}")])]
    w.box.flush()
    assert w.take() == []  # flushed messages are forgotten


def test_batched_messages_cross_the_wire() -> None:
    from localactors._wire import codec as W

    for msg in (
        P.RunTasks((("x", b"p", ()), ("y", b"q", (("d", "addr-b"),)))),
        P.TasksDone((("x", 8, "int"), ("y", 8, "NoneType"))),
        P.KeysDone("a", "addr-a", (("x", "int"),)),
        P.SubmitPlain((("x", b"p"),), ("a",), (("GPU", 1.0),), True, 2, False),
    ):
        frames = W.encode(msg)
        assert W.decode(bytes(frames[0]), [bytes(f) for f in frames[1:]]) == msg
