"""Liveness: every death and every hang is noticed, nobody waits forever, nothing is orphaned.

Real processes and real signals, every wait bounded. Each test makes its own
cluster: killing and pausing workers starts replacements that must not leak
into other tests.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import struct
import threading
import time
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import wait_until

from localactors import ActorLostError, Client, ClusterClosedError, LocalCluster, WorkerStartError, get_worker
from localactors._wire import connection as _connection

T = 30.0


class Napper:
    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n

    def nap(self, seconds: float) -> float:
        time.sleep(seconds)  # releases the GIL: only the actor thread is busy
        return seconds

    def hold_the_gil(self, seconds: int) -> None:
        ctypes.PyDLL(None).sleep(seconds)  # a C call through PyDLL keeps the GIL: every thread stalls

    def fork_a_child(self) -> int:
        """Fork a child that inherits this worker's sockets and keeps them open."""
        pid = os.fork()
        if pid == 0:  # the child: hold every inherited descriptor for a while, then go
            time.sleep(60)
            os._exit(0)
        return pid

    def where(self) -> str:
        return str(get_worker().name)


def call_twice(actor: Any, gate: str) -> int:
    """A task holding an actor handle: one call, then (once ``gate`` exists) another."""
    actor.inc().result(timeout=T)
    wait_until(lambda: os.path.exists(gate), T, gate)
    return int(actor.inc().result(timeout=T))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive_names(cluster: LocalCluster) -> set[str]:
    return {w.name for w in cluster.workers}


# ---------------------------------------------------------------- 1. death seen by the process, not the link


def test_a_killed_worker_is_noticed_while_a_forked_child_keeps_its_sockets() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        actor = client.submit(Napper, actor=True).result(timeout=T)
        name = actor.where().result(timeout=T)
        child = actor.fork_a_child().result(timeout=T)
        try:
            pending = actor.nap(30)
            time.sleep(0.2)  # let the call reach the actor thread
            killed = time.monotonic()
            cluster.kill_worker(name)
            with pytest.raises(ActorLostError, match="signal 9"):
                pending.result(timeout=5)
            assert time.monotonic() - killed < 1.0
            wait_until(lambda: len(alive_names(cluster)) == 2 and name not in alive_names(cluster), T, "replaced")
        finally:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- 2. heartbeat


def test_a_paused_worker_is_declared_dead_killed_and_replaced() -> None:
    with LocalCluster(n_workers=2, worker_timeout=1.0) as cluster, Client(cluster) as client:
        actor = client.submit(Napper, actor=True).result(timeout=T)
        name = actor.where().result(timeout=T)
        pid = {w.name: w.pid for w in cluster.workers}[name]
        cluster.pause_worker(name)
        pending = actor.inc()
        with pytest.raises(ActorLostError, match="stopped responding") as info:
            pending.result(timeout=10)
        assert "worker_timeout=1" in str(info.value)
        wait_until(lambda: gone(pid), 5, "the paused worker was killed")
        wait_until(lambda: len(alive_names(cluster)) == 2 and name not in alive_names(cluster), T, "replaced")


def test_a_worker_holding_the_gil_is_declared_dead() -> None:
    with LocalCluster(n_workers=1, worker_timeout=1.0) as cluster, Client(cluster) as client:
        actor = client.submit(Napper, actor=True).result(timeout=T)
        with pytest.raises(ActorLostError, match="stopped responding"):
            actor.hold_the_gil(30).result(timeout=10)
        wait_until(lambda: len(cluster.workers) == 1, T, "replaced")


def test_a_long_sync_method_does_not_trip_the_heartbeat() -> None:
    with LocalCluster(n_workers=1, worker_timeout=0.5) as cluster, Client(cluster) as client:
        actor = client.submit(Napper, actor=True).result(timeout=T)
        name = actor.where().result(timeout=T)
        assert actor.nap(2.0).result(timeout=T) == 2.0  # four timeouts long
        assert client.submit(time.sleep, 1.5, pure=False).result(timeout=T) is None
        assert alive_names(cluster) == {name}


def test_worker_timeout_none_switches_the_heartbeat_off() -> None:
    with LocalCluster(n_workers=1, worker_timeout=None) as cluster, Client(cluster) as client:
        actor = client.submit(Napper, actor=True).result(timeout=T)
        name = actor.where().result(timeout=T)
        cluster.pause_worker(name)
        try:
            with pytest.raises(TimeoutError):  # the caller's own timeout is what ends its wait
                actor.inc().result(timeout=1.5)
        finally:
            cluster.resume_worker(name)
        assert actor.inc().result(timeout=T) == 2  # the first call ran once it woke
        assert alive_names(cluster) == {name}


