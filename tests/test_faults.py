"""Fault catalogue: one bad thing per boundary, each ending in a named error in bounded time.

In the spirit of CPython's concurrent.futures deadlock tests: a worker dies
in every way a process can (exit, SIGKILL, segfault, memory limit) while
calls are pending; the manager dies; the user's process dies; close() meets
pending calls and stuck workers; Ctrl-C interrupts a wait. Every test makes
its own cluster (killing workers starts replacements, which must not leak
into other tests) and bounds every wait.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import wait_until

from localactors import (
    ActorLostError,
    Client,
    ClusterBrokenError,
    ClusterClosedError,
    KilledWorker,
    LocalCluster,
    WorkerLostError,
    get_worker,
)

# ---------------------------------------------------------------- helpers (run in workers)


class Sleeper:
    """An actor that can be kept busy, and tells where it lives."""

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def inc(self) -> int:
        self.n += 1
        return self.n

    def pid(self) -> int:
        return os.getpid()

    def nap(self, seconds: float) -> float:
        time.sleep(seconds)  # a C call: the actor thread is stuck in it
        return seconds

    async def anap(self, seconds: float, mark: str = "") -> float:
        if mark:
            Path(mark).touch()
        time.sleep(seconds)  # blocks the worker's event loop on purpose
        return seconds

    def marked_nap(self, mark: str, seconds: float) -> float:
        Path(mark).touch()
        return self.nap(seconds)

    def call(self, other: Any) -> int:
        result: int = other.inc().result(timeout=10)
        return result


class Hog:
    """An actor that eats memory until something stops it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def grow(self, step: int, until: int) -> int:
        while sum(len(c) for c in self.chunks) < until:
            self.chunks.append(b"x" * step)  # written, so resident
            time.sleep(0.02)  # give the manager's monitor a chance to look
        return len(self.chunks)


class Fragile:
    """An actor whose constructor fails once a marker file exists."""

    def __init__(self, marker: str) -> None:
        if os.path.exists(marker):
            raise RuntimeError("refusing to start twice")
        Path(marker).touch()

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> str:
        return "pong"


def crash(how: str) -> None:
    """Take this worker down in one of the ways a process can die."""
    if how == "exit":
        os._exit(3)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    raise AssertionError(f"still alive after {how}")


def crash_noting_when(how: str, note: str) -> None:
    """:func:`crash`, first writing the moment of death (``time.monotonic()`` is system-wide)."""
    Path(note).write_text(repr(time.monotonic()))
    crash(how)


def marked_sleep(mark: str, seconds: float) -> None:
    Path(mark).touch()
    time.sleep(seconds)


def crash_once(marker: str, value: int) -> int:
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return value


def located(value: int) -> tuple[int, int]:
    return value, os.getpid()


def inc(x: int) -> int:
    return x + 1


def first(pair: tuple[int, int]) -> int:
    return pair[0]


def call_inc(actor: Any) -> int:
    result: int = actor.inc().result(timeout=10)
    return result


def worker_name() -> str:
    return str(get_worker().name)


# ---------------------------------------------------------------- test helpers


@contextmanager
def fresh(n_workers: int = 2, **kwargs: Any) -> Iterator[tuple[LocalCluster, Client]]:
    with LocalCluster(n_workers=n_workers, **kwargs) as cluster, Client(cluster) as client:
        yield cluster, client


def worker_pids(client: Client) -> dict[str, int]:
    return {name: w["pid"] for name, w in client.scheduler_info()["workers"].items()}


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


# ---------------------------------------------------------------- a worker dies


@pytest.mark.parametrize(
    ("how", "exitcode", "words"),
    [
        ("exit", 3, "exited with code 3"),
        ("sigkill", -signal.SIGKILL, "SIGKILL"),
        ("segfault", -signal.SIGSEGV, "SIGSEGV"),
    ],
)
def test_worker_death_fails_pending_actor_calls(how: str, exitcode: int, words: str, tmp_path: Path) -> None:
    with fresh() as (_, client):
        victim = client.submit(Sleeper, actor=True).result(timeout=30)
        other = client.submit(Sleeper, 10, actor=True).result(timeout=30)
        assert victim.worker != other.worker
        pending = [victim.nap(60) for _ in range(3)]  # one running, two queued behind it
        note = tmp_path / "died-at"
        crasher = client.submit(crash_noting_when, how, str(note), workers=[victim.worker], pure=False)
        for fut in pending:
            with pytest.raises(ActorLostError) as info:
                fut.result(timeout=10)
            err = info.value
            assert victim.key in str(err) and victim.worker in str(err) and words in str(err)
            assert err.worker == victim.worker and err.exitcode == exitcode
        all_failed = time.monotonic()
        # within 1 s of the death itself (the crashing task's own start is not ours to time)
        assert all_failed - float(note.read_text()) < 1.0
        # later calls fail at once, from every kind of caller
        started = time.monotonic()
        with pytest.raises(ActorLostError, match=words):
            victim.inc().result(timeout=5)
        with pytest.raises(ActorLostError, match=words):
            client.submit(call_inc, victim, pure=False).result(timeout=10)
        with pytest.raises(ActorLostError, match=words):
            other.call(victim).result(timeout=10)
        assert time.monotonic() - started < 3.0
        # the other worker's actor did not notice
        assert other.inc().result(timeout=5) == 11
        # the crashing task may only run on the dead worker: it fails instead of waiting forever
        with pytest.raises(WorkerLostError, match="may only run on"):
            crasher.result(timeout=10)


