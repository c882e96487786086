"""TaskRunner: how a worker runs the tasks the manager sends it, and makes actors.

Runs in: a worker process (``start`` on the manager link's reader thread;
dependencies arrive on peer links' readers; plain tasks run on the task pool's
threads, actor creation on the actor thread).

A ``RunTask`` names the task's dependencies and who holds them. Those not
held here are fetched from their workers (``GetData``), all at once; then the
task goes to the task pool (a plain task) or to the actor thread (an actor's
creation: its ``__init__`` is the actor's first operation). Its value is kept
in the worker's data (or its actors) and reported to the manager as
``TaskDone``, its error as ``TaskErred``.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .._base.errors import WorkerLostError, dump_exception
from .._base.futures import Completion
from .._base.serialize import SerialContext, loads
from .._caller.actor import Actor
from .._caller.node import FetchedData, Node
from .._wire import protocol as P
from .actor_thread import ActorThread
from .calls import members
from .taskpool import TaskPool


class TaskRunner:
    """Fetches a task's dependencies, runs it, keeps its value, reports the outcome."""

    def __init__(
        self,
        *,
        name: str,
        address: str,
        node: Node,
        data: dict[str, Any],
        actors: dict[str, Any],
        actor_info: dict[str, P.ActorInfo],
        actor_thread: ActorThread,
        pool: TaskPool,
        report: Callable[[P.Message], None],
        await_in_loop: Callable[[Coroutine[Any, Any, Any]], Any],
        enter_task_thread: Callable[[], None],
    ) -> None:
        self.name = name
        self.address = address
        self.node = node
        self.data = data  # task results, by key (the worker's)
        self.actors = actors  # actor instances, by key (the worker's)
        self.actor_info = actor_info
        self.actor_thread = actor_thread
        self.pool = pool
        self._report = report  # to the manager
        self._await_in_loop = await_in_loop  # runs a coroutine on the worker's loop, blocking this thread
        self._enter_task_thread = enter_task_thread  # makes this thread the worker's (get_worker())

    def start(self, spec: P.TaskSpec, who_has: tuple[tuple[str, str], ...]) -> None:
        """Start the task ``spec``: fetch what it needs that is not here, then run it."""
        fetched: dict[str, bytes] = {}
        wanted: dict[str, list[str]] = {}
        for key, address in who_has:
            if key not in self.data and key not in self.actors:
                wanted.setdefault(address, []).append(key)
        if not wanted:
            self._dispatch(spec, fetched)
            return
        remaining = [len(wanted)]
        lock = threading.Lock()

        def on_fetched(comp: Completion) -> None:
            if comp.error is not None:
                self._report(P.TaskErred(spec.key, dump_exception(comp.error)))
                return
            reply: FetchedData = comp.value
            if reply.missing:
                err = WorkerLostError(f"dependencies {list(reply.missing)} of {spec.key!r} are gone")
                self._report(P.TaskErred(spec.key, dump_exception(err)))
                return
            with lock:
                fetched.update(reply.items)
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._dispatch(spec, fetched)

        for address, keys in wanted.items():
            self.node.request_data(address, tuple(keys)).add_done_callback(on_fetched)

    def _dispatch(self, spec: P.TaskSpec, fetched: dict[str, bytes]) -> None:
        if spec.actor:
            self.actor_thread.submit(spec.key, lambda: self._create_actor(spec, fetched))
        else:
            self.pool.submit(self._run_task, spec, fetched)

    def _resolver(self, fetched: dict[str, bytes]) -> Callable[[str], Any]:
        def resolve(key: str) -> Any:
            if key in self.data:
                return self.data[key]
            if key in self.actors:
                return Actor(key, self.address, self.name, self.actor_info[key], self.node)
            if key in fetched:
                ctx = SerialContext(node=self.node)
                value = loads(fetched[key], ctx, what=f"dependency {key!r}")
                self.node.refs.unpin(ctx.unpins)
                return value
            raise WorkerLostError(f"dependency {key!r} is not available on {self.name}")

        return resolve

    def _load_task(self, spec: P.TaskSpec, fetched: dict[str, bytes]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        ctx = SerialContext(node=self.node, resolve=self._resolver(fetched))
        try:
            fn, args, kwargs = loads(spec.payload, ctx, what=f"task {spec.key!r}")
        finally:
            self.node.refs.unpin(ctx.unpins)
        return fn, args, kwargs

    def _run_task(self, spec: P.TaskSpec, fetched: dict[str, bytes]) -> None:
        self._enter_task_thread()
        try:
            fn, args, kwargs = self._load_task(spec, fetched)
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = self._await_in_loop(result)
        except BaseException as err:
            self._report(P.TaskErred(spec.key, dump_exception(err)))
            return
        self.data[spec.key] = result
        self._report(P.TaskDone(spec.key, sizeof(result), type(result).__name__))

    def _create_actor(self, spec: P.TaskSpec, fetched: dict[str, bytes]) -> None:
        try:
            cls, args, kwargs = self._load_task(spec, fetched)
            obj = cls(*args, **kwargs)
            info = members(obj)
        except BaseException as err:
            self._report(P.TaskErred(spec.key, dump_exception(err)))
            return
        self.actors[spec.key] = obj
        self.actor_info[spec.key] = info
        self._report(P.TaskDone(spec.key, sizeof(obj), type(obj).__name__, info))


def sizeof(value: object) -> int:
    """The size reported to the manager for a value kept here (0 when it will not say)."""
    try:
        return sys.getsizeof(value)
    except Exception:
        return 0
