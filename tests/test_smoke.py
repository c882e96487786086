"""A first end-to-end pass: tasks and the seed's Counter on real processes."""

from __future__ import annotations

from localactors import Client


class Counter:
    n = 0

    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n

    def add(self, x: int) -> int:
        self.n += x
        return self.n


def inc(x: int) -> int:
    return x + 1


def test_task_round_trip(client: Client) -> None:
    assert client.submit(inc, 1).result(timeout=10) == 2


def test_counter(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    assert counter.increment().result(timeout=10) == 1
    assert counter.add(10).result(timeout=10) == 11
    assert counter.n == 11