def test_attribute_read_on_dead_actor_fails() -> None:
    with fresh() as (_, client):
        victim = client.submit(Sleeper, actor=True).result(timeout=30)
        pid = victim.pid().result(timeout=5)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid not in worker_pids(client).values(), 10, "worker removed")
        with pytest.raises(ActorLostError, match="SIGKILL"):
            victim.n  # noqa: B018 -- an attribute read is a call


def test_worker_death_in_relay_mode_names_the_signal() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster, direct_to_workers=False) as client:
        victim = client.submit(Sleeper, actor=True).result(timeout=30)
        pid = victim.pid().result(timeout=5)
        pending = victim.nap(60)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ActorLostError, match="SIGKILL") as info:
            pending.result(timeout=10)
        assert info.value.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "relay"])
def test_death_notice_arrives_well_within_the_bound(direct: bool) -> None:
    # the manager reaps off its main loop, so the notice (with the signal) beats
    # the callers' own give-up wait: every error names SIGKILL, death after death
    with LocalCluster(n_workers=2) as cluster, Client(cluster, direct_to_workers=direct) as client:
        for round_ in range(3):
            wait_until(lambda: len(worker_pids(client)) == 2, 30, "two workers")
            victim = client.submit(Sleeper, round_, actor=True).result(timeout=30)
            pid = victim.pid().result(timeout=5)
            pending = [victim.nap(60) for _ in range(2)]
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            for fut in pending:
                with pytest.raises(ActorLostError, match="killed by signal 9 \\(SIGKILL\\)") as info:
                    fut.result(timeout=10)
                assert info.value.worker == victim.worker and info.value.exitcode == -signal.SIGKILL
            assert time.monotonic() - killed < 1.0


def cut_off_from_the_manager() -> None:
    """Make this (thread) worker leave as if it died: its link to the manager drops."""
    get_worker()._manager.close()


def test_thread_worker_death_says_there_is_no_exit_code() -> None:
    with LocalCluster(n_workers=2, processes=False) as cluster, Client(cluster) as client:
        victim = client.submit(Sleeper, actor=True).result(timeout=30)
        assert victim.inc().result(timeout=5) == 1
        cut = client.submit(cut_off_from_the_manager, workers=[victim.worker], pure=False)
        with pytest.raises(WorkerLostError, match="there is no exit code"):
            cut.result(timeout=10)  # its result had no link left to travel on
        wait_until(lambda: victim.worker not in worker_pids(client), 10, "thread worker removed")
        with pytest.raises(ActorLostError, match="there is no exit code") as info:
            victim.inc().result(timeout=5)
        assert info.value.worker == victim.worker and info.value.exitcode is None
        # its replacement registers before close(): a worker still starting makes close() wait
        wait_until(lambda: len(worker_pids(client)) == 2, 10, "replacement registered")


def test_dead_worker_is_replaced() -> None:
    with fresh() as (_, client):
        before = worker_pids(client)
        name, pid = sorted(before.items())[0]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: len(worker_pids(client)) == 2 and name not in worker_pids(client), 30, "replacement")
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


# ---------------------------------------------------------------- tasks on a dying worker


def test_task_killing_every_worker_becomes_killed_worker() -> None:
    with fresh() as (_, client):  # allowed_failures defaults to 3: four deaths
        fut = client.submit(crash, "exit", pure=False)
        with pytest.raises(KilledWorker, match="4 workers") as info:
            fut.result(timeout=60)
        assert info.value.exitcode == 3
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


def test_allowed_failures_is_configurable() -> None:
    with fresh(allowed_failures=0) as (_, client), pytest.raises(KilledWorker, match="1 workers"):
        client.submit(crash, "sigkill", pure=False).result(timeout=30)


def test_task_retried_after_its_worker_died(tmp_path: Path) -> None:
    with fresh() as (_, client):
        marker = str(tmp_path / "crashed")
        assert client.submit(crash_once, marker, 7).result(timeout=30) == 7
        assert os.path.exists(marker)


