"""``scatter``: shapes and types come back as they went, as dask.distributed scatters them.

The tests share a cluster, so they scatter with ``hash=False`` (random keys) unless hashing is
what they test: with hashed keys, a value scattered again while an earlier test's future of the
same value is being released can arrive cancelled on dask.
"""

from __future__ import annotations

import collections
import uuid
from typing import Any, NamedTuple

import pytest

from .engines import Engine, T
from .tasks import identity, inc, type_name


class Point(NamedTuple):
    x: int
    y: int


def test_scatter_a_dict_uses_its_keys_as_the_futures_keys(eng: Engine, client: Any) -> None:
    data = {f"x-{uuid.uuid4().hex}": 1, f"y-{uuid.uuid4().hex}": "two"}
    futures = client.scatter(data)
    assert type(futures) is dict and futures.keys() == data.keys()
    for name, f in futures.items():
        assert isinstance(f, eng.Future)
        assert f.key == name
    assert client.gather(futures) == data


@pytest.mark.parametrize("kind", [list, tuple])
def test_scatter_a_list_or_tuple_gives_the_same_type_of_futures(eng: Engine, client: Any, kind: type) -> None:
    futures = client.scatter(kind([1, "a", 2.5]), hash=False)
    assert type(futures) is kind and len(futures) == 3
    assert all(isinstance(f, eng.Future) for f in futures)
    assert client.gather(futures) == kind([1, "a", 2.5])


@pytest.mark.parametrize("kind", [set, frozenset])
def test_scatter_a_set_or_frozenset_gives_the_same_type_of_futures(eng: Engine, client: Any, kind: type) -> None:
    futures = client.scatter(kind({1, 2, 3}), hash=False)
    assert type(futures) is kind and len(futures) == 3
    assert all(isinstance(f, eng.Future) for f in futures)
    assert sorted(client.gather(list(futures))) == [1, 2, 3]


def test_scatter_a_range_gives_a_list_of_futures(eng: Engine, client: Any) -> None:
    futures = client.scatter(range(3), hash=False)
    assert type(futures) is list
    assert client.gather(futures) == [0, 1, 2]


def test_scatter_a_namedtuple_gives_a_namedtuple_of_futures(eng: Engine, client: Any) -> None:
    futures = client.scatter(Point(1, 2), hash=False)
    assert type(futures) is Point
    assert isinstance(futures.x, eng.Future)
    assert client.gather(list(futures)) == [1, 2]


def test_scatter_an_iterator_raises_type_error(client: Any) -> None:
    with pytest.raises(TypeError):
        client.scatter(iter([1, 2, 3]))
    with pytest.raises(TypeError):
        client.scatter(i for i in range(3))


@pytest.mark.parametrize(
    "value",
    [collections.deque([1, 2]), collections.OrderedDict(a=1), collections.Counter("aab"), "text", b"bytes", 7],
    ids=["deque", "OrderedDict", "Counter", "str", "bytes", "int"],
)
def test_scatter_other_objects_as_one_future_of_the_same_type(eng: Engine, client: Any, value: Any) -> None:
    # exact-type checks in dask: a dict subclass or any other iterable is one opaque value
    f = client.scatter(value, hash=False)
    assert isinstance(f, eng.Future)
    back = f.result(timeout=T)
    assert type(back) is type(value) and back == value
    assert client.submit(type_name, f).result(timeout=T) == type(value).__name__


def test_scattered_types_reach_tasks_as_they_went(client: Any) -> None:
    [a, b, c] = client.scatter([(1, 2), {3}, frozenset({4})], hash=False)
    assert client.gather([client.submit(type_name, x) for x in (a, b, c)]) == ["tuple", "set", "frozenset"]
    assert client.submit(identity, a).result(timeout=T) == (1, 2)


def test_scatter_hash_gives_equal_values_equal_keys(client: Any) -> None:
    value = f"v-{uuid.uuid4().hex}"
    a, b = client.scatter([value, value])
    assert a.key == b.key
    c, d = client.scatter([value, value], hash=False)
    assert c.key != d.key
    assert client.gather([a, c, d]) == [value] * 3


def test_scattered_futures_are_dependencies(client: Any) -> None:
    [x] = client.scatter([41], hash=False)
    assert client.submit(inc, x).result(timeout=T) == 42
