"""The manager process: spawns workers, keeps the books, relays.

Runs in: the manager process, started by ``LocalCluster``.

Every link has a reader thread that puts ``(link, message)`` on one inbox;
the main thread takes them one at a time and hands them to the
:class:`~localactors._scheduler.Scheduler`, so the books need no locks. The
manager is off the hot path: actor calls and data go worker to caller direct
unless a client asked for relaying (``direct_to_workers=False``), in which
case each (client, worker) pair gets its own relay link, pumped verbatim.

It exits when told to, or when the process that started it goes away (its
control pipe reaches EOF), taking its workers with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from queue import SimpleQueue
from typing import Any

from . import _protocol as P
from ._connection import Link, LinkClosed, Server, connect
from ._scheduler import Scheduler, WorkerState
from ._worker import WorkerConfig, worker_main

logger = logging.getLogger("localactors.manager")


@dataclass(frozen=True)
class ManagerConfig:
    directory: str
    authkey: bytes
    n_workers: int
    threads_per_worker: int = 1
    resources: tuple[tuple[str, float], ...] = ()
    memory_limit: int | None = None
    start_method: str = "spawn"
    allowed_failures: int = 3
    log_level: int = logging.WARNING


def manager_main(config: ManagerConfig, control: Connection) -> None:
    """Entry point of the manager process."""
    logging.basicConfig(
        level=config.log_level, format=f"(manager pid={os.getpid()}) %(levelname)s %(name)s: %(message)s"
    )
    Manager(config, control).run()


_PARENT_GONE = "parent-gone"


class _Closed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Manager:
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

    # -- plumbing ---------------------------------------------------------------

    def _send(self, link: Any, msg: P.Message) -> None:
        try:
            link.send(msg)
        except LinkClosed:
            pass  # its reader will report the close

    def _on_link(self, link: Link) -> None:
        link.start_reader(lambda lk, msg: self.inbox.put((lk, msg)), lambda lk, err: self.inbox.put((lk, _Closed(err))))

    def _watch_parent(self) -> None:
        while True:
            try:
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
        )
        proc = self.ctx.Process(target=worker_main, args=(cfg,), name=f"localactors-{name}")
        proc.start()
        self.processes[name] = proc

    # -- main loop ------------------------------------------------------------------

    def run(self) -> None:
        server = Server(self.address, self.config.authkey, "manager", self._on_link)
        threading.Thread(target=self._watch_parent, name="localactors-control", daemon=True).start()
        for _ in range(self.config.n_workers):
            self.spawn_worker()
        if self.config.n_workers == 0:
            self._maybe_ready()
        try:
            while self.running:
                link, item = self.inbox.get()
                try:
                    self._handle(link, item)
                except Exception:
                    logger.exception("manager failed handling %r", item)
        finally:
            server.close()
            self._shutdown_workers()

    def _maybe_ready(self) -> None:
        if not self.ready_sent and len(self.scheduler.workers) >= self.target:
            self.ready_sent = True
            self._reply_control(("ready", self.address, self._infos()))
        if self.pending_scale and len([w for w in self.scheduler.workers.values() if not w.retiring]) == self.target:
            for reply_to, req_id in self.pending_scale:
                if reply_to is None:
                    self._reply_control(("scaled", req_id))
                else:
                    self._send(reply_to, P.Ack(req_id))
            self.pending_scale.clear()

    def _infos(self) -> tuple[P.WorkerInfo, ...]:
        return tuple(w.info for w in sorted(self.scheduler.workers.values(), key=lambda w: w.index))

    def _handle(self, link: Any, item: Any) -> None:
        if link is None:
            self._handle_control(item)
        elif isinstance(item, _Closed):
            self._link_closed(link)
        else:
            self._handle_message(link, item)

    def _handle_control(self, order: Any) -> None:
        if order == _PARENT_GONE or order == "shutdown":
            self.running = False
        elif isinstance(order, tuple) and order[0] == "scale":
            self._scale(order[1], None, order[2])

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
        ws = self.worker_links.pop(link, None)
        if ws is not None:
            proc = self.processes.pop(ws.name, None)
            reason = "left the cluster"
            if proc is not None:
                proc.join(1.0)
                code = proc.exitcode
                if code is not None and code < 0:
                    reason = f"was killed by signal {-code}"
                elif code:
                    reason = f"exited with code {code}"
                elif not ws.retiring:
                    reason = "exited unexpectedly"
            self.scheduler.remove_worker(ws.name, reason)
            self.scheduler.drop_holder(link)
            if self.running and not ws.retiring and len(self.scheduler.workers) < self.target:
                self.spawn_worker()  # keep n_workers
            self._maybe_ready()
            return
        self.scheduler.drop_holder(link)
        for (link_id, address), relay in list(self.relays.items()):
            if link_id == link.id:
                relay.close()
                del self.relays[(link_id, address)]

    def _handle_message(self, link: Any, msg: P.Message) -> None:
        sched = self.scheduler
        match msg:
            case P.RefDelta():
                sched.ref_delta(link, msg)
            case P.SubmitTasks(specs):
                sched.submit(specs)
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
                self._maybe_ready()
            case P.Hello():
                sched.client_links.add(link)
            case P.Scatter(items, workers):
                sched.scatter(items, workers)
            case P.Cancel(keys):
                sched.cancel(keys)
            case P.InfoRequest(req_id):
                self._send(link, P.InfoReply(req_id, self._infos()))
            case P.Scale(req_id, n):
                self._scale(n, link, req_id)
            case P.RelayTo(address, frames):
                self._relay(link, address, frames)
            case P.Goodbye(shutdown_cluster):
                sched.drop_holder(link)
                if shutdown_cluster:
                    self.running = False
            case _:
                logger.warning("manager: unexpected %s from %s", type(msg).__name__, link)

    def _relay(self, client: Link, address: str, frames: tuple[bytes, ...]) -> None:
        relay = self.relays.get((client.id, address))
        if relay is None:
            try:
                relay = connect(address, self.config.authkey, f"relay-{client.id}->{os.path.basename(address)}")
                relay.send(P.Hello(f"relay-{client.id}", os.getpid()))
            except OSError:
                self._send(client, P.RelayFrom(address, ()))
                return

            def back(frames_in: list[bytes]) -> None:
                self._send(client, P.RelayFrom(address, tuple(frames_in)))

            threading.Thread(
                target=_pump, args=(relay, back), name=f"localactors-relay-{client.id}", daemon=True
            ).start()
            self.relays[(client.id, address)] = relay
        try:
            relay.send_frames(list(frames))
        except LinkClosed:
            self._send(client, P.RelayFrom(address, ()))

    # -- shutdown ---------------------------------------------------------------------

    def _shutdown_workers(self) -> None:
        for link in list(self.scheduler.client_links):
            self._send(link, P.Goodbye())  # an orderly close: ClusterClosedError, not Broken
        for link in list(self.worker_links):
            self._send(link, P.Shutdown())
        for relay in self.relays.values():
            relay.close()
        procs = list(self.processes.values())
        for proc in procs:
            proc.join(2.0)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for link in list(self.worker_links):
            link.close()


def _pump(relay: Link, back: Any) -> None:
    """Copy a relay link's replies back to its client, frames untouched."""
    try:
        while True:
            back(relay.recv_frames())
    except (EOFError, OSError, ValueError):
        back([])
    finally:
        relay.close()
