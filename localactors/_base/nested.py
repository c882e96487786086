"""Futures nested in lists, tuples, sets and dicts: one walk finds or replaces them.

Runs in: every process that calls (clients, and workers calling actors).

``submit``, ``gather``, ``cancel``, ``progress`` and actor method calls
accept futures nested in containers, as dask does. :func:`walk` is the one
walker (with a depth guard); the helpers below name what each caller does
with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .futures import ActorFuture, Future

#: returned by a walk's ``on_future``: leave this future out of its container
SKIP: Any = object()

#: deeper than anyone nests futures: a walk leaves it alone, and pickling judges it
MAX_DEPTH = 100

_FUTURES = (Future, ActorFuture)
_SEQUENCES = (list, tuple, set, frozenset)
_NESTING = (Future, ActorFuture, list, tuple, set, frozenset, dict)  # what a walk must look into


def walk(
    obj: Any,
    on_future: Callable[[Any], Any],
    on_other: Callable[[Any], None] | None = None,
    depth: int = 0,
) -> Any:
    """``obj`` with every future ``f`` in it replaced by ``on_future(f)``.

    Looks into lists, tuples, sets, frozensets and dict values, down to
    :data:`MAX_DEPTH`. When ``on_future`` returns :data:`SKIP` the future
    is dropped from its container (a dict loses the entry; a lone future
    becomes ``SKIP``). A container in which nothing changed comes back as
    itself, not a copy. ``on_other`` sees every leaf that is not a future.
    """
    if isinstance(obj, _FUTURES):
        return on_future(obj)
    if depth > MAX_DEPTH:
        return obj
    if isinstance(obj, _SEQUENCES):
        items: list[Any] | None = None  # copied at the first change only: most walks change nothing
        for i, o in enumerate(obj):
            if on_other is None and not isinstance(o, _NESTING):
                continue  # a plain leaf (the common case on the actor call path): no call
            new = walk(o, on_future, on_other, depth + 1)
            if new is not o:
                if items is None:
                    items = list(obj)  # the same order as this iteration, sets included
                items[i] = new
        if items is None:
            return obj
        return type(obj)(o for o in items if o is not SKIP)
    if isinstance(obj, dict):
        entries: dict[Any, Any] | None = None
        for k, v in obj.items():
            if on_other is None and not isinstance(v, _NESTING):
                continue
            new = walk(v, on_future, on_other, depth + 1)
            if new is not v:
                if entries is None:
                    entries = dict(obj)
                if new is SKIP:
                    del entries[k]
                else:
                    entries[k] = new
        return obj if entries is None else entries
    if on_other is not None:
        on_other(obj)
    return obj


def futures_in(obj: Any, on_other: Callable[[Any], None] | None = None) -> list[Any]:
    """Every future in ``obj``, in order (repeats kept); ``on_other`` as for :func:`walk`."""
    if on_other is None and (type(obj) is list or type(obj) is tuple):
        flat = [o for o in obj if type(o) is Future or type(o) is ActorFuture]
        if len(flat) == len(obj):  # futures only (wait and gather over a map's): no walk
            return flat
    found: list[Any] = []

    def keep(f: Any) -> Any:
        found.append(f)
        return f

    walk(obj, keep, on_other)
    return found


def erred(f: Future | ActorFuture) -> bool:
    """Has this future (done or not) an error?"""
    return (f.state if isinstance(f, Future) else f).error is not None


def without_erred(obj: Any) -> Any:
    """``obj`` without its failed futures: dropped from containers, their entries from dicts.

    A lone failed future becomes :data:`SKIP`.
    """
    return walk(obj, lambda f: SKIP if erred(f) else f)


def replace(obj: Any, value: Callable[[Any], Any]) -> Any:
    """``obj`` with every future ``f`` replaced by ``value(f)``."""
    return walk(obj, value)
