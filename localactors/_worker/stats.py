"""Per-actor statistics, kept where the calls run: in each worker.

Runs in: worker processes (and in-process worker threads).

Three hooks in the worker's call path feed a :class:`StatsBook`:

* ``arrived`` (the link's reader thread): the call joins the actor's queue;
* ``started`` (the actor thread): it leaves the queue and runs;
* ``finished`` (whichever thread sends the reply): latency is measured from
  arrival to reply, so it includes the time spent waiting behind other calls
  -- what a caller experiences, minus the trip over the socket.

Attribute reads count as calls. An async method is ``running`` from its start
until its coroutine returns. A ``StatsRequest`` is answered with a snapshot
(``snapshot``); nothing is sent unasked, so the hot path pays only for a few
counter updates: under one lock per batch of calls that arrived together, none
when a call starts, one when it finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from .._wire import protocol as P


class _Counters:
    """One actor's counters. ``started`` has one writer, the actor thread, and needs no
    lock; the others change under the book's lock. Queued and running are differences."""

    __slots__ = ("arrived", "calls", "errors", "max_time", "started", "total_time")

    def __init__(self) -> None:
        self.calls = 0  # finished
        self.errors = 0
        self.total_time = 0.0
        self.max_time = 0.0
        self.arrived = 0
        self.started = 0


class StatsBook:
    """Counters per actor key, and the arrival time of every call in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actors: dict[str, _Counters] = {}
        self._inflight: dict[tuple[int, int], tuple[str, float]] = {}  # (link id, call id) -> (key, arrival)

    def arrived(self, key: str, link_id: int, call_id: int) -> None:
        now = time.perf_counter()
        with self._lock:
            c = self._actors.get(key)
            if c is None:
                c = self._actors[key] = _Counters()
            c.arrived += 1
            self._inflight[(link_id, call_id)] = (key, now)

    def arrived_many(self, link_id: int, calls: list[tuple[str, int]]) -> None:
        """:meth:`arrived` for calls that came together, ``(key, call id)`` each: one lock, one clock read."""
        now = time.perf_counter()
        actors, inflight = self._actors, self._inflight
        with self._lock:
            for key, call_id in calls:
                c = actors.get(key)
                if c is None:
                    c = actors[key] = _Counters()
                c.arrived += 1
                inflight[(link_id, call_id)] = (key, now)

    def started(self, key: str) -> None:
        """The call leaves the queue and runs (on the actor thread: the counter's one writer)."""
        c = self._actors.get(key)
        if c is not None:
            c.started += 1

    def finished(self, link_id: int, call_id: int, error: bool) -> None:
        now = time.perf_counter()
        with self._lock:
            entry = self._inflight.pop((link_id, call_id), None)
            if entry is None:
                return
            key, arrival = entry
            c = self._actors.get(key)
            if c is None:
                return
            elapsed = now - arrival
            c.calls += 1
            c.errors += error
            c.total_time += elapsed
            if elapsed > c.max_time:
                c.max_time = elapsed

    def forget(self, key: str) -> None:
        """The actor is gone: drop its counters (calls still queued get an error reply)."""
        with self._lock:
            self._actors.pop(key, None)

    def snapshot(self, names: dict[str, str], alive: Iterable[str]) -> tuple[P.ActorStat, ...]:
        """Counters of the actors in ``alive``; ``names`` maps key to class name."""
        with self._lock:
            out = []
            for key in alive:
                c = self._actors.get(key) or _Counters()
                started = c.started  # (read once: the actor thread may move it meanwhile)
                queued, running = max(0, c.arrived - started), max(0, started - c.calls)
                out.append(
                    P.ActorStat(key, names.get(key, "?"), c.calls, c.errors, c.total_time, c.max_time, queued, running)
                )
        return tuple(out)


class ProcessMeter:
    """Memory and CPU of this worker's process; zeros for an in-process worker."""

    def __init__(self, in_process: bool) -> None:
        self._proc = None
        if not in_process:
            import psutil

            self._proc = psutil.Process()
            self._proc.cpu_percent(None)  # the first reading starts the interval

    def read(self) -> tuple[int, float]:
        """``(rss bytes, cpu percent since the previous read)``."""
        if self._proc is None:
            return 0, 0.0
        try:
            return int(self._proc.memory_info().rss), float(self._proc.cpu_percent(None))
        except Exception:
            return 0, 0.0