# ---------------------------------------------------------------- 3. replacements that die starting


def works_once(config: Any, output: Any) -> None:
    """A worker entry point: the first worker starts, every replacement dies starting."""
    if config.name != "worker-0":
        os._exit(3)
    from localactors._worker.worker import worker_main

    worker_main(config, output)


def test_when_no_worker_can_be_kept_alive_work_fails_saying_why() -> None:
    entry = f"{__name__}:works_once"
    with LocalCluster(n_workers=1, worker_entry=entry) as cluster, Client(cluster) as client:
        actor = client.submit(Napper, actor=True, max_restarts=1).result(timeout=T)
        assert actor.inc().result(timeout=T) == 1
        cluster.kill_worker("worker-0")
        # the restart waits for a worker that never comes: it fails, and so does new work
        with pytest.raises(ActorLostError):
            actor.inc().result(timeout=T)
        start = time.monotonic()
        with pytest.raises(WorkerStartError, match=r"no worker can be kept alive.*died before registering"):
            client.submit(time.sleep, 0, pure=False).result(timeout=T)
        assert time.monotonic() - start < T / 2


def test_scale_reports_workers_dying_while_starting() -> None:
    entry = f"{__name__}:works_once"
    with LocalCluster(n_workers=1, worker_entry=entry) as cluster:
        start = time.monotonic()
        with pytest.raises(WorkerStartError, match="died before registering"):
            cluster.scale(2, timeout=T)
        assert time.monotonic() - start < T / 2


# ---------------------------------------------------------------- 4. orphans and the process group


def test_the_cluster_has_its_own_process_group() -> None:
    with LocalCluster(n_workers=2) as cluster:
        manager = cluster._process.pid
        assert os.getpgid(manager) == manager != os.getpgrp()  # a terminal's Ctrl-C does not reach it
        assert {os.getpgid(w.pid) for w in cluster.workers} == {manager}


def test_a_paused_worker_dies_with_a_sigkilled_manager() -> None:
    with LocalCluster(n_workers=2, worker_timeout=None) as cluster:
        pids = [w.pid for w in cluster.workers]
        cluster.pause_worker(cluster.workers[0].name)
        os.kill(cluster._process.pid, signal.SIGKILL)
        wait_until(lambda: all(gone(p) for p in pids), 5, "every worker gone with the manager")


def test_close_takes_a_paused_worker_down() -> None:
    cluster = LocalCluster(n_workers=2, worker_timeout=None)
    pids = [w.pid for w in cluster.workers]
    cluster.pause_worker(cluster.workers[1].name)
    cluster.close()
    wait_until(lambda: all(gone(p) for p in pids), 2, "every worker gone after close()")


def test_signalling_a_worker_needs_processes() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster:
        for verb in (cluster.kill_worker, cluster.pause_worker, cluster.resume_worker):
            with pytest.raises(NotImplementedError, match="processes=True"):
                verb("worker-0")
    with LocalCluster(n_workers=1) as cluster, pytest.raises(ValueError, match="no live worker"):
        cluster.kill_worker("worker-99")


# ---------------------------------------------------------------- 5. concurrent close()


def _close_from_four_threads(cluster: LocalCluster) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            barrier.wait(timeout=T)
            cluster.close()
            assert cluster.status == "closed"  # a second closer returns once the first is done
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    assert not errors, errors
    assert cluster.status == "closed"


@pytest.mark.parametrize("processes", [False, True])
def test_concurrent_close_is_idempotent(processes: bool) -> None:
    for _ in range(15 if not processes else 3):
        _close_from_four_threads(LocalCluster(n_workers=1, processes=processes))


# ---------------------------------------------------------------- 6. handshake deadline


