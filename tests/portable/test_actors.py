"""Actors through the shared API: ``submit(Cls, actor=True)``, ``Actor``, ``ActorFuture``.

Tests of what only localactors promises (call ordering without waiting,
read-your-writes, ActorFutures in wait/gather) say so and are skipped on dask.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from .engines import Engine, T, run_async
from .tasks import Counter, call_actor


@pytest.fixture
def counter(client: Any) -> Any:
    return client.submit(Counter, actor=True).result(timeout=T)


def test_submit_actor_true_gives_a_future_of_an_actor(eng: Engine, client: Any) -> None:
    f = client.submit(Counter, actor=True)
    assert isinstance(f, eng.Future)
    actor = f.result(timeout=T)
    assert isinstance(actor, eng.Actor)


def test_actor_method_call_returns_an_actor_future(eng: Engine, counter: Any) -> None:
    fut = counter.increment()
    assert isinstance(fut, eng.ActorFuture)
    assert fut.result(timeout=T) == 1
    assert fut.done()


def test_actor_attribute_read_blocks_and_returns_the_value(counter: Any) -> None:
    counter.increment(5).result(timeout=T)
    assert counter.n == 5


def test_actor_repr_names_the_class_and_key(counter: Any) -> None:
    assert re.fullmatch(r"<Actor: Counter, key=Counter-[0-9a-f-]+>", repr(counter)), repr(counter)
    assert counter.key.startswith("Counter-")


def test_client_gather_of_an_actors_future_gives_the_actor(eng: Engine, client: Any) -> None:
    f = client.submit(Counter, actor=True)
    [actor] = client.gather([f])
    assert isinstance(actor, eng.Actor)
    assert actor.increment().result(timeout=T) == 1


def test_actor_method_error_keeps_its_type(counter: Any) -> None:
    with pytest.raises(ZeroDivisionError, match="actor method failed"):
        counter.fail().result(timeout=T)


def test_actor_handle_passed_to_a_task(client: Any, counter: Any) -> None:
    assert client.submit(call_actor, counter, pure=False).result(timeout=T) == 1
    assert counter.n == 1


def test_actor_futures_in_as_completed(eng: Engine, counter: Any) -> None:
    futures = [counter.increment() for _ in range(3)]
    for f in futures:
        f.result(timeout=T)
    results = sorted(f.result(timeout=T) for f in eng.as_completed(futures, timeout=T))
    assert results == [1, 2, 3]


def test_actor_future_is_awaitable_in_async_code(eng: Engine, cluster: Any) -> None:
    async def main() -> None:
        async with eng.async_client(cluster) as c:
            actor = await c.submit(Counter, actor=True)
            assert await actor.increment() == 1
            assert await actor.increment(2) == 3

    run_async(main())


def test_actor_attribute_unknown_raises_attribute_error(counter: Any) -> None:
    with pytest.raises(AttributeError):
        counter.no_such_attribute  # noqa: B018


# -- what only localactors promises ------------------------------------------------------------


def test_calls_from_one_caller_start_in_the_order_sent(eng: Engine, counter: Any) -> None:
    eng.skip_on_dask("dask does not order actor calls: they travel on separate connections (differences-from-dask.md)")
    futures = [counter.slow_increment(0.01) for _ in range(5)]
    assert [f.result(timeout=T) for f in futures] == [1, 2, 3, 4, 5]


def test_read_your_writes(eng: Engine, counter: Any) -> None:
    eng.skip_on_dask("dask may serve an attribute read before a call still in flight (differences-from-dask.md)")
    counter.slow_increment(0.05)
    assert counter.n == 1


def test_wait_waits_for_actor_futures(eng: Engine, counter: Any) -> None:
    eng.skip_on_dask("dask's wait() returns at once, counting ActorFutures as not done (differences-from-dask.md)")
    futures = [counter.slow_increment(0.01) for _ in range(3)]
    done, not_done = eng.wait(futures, timeout=T)
    assert len(done) == 3 and not not_done


def test_gather_of_actor_futures_gives_their_values(eng: Engine, client: Any, counter: Any) -> None:
    eng.skip_on_dask("dask's gather returns ActorFutures unchanged (differences-from-dask.md)")
    assert client.gather([counter.increment(), counter.increment()]) == [1, 2]
