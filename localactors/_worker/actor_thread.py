"""The worker's actor executor: per-actor mailboxes, one baton, lent while waiting.

Runs in: worker processes (threads ``localactors-actor-<worker>``, and
``localactors-actor-<worker>-<n>`` helpers started while actor code waits).

Every operation on an actor -- construction, sync call, attribute read, the
*start* of an async call, and finally dropping it -- is queued here in the
order its link delivered it, so per caller the operations on one actor begin
in the order they were issued. One actor runs one operation at a time: its
next one waits in its mailbox until the current one has finished (for an
async call: until the call's first step has run on the event loop).

Actor code runs only while holding the *baton*, so sync code of a worker's
actors runs one operation at a time. When actor code blocks on a future
(``.result()``, ``wait``, an attribute read), it hands the baton on and
another thread of this executor serves the other actors' operations; when
the future is done, the waiter takes the baton back as soon as the operation
now running finishes or blocks in turn (resuming waiters go before new work).
Waits do not nest on one stack, so a waiter is never held up by a later wait
of another actor: that is what lets actors on one worker call and wait for
each other, in any pattern that would not deadlock on separate machines.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .._base import futures as _futures
from .._base.blocking import set_nested_waiter

logger = logging.getLogger("localactors.actor_thread")

#: an actor operation; it may return a not-yet-done Completion, and then its
#: actor stays busy (its later operations wait) until that completion is done
Op = Callable[[], Any]


class ActorThread:
    """Runs actor operations in per-actor order, one at a time; a waiter lends the baton."""

    def __init__(self, name: str, initializer: Callable[[], None] | None = None) -> None:
        self.name = name
        self._initializer = initializer
        # ``with self._lock`` where no wait follows: Condition.__enter__ is a Python call
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._sleepers = 0  # threads in _cv.wait: _notify skips notify_all (a Python call chain) when 0
        # all below guarded by _cv
        self._mailbox: dict[str, deque[Op]] = {}  # only non-empty boxes
        #: (read only) true while any operation is queued, to run next or after the
        #: one its actor runs now: a hint, read unlocked (the mailbox itself)
        self.mail: dict[str, Any] = self._mailbox
        self._ready: deque[str] = deque()  # keys with queued ops and not busy, in arrival order
        self._busy: set[str] = set()  # keys with an operation running, waiting or starting
        self._baton: threading.Thread | None = None  # the thread holding the baton: it runs actor code now
        self._resuming = 0  # waiters whose future is done, waiting for the baton
        self._idle = 0  # threads waiting for work
        self._stopping = False
        self._helper_ids = itertools.count(1)
        self.threads: list[threading.Thread] = []
        self.thread = self._new_thread(f"localactors-actor-{name}", primary=True)
        self.ident: int | None = None  # the primary thread's, once it runs
        self.queued = 0  # operations submitted and not yet finished (for statistics)
        # idle reading (see set_idle_wait): the primary thread, when it has
        # nothing to do, reads a link itself instead of sleeping on _cv
        self._idle_wait: Callable[[int], None] | None = None
        self._reading = False  # the primary is in _idle_wait; guarded by _cv
        self._wake_r = self._wake_w = -1
        #: when set, called by the primary thread before it runs an operation, sleeps
        #: without reading, or stops (a worker sets it while it holds a link for
        #: its idle wait, Link.hold, to give the link back)
        self.before_busy: Callable[[], None] | None = None
        #: called by any thread of this executor before it waits: for work (the
        #: queue ran empty), or for a future inside actor code, and as it stops
        #: (a worker sends the replies it batched: reply_batch)
        self.before_wait: Callable[[], None] | None = None

    def set_idle_wait(self, idle_wait: Callable[[int], None]) -> None:
        """Let the idle primary thread call ``idle_wait(wake_fd)`` instead of sleeping.

        ``idle_wait`` must return soon after ``wake_fd`` becomes readable, and
        may read requests (which ``submit`` work) meanwhile. A request read by
        the thread that will run it saves a thread switch (reader -> actor
        thread) per call, and sync methods still run on the actor thread.
        """
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._idle_wait = idle_wait

    def _notify(self) -> None:
        """Wake every thread waiting for a change (call with _cv held)."""
        if self._sleepers:
            self._cv.notify_all()
        if self._reading and threading.current_thread() is not self.thread:
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass  # full (it is awake anyway) or closed (stopping)

    def _new_thread(self, name: str, primary: bool) -> threading.Thread:
        thread = threading.Thread(target=self._serve, args=(primary,), name=name, daemon=True)
        self.threads.append(thread)
        return thread

    def start(self) -> None:
        self.thread.start()

    def submit(self, actor_key: str, op: Op) -> None:
        """Queue ``op`` for ``actor_key``; thread-safe, never blocks for long."""
        with self._lock:
            self.queued += 1
            box = self._mailbox.get(actor_key)
            if box is None:
                box = self._mailbox[actor_key] = deque()
                if actor_key not in self._busy:
                    self._ready.append(actor_key)
            box.append(op)
            if self._sleepers or self._reading:  # _notify, when there is anyone to wake
                self._notify()

    def submit_many(self, ops: list[tuple[str, Op]]) -> None:
        """:meth:`submit` for several ``(actor_key, op)``, in order, under one lock."""
        mailbox, busy, ready = self._mailbox, self._busy, self._ready
        with self._lock:
            self.queued += len(ops)
            for actor_key, op in ops:
                box = mailbox.get(actor_key)
                if box is None:
                    box = mailbox[actor_key] = deque()
                    if actor_key not in busy:
                        ready.append(actor_key)
                box.append(op)
            if self._sleepers or self._reading:  # _notify, when there is anyone to wake
                self._notify()

    def push_front(self, actor_key: str, op: Op) -> None:
        """Queue ``op`` first in ``actor_key``'s mailbox: from its running operation only,
        for the part of its work left when it stops early (the actor is busy: it is
        ready again only once that operation has finished)."""
        with self._lock:
            self.queued += 1
            box = self._mailbox.get(actor_key)
            if box is None:
                box = self._mailbox[actor_key] = deque()
            box.appendleft(op)

    def stop(self) -> None:
        """Stop serving: idle threads end; waits in actor code return (time out)."""
        with self._lock:
            self._stopping = True
            self._notify()

    # -- serving --------------------------------------------------------------

    def _can_start(self) -> bool:
        return self._baton is None and not self._resuming and bool(self._ready)

    def _serve(self, primary: bool) -> None:
        """A thread of this executor: take the next ready operation, run it, repeat."""
        set_nested_waiter(self._nested_wait)  # blocking waits in actor code lend the baton
        if primary:
            self.ident = threading.get_ident()
        if self._initializer is not None:
            self._initializer()
        me = threading.current_thread()
        lock, mailbox, ready, busy = self._lock, self._mailbox, self._ready, self._busy
        while True:
            with lock:
                if self._baton is None and not self._resuming and ready and not self._stopping:
                    # work is waiting (pipelined calls): no wait, as _wait_for_work would decide
                    if primary and self.before_busy is not None:
                        self.before_busy()
                elif not self._wait_for_work(primary, me):
                    return
                key = ready.popleft()
                box = mailbox[key]
                op = box.popleft()
                if not box:
                    del mailbox[key]
                busy.add(key)
                self._baton = me
            try:
                result = op()
            except BaseException:  # the ops reply their own errors; this is a bug
                logger.exception("%s: an actor operation failed", self.name)
                result = None
            with lock:
                self._baton = None
                self.queued -= 1
                if result is None or not isinstance(result, _futures.Completion) or result.done():
                    busy.discard(key)  # the actor may run its next operation
                    if key in mailbox:
                        ready.append(key)
                    result = None
                if self._sleepers or self._reading:  # _notify, when there is anyone to wake
                    self._notify()
            if result is not None:
                # an async call has not taken its first step yet: the actor's
                # next operation must not begin before it, but others may
                result.add_done_callback(functools.partial(self._started, key))

    def _wait_for_work(self, primary: bool, me: threading.Thread) -> bool:
        """Wait (holding _cv) until an operation may start; ``False``: this thread ends now."""
        self._idle += 1
        while not self._stopping and not self._can_start():
            if self.before_wait is not None:
                self.before_wait()
            if not primary and self._idle > 1:
                # another thread is idle too: this helper is not needed
                self._idle -= 1
                self.threads.remove(me)
                return False
            if primary and self._idle_wait is not None:
                self._wait_reading(self._cv)
            else:
                if primary and self.before_busy is not None:
                    self.before_busy()  # no idle reading (it failed once): give the link back
                self._sleepers += 1
                try:
                    self._cv.wait()
                finally:
                    self._sleepers -= 1
        self._idle -= 1
        if primary and self.before_busy is not None:
            self.before_busy()
        if self._stopping:
            self._end(primary, me)
            return False
        return True

    def _end(self, primary: bool, me: threading.Thread) -> None:
        """This thread stops serving (we are stopping; holding _cv)."""
        if self.before_wait is not None:
            self.before_wait()
        if me in self.threads and not primary:
            self.threads.remove(me)
        if primary and self._wake_r >= 0:
            # nobody writes to it any more: _reading is False for good
            self._idle_wait = None
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def has_work(self) -> bool:
        """Is there an operation the idle primary thread could start now? (a hint, unlocked)"""
        return self._stopping or self._can_start()

    def _wait_reading(self, cv: threading.Condition) -> None:
        """The primary's idle wait: read a link (``_idle_wait``) with _cv released."""
        assert self._idle_wait is not None
        self._reading = True
        cv.release()
        try:
            self._idle_wait(self._wake_r)
        except Exception:
            logger.exception("%s: idle reading failed; the actor thread sleeps on its queue", self.name)
            self._idle_wait = None
        finally:
            cv.acquire()
            self._reading = False

    def _started(self, key: str, _: Any) -> None:
        self._unbusy(key)

    def _unbusy(self, key: str) -> None:
        with self._lock:
            self._busy.discard(key)
            if key in self._mailbox:
                self._ready.append(key)
            self._notify()

    # -- waiting inside actor code ---------------------------------------------

    def _wake(self, _: Any) -> None:
        with self._lock:
            self._cv.notify_all()

    def _nested_wait(self, comp: _futures.Completion, timeout: float | None) -> bool:
        """Wait for ``comp`` with the baton handed on; take it back when done."""
        me = threading.current_thread()
        if self._baton is not me:  # not running actor code (only we set it to us): just wait
            done = threading.Event()
            comp.add_done_callback(lambda _: done.set())
            return done.wait(timeout)
        comp.add_done_callback(self._wake)
        if self.before_wait is not None:
            self.before_wait()  # (before the baton is handed on: it may be what the future waits for)
        cv = self._cv
        with cv:
            self._baton = None
            if self._idle == 0 and not self._stopping:
                n = next(self._helper_ids)
                self._new_thread(f"localactors-actor-{self.name}-{n}", primary=False).start()
            self._notify()
            self._sleepers += 1
            try:
                cv.wait_for(lambda: comp.done() or self._stopping, timeout)
                self._resuming += 1
                try:
                    cv.wait_for(lambda: self._baton is None)
                finally:
                    self._resuming -= 1
            finally:
                self._sleepers -= 1
            self._baton = me
        return comp.done()
