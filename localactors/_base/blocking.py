"""How a thread waits: block, await, or keep serving; the one sync/async rule.

Runs in: every process that calls (clients, and workers calling actors).

:func:`awaits_here` is the one rule every public blocking method follows
(``Client``, ``Future``, ``ActorFuture``, ``Actor``, ``wait``, ``progress``;
stated in ``_client/client.py``): it returns an awaitable exactly when the
object's owner is asynchronous and this thread is running the owner's loop.

The rest are per-thread hooks, set by the thread's owner and read by every
blocking wait in it: an actor thread installs a *nested waiter*, which keeps
serving other actors while its actor code waits (``_worker/actor_thread``);
a task thread installs a *block hook*, which lends its slot in the pool
while it waits (``_worker/taskpool``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol


class NestedWaiter(Protocol):
    """``waiter(completion, timeout) -> done``: wait while serving other actors."""

    def __call__(self, comp: Any, timeout: float | None, /) -> bool: ...


class _Hooks(threading.local):
    """The per-thread hooks: ``nested_waiter`` and ``block_hook``; ``any``: is either set?
    Class defaults, so that a wait reads them with no ``getattr`` call (its hot path)."""

    any = False
    nested_waiter: NestedWaiter | None = None
    block_hook: Callable[[], AbstractContextManager[Any]] | None = None


hooks = _Hooks()


def awaits_here(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Should a call return an awaitable rather than block? The one rule.

    ``loop`` is the event loop of the object's asynchronous owner (``None``
    when the owner is synchronous): the answer is yes exactly when this
    thread is running that loop.
    """
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def set_block_hook(hook: Callable[[], AbstractContextManager[Any]] | None) -> None:
    """Have every blocking wait of this thread run inside ``hook()`` (see ``_taskpool``)."""
    hooks.block_hook = hook
    hooks.any = hook is not None or hooks.nested_waiter is not None


def blocked() -> AbstractContextManager[Any]:
    """Enter around a blocking wait: runs this thread's block hook, if any."""
    hook = hooks.block_hook
    return hook() if hook is not None else nullcontext()


def set_nested_waiter(waiter: NestedWaiter | None) -> None:
    """Have every blocking wait of this thread call ``waiter`` instead (see ``_worker.actor_thread``)."""
    hooks.nested_waiter = waiter
    hooks.any = waiter is not None or hooks.block_hook is not None


def nested_waiter() -> NestedWaiter | None:
    """This thread's nested waiter: set on actor threads, which must keep serving."""
    return hooks.nested_waiter
