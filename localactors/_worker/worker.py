"""A worker process: holds task results and actors, runs their code.

Runs in: a worker process, spawned by the manager (in-process, with
``LocalCluster(processes=False)``: a thread of the user's process, which
then plays the part of ``main`` below; see ``_base.runner``).

Threads::

    main             asyncio event loop: async actor methods, coroutine
                     tasks, data requests the idle actor thread read, shutdown
    actor            the actor thread (``actor_thread``): every actor
                     operation, in order; sync methods run here (while one
                     waits on a future, a helper ``actor-<n>`` serves the rest)
    task-N           ``threads_per_worker`` threads for plain tasks
    reader-*         one per link: the manager link, each caller's direct
                     link, each link this worker opened to another worker
    refs             sends reference changes to the manager

A call arrives on a caller's link, its reader queues it on the actor thread,
the actor thread runs it and sends the reply straight back on that link
(the worker's :class:`~localactors._worker.calls.CallServer` serves callers).
A ``RunTask`` or ``RunTasks`` from the manager goes to the worker's
:class:`~localactors._worker.tasks.TaskRunner`.
Other threads reach the event loop through one door, :meth:`Worker.call_in_loop`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

from .._base import context as _context
from .._base.config import WorkerConfig
from .._base.errors import SerializationError, dump_exception
from .._base.serialize import SerialContext, loads
from .._caller.node import Node
from .._client.client import Client
from .._wire import protocol as P
from .._wire.connection import Server, connect
from .._wire.link import Link, LinkClosed
from .actor_thread import ActorThread
from .calls import CallServer
from .output import line_buffer_streams, redirect_worker_output
from .run import run_function
from .taskpool import TaskPool
from .tasks import TaskRunner, sizeof

logger = logging.getLogger("localactors.worker")


def worker_main(config: WorkerConfig, output: tuple[Connection, Connection] | None = None) -> None:
    """Entry point of a worker: a process, or in-process a thread of the user's process.

    ``output``: pipes to the manager for fds 1 and 2 (a process forwarding its output).
    """
    if config.in_process:
        Worker(config).run()  # logging and the streams belong to the user's process
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the user's wait, not for workers
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
        _exit_now()  # do not wait for task threads stuck in user code


def _exit_now() -> None:
    from .._wire import shm

    shm.release_created()  # os._exit skips atexit: unlink the segments no receiver took
    os._exit(0)


class WorkerNode(Node):
    """The worker's caller side: its links to other workers and its refs.

    Its event loop thread counts as async (it must not block); its actor
    thread waits through the nested waiter (see ``actor_thread``).
    """

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.name, worker.config.authkey, direct=True)
        self.worker = worker

    def in_async_context(self) -> bool:
        return threading.current_thread() is self.worker.loop_thread


class Worker:
    """The state of one worker process. ``get_worker()`` returns this object."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.name = config.name
        self.address = os.path.join(config.directory, config.name)
        self.nthreads = config.nthreads
        self.resources = dict(config.resources)
        self.data: dict[str, Any] = {}  # task results, by key
        self.actors: dict[str, Any] = {}  # actor instances, by key
        self.actor_info: dict[str, P.ActorInfo] = {}
        self.node = WorkerNode(self)
        self.node.max_in_flight = config.max_in_flight
        self.loop = asyncio.new_event_loop()
        self.loop_thread: threading.Thread | None = None
        # in-process, several workers share the process: each actor thread knows its own
        self.actor_thread = ActorThread(self.name, initializer=functools.partial(_context.set_worker, self, True))
        self.calls = CallServer(
            name=self.name,
            address=self.address,
            node=self.node,
            actor_thread=self.actor_thread,
            data=self.data,
            actors=self.actors,
            actor_info=self.actor_info,
            call_in_loop=self.call_in_loop,
            in_process=config.in_process,
        )
        # a task waiting on other futures lends its thread's slot (see taskpool)
        self.pool = TaskPool(config.nthreads, self.name, initializer=_context.set_worker, initargs=(self, True))
        self.task_runner = TaskRunner(
            name=self.name,
            address=self.address,
            node=self.node,
            data=self.data,
            actors=self.actors,
            actor_info=self.actor_info,
            actor_thread=self.actor_thread,
            pool=self.pool,
            report=self._report,
            await_in_loop=self._await_in_loop,
            enter_task_thread=functools.partial(_context.set_worker, self, thread_only=True),
            later=lambda delay, fn: self.call_in_loop(lambda: self.loop.call_later(delay, fn)),
        )
        self._loop_tasks: set[asyncio.Task[Any]] = set()  # tasks' coroutines: the loop keeps only weak refs
        self._stop = asyncio.Event()
        self._client: Client | None = None
        self._manager: Link | None = None
        self.own_process = False  # True when this worker is its process (not in-process)

    def __repr__(self) -> str:
        return f"<Worker {self.name} pid={os.getpid()}>"

    # -- life cycle --------------------------------------------------------------

    def run(self) -> None:
        """Serve until the manager says stop or goes away (on the thread that runs the loop)."""
        # in-process, several workers share the process: each thread knows its own
        _context.set_worker(self, thread_only=self.config.in_process)
        self.loop_thread = threading.current_thread()
        self.node.loop = self.loop
        asyncio.set_event_loop(self.loop)
        self.actor_thread.start()
        server = Server(self.address, self.config.authkey, self.name, self.calls.accept)
        try:
            self._register()
            self.loop.run_until_complete(self._stop.wait())
        finally:
            server.close()
            self._close()

    def _register(self) -> None:
        """Connect to the manager, say who we are, and start taking its orders."""
        link = connect(self.config.manager_address, self.config.authkey, f"{self.name}->manager")
        self._manager = link
        self.node.attach_manager(link)
        info = P.WorkerInfo(
            self.name, self.address, os.getpid(), self.nthreads, self.config.resources, self.config.memory_limit
        )
        link.send(P.RegisterWorker(info))
        link.start_reader(self._on_manager_message, self._on_manager_close)

    def _close(self) -> None:
        self.actor_thread.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
        self.node.stop_refs()
        self.node.close_peers()
        self.calls.close_links()
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

    def call_in_loop(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on this worker's event loop, soon: the one door into the loop.

        Safe from any thread; raises ``RuntimeError`` once the loop is closed.
        """
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        try:
            self.call_in_loop(self._stop.set)
        except RuntimeError:
            pass  # the loop is closed: we have stopped already

    def get_client(self) -> Client:
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
            timer = threading.Timer(delay, _exit_now)
            timer.name = f"localactors-deadline-{self.name}"
            timer.daemon = True
            timer.start()

    def _on_manager_message(self, link: Link, msg: P.Message) -> None:
        match msg:
            case P.RunTask(spec, who_has):
                self.task_runner.start(spec, who_has)
            case P.RunTasks(tasks):
                self.task_runner.start_many(tasks)
            case P.PutData(key, payload):
                self._put_data(key, payload)
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
            case P.Ping(seq):  # the heartbeat: answered here, on the reader, which user code never holds
                self._report(P.Pong(seq))
            case P.RunFunction(run_id, payload):
                threading.Thread(
                    target=self._run_function, args=(run_id, payload), name=f"localactors-run-{run_id}", daemon=True
                ).start()
            case _:
                logger.warning("%s: unexpected %s on %s", self.name, type(msg).__name__, link.describe())

    def _put_data(self, key: str, payload: bytes) -> None:
        """A value scattered by a client: keep it as if a task had made it."""
        ctx = SerialContext(node=self.node)
        try:
            value = loads(payload, ctx, what=f"scattered {key!r}")
        except SerializationError as err:
            self._report(P.TaskErred(key, dump_exception(err)))
            return
        self.node.refs.unpin(ctx.unpins)
        self.data[key] = value
        self._report(P.TaskDone(key, sizeof(value), type(value).__name__))

    def _run_function(self, run_id: int, payload: bytes) -> None:
        self._report(run_function(self, self.node, self._await_in_loop, run_id, payload))

    def _drop_actor(self, key: str) -> None:
        self.actors.pop(key, None)
        self.actor_info.pop(key, None)
        self.calls.forget(key)

    # -- coroutines of tasks and run() functions: through the loop door ----------------

    def _await_in_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the event loop; block this (task) thread until it returns."""
        outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def start() -> None:
            task = self.loop.create_task(coro)
            self._loop_tasks.add(task)
            task.add_done_callback(self._loop_tasks.discard)
            task.add_done_callback(functools.partial(_copy_outcome, outcome))

        try:
            self.call_in_loop(start)
        except RuntimeError:
            coro.close()
            raise
        return outcome.result()


def _copy_outcome(outcome: concurrent.futures.Future[Any], task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        outcome.cancel()
    elif task.exception() is not None:
        outcome.set_exception(task.exception())
    else:
        outcome.set_result(task.result())