def test_a_peer_trickling_its_handshake_is_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(_connection, "HANDSHAKE_TIMEOUT", 1.0)
    address = str(tmp_path / "server")
    server = _connection.Server(address, b"k" * 32, "trickle", lambda link: link.close())
    try:
        with caplog.at_level(logging.WARNING, "localactors.connection"), socket.socket(socket.AF_UNIX) as sock:
            sock.connect(address)
            start = time.monotonic()
            dropped = False
            # a well-formed answer (a 4-byte length, then 32 bytes), one byte every 0.2 s:
            # each read succeeds, the whole would take 7 s
            for byte in struct.pack("!i", 32) + b"x" * 32:
                try:
                    sock.sendall(bytes([byte]))
                    if sock.recv(4096, socket.MSG_DONTWAIT) == b"":
                        dropped = True
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    dropped = True
                    break
                time.sleep(0.2)
            assert dropped and time.monotonic() - start < 3.0
            wait_until(lambda: "longer than 1.0 s" in caplog.text, 5, "the drop is logged")
    finally:
        server.close()


# ---------------------------------------------------------------- 7. frame bounds


def _authenticated(address: str, authkey: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(address)
    conn = Connection(os.dup(sock.fileno()))
    answer_challenge(conn, authkey)
    deliver_challenge(conn, authkey)
    conn.close()
    return sock


def test_a_huge_frame_claim_is_not_allocated_and_garbage_drops_the_link(capfd: pytest.CaptureFixture[str]) -> None:
    with LocalCluster(n_workers=1, log_level=logging.WARNING) as cluster:
        manager = psutil.Process(cluster._process.pid)
        before = manager.memory_info().rss
        with _authenticated(cluster.manager_address, cluster.authkey) as sock:
            sock.sendall(struct.pack("!i", 1 << 30) + b"\x00" * 1000)  # claims 1 GiB, sends 1 kB
            time.sleep(0.5)  # the manager's reader is now waiting for the rest
            grown = manager.memory_info().rss - before
            assert grown < 256 << 20, grown
        with _authenticated(cluster.manager_address, cluster.authkey) as sock:
            sock.sendall(b"garbage!")
            sock.settimeout(5)
            assert sock.recv(100) == b""  # dropped, not waited on
        wait_until(lambda: "malformed framing" in capfd.readouterr().err, 5, "the drop is logged")
        with Client(cluster) as client:  # and the manager serves on
            assert client.submit(abs, -3).result(timeout=T) == 3


def test_max_frame_size_is_configurable(capfd: pytest.CaptureFixture[str]) -> None:
    with LocalCluster(n_workers=1, max_frame_size=1 << 16) as cluster:
        with _authenticated(cluster.manager_address, cluster.authkey) as sock:
            sock.sendall(struct.pack("!i", 1 << 17))  # legal by default, over this cluster's bound
            sock.settimeout(5)
            assert sock.recv(100) == b""
        wait_until(lambda: "at most 65536" in capfd.readouterr().err, 5, "the drop is logged")
        with Client(cluster) as client:
            assert client.submit(abs, -3).result(timeout=T) == 3


# ---------------------------------------------------------------- 8. a task holding an actor handle


def test_a_task_calling_an_actor_whose_worker_died_fails_with_actor_lost(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        actor = client.submit(Napper, actor=True).result(timeout=T)
        home = actor.where().result(timeout=T)
        other = next(w.name for w in cluster.workers if w.name != home)
        task = client.submit(call_twice, actor, gate, workers=other, pure=False)
        wait_until(lambda: actor.n == 1, T, "the task's first call ran")
        cluster.kill_worker(home)
        wait_until(lambda: home not in alive_names(cluster), T, "the death is known")
        Path(gate).touch()
        with pytest.raises(ActorLostError, match=home):
            task.result(timeout=T)


# ---------------------------------------------------------------- 9. closing wins the race


def _close_under_calls() -> None:
    cluster = LocalCluster(n_workers=2)
    client = Client(cluster)
    actors = client.gather([client.submit(Napper, actor=True, pure=False) for _ in range(2)], timeout=T)
    pending = [a.nap(5) for a in actors for _ in range(3)]
    stop = threading.Event()
    late: list[Any] = []

    def keep_calling() -> None:
        while not stop.is_set():
            try:
                late.append(actors[0].inc())
            except ClusterClosedError:
                return
            time.sleep(0.001)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        cluster.close()
    finally:
        stop.set()
        caller.join(T)
    for fut in [*pending, *late]:
        try:
            fut.result(timeout=T)
        except ClusterClosedError:
            pass  # anything else (ActorLostError above all) fails the test
    client.close()


def test_calls_racing_close_fail_with_cluster_closed() -> None:
    for _ in range(4):
        _close_under_calls()
