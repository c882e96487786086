"""``Client.sync``: call a function, and run the awaitable it gives to its end.

Runs in: the user's process (and in workers, under their ``get_client()``).

As dask's: in the asynchronous client's own loop (the one sync/async rule,
stated in ``client.py``) the awaitable itself is returned. Elsewhere it is
run to its end and its value returned: an asynchronous client's coroutine,
called from another thread, on that client's loop; otherwise on a loop of its
own in a helper thread, so that it works inside a running loop too (Jupyter).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .._base.blocking import awaits_here
from .._wire import threads
from .core import ClientCore


def sync_call(
    core: ClientCore | None,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    awaits: bool,
    limit: float | None,
) -> Any:
    """``func(*args, **kwargs)``, its awaitable run to its end (up to ``limit`` seconds) unless ``awaits``.

    ``core`` is the client's (``None`` while an asynchronous client is not awaited yet).
    """
    if awaits:
        result = func(*args, **kwargs)
        return _awaited(result, limit) if limit is not None else result
    result = func(*args, **kwargs)
    if not inspect.isawaitable(result):
        return result
    loop = core.loop if core is not None and core.asynchronous else None
    if loop is not None and loop.is_running() and not awaits_here(loop):
        return asyncio.run_coroutine_threadsafe(_awaited(result, limit), loop).result()
    return run_in_fresh_loop(_awaited(result, limit))


async def _awaited(awaitable: Any, timeout: float | None = None) -> Any:
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(_awaited(awaitable), timeout)
    except asyncio.TimeoutError:  # not the builtin one on 3.10
        raise TimeoutError(f"not done after {timeout} s") from None


def run_in_fresh_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to its end on a new event loop in a helper thread (``Client.sync``).

    A thread of its own: this thread may be running a loop already (Jupyter),
    and ``asyncio.run`` here would also reset this thread's event loop.
    """
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=main, name="localactors-sync", daemon=True)
    threads.start(thread)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
