"""A worker process: holds task results and actors, runs their code.

Runs in: a worker process, spawned by the manager.

Threads::

    main             asyncio event loop: async actor methods, shutdown
    actor            the one actor thread (``_actor_thread``): every actor
                     operation, in order; sync methods run here
    task-N           ``threads_per_worker`` threads for plain tasks
    reader-*         one per link: the manager link, each caller's direct
                     link, each link this worker opened to another worker
    refs             sends reference changes to the manager

A call arrives on a caller's link, its reader queues it on the actor thread,
the actor thread runs it and sends the reply straight back on that link.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import _context
from . import _protocol as P
from ._actor import Actor
from ._actor_thread import ActorThread
from ._connection import Link, LinkClosed, Server, connect
from ._errors import ActorLostError, SerializationError, WorkerLostError, dump_exception
from ._futures import Completion
from ._node import Node
from ._serialize import SerialContext, dumps, loads

logger = logging.getLogger("localactors.worker")


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    directory: str
    authkey: bytes
    manager_address: str
    nthreads: int = 1
    resources: tuple[tuple[str, float], ...] = ()
    memory_limit: int | None = None
    log_level: int = logging.WARNING


def worker_main(config: WorkerConfig) -> None:
    """Entry point of a worker process."""
    logging.basicConfig(
        level=config.log_level, format=f"({config.name} pid={os.getpid()}) %(levelname)s %(name)s: %(message)s"
    )
    worker = Worker(config)
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
        return threading.current_thread() is threading.main_thread()


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


class Worker:
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
        self.actor_thread = ActorThread(self.name)
        self.pool = ThreadPoolExecutor(config.nthreads, thread_name_prefix=f"localactors-task-{self.name}")
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._client: Any = None
        self._links: set[Link] = set()
        self._manager: Link | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.name} pid={os.getpid()}>"

    # -- life cycle --------------------------------------------------------------

    def run(self) -> None:
        _context.set_worker(self)
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

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)

    def get_client(self) -> Any:
        """This worker's own client, made on first use."""
        if self._client is None:
            from ._client import Client

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
            case _:
                logger.warning("%s: unexpected %s from the manager", self.name, type(msg).__name__)

    def _drop_actor(self, key: str) -> None:
        self.actors.pop(key, None)
        self.actor_info.pop(key, None)

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

    # -- callers' links ------------------------------------------------------------------

    def _on_link(self, link: Link) -> None:
        self._links.add(link)
        link.start_reader(self._on_request, lambda lk, err: self._links.discard(lk))

    def _on_request(self, link: Link, msg: P.Message) -> None:
        match msg:
            case P.ActorCall(call_id, actor_key, name, kind, payload):
                self.actor_thread.submit(actor_key, lambda: self._call(link, call_id, actor_key, name, kind, payload))
            case P.GetData(req_id, keys):
                self._send_data(link, req_id, keys)
            case P.Hello():
                link.peer = msg
            case _:
                logger.warning("%s: unexpected %s on %s", self.name, type(msg).__name__, link)

    def _send_data(self, link: Link, req_id: int, keys: tuple[str, ...]) -> None:
        items, missing = [], []
        ctx = SerialContext(node=self.node)
        try:
            for key in keys:
                if key in self.data:
                    items.append((key, dumps(self.data[key], ctx, what=f"the result of {key!r}")))
                elif key in self.actors:
                    handle = Actor(key, self.address, self.name, self.actor_info[key], self.node)
                    items.append((key, dumps(handle, ctx, what=f"actor {key!r}")))
                else:
                    missing.append(key)
        except SerializationError as err:
            self._reply(link, P.DataReply(req_id, (), (), dump_exception(err)))
            return
        self.node.send_pins(ctx)
        self._reply(link, P.DataReply(req_id, tuple(items), tuple(missing)))

    def _reply(self, link: Link, msg: P.Message) -> None:
        try:
            link.send(msg)
        except LinkClosed:
            pass  # the caller went away; nobody is waiting for this

    # -- actor calls (on the actor thread) -------------------------------------------

    def _call(self, link: Link, call_id: int, key: str, name: str, kind: P.CallKind, payload: bytes) -> None:
        obj = self.actors.get(key)
        label = f"{type(obj).__name__}.{name}"
        try:
            if obj is None:
                raise ActorLostError(f"actor {key} is not on worker {self.name}: it was released or lost", self.name)
            if kind is P.CallKind.GETATTR:
                value = getattr(obj, name)
            else:
                method = getattr(obj, name)
                ctx = SerialContext(node=self.node)
                try:
                    args, kwargs = loads(payload, ctx, what=f"the arguments of {label}")
                finally:
                    self.node.refs.unpin(ctx.unpins)
                if inspect.iscoroutinefunction(method):
                    self._start_async(link, call_id, label, method(*args, **kwargs))
                    return
                value = method(*args, **kwargs)
        except BaseException as err:
            self._reply(link, P.CallErr(call_id, dump_exception(err)))
            return
        self._send_result(link, call_id, label, value)

    def _send_result(self, link: Link, call_id: int, label: str, value: Any) -> None:
        ctx = SerialContext(node=self.node)
        try:
            data = dumps(value, ctx, what=f"the result of {label}")
        except SerializationError as err:
            self._reply(link, P.CallErr(call_id, dump_exception(err)))
            return
        self.node.send_pins(ctx)
        self._reply(link, P.CallOk(call_id, data))

    def _start_async(self, link: Link, call_id: int, label: str, coro: Any) -> None:
        """Run an async method on the loop; return once its first step ran."""
        started = Completion()

        async def run() -> None:
            try:
                value = await coro
            except BaseException as err:
                self._reply(link, P.CallErr(call_id, dump_exception(err)))
                return
            self._send_result(link, call_id, label, value)

        def start() -> None:
            self.loop.create_task(run())
            self.loop.call_soon(started.set_result, None)  # runs after the task's first step

        self.loop.call_soon_threadsafe(start)
        started._wait(None)  # a nested wait: the actor thread keeps serving others


def _sizeof(value: object) -> int:
    try:
        return sys.getsizeof(value)
    except Exception:
        return 0
