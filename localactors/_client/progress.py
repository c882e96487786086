"""``progress(futures)``: a text progress bar per kind of work, until it is all done.

Runs in: the user's process.

Futures are grouped like dask.distributed groups them: a task ``Future`` by
its key's prefix (the function's name), an ``ActorFuture`` by the method it
called (``Counter.increment``). Counting happens in done-callbacks; drawing
happens every ``interval`` seconds in the calling thread. On a terminal the
bars are redrawn in place; elsewhere (a log, a CI job) only the final state
is printed, once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import IO, Any

from .._base.futures import CANCELLED, ERROR, LOST, Future
from .._base.nested import futures_in
from .display import Screen, make_screen


def _not_a_future(obj: Any) -> None:
    raise TypeError(f"progress() takes futures (or lists and dicts of them), not {type(obj).__name__}")


def _group(f: Any) -> str:
    if isinstance(f, Future):
        prefix, _, token = f.key.rpartition("-")
        return prefix if prefix and len(token) >= 8 else f.key
    return str(f.label) or "actor call"


class _Tally:
    """Done and erred counts per group, updated from done-callbacks (any thread)."""

    def __init__(self, futures: list[Any]) -> None:
        self._lock = threading.Lock()
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.remaining = len(futures)
        self.all_done = threading.Event()
        for f in futures:
            g = _group(f)
            self.total[g] = self.total.get(g, 0) + 1
            self.done.setdefault(g, 0)
            self.errors.setdefault(g, 0)
        if not futures:
            self.all_done.set()
        for f in futures:
            f.add_done_callback(lambda fut, g=_group(f): self._finished(g, fut))

    def _finished(self, group: str, fut: Any) -> None:
        erred = fut.status in (ERROR, LOST, CANCELLED) if isinstance(fut, Future) else fut.error is not None
        with self._lock:
            self.done[group] += 1
            self.errors[group] += erred
            self.remaining -= 1
            if self.remaining == 0:
                self.all_done.set()

    def lines(self, elapsed: float, width: int) -> list[str]:
        with self._lock:
            rows = [(g, self.done[g], self.total[g], self.errors[g]) for g in self.total]
        name_width = max((len(g) for g, *_ in rows), default=0)
        out = []
        for g, done, total, errors in rows:
            filled = int(width * done / total) if total else width
            bar = "#" * filled + " " * (width - filled)
            err = f" | {errors} erred" if errors else ""
            out.append(f"{g:<{name_width}} [{bar}] | {100 * done // total:3d}% {done}/{total} | {elapsed:5.1f}s{err}")
        return out


def progress(
    *futures: Any,
    file: IO[str] | None = None,
    interval: float = 0.1,
    timeout: float | None = None,
    width: int = 40,
) -> Any:
    """Show text progress bars (one per function or method) until the futures are done.

    Takes task ``Future``\\ s and ``ActorFuture``\\ s, loose or in lists and
    dicts. Blocks, drawing as it goes; in the event loop of the futures'
    asynchronous client it returns an awaitable instead (the one rule: a
    synchronous client's progress blocks even where a loop runs, as in
    Jupyter). Raises ``TimeoutError`` after ``timeout`` seconds. Errors do
    not stop it: they are counted (``| 2 erred``) and stay on the futures.
    """
    found = futures_in(futures, on_other=_not_a_future)
    tally = _Tally(found)
    screen = make_screen(file)  # a terminal, a stream, or a notebook's output area
    start = time.monotonic()
    if any(f.in_async_context() for f in found):
        return _arun(tally, screen, start, interval, timeout, width)
    _run(tally, screen, start, interval, timeout, width)
    return None


def _run(tally: _Tally, screen: Screen, start: float, interval: float, timeout: float | None, width: int) -> None:
    deadline = None if timeout is None else start + timeout
    while not tally.all_done.is_set():
        remaining = interval if deadline is None else min(interval, deadline - time.monotonic())
        if remaining <= 0:
            screen.draw(tally.lines(time.monotonic() - start, width), final=True)
            raise TimeoutError(f"progress: not all done after {timeout} s")
        screen.draw(tally.lines(time.monotonic() - start, width), final=False)
        tally.all_done.wait(remaining)
    screen.draw(tally.lines(time.monotonic() - start, width), final=True)


async def _arun(
    tally: _Tally, screen: Screen, start: float, interval: float, timeout: float | None, width: int
) -> None:
    deadline = None if timeout is None else start + timeout
    while not tally.all_done.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            screen.draw(tally.lines(time.monotonic() - start, width), final=True)
            raise TimeoutError(f"progress: not all done after {timeout} s")
        screen.draw(tally.lines(time.monotonic() - start, width), final=False)
        await asyncio.sleep(interval)  # drawing is the point: polling here is deliberate
    screen.draw(tally.lines(time.monotonic() - start, width), final=True)
