"""Closing received segments off the caller's path.

Runs in: every process (a receiver's segments).

An unlinked segment's memory goes with its last descriptor: giving back 100
MB of tmpfs pages takes 10-20 ms, not to be spent on the way to the caller.
A :class:`~localactors._wire.shm_stream.Reader` of a segment of
:data:`CLOSE_LATER` bytes or more hands its descriptor to a thread
(``localactors-shm-closer``) that closes it, and ends after a second with
nothing to close.
"""

from __future__ import annotations

import os
import queue
import threading

from . import threads


def close(fd: int) -> None:
    try:
        os.close(fd)
    except (OSError, TypeError):  # (TypeError: ``os`` already torn down at exit)
        pass


#: a received segment at least this large is closed by the closer thread
CLOSE_LATER = 16 << 20


class _Closer:
    """A thread that closes received segments, and ends after a second with nothing to close.

    Started by a :class:`Reader` (never from ``__del__``, which may run inside
    the ``threading`` module); ``later`` is safe in ``__del__`` (a
    :class:`queue.SimpleQueue` is reentrant).
    """

    def __init__(self) -> None:
        self.fds: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.running = False

    def start(self) -> None:
        with self.lock:
            if self.running:
                return
            self.running = True
        try:
            threads.start(threading.Thread(target=self._run, name="localactors-shm-closer", daemon=True))
        except RuntimeError:  # (no new threads at exit: closed where they are dropped)
            self.running = False

    def later(self, fd: int) -> bool:
        """Hand ``fd`` to the thread; False: it is not running (close it here)."""
        self.fds.put(fd)
        if self.running:
            return True  # (running after the put: the thread takes it before it ends)
        while True:  # it ended: close what is queued here, this one included
            try:
                close(self.fds.get_nowait())
            except queue.Empty:
                return True

    def _run(self) -> None:
        while True:
            try:
                fd = self.fds.get(timeout=1.0)
            except queue.Empty:
                self.running = False  # then one more look: what ``later`` put before it read this is seen
                if self.fds.empty():
                    return
                self.running = True
                continue
            close(fd)


_closer = _Closer()




def start() -> None:
    """Have the thread running (a :class:`Reader` of a large segment calls this, never ``__del__``)."""
    if not _closer.running:
        _closer.start()


def later(fd: int) -> bool:
    """Hand ``fd`` to the thread (safe in ``__del__``); False: close it here."""
    return _closer.later(fd)


def _after_fork() -> None:
    """In a forked child: no closer thread runs here."""
    global _closer
    while not _closer.fds.empty():  # (queued in the parent: closed there too)
        close(_closer.fds.get_nowait())
    _closer = _Closer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
