"""Serving callers: the worker's part that answers actor calls and data requests.

Runs in: a worker process (on its links' reader threads, its actor thread and
its event loop).

A call arrives on a caller's link, its reader queues it on the actor thread,
the actor thread runs it and sends the reply straight back on that link. While
the actor thread is idle it may read the latest caller's link itself, saving a
thread switch per call for a caller that waits for each reply. The worker owns
one :class:`CallServer`, which owns this state: the callers' links, the link
the idle actor thread reads and the one it holds, async calls in flight, the
per-actor statistics.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import pickle
import select
import threading
from collections.abc import Callable, Coroutine
from functools import partial
from threading import get_ident
from time import perf_counter
from typing import Any

from .._base.errors import ActorLostError, SerializationError, dump_exception
from .._base.futures import Completion
from .._base.serialize import EMPTY_ARGS, SerialContext, dumps, loads
from .._caller.actor import Actor
from .._caller.node import Node
from .._wire import protocol as P
from .._wire.link import Link, LinkClosed
from .actor_thread import ActorThread
from .reply_batch import ReplyBatch
from .stats import Counters, ProcessMeter, StatsBook

logger = logging.getLogger("localactors.worker")

#: replies smaller than this may be batched (reply_batch), or written while the actor thread holds the link (Link.hold)
_HOLD_MAX = 1 << 15

#: results of these types pickle plainly: no handle in them, nothing for shared memory
_PLAIN = frozenset({int, float, bool, type(None), str})
_PLAIN_STR = 1 << 16  # (a longer str: the usual path, which may send a large stream through shared memory)

#: at most this many consecutive calls to one actor that arrived together run as one
#: operation of the actor thread (other actors' operations wait at most that long)
RUN_MAX = 64

_METHOD = P.CallKind.METHOD

#: the worker's door into its event loop: run ``fn()`` there soon (raises RuntimeError once closed)
CallInLoop = Callable[[Callable[[], object]], None]


def _label(obj: object, name: str) -> str:
    """A call, for messages: ``Counter.add``."""
    return f"{type(obj).__name__}.{name}"


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


class CallServer:
    """Answers callers' requests on the links they opened to this worker.

    ``data``, ``actors`` and ``actor_info`` are the worker's own dicts (it
    fills them; this reads them). ``accept`` takes each new caller's link;
    ``close_links`` closes them all; ``forget`` drops a released actor's
    statistics. It hooks itself into ``actor_thread``: the thread's idle wait
    reads the latest caller's link (:meth:`_idle_wait`), and before it gets
    busy it gives back a link it held (:meth:`_release_held`).
    """

    def __init__(
        self,
        *,
        name: str,
        address: str,
        node: Node,
        actor_thread: ActorThread,
        data: dict[str, Any],
        actors: dict[str, Any],
        actor_info: dict[str, P.ActorInfo],
        call_in_loop: CallInLoop,
        in_process: bool,
    ) -> None:
        self.name = name
        self._address = address
        self._node = node
        self._data = data
        self._actors = actors
        self._actor_info = actor_info
        self._call_in_loop = call_in_loop
        self.stats = StatsBook()
        self._meter = ProcessMeter(in_process)
        self._links: set[Link] = set()  # callers' links, open
        self._last_link: Link | None = None  # the link of the latest actor call: the idle actor thread reads it
        self._held: Link | None = None  # a link the actor thread holds from its reply to its idle wait
        self._async_calls: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones
        self._actor_thread = actor_thread
        #: replies of pipelined calls, written many at a time (see reply_batch)
        self.replies = ReplyBatch(name)
        actor_thread.set_idle_wait(self._idle_wait)
        actor_thread.before_wait = self.replies.flush

    # -- callers' links ------------------------------------------------------------------

    def accept(self, link: Link) -> None:
        """A caller opened ``link`` to this worker (the server's callback)."""
        self._links.add(link)
        # shared: the idle actor thread may read it itself (see _idle_wait)
        link.start_reader(
            self._on_request, lambda lk, err: self._links.discard(lk), shared=True, on_messages=self._on_requests
        )

    def close_links(self) -> None:
        self.replies.close()
        for link in list(self._links):
            link.close()

    def forget(self, key: str) -> None:
        """Actor ``key`` was released: drop its statistics."""
        self.stats.forget(key)

    def _idle_wait(self, wake_fd: int) -> None:
        """The actor thread has nothing to do: read the latest caller's link until it has.

        The next request of a caller that waits for each reply comes on that
        link; read here, it runs without a switch from the link's reader
        thread to the actor thread. Other links keep their readers.
        """
        link = self._last_link
        held, self._held = self._held, None
        self._actor_thread.before_busy = None
        if held is not None and held is not link:
            held.unhold()
        if link is None or link.read_while_idle(wake_fd, self._actor_thread.has_work) is None:
            select.select([wake_fd], [], [])  # nothing to read here: wait for work
            try:
                os.read(wake_fd, 4096)
            except BlockingIOError:
                pass

    def _on_requests(self, link: Link, msgs: list[P.Message]) -> None:
        """Requests that arrived together (pipelined calls): their calls are queued at once.

        Consecutive calls to one actor become one operation of the actor thread
        (:meth:`_run_calls`, up to :data:`RUN_MAX` calls): one mailbox entry, one
        statistics update and no ``partial`` per call.
        """
        runs: list[tuple[str, list[P.ActorCall]]] = []
        run: list[P.ActorCall] = []
        run_key = ""
        for msg in msgs:
            if type(msg) is P.ActorCall:
                key = msg.actor
                if key == run_key and len(run) < RUN_MAX:
                    run.append(msg)
                    continue
                if run:
                    runs.append((run_key, run))
                run, run_key = [msg], key
            else:
                if run:  # (in order)
                    runs.append((run_key, run))
                    run, run_key = [], ""
                if runs:
                    self._submit_runs(link, runs)
                    runs = []
                self._on_request(link, msg)
        if run:
            runs.append((run_key, run))
        if runs:
            self._submit_runs(link, runs)

    def _submit_runs(self, link: Link, runs: list[tuple[str, list[P.ActorCall]]]) -> None:
        actors, stats, run_calls = self._actors, self.stats, self._run_calls
        arrival = perf_counter()
        ops: list[tuple[str, Callable[[], Completion | None]]] = []
        for key, run in runs:
            # (counted before they can start: queued never goes below 0)
            c = stats.arrived(key, len(run)) if key in actors else None
            ops.append((key, partial(run_calls, link, key, c, arrival, run)))
        self._last_link = link
        self._actor_thread.submit_many(ops)

    def _on_request(self, link: Link, msg: P.Message) -> None:
        """One request from a caller: on the link's reader thread, or the idle actor thread."""
        match msg:
            case P.ActorCall(call_id, actor_key, name, kind, payload):
                self._last_link = link
                c = self.stats.arrived(actor_key) if actor_key in self._actors else None
                arrival = perf_counter()
                self._actor_thread.submit(
                    actor_key, partial(self._call, link, call_id, actor_key, name, kind, payload, c, arrival)
                )
            case P.GetData(req_id, keys):
                if threading.current_thread() is self._actor_thread.thread:
                    # read while idle: pickling a large result here would hold up
                    # every actor's queued calls; the event loop serves it instead
                    try:
                        self._call_in_loop(functools.partial(self._send_data, link, req_id, keys))
                    except RuntimeError:
                        pass  # the loop is closed: we are stopping, and the caller's link closes with us
                else:
                    self._send_data(link, req_id, keys)  # this link's reader: holds up only this link
            case P.Hello():
                link.hello = msg
            case P.StatsRequest(req_id):
                self._reply(link, self._stats_reply(req_id))
            case _:
                logger.warning("%s: unexpected %s on %s", self.name, type(msg).__name__, link.describe())

    def _stats_reply(self, req_id: int) -> P.StatsReply:
        rss, cpu = self._meter.read()
        names = {key: info.cls_name for key, info in list(self._actor_info.items())}
        worker = P.WorkerStat(self.name, os.getpid(), rss, cpu, len(self._data), len(names))
        return P.StatsReply(req_id, worker, self.stats.snapshot(names, names))

    def _send_data(self, link: Link, req_id: int, keys: tuple[str, ...]) -> None:
        items, missing = [], []
        ctx = SerialContext(node=self._node)
        try:
            for key in keys:
                if key in self._data:
                    items.append((key, dumps(self._data[key], ctx, what=f"the result of {key!r}", shared=True)))
                elif key in self._actors:
                    handle = Actor(key, self._address, self.name, self._actor_info[key], self._node)
                    items.append((key, dumps(handle, ctx, what=f"actor {key!r}")))
                else:
                    missing.append(key)
        except SerializationError as err:
            self._reply(link, P.DataReply(req_id, (), (), dump_exception(err)))
            return
        self._node.send_pins(ctx)
        self._reply(link, P.DataReply(req_id, tuple(items), tuple(missing)))

    def _reply(self, link: Link, msg: P.Message) -> None:
        """Send ``msg`` now, after the batched replies (order per link)."""
        self.replies.flush()
        try:
            link.send(msg)
        except LinkClosed:
            pass  # the caller went away; nobody is waiting for this

    def _reply_err(self, link: Link, call_id: int, err: BaseException, c: Counters | None, arrival: float) -> None:
        self.stats.finished(c, arrival, True)
        self._reply(link, P.CallErr(call_id, dump_exception(err)))

    def _reply_ok(self, link: Link, call_id: int, payload: bytes, more: bool = False) -> None:
        """A small result: batched while more calls are queued (reply_batch), else sent now.

        ``more``: the operation that sends it has further calls to run (:meth:`_run_calls`).
        """
        if get_ident() != self._actor_thread.ident:
            self.replies.send(link, call_id, payload)  # the event loop (async calls) or a helper thread
        elif more or self._actor_thread.mail:
            # more calls are queued: the caller fired many; this reply goes with theirs
            self.replies.add(link, call_id, payload)
        elif self._held is None and link is self._last_link and link.hold():
            # the caller's next request comes soon on this link: keep the reader
            # thread off it until the actor thread, idle again, reads it itself
            self._held = link
            self._actor_thread.before_busy = self._release_held  # called before it runs anything else
            self.replies.send(link, call_id, payload, self._release_held)  # (no blocking write while held)
        else:
            self.replies.send(link, call_id, payload)

    def _release_held(self) -> None:
        """The actor thread is busy again (or stopping): the reader thread reads its link."""
        held, self._held = self._held, None
        self._actor_thread.before_busy = None
        if held is not None:
            held.unhold()

    # -- actor calls (on the actor thread) -------------------------------------------

    def _run_calls(
        self, link: Link, key: str, c: Counters | None, arrival: float, calls: list[P.ActorCall]
    ) -> Completion | None:
        """Run calls to actor ``key`` that arrived together on ``link``, in order: one operation.

        The pipelined hot path: the common call (a method, no arguments, a plain
        result) is :meth:`_call`, ``StatsBook.finished`` and :meth:`_reply_ok`
        inlined here (deliberately: three frames less per call, measured), anything
        else goes through them. When an async call starts, the calls after
        it go back to the front of the actor's mailbox and wait for its first step.
        """
        actors, reply_ok, stats_lock = self._actors, self._reply_ok, self.stats.lock
        # the primary actor thread batches a reply while more calls follow (_reply_ok's case, inlined)
        add = self.replies.add if get_ident() == self._actor_thread.ident else None
        last = len(calls) - 1
        for i, msg in enumerate(calls):
            obj = actors.get(key)
            if obj is None or msg.kind is not _METHOD or msg.payload != EMPTY_ARGS:
                comp = self._call(link, msg.call_id, key, msg.name, msg.kind, msg.payload, c, arrival, i < last)
            else:
                if c is not None:
                    c.started += 1
                try:
                    value = getattr(obj, msg.name)()
                except BaseException as err:
                    self._reply_err(link, msg.call_id, err, c, arrival)
                    continue
                kind = type(value)
                if kind in _PLAIN and kind is not str:
                    data = pickle.dumps(value, 5)
                    if len(data) < _HOLD_MAX:
                        if c is not None:  # StatsBook.finished, inlined
                            elapsed = perf_counter() - arrival
                            with stats_lock:
                                c.calls += 1
                                c.total_time += elapsed
                                if elapsed > c.max_time:
                                    c.max_time = elapsed
                        if i < last and add is not None:
                            add(link, msg.call_id, data)
                        else:
                            reply_ok(link, msg.call_id, data, i < last)
                        continue
                if kind in _PLAIN or not inspect.iscoroutine(value):
                    self._send_result(link, msg.call_id, _label(obj, msg.name), value, c, arrival, i < last)
                    continue
                comp = self._start_async(link, msg.call_id, _label(obj, msg.name), value, c, arrival)
            if comp is not None:  # an async call started: the rest waits for its first step
                if i < last:
                    self._actor_thread.push_front(key, partial(self._run_calls, link, key, c, arrival, calls[i + 1 :]))
                return comp
        return None

    def _call(
        self,
        link: Link,
        call_id: int,
        key: str,
        name: str,
        kind: P.CallKind,
        payload: bytes,
        c: Counters | None,
        arrival: float,
        more: bool = False,
    ) -> Completion | None:
        """Run one operation; for an async call, return what says its first step ran.

        ``c`` and ``arrival``: the actor's counters (``None``: not counted) and
        when the call arrived; ``more``: the caller has further calls to run.
        """
        if c is not None:
            c.started += 1
        obj = self._actors.get(key)
        try:
            if obj is None:
                raise ActorLostError(f"actor {key} is not on worker {self.name}: it was released or lost", self.name)
            if kind is P.CallKind.GETATTR:
                value = getattr(obj, name)
            else:
                method = getattr(obj, name)
                if payload == EMPTY_ARGS:  # the common no-argument call: nothing to unpickle
                    value = method()
                else:
                    ctx = SerialContext(node=self._node)
                    try:
                        args, kwargs = loads(payload, ctx, what=f"the arguments of {_label(obj, name)}")
                    finally:
                        self._node.refs.unpin(ctx.unpins)
                    value = method(*args, **kwargs)
                if type(value) not in _PLAIN and inspect.iscoroutine(value):
                    # ``async def`` (or a sync wrapper returning a coroutine): its
                    # body has not started yet; it runs on the event loop
                    return self._start_async(link, call_id, _label(obj, name), value, c, arrival)
        except BaseException as err:
            self._reply_err(link, call_id, err, c, arrival)
            return None
        if type(value) in _PLAIN and type(value) is not str:  # (_send_result's first case, inlined)
            data = pickle.dumps(value, 5)
            if len(data) < _HOLD_MAX:
                self.stats.finished(c, arrival, False)
                self._reply_ok(link, call_id, data, more)
                return None
        self._send_result(link, call_id, _label(obj, name), value, c, arrival, more)
        return None

    def _send_result(
        self, link: Link, call_id: int, label: str, value: Any, c: Counters | None, arrival: float, more: bool = False
    ) -> None:
        kind = type(value)
        if kind in _PLAIN and (kind is not str or len(value) < _PLAIN_STR):
            # nothing in it to track or to put in shared memory: plain pickle
            data: Any = pickle.dumps(value, 5)
        else:
            ctx = SerialContext(node=self._node)
            try:
                data = dumps(value, ctx, what=f"the result of {label}", shared=True)
            except SerializationError as err:
                self._reply_err(link, call_id, err, c, arrival)
                return
            self._node.send_pins(ctx)
        self.stats.finished(c, arrival, False)
        if type(data) is bytes and len(data) < _HOLD_MAX:
            self._reply_ok(link, call_id, data, more)
        else:
            self._reply(link, P.CallOk(call_id, data))

    def _start_async(
        self, link: Link, call_id: int, label: str, coro: Coroutine[Any, Any, Any], c: Counters | None, arrival: float
    ) -> Completion:
        """Run an async method on the loop; the completion is set once its first step ran.

        The actor thread does not wait for it: it goes on serving other actors,
        and keeps this actor's later operations queued until then (``actor_thread``).
        """
        started = Completion()

        async def run() -> None:
            try:
                value = await coro
            except BaseException as err:
                self._reply_err(link, call_id, err, c, arrival)
                return
            self._send_result(link, call_id, label, value, c, arrival)

        def start() -> None:
            loop = asyncio.get_running_loop()
            task = loop.create_task(run())
            self._async_calls.add(task)
            task.add_done_callback(self._async_calls.discard)
            loop.call_soon(started.set_result, None)  # runs after the task's first step

        self._call_in_loop(start)
        return started
