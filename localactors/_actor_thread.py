"""The worker's one actor thread: per-actor mailboxes and nested waiting.

Runs in: worker processes (thread ``localactors-actor-<worker>``).

Every operation on an actor -- construction, sync call, attribute read, the
*start* of an async call, and finally dropping it -- is queued here in the
order its link delivered it, so per caller the operations on one actor
begin in the order they were issued. Sync work runs one operation at a time.

When actor code blocks on a future (``.result()``, ``wait``), the thread does
not sleep: it keeps running queued operations of *other* actors until the
future is done. That is what lets a sync method call another actor on the
same worker and wait for it without deadlock. Operations for an actor that is
already on the stack wait in its mailbox, in order, until it returns.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

from . import _futures

Op = Callable[[], None]


class _Wake:
    __slots__ = ("comp",)

    def __init__(self, comp: _futures.Completion) -> None:
        self.comp = comp


_STOP = object()


class ActorThread:
    """Runs actor operations in order; a waiting operation lends its thread."""

    def __init__(self, name: str, on_idle: Callable[[], None] | None = None) -> None:
        self._inbox: SimpleQueue[Any] = SimpleQueue()
        self._mailbox: dict[str, deque[Op]] = {}
        self._busy: set[str] = set()
        self.thread = threading.Thread(target=self._run, name=f"localactors-actor-{name}", daemon=True)
        self.queued = 0  # operations submitted and not yet finished (for statistics)

    def start(self) -> None:
        self.thread.start()

    def submit(self, actor_key: str, op: Op) -> None:
        """Queue ``op`` for ``actor_key``; thread-safe, never blocks."""
        self.queued += 1
        self._inbox.put((actor_key, op))

    def stop(self) -> None:
        self._inbox.put(_STOP)

    def _run(self) -> None:
        _futures._local.nested_waiter = self._nested_wait
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            self._handle(item)

    def _handle(self, item: Any) -> None:
        if isinstance(item, _Wake):
            return  # a waiter finished earlier; nothing to do
        key, op = item
        if key in self._busy or key in self._mailbox:
            self._mailbox.setdefault(key, deque()).append(op)
            return
        self._run_op(key, op)

    def _run_op(self, key: str, op: Op) -> None:
        self._busy.add(key)
        try:
            op()
        finally:
            self._busy.discard(key)
            self.queued -= 1
        box = self._mailbox.get(key)
        while box:
            nxt = box.popleft()
            if not box:
                del self._mailbox[key]
            self._busy.add(key)
            try:
                nxt()
            finally:
                self._busy.discard(key)
                self.queued -= 1
            box = self._mailbox.get(key)

    def _nested_wait(self, comp: _futures.Completion, timeout: float | None) -> bool:
        """Wait for ``comp`` while serving other actors' operations."""
        if threading.current_thread() is not self.thread:
            return comp._event.wait(timeout)
        comp.add_done_callback(lambda _: self._inbox.put(_Wake(comp)))
        deadline = None if timeout is None else time.monotonic() + timeout
        while not comp.done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return comp.done()
            try:
                item = self._inbox.get(timeout=remaining)
            except Empty:
                continue
            if item is _STOP:
                self._inbox.put(_STOP)  # let the outer loop see it too
                return comp._event.wait(0.5)
            self._handle(item)
        return True
