"""The manager process: spawns workers, keeps the books, relays.

Runs in: the manager process, started by ``LocalCluster`` (in-process: a
thread of the user's process, its workers threads too; see ``_runner``).

Every link has a reader thread that puts ``(link, message)`` on one inbox;
the main thread takes them one at a time and hands them to the
:class:`~localactors._scheduler.Scheduler`, so the books need no locks. The
manager is off the hot path: actor calls and data go worker to caller direct
unless a client asked for relaying (``direct_to_workers=False``), in which
case each (client, worker) pair gets its own relay link, pumped verbatim
(:mod:`~localactors._relay`).

It exits when told to, or when the process that started it goes away (its
control pipe reaches EOF, or it is no longer our parent), taking its workers
with it.

Failures it handles: a worker whose link drops is reaped and its death told
to every node; it is replaced to keep ``n_workers``; with ``memory_limit`` a
worker over the limit is killed (and so replaced)
(:mod:`~localactors._supervise`). Shutdown is bounded: ask, then SIGTERM,
then SIGKILL.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from multiprocessing.connection import Connection
from queue import Empty, SimpleQueue
from typing import Any

from .._base.config import ManagerConfig, WorkerConfig
from .._base.runner import make_runner
from .._wire import protocol as P
from .._wire.connection import Link, LinkClosed, Server
from .output import OutputPump
from .relay import Relaying, _RelayGone
from .requests import ClientRequests
from .scheduler import Scheduler, WorkerState
from .supervise import Supervision, _Reaped

logger = logging.getLogger("localactors.manager")

#: how often the main loop looks at workers' memory and at workers that died starting
MEMORY_CHECK_INTERVAL = 0.1
#: how long workers get to leave on their own at shutdown before SIGTERM (then SIGKILL)
SHUTDOWN_GRACE = 1.5


def manager_main(config: ManagerConfig, control: Connection) -> None:
    """Entry point of the manager (a process, or a thread in-process)."""
    if not config.in_process:  # in-process, logging belongs to the user
        logging.basicConfig(
            level=config.log_level, format=f"(manager pid={os.getpid()}) %(levelname)s %(name)s: %(message)s"
        )
    Manager(config, control).run()


_PARENT_GONE = "parent-gone"


#: inbox items handled before what they made us send is written out
INBOX_BATCH = 256


class _Closed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Manager(Supervision, Relaying, ClientRequests):
    def __init__(self, config: ManagerConfig, control: Connection) -> None:
        self.config = config
        self.control = control
        self.control_lock = threading.Lock()
        self.address = os.path.join(config.directory, "manager")
        self.inbox: SimpleQueue[Any] = SimpleQueue()
        self.scheduler = Scheduler(self._send, config.allowed_failures)
        self.ctx: Any = multiprocessing.get_context(config.start_method)
        self.processes: dict[str, Any] = {}
        self.worker_links: dict[Any, WorkerState] = {}
        self.relays: dict[tuple[int, str], Link] = {}
        self.target = config.n_workers
        self.counter = 0
        self.pending_scale: list[tuple[Any, int]] = []  # (reply-to, req_id)
        self.ready_sent = False
        self.running = True
        self.output = OutputPump()
        self.links: set[Link] = set()  # every link accepted: closed on exit (threads outlive us in-process)
        self.kill_reasons: dict[str, str] = {}  # worker -> why we killed it (e.g. its memory limit)
        self.relays_gone: dict[str, list[Link]] = {}  # worker address -> clients to tell after its notice
        self.dying: dict[Any, tuple[WorkerState, Any]] = {}  # link -> (worker, process) being reaped
        self.start_failures = 0
        self.parent_gone = False
        self._meters: dict[str, Any] = {}  # worker -> psutil.Process
        self._outbox: dict[Any, list[P.Message]] | None = None  # see run(): batched sends
        self._loop_thread: threading.Thread | None = None
        self._init_requests()  # Client.run and Client.restart (requests.py)

    # -- plumbing ---------------------------------------------------------------

    def _send(self, link: Any, msg: P.Message) -> None:
        box = self._outbox
        if box is not None and threading.current_thread() is self._loop_thread:
            box.setdefault(link, []).append(msg)  # sent when this inbox item is handled
            return
        try:
            link.send(msg)
        except LinkClosed:
            pass  # its reader will report the close

    def _on_link(self, link: Link) -> None:
        self.links.add(link)
        link.start_reader(lambda lk, msg: self.inbox.put((lk, msg)), lambda lk, err: self.inbox.put((lk, _Closed(err))))

    def _watch_parent(self) -> None:
        # EOF on the control pipe says the cluster's process is gone; a changed
        # parent pid says so too when a forked child of it kept the pipe open
        parent = os.getppid()
        while True:
            try:
                if not self.control.poll(0.25):
                    if not self.config.in_process and os.getppid() != parent:
                        raise EOFError("reparented")
                    continue
                order = self.control.recv()
            except (EOFError, OSError):
                self.inbox.put((None, _PARENT_GONE))
                return
            self.inbox.put((None, order))

    def _reply_control(self, obj: object) -> None:
        with self.control_lock:
            try:
                self.control.send(obj)
            except OSError:
                pass

    def spawn_worker(self) -> None:
        name = f"worker-{self.counter}"
        self.counter += 1
        cfg = WorkerConfig(
            name=name,
            directory=self.config.directory,
            authkey=self.config.authkey,
            manager_address=self.address,
            nthreads=self.config.threads_per_worker,
            resources=self.config.resources,
            memory_limit=self.config.memory_limit,
            log_level=self.config.log_level,
            max_in_flight=self.config.max_in_flight,
            in_process=self.config.in_process,
        )
        output = None
        if self.config.forward_output and not self.config.in_process:
            (out_r, out_w), (err_r, err_w) = self.ctx.Pipe(duplex=False), self.ctx.Pipe(duplex=False)
            output = (out_w, err_w)
        proc = make_runner(
            self.config.in_process,
            self.config.start_method,
            self.config.worker_entry,
            (cfg, output),
            f"localactors-{name}",
        )
        proc.start()
        if output is not None:
            out_w.close()  # the worker holds the write ends now: EOF comes when it exits
            err_w.close()
            self.output.watch(name, proc.pid or 0, out_r, err_r)
        self.processes[name] = proc

    # -- main loop ------------------------------------------------------------------

    def _flush_outbox(self) -> None:
        box, self._outbox = self._outbox, None
        for link, msgs in (box or {}).items():
            try:
                link.send_many(msgs)
            except LinkClosed:
                pass  # its reader will report the close
            except Exception:
                logger.exception("manager failed sending %d messages to %s", len(msgs), link)

    def run(self) -> None:
        self._loop_thread = threading.current_thread()
        server = Server(self.address, self.config.authkey, "manager", self._on_link)
        threading.Thread(target=self._watch_parent, name="localactors-control", daemon=True).start()
        for _ in range(self.config.n_workers):
            self.spawn_worker()
        if self.config.n_workers == 0:
            self._maybe_ready()
        next_check = time.monotonic()
        try:
            while self.running:
                try:
                    link, item = self.inbox.get(timeout=MEMORY_CHECK_INTERVAL)
                except Empty:
                    pass
                else:
                    # what a run of queued items makes us send (a SubmitTasks of
                    # 10,000 tasks makes 10,000 RunTasks; 100 TaskDones make 100
                    # KeyDones) goes out in one write per link
                    self._outbox = {}
                    try:
                        handled = 0
                        while True:
                            try:
                                self._handle(link, item)
                            except Exception:
                                logger.exception("manager failed handling %r", item)
                            handled += 1
                            if handled >= INBOX_BATCH or not self.running:
                                break
                            try:
                                link, item = self.inbox.get_nowait()
                            except Empty:
                                break
                    finally:
                        self._flush_outbox()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + MEMORY_CHECK_INTERVAL
                    self._check_workers()
        finally:
            server.close()
            self._shutdown_workers(0.3 if self.parent_gone else SHUTDOWN_GRACE)

    def _maybe_ready(self) -> None:
        if not self.ready_sent and len(self.scheduler.workers) >= self.target:
            self.ready_sent = True
            self._reply_control(("ready", self.address, self._infos()))
        # retiring workers count until their link closes: scale(n) returns once they are gone
        if self.pending_scale and len(self.scheduler.workers) == self.target:
            for reply_to, req_id in self.pending_scale:
                if reply_to is None:
                    self._reply_control(("scaled", req_id))
                else:
                    self._send(reply_to, P.Ack(req_id))
            self.pending_scale.clear()
        self._restart_check()  # Client.restart: acknowledged once the new workers are in

    def _infos(self) -> tuple[P.WorkerInfo, ...]:
        return tuple(w.info for w in sorted(self.scheduler.workers.values(), key=lambda w: w.index))

    def _handle(self, link: Any, item: Any) -> None:
        if link is None:
            self._handle_control(item)
        elif isinstance(item, _Closed):
            self._link_closed(link)
        elif isinstance(item, _Reaped):
            self._worker_reaped(item.link)
        elif isinstance(item, _RelayGone):
            self._relay_gone(link, item.address)
        else:
            self._handle_message(link, item)

    def _handle_control(self, order: Any) -> None:
        if order == _PARENT_GONE or order == "shutdown":
            self.parent_gone = order == _PARENT_GONE
            self.running = False
        elif isinstance(order, tuple) and order[0] == "scale":
            self._scale(order[1], None, order[2])
        elif isinstance(order, tuple) and order[0] == "info":
            self._reply_control(("info", order[1], self._infos()))  # LocalCluster.workers

    def _scale(self, n: int, reply_to: Any, req_id: int) -> None:
        self.target = max(0, n)
        live = sorted((w for w in self.scheduler.workers.values() if not w.retiring), key=lambda w: w.index)
        starting = len([p for name, p in self.processes.items() if name not in self.scheduler.workers and p.is_alive()])
        for _ in range(self.target - len(live) - starting):
            self.spawn_worker()
        if len(live) > self.target:
            # retire the emptiest workers first: no actors, least data
            victims = sorted(live, key=lambda w: (len(w.actors), len(w.has), -w.index))[: len(live) - self.target]
            for ws in victims:
                ws.retiring = True
                self._send(ws.link, P.Shutdown())
        self.pending_scale.append((reply_to, req_id))
        self._maybe_ready()

    def _link_closed(self, link: Any) -> None:
        self.links.discard(link)
        self.output.remove_watcher(link)
        ws = self.worker_links.pop(link, None)
        if ws is not None:
            self._runs_worker_gone(ws.name)  # Client.run: no answer will come from it
            self._worker_link_closed(link, ws)
            return
        self.scheduler.drop_holder(link)
        self._close_relays(link)

    def _handle_message(self, link: Any, msg: P.Message) -> None:
        sched = self.scheduler
        match msg:
            case P.RefDelta():
                sched.ref_delta(link, msg)
            case P.SubmitTasks(specs):
                sched.submit(specs, link)
            case P.TaskDone():
                ws = self.worker_links.get(link)
                if ws is not None:
                    sched.task_done(ws, msg)
            case P.TaskErred():
                ws = self.worker_links.get(link)
                if ws is not None:
                    sched.task_erred(ws, msg)
            case P.RegisterWorker(info):
                ws = sched.add_worker(info, link)
                self.worker_links[link] = ws
                self.start_failures = 0
                self._maybe_ready()
            case P.Hello():
                sched.client_links.add(link)
            case P.Scatter(items, workers):
                sched.scatter(items, workers)
            case P.Cancel(keys, req_id, force):
                sched.cancel(keys, None if force else link)  # this client's claim: others holding a key keep it
                if req_id >= 0:
                    self._send(link, P.Ack(req_id))
            case P.InfoRequest(req_id):
                self._send(link, P.InfoReply(req_id, self._infos()))
            case P.Scale(req_id, n):
                self._scale(n, link, req_id)
            case P.RelayTo(address, frames):
                self._relay(link, address, frames)
            case P.WatchOutput():
                self.output.add_watcher(link)
            case P.Goodbye(shutdown_cluster):
                sched.drop_holder(link)
                if shutdown_cluster:
                    self.running = False
            case P.RunOnWorkers():
                self._run_on_workers(link, msg)
            case P.RunResult():
                ws = self.worker_links.get(link)
                if ws is not None:
                    self._run_result(ws.name, msg)
            case P.WhoHas(req_id, keys):
                self._send(link, P.WhoHasReply(req_id, sched.who_has(keys)))
            case P.Retry(keys):
                sched.retry(keys)
            case P.Restart(req_id):
                self._restart(link, req_id)
            case _:
                logger.warning("manager: unexpected %s from %s", type(msg).__name__, link)

    # -- shutdown ---------------------------------------------------------------------

    def _shutdown_workers(self, grace: float) -> None:
        """Stop every worker within about ``grace`` + 1 s: ask, SIGTERM, SIGKILL."""
        for link in list(self.scheduler.client_links):
            self._send(link, P.Goodbye())  # an orderly close: ClusterClosedError, not Broken
        for link in list(self.worker_links):
            self._send(link, P.Shutdown())
        for relay in self.relays.values():
            relay.close()
        self._stop_processes(grace)
        for link in list(self.worker_links):
            link.close()
        self.output.drain(1.0)  # the workers' last lines, before our links go
        self.output.close()
        for link in list(self.links):
            link.close()  # a process exit would do it; an in-process manager must
