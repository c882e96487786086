"""Actor calls whose arguments are plain values take a short path (``_caller/actor.py``): check it
sends exactly what the usual path sends, and hands anything else to the usual path."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from localactors import Client, SerializationError
from localactors._base.serialize import plain_values
from localactors._wire.shm import THRESHOLD

T = 30


class Echo:
    def back(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return args, kwargs


PLAIN: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, 2.5, "s", b"b", True, None, 3j), {}),
    (((1, "a"), [2, None], {"k": 1.5, 2: b"x"}), {}),
    ((), {"a": 1, "b": [1, 2], "c": {"d": "e"}}),
    ((["x" * (3 << 20)],), {}),  # plain, but its pickle is large: the usual path (shared memory) takes it
]


@pytest.mark.parametrize("args, kwargs", PLAIN)
def test_plain_arguments_arrive_as_sent(client: Client, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert _plain(args, kwargs)
    echo = client.submit(Echo, actor=True).result(timeout=T)
    assert echo.back(*args, **kwargs).result(timeout=T) == (args, kwargs)


def test_anything_else_takes_the_usual_path(client: Client) -> None:
    echo = client.submit(Echo, actor=True).result(timeout=T)
    nested = ([[1]],)
    assert not _plain(nested, {})
    assert echo.back(*nested).result(timeout=T) == (nested, {})
    future = client.submit(int, 7)
    assert not _plain((future,), {})
    assert echo.back(future).result(timeout=T) == ((7,), {})  # a future arrives as its value
    assert not _plain((echo,), {})
    with pytest.raises(SerializationError, match="lock"):
        echo.back(threading.Lock())  # still fails in the caller, naming the type


@pytest.mark.parametrize("big", ["x" * (3 << 20), b"y" * (3 << 20)])
def test_a_large_string_or_bytes_argument_goes_the_usual_way(client: Client, big: str | bytes) -> None:
    assert not _plain((big,), {"z": 1})  # not pickled twice: shared memory takes it
    echo = client.submit(Echo, actor=True).result(timeout=T)
    assert echo.back(big, z=1).result(timeout=T) == ((big,), {"z": 1})


def _plain(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """What an actor method asks of its arguments."""
    return plain_values((*args, *kwargs.values()), THRESHOLD)
