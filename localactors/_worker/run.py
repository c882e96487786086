"""``Client.run`` on a worker: call the function here, now, beside tasks and actors (as dask does).

Runs in: a worker process, on a thread of its own for each call, so that a
long function holds up no task and no actor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from .._base import context as _context
from .._base.errors import dump_exception
from .._base.serialize import SerialContext, dumps, loads
from .._caller.node import Node
from .._wire import protocol as P


def run_function(
    worker: object,
    node: Node,
    await_in_loop: Callable[[Coroutine[Any, Any, Any]], Any],
    run_id: int,
    payload: bytes,
) -> P.RunResult:
    """Call the pickled ``(fn, args, kwargs)`` of run ``run_id``; its outcome, pickled, to answer with.

    A coroutine function runs on the worker's event loop (``await_in_loop``);
    a function taking ``dask_worker`` gets ``worker``, as in dask.
    """
    _context.set_worker(worker, thread_only=True)
    try:
        fn, args, kwargs = loads(payload, SerialContext(node=node), what="the function of run()")
        if "dask_worker" in _parameters(fn):
            kwargs = {**kwargs, "dask_worker": worker}
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = await_in_loop(result)
        return P.RunResult(run_id, True, dumps(result, SerialContext(node=node), what="run()'s result"))
    except BaseException as err:
        return P.RunResult(run_id, False, dump_exception(err))


def _parameters(fn: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()
