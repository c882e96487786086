"""The manager process: keeps the books, supervises the workers, relays.

Runs in: the manager process, started by ``LocalCluster`` (in-process: a
thread of the user's process, its workers threads too; see ``_base.runner``).

Every link has a reader thread that puts a record (:mod:`.inbox`) on one
inbox; the main thread takes them one at a time and hands them on, so the
books need no locks. The manager holds three collaborators, each owning its
state: the :class:`~.scheduler.Scheduler` (tasks, placement, references), the
:class:`~.supervise.Supervisor` (the worker processes: spawning, reaping,
replacing with backoff, the heartbeat, memory limits, stopping) and the
:class:`~.relay.RelayBoard` (relay links). Every ``CHECK_INTERVAL`` the main
loop has the supervisor look at the processes themselves (``waitpid``), ping
the workers and check their memory. The manager is off the hot path: actor calls and data go
worker to caller direct unless a client asked for relaying
(``direct_to_workers=False``).

The cluster talks to it over a control pipe in the typed messages of
:mod:`~localactors._wire.control`. It exits when told to, or when the process
that started it goes away (its control pipe reaches EOF, or it is no longer
our parent), taking its workers with it. Shutdown is bounded: ask, then
SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import threading
import time
from multiprocessing.connection import Connection
from queue import Empty, SimpleQueue
from typing import Any

from .._base.config import ManagerConfig
from .._base.errors import WorkerStartError, dump_exception
from .._wire import control as C
from .._wire import protocol as P
from .._wire import shm
from .._wire.connection import Link, LinkClosed, Server
from .._wire.exhaustive import assert_never
from .books import WorkerState
from .inbox import InboxItem, LinkDropped, Order, ParentGone, Reaped, Received, RelayGone
from .outbox import Outbox, write_to
from .output import OutputPump
from .relay import RelayBoard
from .requests import WorkerRequests
from .scheduler import Scheduler
from .supervise import Supervisor

logger = logging.getLogger("localactors.manager")

#: how often the main loop looks at workers' processes, heartbeats and memory
CHECK_INTERVAL = 0.1
#: how long workers get to leave on their own at shutdown before SIGTERM (then SIGKILL)
SHUTDOWN_GRACE = 1.5
#: inbox items handled before what they made us send is written out
INBOX_BATCH = 256
#: the manager process's garbage collector thresholds (Python's are 700, 10, 10)
GC_THRESHOLDS = (50_000, 20, 100)


def manager_main(config: ManagerConfig, control: Connection) -> None:
    """Entry point of the manager (a process, or a thread in-process)."""
    if not config.in_process:  # in-process, logging belongs to the user (and so does its process group)
        # the cluster's processes get their own group, which every worker joins: the
        # cluster kills the group when we end (nothing is orphaned, not even a stopped
        # worker), and a terminal's Ctrl-C (SIGINT to its foreground group) stays away
        os.setpgrp()
        # SIGINT sent to the group by hand is meant for the user's wait too (workers inherit this)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.basicConfig(
            level=config.log_level, format=f"(manager pid={os.getpid()}) %(levelname)s %(name)s: %(message)s"
        )
        # the books of a large map are tens of thousands of live containers that make
        # few cycles: collecting every 700 allocations walked them over and over
        gc.set_threshold(*GC_THRESHOLDS)
    manager = Manager(config, control)
    try:
        manager.run()
    finally:
        if manager.parent_gone and not config.in_process:
            # the process that made the directory died without closing: its key must not outlive it
            shutil.rmtree(config.directory, ignore_errors=True)


class Manager:
    def __init__(self, config: ManagerConfig, control: Connection) -> None:
        self.config = config
        self.control = control
        self.control_lock = threading.Lock()
        self.address = os.path.join(config.directory, "manager")
        self.inbox: SimpleQueue[InboxItem] = SimpleQueue()
        self.scheduler = Scheduler(self._send, config.allowed_failures)
        self.output = OutputPump()
        self.supervisor = Supervisor(config, self.address, self.scheduler, self._send, self.inbox.put, self.output)
        self.relays = RelayBoard(config.authkey, self._send, self.inbox.put, self.supervisor.notice_pending)
        self.requests = WorkerRequests(self.scheduler, self.supervisor, self._send)  # Client.run, Client.restart
        self.worker_links: dict[Any, WorkerState] = {}
        self.pending_scale: list[int] = []  # req_ids of ScaleTo orders not answered yet
        self.ready_sent = False
        self.running = True
        self.parent_gone = False
        self.links: set[Link] = set()  # every link accepted: closed on exit (threads outlive us in-process)
        self._outbox: Outbox | None = None  # see run(): batched sends
        self._loop_ident: int | None = None

    # -- plumbing ---------------------------------------------------------------

    def _send(self, link: Any, msg: P.Message) -> None:
        box = self._outbox
        if box is not None and threading.get_ident() == self._loop_ident:
            box.add(link, msg)  # sent when this run of inbox items is handled (outbox.py)
            return
        try:
            link.send(msg)
        except LinkClosed:
            pass  # its reader will report the close

    def _on_link(self, link: Link) -> None:
        self.links.add(link)
        link.max_frame_size = self.config.max_frame_size
        put, heard = self.inbox.put, self.supervisor.heard

        def on_message(lk: Link, msg: P.Message) -> None:
            if type(msg) is P.Pong:
                heard(lk)  # here, not in the inbox: a busy main loop must not make a worker look hung
            else:
                put(Received(lk, msg))

        link.start_reader(on_message, lambda lk, err: put(LinkDropped(lk, err)))

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
                self.inbox.put(ParentGone())
                return
            if isinstance(order, (C.StopCluster, C.ScaleTo, C.ListWorkers)):
                self.inbox.put(Order(order))
            else:
                logger.warning("manager: unexpected %r on the control pipe", order)

    def _reply_control(self, msg: C.ToCluster) -> None:
        with self.control_lock:
            try:
                self.control.send(msg)
            except OSError:
                pass

    # -- main loop ------------------------------------------------------------------

    def _flush_outbox(self) -> None:
        box, self._outbox = self._outbox, None
        if box is not None:
            box.flush()

    def run(self) -> None:
        self._loop_ident = threading.get_ident()
        server = Server(self.address, self.config.authkey, "manager", self._on_link)
        threading.Thread(target=self._watch_parent, name="localactors-control", daemon=True).start()
        for _ in range(self.config.n_workers):
            self.supervisor.spawn()
        self._maybe_ready()
        next_check = time.monotonic()
        try:
            while self.running:
                try:
                    item = self.inbox.get(timeout=CHECK_INTERVAL)
                except Empty:
                    pass
                else:
                    # what a run of queued items makes us send (a SubmitTasks of
                    # 10,000 tasks makes 10,000 RunTasks; 100 TaskDones make 100
                    # KeyDones) goes out in one write per link, batched (outbox.py)
                    self._outbox = Outbox(write_to)
                    try:
                        handled = 0
                        while True:
                            try:
                                self._handle(item)
                            except Exception:
                                logger.exception("manager failed handling %r", item)
                            handled += 1
                            if handled >= INBOX_BATCH or not self.running:
                                break
                            try:
                                item = self.inbox.get_nowait()
                            except Empty:
                                break
                    finally:
                        self._flush_outbox()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + CHECK_INTERVAL
                    self._check_workers()
        finally:
            server.close()
            self._shutdown_workers(0.3 if self.parent_gone else SHUTDOWN_GRACE)
            shm.sweep(shm.prefix_for(self.config.authkey))  # segments nobody will read now

    def _check_workers(self) -> None:
        sup = self.supervisor
        for name in sup.check():
            self._process_exited(name)
        if not sup.failing or not self.running:
            return
        if not self.ready_sent:
            # the cluster is waiting for us to be ready: say why we never will be,
            # rather than let it wait out its timeout
            self.ready_sent = True
            self._reply_control(C.StartFailed(sup.failing))
            self.running = False
            return
        for req_id in self.pending_scale:  # scale() says so too, rather than time out
            self._reply_control(C.Scaled(req_id, sup.failing))
        self.pending_scale.clear()
        if sup.gave_up:
            # no worker to run anything: what waits for one fails, saying why (it keeps
            # failing, new work too, until a replacement registers; they go on, backing off)
            err = WorkerStartError(f"no worker can be kept alive: {sup.gave_up}")
            self.scheduler.fail_unplaced(dump_exception(err))

    def _maybe_ready(self) -> None:
        target = self.supervisor.target
        if not self.ready_sent and len(self.scheduler.workers) >= target:
            self.ready_sent = True
            self._reply_control(C.Ready(self.address, self._infos()))
        # retiring workers count until their link closes: scale(n) returns once they are gone
        if self.pending_scale and len(self.scheduler.workers) == target:
            for req_id in self.pending_scale:
                self._reply_control(C.Scaled(req_id))
            self.pending_scale.clear()
        self.requests.workers_changed()  # Client.restart: acknowledged once the new workers are in

    def _infos(self) -> tuple[P.WorkerInfo, ...]:
        return tuple(w.info for w in sorted(self.scheduler.workers.values(), key=lambda w: w.index))

    def _handle(self, item: InboxItem) -> None:
        match item:
            case Received(link, msg):
                self._handle_message(link, msg)
            case LinkDropped(link):
                self._link_closed(link)
            case Reaped(link):
                self._worker_gone(link)
            case RelayGone(client, address):
                self.relays.gone(client, address)
            case Order(order):
                self._handle_control(order)
            case ParentGone():
                self.parent_gone = True
                self.running = False
            case _:
                assert_never(item)

    def _handle_control(self, order: C.ToManager) -> None:
        match order:
            case C.StopCluster():
                self.running = False
            case C.ScaleTo(req_id, n):
                self.supervisor.scale(n)
                self.pending_scale.append(req_id)
                self._maybe_ready()
            case C.ListWorkers(req_id):
                self._reply_control(C.WorkerList(req_id, self._infos()))  # LocalCluster.workers
            case _:
                assert_never(order)

    def _link_closed(self, link: Any) -> None:
        self.links.discard(link)
        self.output.remove_watcher(link)
        ws = self.worker_links.pop(link, None)
        if ws is not None:
            self.requests.worker_gone(ws.name)  # Client.run: no answer will come from it
            if self.supervisor.link_closed(link, ws):  # else a Reaped follows once its process ended
                self._worker_gone(link)
            return
        self.scheduler.drop_holder(link)
        self.relays.client_closed(link)

    def _process_exited(self, name: str) -> None:
        """A worker's process ended: announce it now, even if a child of it keeps its link open."""
        ws = self.scheduler.workers.get(name)
        if ws is None or ws.link not in self.worker_links:
            return  # not registered (``check`` sees to it), or its link's close came first
        link = ws.link
        del self.worker_links[link]
        self.output.remove_watcher(link)
        if self.supervisor.link_closed(link, ws):  # its exit code is known: announced at once
            self._worker_gone(link)
        link.close()  # its reader's LinkDropped then finds no worker: only its holds are dropped

    def _worker_gone(self, link: Any) -> None:
        """A dropped worker's process has ended: announce it, then tell its relays' clients."""
        ws = self.supervisor.reaped(link)
        if ws is None:
            return
        self.relays.release(ws.info.address)
        self.scheduler.drop_holder(link)
        self._maybe_ready()

    def _handle_message(self, link: Any, msg: P.Message) -> None:
        sched = self.scheduler
        match msg:
            case P.RefDelta():
                sched.ref_delta(link, msg)
            case P.SubmitTasks(specs):
                sched.submit(specs, link)
            case P.SubmitPlain():
                sched.submit(msg.specs(), link)
            case P.TaskDone():
                ws = self.worker_links.get(link)
                if ws is not None:
                    sched.task_done(ws, msg)
            case P.TasksDone():
                ws = self.worker_links.get(link)
                if ws is not None:
                    sched.tasks_done(ws, msg)
            case P.TaskErred():
                ws = self.worker_links.get(link)
                if ws is not None:
                    sched.task_erred(ws, msg)
            case P.RegisterWorker(info):
                ws = sched.add_worker(info, link)
                self.worker_links[link] = ws
                self.supervisor.registered(ws)
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
            case P.RelayTo(address, frames):
                self.relays.relay(link, address, frames)
            case P.WatchOutput():
                self.output.add_watcher(link)
            case P.Goodbye():
                sched.drop_holder(link)
            case P.CloseCluster():
                self.running = False  # Client.shutdown(): the workers stop with us
            case P.RunOnWorkers():
                self.requests.run_on_workers(link, msg)
            case P.RunResult():
                ws = self.worker_links.get(link)
                if ws is not None:
                    self.requests.run_result(ws.name, msg)
            case P.WhoHas(req_id, keys):
                self._send(link, P.WhoHasReply(req_id, sched.who_has(keys)))
            case P.Retry(keys):
                sched.retry(keys)
            case P.Restart(req_id):
                self.requests.restart(link, req_id)
            case _:
                logger.warning("manager: unexpected %s from %s", type(msg).__name__, link)

    # -- shutdown ---------------------------------------------------------------------

    def _shutdown_workers(self, grace: float) -> None:
        """Stop every worker within about ``grace`` + 1 s: ask, SIGTERM, SIGKILL."""
        self.supervisor.stop_replacing()
        for link in list(self.scheduler.client_links):
            self._send(link, P.Goodbye())  # an orderly close: ClusterClosedError, not Broken
        for link in list(self.worker_links):
            self._send(link, P.Shutdown())
        self.relays.close()
        self.supervisor.stop(grace)
        for link in list(self.worker_links):
            link.close()
        self.output.drain(1.0)  # the workers' last lines, before our links go
        self.output.close()
        for link in list(self.links):
            link.close()  # a process exit would do it; an in-process manager must
