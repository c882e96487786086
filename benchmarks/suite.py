"""The workloads, written once over the :class:`~benchmarks.systems.System` verbs.

Runs in: a benchmark child process, which measures one system and writes
its figures as JSON for ``run.py`` to tabulate.

Latencies are kept as samples and summarised as min / median / p99;
throughputs are repeated and summarised as median and best. The pipe echoes
are measured in the localactors child, interleaved block by block with the
actor calls they are compared to, so that both see the same background load.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psutil

from . import syscalls
from .pipe import PipeEcho
from .systems import LocalActorsSystem, System
from .workloads import AsyncCounter, Counter, Pinger, inc, noop

MB = 1 << 20


@dataclass(frozen=True)
class Counts:
    """How much of each workload to run."""

    latency: int = 2000  #: samples of the client's sync call (and of the pipe)
    small: int = 500  #: samples of the other round trips
    pipelined: int = 20_000  #: calls fired before waiting (the pipelined target: 20,000)
    tasks: int = 10_000  #: no-op tasks mapped at once
    rate_reps: int = 3  #: repetitions of each throughput
    big_mb: int = 100
    big_reps: int = 3
    start_reps: int = 3
    scale_workers: tuple[int, ...] = (1, 2, 4)
    scale_threads: tuple[int, ...] = (1, 10, 100)
    actors: int = 10_000
    # peers are 10-100x slower: fewer of each, to stay within the time budget
    peer_latency: int = 1000
    peer_small: int = 200
    peer_pipelined: int = 2_000
    peer_tasks: int = 2_000
    peer_start_reps: int = 1

    def for_peer(self) -> Counts:
        """The counts for a peer: its own, smaller, numbers."""
        return replace(
            self,
            latency=min(self.latency, self.peer_latency),
            small=min(self.small, self.peer_small),
            pipelined=self.peer_pipelined,
            tasks=self.peer_tasks,
            start_reps=min(self.start_reps, self.peer_start_reps),
        )


FULL = Counts()
QUICK = Counts(
    latency=60,
    small=20,
    pipelined=300,
    tasks=200,
    rate_reps=1,
    big_mb=4,
    big_reps=1,
    start_reps=1,
    scale_workers=(1,),
    scale_threads=(1, 4),
    actors=100,
    peer_pipelined=100,
    peer_tasks=100,
    peer_latency=60,
    peer_small=20,
)

Results = dict[str, dict[str, Any]]


def latency(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"kind": "latency", "min": ordered[0], "p50": statistics.median(ordered), "p99": p99, "n": len(ordered)}


def rate(values: list[float], n: int, unit: str = "/s") -> dict[str, Any]:
    return {"kind": "rate", "median": statistics.median(values), "best": max(values), "n": n, "unit": unit}


def value(v: float, unit: str) -> dict[str, Any]:
    return {"kind": "value", "value": v, "unit": unit}


def sample(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    gc.collect()
    out = []
    perf = time.perf_counter
    for _ in range(n):
        t0 = perf()
        fn()
        out.append(perf() - t0)
    return out


def interleaved(fns: dict[str, Callable[[], Any]], n: int, block: int = 50) -> dict[str, list[float]]:
    """Samples of each function, taken in alternating blocks."""
    for fn in fns.values():
        for _ in range(20):
            fn()
    gc.collect()
    out: dict[str, list[float]] = {name: [] for name in fns}
    perf = time.perf_counter
    done = 0
    while done < n:
        size = min(block, n - done)
        for name, fn in fns.items():
            samples = out[name]
            for _ in range(size):
                t0 = perf()
                fn()
                samples.append(perf() - t0)
        done += size
    return out


def _repeat(fn: Callable[[], object], n: int) -> None:
    for _ in range(n):
        fn()


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def memory(pids: list[int]) -> tuple[float, float]:
    """The largest RSS and USS among ``pids``, in MB."""
    rss, uss = 0.0, 0.0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        rss = max(rss, info.rss / MB)
        uss = max(uss, getattr(info, "uss", 0) / MB)
    return rss, uss


def python_calls(fn: Callable[[], object], n: int) -> float:
    """Python-level function calls per ``fn()`` in this thread, counted by cProfile."""
    import cProfile
    import pstats

    for _ in range(50):
        fn()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        fn()
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / n  # type: ignore[attr-defined]


def measure(system_cls: type[System], counts: Counts, log: Callable[[str], None], main_fn: Any = None) -> Results:
    """Every workload on one system, then (for localactors) the pipe and the scaling runs.

    ``main_fn``: a no-op function defined in ``__main__`` (pickled by value).
    """
    out: Results = {}
    is_local = system_cls is LocalActorsSystem
    if not is_local:
        counts = counts.for_peer()
    pipelined, n_tasks = counts.pipelined, counts.tasks

    log("start")
    starts, closes = [], []
    for i in range(counts.start_reps):
        s = system_cls()
        t0 = time.perf_counter()
        s.start(2)
        counter = s.actor(Counter, worker=1)
        s.result(s.call(counter, "increment"))
        starts.append(time.perf_counter() - t0)
        if i < counts.start_reps - 1:
            closes.append(timed(s.close))
    out["start"] = latency(starts)
    if closes:
        out["close"] = latency(closes)

    pids = sorted({*s.worker_pids(), s.result(s.call(counter, "pid"))})
    rss, uss = memory(pids)
    out["worker_rss"] = value(rss, "MB")
    out["worker_uss"] = value(uss, "MB")

    log("round trips")
    fns: dict[str, Callable[[], Any]] = {"call": lambda: s.result(s.call(counter, "increment"))}
    pipes: list[PipeEcho] = []
    if is_local:
        direct, threaded = PipeEcho(), PipeEcho(threaded=True)
        pipes = [direct, threaded]
        fns["pipe"] = direct.round_trip
        fns["pipe_threaded"] = threaded.round_trip
    try:
        for name, samples in interleaved(fns, counts.latency).items():
            out[name] = latency(samples)
        if is_local:
            # in blocks of 1,000 echoes, the median block: one burst of other work on
            # these CPUs must not decide the figure the pipelined target compares to
            block = min(1000, counts.pipelined)
            out["pipe_one_at_a_time"] = rate(
                [block / timed(lambda: _repeat(direct.round_trip, block)) for _ in range(counts.pipelined // block)],
                counts.pipelined,
            )
            out["pipe_pipelined"] = rate(
                [counts.pipelined / direct.pipelined(counts.pipelined) for _ in range(counts.rate_reps)],
                counts.pipelined,
            )
            # a count that noise cannot move: the calling thread's Python calls per round trip
            n_prof = max(100, counts.latency // 2)
            out["pycalls_pipe"] = value(python_calls(direct.round_trip, n_prof), "calls")
            out["pycalls_call"] = value(python_calls(fns["call"], n_prof), "calls")
            # and another: system calls per round trip on each side, counted by the kernel
            n_sys = max(200, counts.latency)
            worker_pid = s.result(s.call(counter, "pid"))
            mine = syscalls.per_call({"client": os.getpid(), "worker": worker_pid}, fns["call"], n_sys)
            theirs = syscalls.per_call({"client": os.getpid(), "echo": direct.process.pid}, direct.round_trip, n_sys)
            if mine is not None and theirs is not None:
                out["syscalls_call_client"] = value(mine["client"], "calls")
                out["syscalls_call_worker"] = value(mine["worker"], "calls")
                out["syscalls_pipe"] = value(max(theirs.values()), "calls")
    finally:
        for p in pipes:
            p.close()

    acounter = s.actor(AsyncCounter, worker=1)
    out["async_call"] = latency(sample(lambda: s.result(s.call(acounter, "increment")), counts.small))
    if s.has_attributes:
        out["attribute"] = latency(sample(lambda: s.attr(counter, "n"), counts.small))
    log("worker to worker")
    pinger = s.actor(Pinger, worker=0)
    s.result(s.call(pinger, "ping", counter, 20, s.ping_style))
    out["worker_to_worker"] = latency(s.result(s.call(pinger, "ping", counter, counts.small, s.ping_style)))

    log("pipelined")

    def fire() -> None:
        s.results([s.call(counter, "increment") for _ in range(pipelined)])

    fire()
    out["pipelined"] = rate([pipelined / timed(fire) for _ in range(counts.rate_reps)], pipelined)

    log("tasks")
    s.run(inc, 0)
    out["task"] = latency(sample(lambda: s.run(inc, 1), counts.small))
    out["noop_tasks"] = rate(
        [n_tasks / timed(lambda: s.map_wait(noop, range(n_tasks))) for _ in range(counts.rate_reps)], n_tasks
    )
    if main_fn is not None:
        s.map_wait(main_fn, range(10))
        out["noop_tasks_main"] = rate(
            [n_tasks / timed(lambda: s.map_wait(main_fn, range(n_tasks))) for _ in range(counts.rate_reps)], n_tasks
        )

    log("large data")
    big = b"\x01" * (counts.big_mb * MB)
    n_big = len(big)

    def gbps(fn: Callable[[], object]) -> dict[str, Any]:
        fn()
        return rate([n_big / timed(fn) / 1e9 for _ in range(counts.big_reps)], n_big, unit="GB/s")

    # each beside what bounds it: one copy of the same bytes into a fresh buffer,
    # in this process and this minute (taken between the transfers)
    copies: list[float] = []

    def copy() -> None:
        copies.append(n_big / timed(lambda: bytearray(big)) / 1e9)

    copy()
    out["big_argument"] = gbps(lambda: s.result(s.call(counter, "size", big)))
    copy()
    out["big_result"] = gbps(lambda: s.result(s.call(counter, "blob", n_big)))
    copy()
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        arr = np.ones(n_big, dtype=np.uint8)
        out["numpy_argument"] = gbps(lambda: s.result(s.call(counter, "size", arr)))
        copy()
        out["numpy_result"] = gbps(lambda: s.result(s.call(counter, "array", n_big)))
        copy()
    if is_local:
        out["memcpy"] = rate(copies, n_big, unit="GB/s")

    if is_local:
        scaling(s, counter, counts, out, log)
    s.close()
    if is_local:
        for n_workers in counts.scale_workers:
            log(f"{n_workers} workers")
            out[f"scale_workers_{n_workers}"] = across_workers(n_workers, counts)
    return out


def scaling(s: System, counter: Any, counts: Counts, out: Results, log: Callable[[str], None]) -> None:
    """Calling threads, and many actors alive at once (localactors only)."""
    for n_threads in counts.scale_threads:
        log(f"{n_threads} threads")
        out[f"scale_threads_{n_threads}"] = rate(
            [from_threads(s, counter, n_threads, counts.pipelined) for _ in range(counts.rate_reps)], counts.pipelined
        )
    log(f"{counts.actors} actors")
    gc.collect()
    t0 = time.perf_counter()
    handles = s.many_actors(Counter, counts.actors)
    out["create_actors"] = value(time.perf_counter() - t0, "s")
    one = s.result(handles[0])
    out["call_many_alive"] = latency(sample(lambda: s.result(s.call(one, "increment")), counts.small))
    rss, _ = memory(s.worker_pids())
    out["worker_rss_many"] = value(rss, "MB")


def from_threads(s: System, counter: Any, n_threads: int, n: int) -> float:
    """Calls/s when ``n_threads`` threads fire ``n`` calls in all, then wait."""
    share = n // n_threads
    barrier = threading.Barrier(n_threads + 1)

    def run() -> None:
        barrier.wait()
        s.results([s.call(counter, "increment") for _ in range(share)])

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return share * n_threads / (time.perf_counter() - t0)


def across_workers(n_workers: int, counts: Counts) -> dict[str, Any]:
    """Pipelined calls/s spread round-robin over one actor per worker."""
    s = LocalActorsSystem()
    s.start(n_workers)
    try:
        actors = [s.actor(Counter, worker=i) for i in range(n_workers)]

        def fire() -> None:
            s.results([s.call(actors[i % n_workers], "increment") for i in range(counts.pipelined)])

        fire()
        return rate([counts.pipelined / timed(fire) for _ in range(counts.rate_reps)], counts.pipelined)
    finally:
        s.close()
