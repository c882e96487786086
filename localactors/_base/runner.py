"""Where the manager and the workers run: a child process, or a thread of this one.

Runs in: the user's process (starting the manager) and the manager (starting
workers).

The cluster and the manager start their children through :func:`make_runner`
and then only use the small part of ``multiprocessing.Process`` they share
with :class:`ThreadRunner`: ``start``, ``join``, ``is_alive``, ``exitcode``,
``sentinel``, ``terminate`` and ``kill``. So the same manager and worker code serves both
``LocalCluster(processes=True)`` (the default: real processes, real isolation)
and ``LocalCluster(processes=False)`` (threads in the user's process: starts in
milliseconds, and ``breakpoint()`` works in actor code).

In-process mode keeps the semantics that matter for testing: every argument
and result still crosses an authenticated socket as a pickle, each worker has
its own event loop and its one actor thread. What it cannot do is kill a
thread: ``terminate`` and ``kill`` are no-ops, so a worker stuck in user code
outlives ``close()`` (and the leak check reports its thread).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .._wire import threads

logger = logging.getLogger("localactors.runner")


class Runner(Protocol):
    """What the cluster and the manager need from a child they started."""

    name: str

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...

    @property
    def sentinel(self) -> int | None:
        """A descriptor that becomes readable when the process ends (None: a thread)."""
        ...

    def start(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self) -> bool: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class ThreadRunner:
    """Runs an entry point on a named daemon thread, looking like a Process.

    ``exitcode`` is ``None`` while it runs, then ``0``, or ``1`` if the entry
    point raised (the error is logged). ``pid`` is ``None``: there is no child
    process to signal, and callers must not mistake this process for one.
    """

    pid: int | None = None
    sentinel: int | None = None  #: a thread has no descriptor that says it ended

    def __init__(self, target: Callable[..., object], args: tuple[Any, ...], name: str) -> None:
        self.name = name
        self._target = target
        self._args = args
        self._exitcode: int | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __repr__(self) -> str:
        return f"<ThreadRunner {self.name} exitcode={self._exitcode}>"

    @property
    def exitcode(self) -> int | None:
        return self._exitcode

    def _run(self) -> None:
        code = 1
        try:
            self._target(*self._args)
            code = 0
        except BaseException:
            logger.exception("%s failed", self.name)
        finally:
            self._exitcode = code
            self._target, self._args = _done, ()  # let go of what it was given (pipes, configs)

    def start(self) -> None:
        threads.start(self._thread)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def terminate(self) -> None:
        """A thread cannot be stopped from outside; it leaves when told to over its link."""

    def kill(self) -> None:
        """See :meth:`terminate`."""


def _done() -> None:
    pass


def resolve_entry(entry: str) -> Callable[..., object]:
    """The function an entry point names: ``"package.module:function"``."""
    module, sep, function = entry.partition(":")
    if not sep or not module or not function:
        raise ValueError(f"an entry point is written 'module:function', not {entry!r}")
    target: Callable[..., object] = getattr(importlib.import_module(module), function)
    return target


def run_entry(entry: str, *args: Any) -> None:
    """A child process's target: import the entry point by name and call it."""
    resolve_entry(entry)(*args)


def make_runner(in_process: bool, start_method: str, entry: str, args: tuple[Any, ...], name: str) -> Runner:
    """A not yet started child running ``entry`` (``"module:function"``) with ``args``.

    A ``multiprocessing`` Process, or a :class:`ThreadRunner` in-process.
    """
    if in_process:
        return ThreadRunner(resolve_entry(entry), args, name)
    ctx: Any = multiprocessing.get_context(start_method)
    process: Runner = ctx.Process(target=run_entry, args=(entry, *args), name=name)
    return process
