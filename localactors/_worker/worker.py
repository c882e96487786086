"""A worker process: holds task results and actors, runs their code.

Runs in: a worker process, spawned by the manager (in-process, with
``LocalCluster(processes=False)``: a thread of the user's process, which
then plays the part of ``main`` below; see ``_runner``).

Threads::

    main             asyncio event loop: async actor methods, shutdown
    actor            the actor thread (``_actor_thread``): every actor
                     operation, in order; sync methods run here (while one
                     waits on a future, a helper ``actor-<n>`` serves the rest)
    task-N           ``threads_per_worker`` threads for plain tasks
    reader-*         one per link: the manager link, each caller's direct
                     link, each link this worker opened to another worker
    refs             sends reference changes to the manager

A call arrives on a caller's link, its reader queues it on the actor thread,
the actor thread runs it and sends the reply straight back on that link
(``_worker_calls``, a mixin of :class:`Worker`, serves callers).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import sys
import threading
import time
from typing import Any

from .._base import context as _context
from .._base.config import WorkerConfig
from .._base.errors import SerializationError, WorkerLostError, dump_exception
from .._base.futures import Completion
from .._base.serialize import SerialContext, dumps, loads
from .._caller.actor import Actor
from .._caller.node import Node
from .._client.client import Client
from .._wire import protocol as P
from .._wire.connection import Server, connect
from .._wire.link import Link, LinkClosed
from .actor_thread import ActorThread
from .calls import CallServing
from .output import line_buffer_streams, redirect_worker_output
from .stats import ProcessMeter, StatsBook
from .taskpool import TaskPool

logger = logging.getLogger("localactors.worker")


def worker_main(config: WorkerConfig, output: tuple[Any, Any] | None = None) -> None:
    """Entry point of a worker: a process, or in-process a thread of the user's process.

    ``output``: pipes to the manager for fds 1 and 2 (a process forwarding its output).
    """
    if config.in_process:
        Worker(config).run()  # logging and the streams belong to the user's process
        return
    if output is not None:
        redirect_worker_output(*output)
        fmt = "%(levelname)s %(name)s: %(message)s"  # the manager prefixes "(worker-1 pid=123) "
    else:
        line_buffer_streams()  # as prompt as the user's own output
        fmt = f"({config.name} pid={os.getpid()}) %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=config.log_level, format=fmt)
    worker = Worker(config)
    worker.own_process = True
    try:
        worker.run()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # do not wait for task threads stuck in user code


class WorkerNode(Node):
    """The worker's caller side: its links to other workers and its refs."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.name, worker.config.authkey, direct=True)
        self.worker = worker

    def in_async_context(self) -> bool:
        return threading.current_thread() is self.worker.loop_thread


def members(obj: object) -> P.ActorInfo:
    """The public methods and attributes a proxy for ``obj`` offers."""
    cls = type(obj)
    methods, attributes = [], []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, property):
            attributes.append(name)
        elif callable(getattr(cls, name, None)) or isinstance(attr, (staticmethod, classmethod)):
            methods.append(name)
        else:
            attributes.append(name)
    for name in getattr(obj, "__dict__", {}):
        if not name.startswith("_") and name not in methods and name not in attributes:
            attributes.append(name)
    return P.ActorInfo(cls.__name__, tuple(methods), tuple(attributes))


