"""Per-actor statistics, kept where the calls run: in each worker.

Runs in: worker processes (and in-process worker threads).

Three hooks in the worker's call path feed a :class:`StatsBook`:

* ``arrived`` (the link's reader thread): the call joins the actor's queue;
* ``started`` (the actor thread, ``Counters.started += 1`` in the call path):
  it leaves the queue and runs;
* ``finished`` (whichever thread answers it): latency is measured from
  arrival to the reply, so it includes the time spent waiting behind other
  calls -- what a caller experiences, minus the trip over the socket.

Attribute reads count as calls. An async method is ``running`` from its start
until its coroutine returns. A ``StatsRequest`` is answered with a snapshot
(``snapshot``); nothing is sent unasked, so the hot path pays only for a few
counter updates: under one lock per run of calls to one actor that arrived
together, none when a call starts, one when it finishes; no table of calls in flight (the
arrival time and the actor's counters travel with each call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from .._wire import protocol as P


class Counters:
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
    """Counters per actor key.

    A call's arrival time travels with the call itself (the worker keeps it
    beside the call until its reply), so nothing is looked up per call: the
    hooks take the actor's :class:`Counters`, which ``arrived`` hands out
    (``None``: a call to an actor that was not alive, which is not counted).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the counters' (CallServer._run_calls takes it too)
        self._actors: dict[str, Counters] = {}

    def arrived(self, key: str, n: int = 1) -> Counters:
        """``n`` calls to ``key`` join its queue; the counters to pass to ``finished``."""
        with self.lock:
            c = self._actors.get(key)
            if c is None:
                c = self._actors[key] = Counters()
            c.arrived += n
        return c

    def finished(self, c: Counters | None, arrival: float, error: bool) -> None:
        """A call that arrived at ``arrival`` (``time.perf_counter()``) is answered now."""
        if c is None:
            return
        elapsed = time.perf_counter() - arrival
        with self.lock:
            c.calls += 1
            c.errors += error
            c.total_time += elapsed
            if elapsed > c.max_time:
                c.max_time = elapsed

    def forget(self, key: str) -> None:
        """The actor is gone: drop its counters (calls still queued get an error reply)."""
        with self.lock:
            self._actors.pop(key, None)

    def snapshot(self, names: dict[str, str], alive: Iterable[str]) -> tuple[P.ActorStat, ...]:
        """Counters of the actors in ``alive``; ``names`` maps key to class name."""
        with self.lock:
            out = []
            for key in alive:
                c = self._actors.get(key) or Counters()
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
