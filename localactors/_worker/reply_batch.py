"""Reply batching: the replies of pipelined calls go many to a frame and a write.

Runs in: a worker process (its actor threads add and flush; a watchdog thread
flushes a batch that waited too long).

When the actor thread finishes a call while further calls are queued (a
caller fired many, then waits), the reply joins a batch instead of being
written at once; the batch goes out as one
:class:`~localactors._wire.protocol.CallOks` frame in one write, and the
caller dispatches all its replies from one read. A reply is never held for
long, and never for a call that may wait for the caller to see it:

* the actor thread sends the batch as soon as its queue runs empty (before it
  waits for work: the reply of a lone call is written at once, as before),
  and before actor code blocks on a future (``ActorThread.before_wait``);
* at :data:`MAX_REPLIES` replies or :data:`MAX_BYTES` bytes;
* before a reply to another link, an error or a large reply (order per link);
* and, whatever the queued calls do (run long, or block on something the
  caller does once it has seen the reply), a watchdog thread sends a batch
  still unsent :data:`BOUND` seconds after it started. (A thread needs the
  GIL to write: behind CPU-bound Python code that can take up to
  ``sys.getswitchinterval()``, 5 ms by default.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .._wire.link import Link, LinkClosed
from .._wire.watchdog import Watchdog

logger = logging.getLogger("localactors.worker")

#: a batch is sent once it holds this many replies, or this many payload bytes
MAX_REPLIES = 64
MAX_BYTES = 1 << 15
#: seconds a batch may wait for the calls queued behind it before the watchdog sends it
BOUND = 0.001


class ReplyBatch:
    """Replies waiting to be written together, all to one link; thread-safe."""

    def __init__(self, name: str, bound: float = BOUND) -> None:
        self.name = name
        self._bound = bound
        self._lock = threading.Lock()  # also keeps a flush's write in order with the next reply's
        self._link: Link | None = None
        self._replies: list[tuple[int, bytes]] = []
        self._size = 0
        self._watchdog = Watchdog(f"localactors-replies-{name}", bound, lambda: bool(self._replies), self._flush_due)

    def add(self, link: Link, call_id: int, payload: bytes) -> None:
        """Batch a small reply to ``link`` (sent with the batch, at the latest ``BOUND`` seconds from now)."""
        with self._lock:
            replies = self._replies
            if link is not self._link:
                if replies:
                    self._flush_locked()
                    replies = self._replies
                self._link = link
            replies.append((call_id, payload))
            self._size += len(payload)
            if len(replies) == 1:
                self._watchdog.started()
            elif len(replies) >= MAX_REPLIES or self._size >= MAX_BYTES:
                self._flush_locked()

    def send(self, link: Link, call_id: int, payload: bytes, on_block: Callable[[], None] | None = None) -> None:
        """Send a small reply now, with the batch when it is for the same link (one frame, one write).

        ``on_block``: this thread holds ``link`` (``Link.send_replies``).
        """
        with self._lock:
            if self._replies:
                if link is self._link:
                    self._replies.append((call_id, payload))
                    self._flush_locked(on_block)
                    return
                self._flush_locked()
            try:
                link.send_replies([(call_id, payload)], on_block)
            except LinkClosed:
                pass  # the caller went away; nobody is waiting for this

    def flush(self) -> None:
        """Send the batch now (a no-op when it is empty)."""
        if self._replies:  # (a glance; the lock decides)
            with self._lock:
                self._flush_locked()

    def close(self) -> None:
        """Send what is batched and stop the watchdog."""
        self.flush()
        self._watchdog.close(join=1.0)

    def _flush_locked(self, on_block: Callable[[], None] | None = None) -> None:
        replies, link = self._replies, self._link
        if not replies or link is None:
            return
        self._replies = []
        self._size = 0
        try:
            link.send_replies(replies, on_block)
        except LinkClosed:
            pass  # the caller went away; nobody is waiting for these

    def _flush_due(self) -> bool:
        """The watchdog's write (always ``True``: a link that is gone loses its replies, not the watchdog)."""
        self.flush()
        return True