class Worker(CallServing):
    """The state of one worker process. ``get_worker()`` returns this object."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.name = config.name
        self.address = os.path.join(config.directory, config.name)
        self.nthreads = config.nthreads
        self.resources = dict(config.resources)
        self.data: dict[str, Any] = {}
        self.actors: dict[str, Any] = {}
        self.actor_info: dict[str, P.ActorInfo] = {}
        self.node = WorkerNode(self)
        self.node.max_in_flight = config.max_in_flight
        # in-process, several workers share the process: each actor thread knows its own
        self.actor_thread = ActorThread(self.name, initializer=functools.partial(_context.set_worker, self, True))
        self.actor_thread.set_idle_wait(self._idle_wait)
        self._last_link: Link | None = None  # the link of the latest actor call: the idle actor thread reads it
        self._held: Link | None = None  # a link the actor thread holds from its reply to its idle wait
        self.actor_thread.before_busy = self._release_held
        self._async_calls: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones
        # a task waiting on other futures lends its thread's slot (see _taskpool)
        self.pool = TaskPool(config.nthreads, self.name, initializer=_context.set_worker, initargs=(self, True))
        self.loop = asyncio.new_event_loop()
        self.loop_thread: threading.Thread | None = None
        self.stats = StatsBook()
        self._meter = ProcessMeter(config.in_process)
        self._stop = asyncio.Event()
        self._client: Any = None
        self._links: set[Link] = set()
        self._manager: Link | None = None
        self.own_process = False  # True when this worker is its process (not in-process)

    def __repr__(self) -> str:
        return f"<Worker {self.name} pid={os.getpid()}>"

    # -- life cycle --------------------------------------------------------------

    def run(self) -> None:
        # in-process, several workers share the process: each thread knows its own
        _context.set_worker(self, thread_only=self.config.in_process)
        self.loop_thread = threading.current_thread()
        self.node.loop = self.loop
        asyncio.set_event_loop(self.loop)
        self.actor_thread.start()
        server = Server(self.address, self.config.authkey, self.name, self._on_link)
        try:
            link = connect(self.config.manager_address, self.config.authkey, f"{self.name}->manager")
            self._manager = link
            self.node.attach_manager(link)
            info = P.WorkerInfo(
                self.name, self.address, os.getpid(), self.nthreads, self.config.resources, self.config.memory_limit
            )
            link.send(P.RegisterWorker(info))
            link.start_reader(self._on_manager_message, self._on_manager_close)
            self.loop.run_until_complete(self._stop.wait())
        finally:
            server.close()
            self.actor_thread.stop()
            self.pool.shutdown(wait=False, cancel_futures=True)
            if self._client is not None:
                self._client.close()
            self.node.stop_refs()
            self.node.close_peers()
            for peer_link in list(self._links):
                peer_link.close()
            if self._manager is not None:
                self._manager.close()
            if self.config.in_process:
                self._wind_down_threads()

    def _wind_down_threads(self, timeout: float = 2.0) -> None:
        """In-process nothing ends with the process: end the loop's tasks, join our threads."""
        deadline = time.monotonic() + timeout
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()  # async methods still awaiting; their callers already got an error
        if tasks:
            self.loop.run_until_complete(asyncio.wait(tasks, timeout=timeout / 2))
        threads = [*self.actor_thread.threads, *self.pool.threads]
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            logger.warning("%s: threads still running user code after close: %s", self.name, ", ".join(stuck))
        self.loop.close()

    def stop(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._stop.set)
        except RuntimeError:
            pass  # the loop is closed: we have stopped already

    def get_client(self) -> Any:
        """This worker's own client, made on first use."""
        if self._client is None:
            self._client = Client(self.config.manager_address, authkey=self.config.authkey, name=f"{self.name}-client")
        return self._client

    def _report(self, msg: P.Message) -> None:
        try:
            assert self._manager is not None
            self._manager.send(msg)
        except LinkClosed:
            self.stop()

    # -- the manager's orders ---------------------------------------------------------

    def _on_manager_close(self, link: Link, error: BaseException | None) -> None:
        self.stop()  # the manager is gone: so are we
        self._exit_soon(1.0)

    def _exit_soon(self, delay: float) -> None:
        """Make sure this process ends within ``delay`` s, even if user code holds the loop."""
        if self.own_process:  # never in-process: that would end the user's program
            timer = threading.Timer(delay, os._exit, args=(0,))
            timer.name = f"localactors-deadline-{self.name}"
            timer.daemon = True
            timer.start()

    def _on_manager_message(self, link: Link, msg: P.Message) -> None:
        match msg:
            case P.RunTask(spec, who_has):
                self._start_task(spec, who_has)
            case P.PutData(key, payload):
                ctx = SerialContext(node=self.node)
                try:
                    value = loads(payload, ctx, what=f"scattered {key!r}")
                except SerializationError as err:
                    self._report(P.TaskErred(key, dump_exception(err)))
                    return
                self.node.refs.unpin(ctx.unpins)
                self.data[key] = value
                self._report(P.TaskDone(key, _sizeof(value), type(value).__name__))
            case P.FreeKeys(keys):
                for key in keys:
                    self.data.pop(key, None)
                    if key in self.actors:
                        self.actor_thread.submit(key, functools.partial(self._drop_actor, key))
            case P.Shutdown():
                self.stop()
                self._exit_soon(2.0)
            case P.WorkerDied() | P.ActorMoved() | P.ActorRestartFailed():
                self.node.on_notice(msg)
            case P.RunFunction(run_id, payload):
                threading.Thread(
                    target=self._run_function, args=(run_id, payload), name=f"localactors-run-{run_id}", daemon=True
                ).start()
            case _:
                logger.warning("%s: unexpected %s from the manager", self.name, type(msg).__name__)

    def _run_function(self, run_id: int, payload: bytes) -> None:
        """``Client.run``: call the function here, now, beside tasks and actors (as dask does).

        A coroutine function runs on the worker's event loop; a function taking
        ``dask_worker`` gets this worker, as in dask.
        """
        _context.set_worker(self, thread_only=True)
        try:
            fn, args, kwargs = loads(payload, SerialContext(node=self.node), what="the function of run()")
            if "dask_worker" in _parameters(fn):
                kwargs = {**kwargs, "dask_worker": self}
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run_coroutine_threadsafe(result, self.loop).result()
            reply = P.RunResult(run_id, True, dumps(result, SerialContext(node=self.node), what="run()'s result"))
        except BaseException as err:
            reply = P.RunResult(run_id, False, dump_exception(err))
        self._report(reply)

    def _drop_actor(self, key: str) -> None:
        self.actors.pop(key, None)
        self.actor_info.pop(key, None)
        self.stats.forget(key)

    # -- tasks --------------------------------------------------------------------------

    def _start_task(self, spec: P.TaskSpec, who_has: tuple[tuple[str, str], ...]) -> None:
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
            items, missing = comp.value
            if missing:
                err = WorkerLostError(f"dependencies {list(missing)} of {spec.key!r} are gone")
                self._report(P.TaskErred(spec.key, dump_exception(err)))
                return
            with lock:
                fetched.update(items)
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

    def _resolver(self, fetched: dict[str, bytes]) -> Any:
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
        _context.set_worker(self, thread_only=True)
        try:
            fn, args, kwargs = self._load_task(spec, fetched)
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run_coroutine_threadsafe(result, self.loop).result()
        except BaseException as err:
            self._report(P.TaskErred(spec.key, dump_exception(err)))
            return
        self.data[spec.key] = result
        self._report(P.TaskDone(spec.key, _sizeof(result), type(result).__name__))

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
        self._report(P.TaskDone(spec.key, _sizeof(obj), type(obj).__name__, info))


def _parameters(fn: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


def _sizeof(value: object) -> int:
    try:
        return sys.getsizeof(value)
    except Exception:
        return 0
