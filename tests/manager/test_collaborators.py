"""The scheduler's collaborators alone: References, Placement, and their imports."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from localactors._manager import books
from localactors._manager.books import Task, TaskStatus, WorkerState
from localactors._manager.placement import Placement
from localactors._manager.refcount import References
from localactors._wire import protocol as P

GPU = (("GPU", 1.0),)


def test_references_count_handles_and_pins() -> None:
    refs = References()
    refs.hold("client", "x")
    refs.hold("client", "x")
    refs.drop("client", "x")
    assert refs.held("x") and refs.holders("x") == ["client"]
    refs.drop("client", "x")
    refs.pin("t1", "x")
    assert refs.held("x") and refs.holders("x") == []
    assert refs.unpin("t1") == "x" and not refs.held("x")


def test_an_unpin_before_its_pin_cancels_the_pin() -> None:
    refs = References()
    assert refs.unpin("t1") is None
    refs.pin("t1", "x")
    assert not refs.held("x")


def test_a_link_going_away_forgets_all_its_handles() -> None:
    refs = References()
    for key in ("x", "y", "x"):
        refs.hold("w", key)
    refs.hold("c", "y")
    for key in refs.held_by("w"):
        refs.forget("w", key)
    assert (refs.held("x"), refs.holders("y")) == (False, ["c"])


class Harness:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerState] = {}
        self.tasks: dict[str, Task] = {}
        self.sent: list[tuple[Any, P.Message]] = []
        self.failed: list[str] = []
        self.placement = Placement(self.workers, self.tasks, lambda link, msg: self.sent.append((link, msg)), self.fail)

    def fail(self, task: Task, error: bytes) -> None:
        self.failed.append(task.key)

    def worker(self, name: str) -> WorkerState:
        ws = self.workers[name] = WorkerState(
            P.WorkerInfo(name, f"addr-{name}", 1, 1, GPU, None), name, len(self.workers)
        )
        self.placement.add_worker(ws)
        return ws

    def task(self, key: str, **options: Any) -> Task:
        task = self.tasks[key] = Task(key, P.TaskSpec(key, b"", (), **options))
        self.placement.schedule(task)
        return task


def test_placement_takes_resources_and_gives_them_back() -> None:
    h = Harness()
    a = h.worker("a")
    t = h.task("t", resources=GPU)
    u = h.task("u", resources=GPU)
    assert (t.status, u.status, h.placement.free(a)) == (TaskStatus.PROCESSING, TaskStatus.NO_WORKER, {"GPU": 0})
    h.placement.give_back(a, t)
    assert u.status is TaskStatus.PROCESSING and [msg.spec.key for _, msg in h.sent] == ["t", "u"]


def test_an_orphan_keeps_its_resources_until_its_run_ends() -> None:
    h = Harness()
    a = h.worker("a")
    t = h.task("t", resources=GPU)
    h.placement.orphan(t)
    assert h.placement.free(a) == {"GPU": 0}
    h.placement.run_ended(a, "t")
    assert h.placement.free(a) == {"GPU": 1}


def test_placement_fails_a_task_bound_to_dead_workers_through_its_callable() -> None:
    h = Harness()
    h.worker("a")
    h.worker("b")
    h.placement.remove_worker(h.workers.pop("a"), "died")
    h.task("t", workers=("a", "addr-a"))
    h.task("u", workers=("a", "b"))
    assert h.failed == ["t"] and h.sent[-1][0] == "b"


def test_the_books_modules_do_not_import_each_other_in_a_circle() -> None:
    """books imports none of them; placement and refcount import books only (not the
    scheduler, nor each other), also under TYPE_CHECKING or inside a function."""
    folder = Path(books.__file__).parent
    allowed = {"books": set(), "placement": {"books"}, "refcount": {"books"}}
    for module, may_import in allowed.items():
        tree = ast.parse((folder / f"{module}.py").read_text())
        siblings = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        assert siblings <= may_import, module
