"""RefTracker: a process's count of the handles it holds, per key; RefSender: sending it.

Runs in: the user's process (inside a client) and in every worker (the
``RefSender``'s flushes: on whichever thread sends to the manager, and on the
node's refs thread).

The first and last handle of a key, and every handle sent or received (a
*pin*, held until the receiver has its own), become a ``RefDelta`` to the
manager, which frees what nobody holds any more.
"""

from __future__ import annotations

import enum
import threading
from queue import Empty, SimpleQueue
from typing import NamedTuple

from .._wire import protocol as P
from .._wire import threads
from .._wire.exhaustive import assert_never
from .._wire.link import Link, LinkClosed


class Change(enum.Enum):
    """What happened to a handle: the kind of one queued change."""

    INCREF = enum.auto()  # a handle of ``key`` was made here
    DECREF = enum.auto()  # a handle of ``key`` was dropped here
    PIN = enum.auto()  # a handle of ``key`` was put in flight, under ``token``
    UNPIN = enum.auto()  # the handle in flight under ``token`` has arrived here


class _Queued(NamedTuple):
    """One change, queued until the next ``drain``."""

    change: Change
    key: str = ""
    token: str = ""


class RefTracker:
    """Counts local handles per key; produces ordered ``RefDelta`` messages.

    ``incref``/``decref``/``unpin`` only append to a queue (safe from
    ``__del__`` in any thread); ``drain`` runs under the manager link's send
    lock, so changes reach the manager in the order they happened. ``wake``
    gets an item whenever a change should be sent soon (the node's refs
    thread waits on it).
    """

    def __init__(self) -> None:
        self._queue: SimpleQueue[_Queued] = SimpleQueue()
        self._counts: dict[str, int] = {}
        self.wake: SimpleQueue[None] = SimpleQueue()
        self.closed = False

    def incref(self, key: str) -> None:
        self._queue.put(_Queued(Change.INCREF, key))
        self.wake.put(None)

    def decref(self, key: str) -> None:
        if not self.closed:
            self._queue.put(_Queued(Change.DECREF, key))
            self.wake.put(None)

    def pin(self, pins: list[tuple[str, str]]) -> None:
        """Handles put in flight: ``(token, key)`` each (sent with the next flush, unwoken)."""
        for token, key in pins:
            self._queue.put(_Queued(Change.PIN, key, token))

    def unpin(self, tokens: list[str]) -> None:
        for token in tokens:
            self._queue.put(_Queued(Change.UNPIN, "", token))
        if tokens:
            self.wake.put(None)

    def count(self, key: str) -> int:
        """Handles of ``key`` held here, as of the last ``drain``."""
        return self._counts.get(key, 0)

    def drain(self) -> P.RefDelta | None:
        """Every change queued so far, as one message (``None`` when there is none)."""
        changes: list[tuple[str, int]] = []
        pins: list[tuple[str, str]] = []
        unpins: list[str] = []
        counts = self._counts
        while not self._queue.empty():
            change, key, token = self._queue.get_nowait()
            match change:
                case Change.INCREF:
                    n = counts.get(key, 0) + 1
                    counts[key] = n
                    if n == 1:
                        changes.append((key, 1))
                case Change.DECREF:
                    n = counts.get(key, 0) - 1
                    if n <= 0:
                        counts.pop(key, None)
                        changes.append((key, -1))
                    else:
                        counts[key] = n
                case Change.PIN:
                    pins.append((token, key))
                case Change.UNPIN:
                    unpins.append(token)
                case _:
                    assert_never(change)
        if changes or pins or unpins:
            return P.RefDelta(tuple(changes), tuple(pins), tuple(unpins))
        return None



class RefSender:
    """Sends a node's reference changes to the manager, in order.

    Once attached to the manager link, every message on it is preceded by the
    changes queued so far (its ``before_send`` hook, under its send lock), and
    the *refs thread* sends them soon after the tracker's ``wake`` when
    nothing else goes out.
    """

    def __init__(self, refs: RefTracker, name: str) -> None:
        self._refs = refs
        self._name = name  # the node's, for the thread's name
        self._link: Link | None = None

    def attach(self, link: Link) -> None:
        """Send through ``link`` (the manager link) from now on; start the refs thread."""
        self._link = link
        link.before_send = self._flush_locked
        threads.start(threading.Thread(target=self._loop, name=f"localactors-refs-{self._name}", daemon=True))

    def _flush_locked(self) -> None:
        delta = self._refs.drain()
        if delta is not None and self._link is not None:
            self._link.send_unlocked(delta)

    def flush(self) -> None:
        """Send the changes queued so far, now (nothing once the link is closed)."""
        link = self._link
        if link is None:
            return
        with link.send_lock:
            try:
                self._flush_locked()
            except LinkClosed:
                pass

    def _loop(self) -> None:
        wake = self._refs.wake
        while True:
            wake.get()
            try:  # one flush sends every change queued so far: take their wake-ups too
                while True:
                    wake.get_nowait()
            except Empty:
                pass
            if self._refs.closed:
                return
            self.flush()

    def stop(self) -> None:
        """End the refs thread (the tracker takes no more drops)."""
        self._refs.closed = True
        self._refs.wake.put(None)
