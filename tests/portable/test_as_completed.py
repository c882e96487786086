"""``as_completed``: the iterator of dask.distributed, including its batch and bookkeeping methods
(after dask's own distributed/tests/test_as_completed.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .engines import Engine, T, run_async
from .tasks import add, boom, gated, inc, release


def test_as_completed_yields_each_future_once_and_counts(eng: Engine, client: Any) -> None:
    x, y, z = client.submit(inc, 1), client.submit(inc, 2), client.submit(inc, 1, pure=False)
    seq = eng.as_completed([x, y, z], timeout=T)
    assert seq.count() == 3
    assert isinstance(seq, Iterator)
    assert set(seq) == {x, y, z}
    assert seq.count() == 0
    assert list(eng.as_completed([])) == []


def test_as_completed_of_non_futures_raises_type_error(eng: Engine, client: Any) -> None:
    with pytest.raises(TypeError):
        list(eng.as_completed([1, 2, 3], timeout=T))
    seq = eng.as_completed([], timeout=T)
    with pytest.raises(TypeError):
        seq.add(1)
    with pytest.raises(TypeError):
        seq.update([client.submit(inc, 1), "not a future"])


def test_as_completed_add_while_iterating(eng: Engine, client: Any) -> None:
    futures = client.map(inc, range(6))
    seq = eng.as_completed(futures, timeout=T)
    total, expected = 0, sum(map(inc, range(6)))
    added = 0
    for f in seq:
        result = f.result(timeout=T)
        total += result
        if added < 3:
            seq.add(client.submit(add, f, 10))
            added += 1
            expected += result + 10
    assert total == expected


def test_as_completed_update_and_next_batch(eng: Engine, client: Any) -> None:
    todo = list(range(10))
    total, expected = 0, sum(map(inc, todo))
    seq = eng.as_completed([], timeout=T)
    while todo or not seq.is_empty():
        if todo:
            work, todo = todo[:4], todo[4:]
            seq.update(client.map(inc, work))
        batch = seq.next_batch(block=True)
        assert batch
        total += sum(f.result(timeout=T) for f in batch)
    assert total == expected


def test_as_completed_next_batch_without_blocking(eng: Engine, client: Any, gate: str) -> None:
    slow = client.submit(gated, gate, 1, pure=False)
    seq = eng.as_completed([slow], timeout=T)
    assert seq.next_batch(block=False) == []
    release(gate)
    assert seq.next_batch(block=True) == [slow]


def test_as_completed_batches(eng: Engine, client: Any) -> None:
    futures = client.map(inc, range(8), pure=False)
    seen = []
    for batch in eng.as_completed(futures, timeout=T).batches():
        assert isinstance(batch, list) and batch
        seen.extend(batch)
    assert sorted(f.key for f in seen) == sorted(f.key for f in futures)


def test_as_completed_is_empty_and_repeats(eng: Engine, client: Any) -> None:
    seq = eng.as_completed(timeout=T)
    assert seq.is_empty()
    x = client.submit(inc, 1)
    seq.add(x)
    seq.add(x)
    assert not seq.is_empty()
    assert next(seq) is x
    assert next(seq) is x
    assert seq.is_empty()
    with pytest.raises(StopIteration):
        next(seq)
    seq.add(x)
    assert next(seq) is x


def test_as_completed_clear(eng: Engine, client: Any) -> None:
    futures = client.map(inc, range(3))
    seq = eng.as_completed(futures, timeout=T)
    eng.wait(futures, timeout=T)
    seq.clear()
    assert seq.count() == 0 and seq.is_empty()
    with pytest.raises(StopIteration):
        next(seq)


def test_as_completed_counts_finished_but_not_yet_yielded(eng: Engine, client: Any) -> None:
    futures = client.map(inc, range(3), pure=False)
    seq = eng.as_completed(futures, timeout=T)
    eng.wait(futures, timeout=T)
    assert seq.count() == 3
    next(seq)
    assert seq.count() == 2


def test_as_completed_yields_failed_and_cancelled_futures(eng: Engine, client: Any, gate: str) -> None:
    bad = client.submit(boom, "ac-error")
    good = client.submit(inc, 1, pure=False)
    doomed = client.submit(gated, gate, 1, pure=False)
    seq = eng.as_completed([bad, good, doomed], timeout=T)
    doomed.cancel()
    assert set(seq) == {bad, good, doomed}
    assert bad.status == "error" and good.status == "finished" and doomed.status == "cancelled"


def test_as_completed_with_results_raises_a_failed_futures_error(eng: Engine, client: Any, gate: str) -> None:
    bad = client.submit(boom, "ac-raise")
    good = client.submit(inc, 5, pure=False)
    doomed = client.submit(gated, gate, 1, pure=False)
    seq = eng.as_completed([bad, good, doomed], with_results=True, timeout=T)
    doomed.cancel()
    with pytest.raises(ValueError, match="ac-raise"):
        list(seq)


def test_as_completed_with_results_cancelled_yields_the_cancelled_error(eng: Engine, client: Any, gate: str) -> None:
    # a cancelled future is not an error: with raise_errors=True (the default) it is yielded, not raised
    good = client.submit(inc, 1, pure=False)
    doomed = client.submit(gated, gate, 1, pure=False)
    seq = eng.as_completed([good, doomed], with_results=True, timeout=T)
    doomed.cancel()
    got = dict(seq)
    assert got[good] == 2
    assert isinstance(got[doomed], eng.CancelledError)


def test_as_completed_with_results_no_raise(eng: Engine, client: Any, gate: str) -> None:
    # as dask: a failed future yields (future, (type, exception, traceback)); a cancelled one
    # yields (future, CancelledError)
    bad = client.submit(boom, "ac-noraise")
    good = client.submit(inc, 1, pure=False)
    doomed = client.submit(gated, gate, 1, pure=False)
    seq = eng.as_completed([bad, good, doomed], with_results=True, raise_errors=False, timeout=T)
    doomed.cancel()
    got = dict(seq)
    assert got.keys() == {bad, good, doomed}
    assert got[good] == 2
    assert isinstance(got[doomed], eng.CancelledError)
    typ, exc, tb = got[bad]
    assert tb is None or hasattr(tb, "tb_frame")
    assert typ is ValueError and isinstance(exc, ValueError) and "ac-noraise" in str(exc)


def test_as_completed_async_for(eng: Engine, cluster: Any) -> None:
    async def main() -> None:
        async with eng.async_client(cluster) as c:
            futures = c.map(inc, range(3), pure=False)
            seen = [f async for f in eng.as_completed(futures, timeout=T)]
            assert set(seen) == set(futures)
            seq = eng.as_completed(c.map(inc, [1, 2]), with_results=True, timeout=T)
            assert sorted([r async for _, r in seq]) == [2, 3]

    run_async(main())


def test_as_completed_timeout_counts_from_creation(eng: Engine, client: Any, gate: str) -> None:
    slow = client.submit(gated, gate, 1, pure=False)
    seq = eng.as_completed([slow], timeout=0.3)
    time.sleep(0.4)
    start = time.monotonic()
    with pytest.raises(eng.TimeoutError):
        next(seq)
    assert time.monotonic() - start < 5
