"""Where a worker serves its callers' requests (an in-process cluster: one interpreter).

The idle actor thread reads the latest actor caller's link itself; a data
request it reads there must not be served on it (pickling a large result
would hold up every actor's queued calls).
"""

from __future__ import annotations

import threading
from typing import Any

from localactors import Client, LocalCluster


class PickledWhere:
    """Unpickles as the name of the thread that pickled it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (threading.current_thread().name,))


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, x: int) -> int:
        self.n += x
        return self.n


def make_where(i: int) -> PickledWhere:
    return PickledWhere()


def test_a_data_request_read_by_the_idle_actor_thread_is_not_served_there() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result()
        served_on = set()
        for i in range(20):
            counter.add(1).result()  # the actor thread now idle-reads this client's link
            served_on.add(c.submit(make_where, i).result())
        assert counter.add(0).result() == 20
    assert not [name for name in served_on if name.startswith("localactors-actor-")], served_on


def test_a_data_request_answers_the_same_from_any_thread() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        counter = c.submit(Counter, actor=True).result()
        futures = [c.submit(lambda i: list(range(i)), i) for i in range(30)]
        for i, fut in enumerate(futures):
            counter.add(1).result()
            assert fut.result() == list(range(i))
        assert counter.add(0).result() == 30
