"""The worker's pool of task threads, which lends a slot while a task waits.

Runs in: a worker process (one pool per worker).

A task may itself submit tasks and wait for them (``get_client().gather``
inside a task). If it kept its thread while waiting, the tasks it waits for
could queue behind it on this very worker: with one thread per worker, for
ever. So a task thread that blocks on a future *secedes* (dask.distributed's
word for it): for the length of the wait it does not count against
``nthreads`` and the pool may start another thread to run queued tasks. When
the wait ends it carries on at once (the pool is briefly oversubscribed), and
threads beyond ``nthreads`` leave as soon as they find nothing to do.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .._base.blocking import set_block_hook

logger = logging.getLogger("localactors.taskpool")


class TaskPool:
    """``nthreads`` threads running plain tasks in arrival order."""

    def __init__(
        self,
        nthreads: int,
        name: str,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self._nthreads = max(1, nthreads)
        self._name = name
        self._init = initializer
        self._initargs = initargs
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._active = 0  # threads running a task and not seceded
        self._idle = 0  # threads waiting for work
        self._threads: set[threading.Thread] = set()
        self._ids = itertools.count()
        self._closed = False
        #: called by a task thread about to wait on a future, before it secedes
        self.on_block: Callable[[], None] | None = None

    @property
    def threads(self) -> list[threading.Thread]:
        """The pool's threads alive now."""
        with self._lock:
            return list(self._threads)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; exceptions it raises are logged, not returned."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: the task pool is shut down")
            self._queue.append((fn, args))
            self._wake()

    def submit_many(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> None:
        """Queue ``fn(*args)`` for each ``args`` of ``calls``, in order (one wake-up for them all)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: the task pool is shut down")
            self._queue.extend([(fn, args) for args in calls])
            self._wake()

    def queued(self) -> int:
        """How many tasks wait for a thread (a glance: no lock)."""
        return len(self._queue)

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        """Stop taking work; with ``cancel_futures`` drop what has not started."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                self._queue.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        if wait:
            for t in threads:
                if t is not threading.current_thread():
                    t.join()

    # -- internals (all under self._lock) ------------------------------------------

    def _wake(self) -> None:
        need = min(len(self._queue), self._nthreads - self._active)
        if need <= 0:
            return
        self._cond.notify(need)
        for _ in range(need - self._idle):  # idle threads, notified or not, will each take one
            thread = threading.Thread(
                target=self._run, name=f"localactors-task-{self._name}-{next(self._ids)}", daemon=True
            )
            self._threads.add(thread)
            thread.start()

    @contextmanager
    def _seceded(self) -> Iterator[None]:
        if self.on_block is not None:
            self.on_block()
        with self._lock:
            self._active -= 1
            self._wake()
        try:
            yield
        finally:
            with self._lock:
                self._active += 1  # may exceed nthreads for a moment: the wait is over

    def _run(self) -> None:
        if self._init is not None:
            self._init(*self._initargs)
        set_block_hook(self._seceded)
        me = threading.current_thread()
        lock, queue = self._lock, self._queue
        ran = False
        while True:
            with lock:  # the plain lock: no Python-level call to enter it
                if ran:  # the task this thread ran is over; it takes the next one itself
                    self._active -= 1
                    ran = False
                while not self._closed and not (queue and self._active < self._nthreads):
                    if len(self._threads) > self._nthreads:
                        self._threads.discard(me)  # a thread lent for a wait: no longer needed
                        return
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if self._closed:
                    self._threads.discard(me)
                    return
                fn, args = queue.popleft()
                self._active += 1
                ran = True
                if queue and self._active < self._nthreads:
                    self._wake()  # more queued than threads at work: another one may start
            try:
                fn(*args)
            except BaseException:
                logger.exception("%s: a task raised outside its own error handling", self._name)
            fn = args = None  # type: ignore[assignment]  # drop references while idle
