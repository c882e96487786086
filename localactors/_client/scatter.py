"""Scattering: local data put on workers, as futures shaped like the data (``Client.scatter``).

Runs in: the user's process (and in workers, under their ``get_client()``).

:func:`scatter_plan` reads the data's shape, as dask does, by exact type: a
``dict``'s keys become its futures' keys; a ``list``, ``tuple``, ``set``,
``frozenset`` or namedtuple gives the same type of futures, one per item; a
``range`` a list. Anything else (subclasses of those included) is one
future, its value keeping its type; an iterator is a ``TypeError``.
:func:`send_scatter` pickles every value (with ``hash``, equal values get
equal keys), and only then makes the futures and sends one ``Scatter``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .._base.futures import Future
from .._base.serialize import SerialContext, dumps
from .._wire import protocol as P
from .core import ClientCore


class ScatterPlan(NamedTuple):
    """What to scatter: each value with its key (``None``: made from the value), and how to shape the futures."""

    names: list[str | None]
    values: list[Any]
    shape: Callable[[list[Future]], Any]


def scatter_plan(data: Any) -> ScatterPlan:
    """``data``'s values, their keys if it names them, and its shape (module docstring)."""
    if isinstance(data, range):
        data = list(data)
    if isinstance(data, Iterator):
        raise TypeError("scatter() does not take iterators or generators (as in dask): pass a list")
    kind = type(data)
    is_namedtuple = isinstance(data, tuple) and hasattr(data, "_fields")
    if kind is dict:
        return ScatterPlan([_scatter_key(k) for k in data], list(data.values()), lambda fs: dict(zip(data, fs)))
    if is_namedtuple:
        return ScatterPlan([None] * len(data), list(data), lambda fs: kind(*fs))
    if kind in (list, tuple, set, frozenset):
        values = list(data)
        return ScatterPlan([None] * len(values), values, kind)
    return ScatterPlan([None], [data], lambda fs: fs[0])


def send_scatter(core: ClientCore, plan: ScatterPlan, workers: Any, hash: bool, awaits: bool) -> Any:
    """Pickle ``plan``'s values, send them to the manager, return their futures in the data's shape.

    The manager answers nothing: the futures are ready at once, and awaitable when ``awaits``
    (the one sync/async rule, stated in ``client.py``).
    """
    sent = []
    ctx = SerialContext(node=core)
    for name, value in zip(plan.names, plan.values):
        payload = dumps(value, ctx, what=f"scattered {type(value).__name__}")
        if name is None:
            token = hashlib.blake2b(payload, digest_size=16).hexdigest() if hash else uuid.uuid4().hex
            name = f"{type(value).__name__}-{token}"
        sent.append((name, payload))
    # only now, with every value pickled: a bad one must leave nothing behind
    futures = [core.future(key) for key, _ in sent]
    if isinstance(workers, str):
        workers = (workers,)
    core.send_pins(ctx)  # actor handles among the data stay alive in flight
    core.send(P.Scatter(tuple(sent), tuple(workers or ())))
    result = plan.shape(futures)
    return _ready(result) if awaits else result


async def _ready(value: Any) -> Any:
    return value


def _scatter_key(name: Any) -> str:
    """A scattered dict's key as a task key: a string as it is, anything else as its ``str``."""
    return name if isinstance(name, str) else str(name)
