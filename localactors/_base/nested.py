"""Walking nested structures of futures: find them, drop failed ones, fill in values.

Runs in: the user's process (and in workers, under their ``get_client()``).

``submit``, ``gather`` and ``cancel`` accept futures nested in lists,
tuples, sets and dicts, as dask does; these helpers do the walking.
"""

from __future__ import annotations

from typing import Any

from .futures import ActorFuture, Future


def _walk(obj: Any, found: list[Any], depth: int = 0) -> None:
    if isinstance(obj, (Future, ActorFuture)):
        found.append(obj)
    elif depth > 100:  # deeper than anyone nests futures: let pickling judge it
        return
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for o in obj:
            _walk(o, found, depth + 1)
    elif isinstance(obj, dict):
        for o in obj.values():
            _walk(o, found, depth + 1)


def _erred(obj: Any) -> bool:
    if isinstance(obj, Future):
        return obj._state.error is not None
    return isinstance(obj, ActorFuture) and obj.error is not None


def _skip_erred(obj: Any, depth: int = 0) -> Any:
    """``obj`` without its futures that failed: dropped from lists, their entries from dicts."""
    if depth > 100 or isinstance(obj, (Future, ActorFuture)):
        return obj
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_skip_erred(o, depth + 1) for o in obj if not _erred(o))
    if isinstance(obj, dict):
        return {k: _skip_erred(v, depth + 1) for k, v in obj.items() if not _erred(v)}
    return obj


def _rebuild(obj: Any, values: dict[str, Any]) -> Any:
    if isinstance(obj, Future):
        return values[obj.key]
    if isinstance(obj, ActorFuture):
        return obj.result()
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_rebuild(o, values) for o in obj)
    if isinstance(obj, dict):
        return {k: _rebuild(v, values) for k, v in obj.items()}
    return obj