def test_lost_result_is_recomputed_while_its_future_is_held() -> None:
    with fresh() as (_, client):
        fut = client.submit(located, 41)
        value, pid = fut.result(timeout=30)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid not in worker_pids(client).values(), 10, "worker removed")
        value2, pid2 = fut.result(timeout=30)
        assert value2 == value and pid2 != pid
        # dependents and gather see the recomputed value too
        assert client.submit(first, fut).result(timeout=30) == 41
        assert client.gather([fut], timeout=30)[0][0] == 41


def test_dependent_waits_for_recomputed_input() -> None:
    with fresh() as (_, client):
        fut = client.submit(located, 1)
        _, pid = fut.result(timeout=30)
        os.kill(pid, signal.SIGKILL)  # no waiting: the dependent may race the death
        assert client.submit(first, fut, pure=False).result(timeout=30) == 1


def test_lost_scattered_data_is_reported_lost() -> None:
    with fresh(n_workers=1) as (_, client):
        [data] = client.scatter([5])
        pid = next(iter(worker_pids(client).values()))
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError, match="SIGKILL"):
            wait_until(lambda: data.status == "lost", 10, "data lost")
            data.result(timeout=10)


# ---------------------------------------------------------------- memory limit


def test_memory_limit_restarts_the_worker() -> None:
    with fresh(n_workers=1, memory_limit="250MiB") as (_, client):
        hog = client.submit(Hog, actor=True).result(timeout=30)
        with pytest.raises(ActorLostError, match="memory limit") as info:
            hog.grow(20 * 2**20, 2**31).result(timeout=60)
        assert info.value.exitcode == -signal.SIGKILL
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2  # a new worker took over


# ---------------------------------------------------------------- actor restarts


def test_restarted_actor_keeps_its_handles() -> None:
    with fresh() as (_, client):
        fut = client.submit(Sleeper, 100, actor=True, max_restarts=1)
        actor = fut.result(timeout=30)
        assert actor.inc().result(timeout=5) == 101
        pid = actor.pid().result(timeout=5)
        in_flight = actor.nap(60)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ActorLostError, match="being restarted"):
            in_flight.result(timeout=10)  # never silently replayed
        # the same handle reaches the new instance, built with the same arguments
        assert actor.inc().result(timeout=30) == 101
        assert actor.pid().result(timeout=5) != pid
        # handles in tasks and in other actors reach it too
        assert client.submit(call_inc, actor, pure=False).result(timeout=30) == 102
        other = client.submit(Sleeper, actor=True).result(timeout=30)
        assert other.call(actor).result(timeout=30) == 103
        assert fut.result(timeout=5).inc().result(timeout=5) == 104


def test_calls_made_while_restarting_wait_for_the_new_instance() -> None:
    with fresh(n_workers=1) as (_, client):  # no other worker: it restarts on the replacement
        actor = client.submit(Sleeper, 5, actor=True, max_restarts=2).result(timeout=30)
        pid = actor.pid().result(timeout=5)
        in_flight = actor.nap(60)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ActorLostError):
            in_flight.result(timeout=10)
        parked = [actor.inc() for _ in range(3)]  # the replacement worker is still starting
        assert [f.result(timeout=60) for f in parked] == [6, 7, 8]


def test_restart_budget_runs_out() -> None:
    with fresh() as (_, client):
        actor = client.submit(Sleeper, actor=True, max_restarts=1).result(timeout=30)
        pid1 = actor.pid().result(timeout=5)
        os.kill(pid1, signal.SIGKILL)
        wait_until(lambda: pid1 not in worker_pids(client).values(), 10, "first worker removed")
        pid2 = actor.pid().result(timeout=30)  # waits for the restart if need be
        os.kill(pid2, signal.SIGKILL)
        wait_until(lambda: pid2 not in worker_pids(client).values(), 10, "second worker removed")
        with pytest.raises(ActorLostError, match="SIGKILL"):
            actor.inc().result(timeout=10)


def test_failed_restart_fails_waiting_calls(tmp_path: Path) -> None:
    with fresh() as (_, client):
        actor = client.submit(Fragile, str(tmp_path / "once"), actor=True, max_restarts=1).result(timeout=30)
        pid = actor.pid().result(timeout=5)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid not in worker_pids(client).values(), 10, "worker removed")
        with pytest.raises(ActorLostError, match="could not be restarted") as info:
            actor.ping().result(timeout=30)
        assert "refusing to start twice" in str(info.value.__cause__)
        with pytest.raises(ActorLostError, match="could not be restarted"):
            actor.ping().result(timeout=5)


# ---------------------------------------------------------------- the manager dies


