"""A batch's watchdog: it writes a batch that nobody wrote within a bound of its start.

Runs in: every process that holds messages back to write them together (a
worker's replies, ``_worker/reply_batch``; a caller's deferred requests,
``_caller/outbox``), in one thread per batcher, started with its first batch.

The batcher calls :meth:`Watchdog.started` when a batch starts (holding its
own lock). The thread sleeps while nothing is pending; once something is, it
looks again ``bound`` seconds later and, if the same batch is still pending
(none started since), calls the batcher's ``flush``. It wakes once per bound
while batches keep starting, and sleeps otherwise. (It needs the GIL to
write: behind CPU-bound Python code that can take up to
``sys.getswitchinterval()``, 5 ms by default.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import threads


class Watchdog:
    """One batcher's watchdog thread.

    ``pending()``: is a batch waiting (a glance; no lock needed).
    ``flush()``: write it now; ``False`` when the link is gone (the watchdog stops).
    """

    def __init__(self, name: str, bound: float, pending: Callable[[], bool], flush: Callable[[], bool]) -> None:
        self.name = name
        self._bound = bound
        self._pending = pending
        self._flush = flush
        self._count = 0  # batches started so far: the watchdog's clock
        self._armed = threading.Event()  # a batch started: time it
        self._closed = threading.Event()
        self.thread: threading.Thread | None = None

    def started(self) -> None:
        """A batch started (the batcher holds its lock): write it within the bound if nobody does."""
        self._count += 1
        if self.thread is None:
            if self._closed.is_set():
                return
            self.thread = threading.Thread(target=self._watch, name=self.name, daemon=True)
            threads.start(self.thread)
        if not self._armed.is_set():
            self._armed.set()

    def close(self, join: float = 0.0) -> None:
        """Stop the thread (waiting up to ``join`` seconds for it, unless it is this one)."""
        self._closed.set()
        self._armed.set()
        thread = self.thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(join)

    def _watch(self) -> None:
        armed, closed, pending = self._armed, self._closed, self._pending
        while True:
            armed.wait()
            if closed.is_set():
                return
            armed.clear()  # (before looking: a batch started from now on sets it again)
            while pending():
                seen = self._count
                if closed.wait(self._bound):
                    return
                if pending() and self._count == seen and not self._flush():
                    return  # the same batch, unwritten for the whole bound; the link is gone
