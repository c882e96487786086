"""Timeouts as dask.distributed takes them: seconds, or strings such as ``"100ms"`` and ``"2 minutes"``.

Runs in: every process that calls (clients, and workers calling actors).

Every public method with a ``timeout=`` turns it into seconds here, with the
semantics of ``dask.utils.parse_timedelta``: a number is seconds, a string
is a number and a unit (``s``, ``ms``, ``us``, ``ns``, ``m``, ``h``, ``d``,
``w``, or the words ``second(s)``, ``millisecond(s)``, ``minute(s)``, ...;
no unit means seconds), a ``datetime.timedelta`` is its length, ``None`` is
no timeout.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Union

#: what a ``timeout=`` accepts
Timeout = Union[float, int, str, timedelta, None]

_UNITS: dict[str, float] = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WORDS = {
    "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800,
    "millisecond": 1e-3, "microsecond": 1e-6, "nanosecond": 1e-9,
}  # fmt: skip
_UNITS.update(_WORDS)
_UNITS.update({f"{k}s": v for k, v in _WORDS.items()})


def seconds(timeout: Timeout) -> float | None:
    """``timeout`` in seconds (``None`` stays ``None``); ``ValueError`` for a string we cannot read."""
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, bool):
        raise TypeError(f"a timeout is seconds or a string such as '1s', not {timeout!r}")
    if isinstance(timeout, (int, float)):
        return float(timeout)
    if not isinstance(timeout, str):
        raise TypeError(f"a timeout is seconds or a string such as '1s', not {type(timeout).__name__}")
    text = timeout.replace(" ", "")
    if text and not (text[0].isdigit() or text[0] == "."):
        text = "1" + text  # "ms" is one millisecond, as in dask
    i = len(text)
    while i > 0 and text[i - 1].isalpha():
        i -= 1
    number, unit = text[:i], text[i:] or "s"
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"timeout {timeout!r}: unknown unit {unit!r}; known: {', '.join(_UNITS)}")
    try:
        return float(number) * factor
    except ValueError:
        raise ValueError(f"timeout {timeout!r} is not a number and a unit, such as '1s' or '100ms'") from None