def test_manager_death_breaks_the_cluster() -> None:
    with fresh() as (cluster, client):
        actor = client.submit(Sleeper, actor=True).result(timeout=30)
        workers = list(worker_pids(client).values())
        call = actor.nap(60)
        task = client.submit(time.sleep, 60, pure=False)
        os.kill(cluster._process.pid, signal.SIGKILL)
        with pytest.raises(ClusterBrokenError):
            task.result(timeout=10)
        with pytest.raises(ClusterBrokenError):
            call.result(timeout=10)
        with pytest.raises(ClusterBrokenError):
            client.submit(inc, 1, pure=False)
        wait_until(lambda: all(gone(pid) for pid in workers), 5, "workers exit with their manager")
        started = time.monotonic()
        cluster.close()
        assert time.monotonic() - started < 5


USER_SCRIPT = """
import json, sys
from localactors import Client, LocalCluster
if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2)
    client = Client(cluster)
    pids = [w["pid"] for w in client.scheduler_info()["workers"].values()]
    print(json.dumps({"manager": cluster._process.pid, "workers": pids}), flush=True)
    sys.stdin.read()  # until killed
"""


def test_user_process_sigkill_takes_everything_down(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded by the test timeout: the script prints at once
        pids = json.loads(line)
        everything = [pids["manager"], *pids["workers"]]
        assert not any(gone(pid) for pid in everything)
        proc.kill()
        proc.wait(5)
        started = time.monotonic()
        wait_until(lambda: all(gone(pid) for pid in everything), 5, "manager and workers gone")
        assert time.monotonic() - started < 2.0
    finally:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------- close, Ctrl-C


def test_close_fails_pending_work_with_cluster_closed() -> None:
    cluster = LocalCluster(n_workers=2)
    client = Client(cluster)
    actor = client.submit(Sleeper, actor=True).result(timeout=30)
    call = actor.nap(60)
    task = client.submit(time.sleep, 60, pure=False)
    started = time.monotonic()
    client.close()
    with pytest.raises(ClusterClosedError):
        call.result(timeout=5)
    with pytest.raises(ClusterClosedError):
        task.result(timeout=5)
    with pytest.raises(ClusterClosedError):
        actor.inc()
    with pytest.raises(ClusterClosedError):
        client.submit(inc, 1)
    cluster.close()
    assert time.monotonic() - started < 5


def test_cluster_close_fails_calls_of_a_client_still_open() -> None:
    cluster = LocalCluster(n_workers=1)
    with Client(cluster) as client:
        actor = client.submit(Sleeper, actor=True).result(timeout=30)
        call = actor.nap(60)
        cluster.close()
        with pytest.raises(ClusterClosedError):
            call.result(timeout=5)
        with pytest.raises(ClusterClosedError):
            actor.inc().result(timeout=5)


def test_close_is_bounded_when_workers_are_stuck_in_c_calls(tmp_path: Path) -> None:
    cluster = LocalCluster(n_workers=2)
    client = Client(cluster)
    pids = list(worker_pids(client).values())
    a = client.submit(Sleeper, actor=True, workers=["worker-0"]).result(timeout=30)
    b = client.submit(Sleeper, actor=True, workers=["worker-1"]).result(timeout=30)
    # a's actor thread, b's event loop and a task thread each sit in time.sleep (a C call)
    marks = [str(tmp_path / name) for name in ("actor", "loop", "task")]
    stuck = [a.marked_nap(marks[0], 120), b.anap(120, marks[1]), client.submit(marked_sleep, marks[2], 120)]
    wait_until(lambda: all(os.path.exists(m) for m in marks), 30, "all three stuck")
    started = time.monotonic()
    try:
        client.close()
    finally:
        cluster.close()
    assert time.monotonic() - started < 5
    assert all(gone(pid) for pid in pids)
    for fut in stuck:
        with pytest.raises(ClusterClosedError):
            fut.result(timeout=1)


def test_ctrl_c_during_result_leaves_the_cluster_closable() -> None:
    with fresh() as (cluster, client):
        actor = client.submit(Sleeper, actor=True).result(timeout=30)
        call = actor.nap(60)
        main = threading.main_thread().ident
        assert threading.current_thread().ident == main
        assert main is not None
        timer = threading.Timer(0.2, signal.pthread_kill, args=(main, signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                call.result(timeout=30)
        finally:
            timer.join()
        other = client.submit(Sleeper, actor=True).result(timeout=30)
        assert other.inc().result(timeout=10) == 1
        started = time.monotonic()
        client.close()
        cluster.close()
        assert time.monotonic() - started < 5


def test_second_close_is_a_no_op() -> None:
    cluster = LocalCluster(n_workers=1)
    client = Client(cluster)
    client.close()
    cluster.close()
    started = time.monotonic()
    client.close()
    cluster.close()
    assert time.monotonic() - started < 0.1
    assert cluster.status == "closed"
