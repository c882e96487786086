"""Request coalescing: a caller's pipelined calls go many to a write.

Runs in: every calling process (the user's, and workers calling actors), on
the threads that call, wait and read replies, and one watchdog thread per
link that has deferred a call.

While at least :data:`DEFER_AT` requests on a link to a worker are in flight
(a caller fired many and has not waited for them), a further small actor call
is not written at once: its frame joins the link's :class:`Outbox`, and goes
with the others in one write. A lone call, and the first ``DEFER_AT`` of a
burst, are written at once as before. The outbox is written:

* by the calling thread, once it holds :data:`MAX_FRAMES` frames or
  :data:`MAX_BYTES` bytes (without waiting for room when that thread is a
  link's reader: a done-callback that calls);
* before anything else is written on the link (while it holds frames, it is
  the link's ``before_send`` hook, run under its send lock): requests keep
  their order on the link;
* when a thread waits for a deferred call's reply (``ActorFuture.result``,
  ``wait_done``: the call's read point is the outbox's :class:`FlushFirst`);
* when a reply from the worker is dispatched (by the link's reader or a thread
  reading its own reply): without waiting for room in the socket (a reader
  must never block in a write), what does not fit is left for the next write;
* and otherwise by the watchdog, :data:`BOUND` seconds after the first frame
  was deferred (waits that read no link: ``wait``, ``as_completed``, ``await``,
  an actor's wait inside a worker; and calls nobody waits for).

A deferred call is thus late by at most ``BOUND``, and only while many others
are in flight ahead of it on the same link.
"""

from __future__ import annotations

import threading
from typing import Any

from .._wire.link import Link, LinkClosed
from .._wire.shared_read import hold_interrupts, in_reader_thread, release_interrupts
from .._wire.watchdog import Watchdog

#: calls are deferred only while at least this many requests on the link are in flight
DEFER_AT = 32
#: the outbox is written once it holds this many frames, or this many bytes
MAX_FRAMES = 64
MAX_BYTES = 1 << 15
#: frames at least this large are written at once, never deferred
MAX_FRAME = 1 << 13
#: seconds a deferred frame may wait before the watchdog writes it
BOUND = 0.001


class Outbox:
    """Frames of requests deferred on one link, written together; thread-safe.

    Made by a ``PeerLink`` for its direct link; while it holds frames, it is the
    link's ``before_send`` hook (a lone call's send calls nothing more).
    ``frames`` may be read unlocked as a hint.
    """

    def __init__(self, link: Link, name: str, bound: float = BOUND) -> None:
        self._link = link
        self.name = name
        self._bound = bound
        self._lock = threading.Lock()  # the frames
        self.frames: list[bytes] = []
        self._size = 0
        self._closed = False
        self._watchdog = Watchdog(f"localactors-requests-{name}", bound, lambda: bool(self.frames), self._flush_due)
        #: the read point of a deferred call: writes the outbox before the caller waits
        self.read_point = FlushFirst(self)

    def add(self, frame: bytes) -> None:
        """Defer one framed request (its pending entry is registered already)."""
        with self._lock:
            frames = self.frames
            if not frames:
                self._first_frame()
            frames.append(frame)
            self._size = size = self._size + len(frame)
            if size < MAX_BYTES and len(frames) < MAX_FRAMES:
                return
        if in_reader_thread():  # (a done-callback calling from a reader: it must not wait for room)
            self.flush_nowait()
        else:
            self.flush()

    def flush(self) -> None:
        """Write the deferred frames now (may wait for room: never from a link's reader)."""
        if self.frames:  # (a glance; the lock decides)
            with self._link.send_lock:
                self._write_locked()

    def _write_locked(self) -> None:
        """Write what is deferred (holding the link's send lock); ``LinkClosed`` if it is gone.

        A Ctrl-C never lands between a write and the note of what it wrote (that
        would send frames twice, or lose them): it is held back meanwhile
        (``shared_read.hold_interrupts``), and lands only while this waits for room,
        when every unwritten frame is back in the outbox.
        """
        link = self._link
        while self.frames:
            was = hold_interrupts()
            try:
                self._send_some()
            finally:
                release_interrupts(was)  # (an interrupt held back is raised here: nothing is in hand)
            if self.frames:
                link.wait_writable()

    def flush_nowait(self) -> None:
        """Write what fits in the socket now, without waiting (a link's reader may call it)."""
        if not self.frames:
            return
        link = self._link
        if not link.send_lock.acquire(blocking=False):
            return  # another thread is writing: it, or the watchdog, writes these
        was = hold_interrupts()
        try:
            if not self._closed:
                self._send_some()
        except LinkClosed:
            pass  # (their calls fail with the link)
        finally:
            link.send_lock.release()
            release_interrupts(was)

    def _send_some(self) -> None:
        """Send what fits of the outbox without waiting; the rest, even a cut frame, stays
        first in it (holding the link's send lock, interrupts held back)."""
        with self._lock:
            frames, self.frames, self._size = self.frames, [], 0
            self._link.before_send = None
        data = b"".join(frames) if len(frames) > 1 else frames[0]
        sent = self._link.send_nowait(data)  # (LinkClosed: their calls fail with the link)
        if sent < len(data):
            self._put_back(data[sent:])

    def close(self) -> None:
        """The link is closing or gone: write what fits without waiting (a caller that
        closes right after calls that nobody waits for, as before), drop the rest (their
        calls fail with the link), stop the watchdog."""
        self.flush_nowait()
        self._closed = True
        self._watchdog.close()
        with self._lock:
            self.frames, self._size = [], 0
            self._link.before_send = None

    def _first_frame(self) -> None:
        """The outbox was empty (holding ``_lock``): anything else written on the link
        goes after its frames from now on (``before_send``), and the watchdog times them."""
        self._link.before_send = self._write_locked
        self._watchdog.started()

    def _put_back(self, rest: bytes) -> None:
        """What a write left unwritten goes first next time (holding the link's send lock)."""
        with self._lock:
            if not self.frames:
                self._first_frame()
            self.frames.insert(0, rest)
            self._size += len(rest)

    def _flush_due(self) -> bool:
        """The watchdog's write: whether the link is still there."""
        try:
            self.flush()
        except LinkClosed:
            return False  # the link's reader reports it; the calls fail with it
        return True


class FlushFirst:
    """A deferred call's read point: writes the outbox, then reads as the link's own does.

    (``Completion.wait_done`` calls ``read_until`` on it; ``None``: this thread
    cannot read the link now, and sleeps until the reply is dispatched.)
    """

    __slots__ = ("_outbox",)

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def read_until(self, comp: Any, timeout: float | None, deadline: float = 0.0) -> bool | None:
        outbox = self._outbox
        try:
            outbox.flush()
        except LinkClosed:
            pass  # the link's reader reports it; the call fails with it
        token = outbox._link.read_point
        return None if token is None else token.read_until(comp, timeout, deadline)

    def unpark(self) -> None:
        """A thread will sleep until the reply is dispatched: write what fits of the
        outbox now (not at the watchdog's bound), and have the link's reader read."""
        outbox = self._outbox
        outbox.flush_nowait()
        token = outbox._link.read_point
        if token is not None:
            token.unpark()
