"""TaskRunner: how a worker runs the tasks the manager sends it, and makes actors.

Runs in: a worker process (``start`` on the manager link's reader thread;
dependencies arrive on peer links' readers; plain tasks run on the task pool's
threads, actor creation on the actor thread).

A ``RunTask`` (or, for many plain tasks, ``RunTasks``) names each task's
dependencies and who holds them. Those not held here are fetched from their
workers (``GetData``), all at once; then the task goes to the task pool (a
plain task; the tasks of a ``RunTasks`` whose inputs are here go in one step)
or to the actor thread (an actor's creation: its ``__init__`` is the actor's
first operation). Its value is kept in the worker's data (or its actors) and
reported to the manager as ``TaskDone`` (many together as ``TasksDone``, see
:class:`DoneReports`), its error as ``TaskErred``.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Coroutine
from types import CoroutineType
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
        later: Callable[[float, Callable[[], None]], None],
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
        self._resolve_here = self._resolver({})  # a task none of whose inputs was fetched
        self.reports = DoneReports(report, pool.queued, later)
        pool.on_block = self.reports.flush  # a task about to wait: what is done is said first

    def start(self, spec: P.TaskSpec, who_has: tuple[tuple[str, str], ...]) -> None:
        """Start the task ``spec`` (``RunTask``): fetch what it needs that is not here, then run it."""
        if not spec.actor:
            self.start_many(((spec.key, spec.payload, who_has),))
            return

        def create(fetched: dict[str, bytes]) -> None:
            self.actor_thread.submit(spec.key, lambda: self._create_actor(spec, fetched))

        self._fetch_then(spec.key, who_has, create)

    def start_many(self, items: tuple[P.RunItem, ...]) -> None:
        """Start plain tasks (``RunTasks``): those whose inputs are here go to the pool at once, in order."""
        ready = []
        run = self._run_task
        for key, payload, who_has in items:
            if who_has and self._elsewhere(who_has):
                self._fetch_then(key, who_has, functools.partial(self._queue_one, key, payload))
            else:
                ready.append((key, payload, None))
        if ready:
            self.pool.submit_many(run, ready)

    def _queue_one(self, key: str, payload: bytes, fetched: dict[str, bytes]) -> None:
        self.pool.submit(self._run_task, key, payload, fetched)

    def _elsewhere(self, who_has: tuple[tuple[str, str], ...]) -> bool:
        return any(key not in self.data and key not in self.actors for key, _ in who_has)

    def _fetch_then(
        self, task_key: str, who_has: tuple[tuple[str, str], ...], then: Callable[[dict[str, bytes]], None]
    ) -> None:
        """Fetch the inputs not held here from their workers, all at once; then ``then(fetched)``."""
        fetched: dict[str, bytes] = {}
        wanted: dict[str, list[str]] = {}
        for key, address in who_has:
            if key not in self.data and key not in self.actors:
                wanted.setdefault(address, []).append(key)
        if not wanted:
            then(fetched)
            return
        remaining = [len(wanted)]
        lock = threading.Lock()

        def on_fetched(comp: Completion) -> None:
            if comp.error is not None:
                self._report(P.TaskErred(task_key, dump_exception(comp.error)))
                return
            reply: FetchedData = comp.value
            if reply.missing:
                err = WorkerLostError(f"dependencies {list(reply.missing)} of {task_key!r} are gone")
                self._report(P.TaskErred(task_key, dump_exception(err)))
                return
            with lock:
                fetched.update(reply.items)
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                then(fetched)

        for address, keys in wanted.items():
            self.node.request_data(address, tuple(keys)).add_done_callback(on_fetched)

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

    def _load_task(self, key: str, payload: bytes, fetched: dict[str, bytes] | None) -> Any:
        ctx = SerialContext(node=self.node, resolve=self._resolve_here if fetched is None else self._resolver(fetched))
        try:
            return loads(payload, ctx, what=f"task {key!r}")
        finally:
            if ctx.unpins:
                self.node.refs.unpin(ctx.unpins)

    def _run_task(self, key: str, payload: bytes, fetched: dict[str, bytes] | None) -> None:
        """Run a plain task on a pool thread; ``fetched``: its inputs from other workers (``None``: none)."""
        self._enter_task_thread()
        try:
            fn, args, kwargs = self._load_task(key, payload, fetched)
            result = fn(*args, **kwargs)
            if isinstance(result, CoroutineType):  # inspect.iscoroutine, without the call
                self.reports.flush()  # the wait below may be long: what is done is said first
                result = self._await_in_loop(result)
        except BaseException as err:
            self.reports.flush()  # the outcomes of this thread's tasks arrive in the order they came
            self._report(P.TaskErred(key, dump_exception(err)))
            return
        self.data[key] = result
        self.reports.add(key, sizeof(result), type(result).__name__)

    def _create_actor(self, spec: P.TaskSpec, fetched: dict[str, bytes]) -> None:
        try:
            cls, args, kwargs = self._load_task(spec.key, spec.payload, fetched)
            obj = cls(*args, **kwargs)
            info = members(obj)
        except BaseException as err:
            self._report(P.TaskErred(spec.key, dump_exception(err)))
            return
        self.actors[spec.key] = obj
        self.actor_info[spec.key] = info
        self._report(P.TaskDone(spec.key, sizeof(obj), type(obj).__name__, info))


#: ``TaskDone`` held back at most this many at a time, and this long (seconds)
MAX_HELD = 100
HOLD_FOR = 0.002


class DoneReports:
    """The ``TaskDone`` of plain tasks: sent at once when no task is queued, else together.

    A task thread that finishes a task while others wait in the pool holds its
    report back, to go with theirs as one ``TasksDone``: when the queue runs
    empty, when :data:`MAX_HELD` are held, before a task waits for anything (the
    pool's block hook), and at the latest :data:`HOLD_FOR` seconds after the
    first was held (``later(delay, fn)`` runs the flush on the worker's event loop),
    so that a quick task queued before a long one is not reported after it.
    A lone task is reported as soon as it ends, as its own ``TaskDone``.
    """

    def __init__(
        self,
        send: Callable[[P.Message], None],
        queued: Callable[[], int],
        later: Callable[[float, Callable[[], None]], None],
    ) -> None:
        self._send = send
        self._queued = queued
        self._later = later
        self._lock = threading.Lock()
        self._held: list[tuple[str, int, str]] = []
        self._armed = False  # a deadline flush is on its way

    def add(self, key: str, nbytes: int, type_name: str) -> None:
        with self._lock:
            held = self._held
            held.append((key, nbytes, type_name))
            if len(held) < MAX_HELD and self._queued():
                if self._armed:
                    return
                self._armed = True
                batch = None
            else:
                batch, self._held = held, []
        if batch is None:
            try:
                self._later(HOLD_FOR, self.flush)
            except RuntimeError:  # the event loop is closed: we are stopping
                self.flush()
            return
        self._send_batch(batch)

    def flush(self) -> None:
        """Send what is held, now."""
        with self._lock:
            self._armed = False
            if not self._held:
                return
            batch, self._held = self._held, []
        self._send_batch(batch)

    def _send_batch(self, batch: list[tuple[str, int, str]]) -> None:
        self._send(P.TaskDone(*batch[0]) if len(batch) == 1 else P.TasksDone(tuple(batch)))


def sizeof(value: object) -> int:
    """The size reported to the manager for a value kept here (0 when it will not say)."""
    try:
        return sys.getsizeof(value)
    except Exception:
        return 0
