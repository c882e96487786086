"""Futures, keys, cancellation, timeouts and errors: the same behaviour on both engines."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import threading
import time
import traceback
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

from .engines import Engine, T, run_async
from .tasks import add, boom, flaky, gated, gated_boom, inc, release, user_frame_raises


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- keys ----------------------------------------------------------------------------------


def test_map_with_a_key_prefix_twice_gives_each_map_its_own_results(client: Any) -> None:
    # dask puts a token of the arguments into each key: "INC-<token>"
    prefix = unique("INC")
    first = client.map(inc, range(4), key=prefix)
    second = client.map(inc, [5, 6, 7, 8], key=prefix)
    assert client.gather(second) == [6, 7, 8, 9]
    assert client.gather(first) == [1, 2, 3, 4]
    assert all(f.key.startswith(prefix + "-") for f in first + second)
    assert not {f.key for f in first} & {f.key for f in second}


def test_map_with_a_key_prefix_and_equal_arguments_shares_keys(client: Any) -> None:
    prefix = unique("same")
    a = client.map(inc, [1, 2], key=prefix)
    b = client.map(inc, [1, 2], key=prefix)
    assert [f.key for f in a] == [f.key for f in b]
    assert client.gather(b) == [2, 3]


def test_map_with_a_list_of_keys_uses_them_exactly(client: Any) -> None:
    keys = [unique("a"), unique("b")]
    futures = client.map(inc, [1, 2], key=keys)
    assert [f.key for f in futures] == keys
    assert client.gather(futures) == [2, 3]


def test_submit_with_key_uses_it_exactly(client: Any) -> None:
    key = unique("mine")
    f = client.submit(inc, 1, key=key)
    assert f.key == key
    assert f.result(timeout=T) == 2


def test_submit_pure_shares_the_key_and_pure_false_does_not(client: Any) -> None:
    x = unique("v")
    assert client.submit(add, x, "").key == client.submit(add, x, "").key
    a, b = client.submit(add, x, "", pure=False), client.submit(add, x, "", pure=False)
    assert a.key != b.key
    assert client.gather([a, b]) == [x, x]


def test_map_takes_several_iterables_and_keywords(client: Any) -> None:
    futures = client.map(add, [1, 2, 3], [10, 20, 30])
    assert client.gather(futures) == [11, 22, 33]
    futures = client.map(add, [1, 2], y=100)
    assert client.gather(futures) == [101, 102]


def test_futures_as_arguments_nested_in_lists_arrive_as_values(client: Any) -> None:
    x = client.submit(inc, 1)
    y = client.submit(inc, 2)
    total = client.submit(sum, [x, y])
    assert total.result(timeout=T) == 5


# -- status, done, callbacks -------------------------------------------------------------


def test_future_status_done_cancelled_through_a_lifecycle(client: Any, gate: str) -> None:
    f = client.submit(gated, gate, 1, pure=False)
    assert f.status == "pending" and not f.done() and not f.cancelled()
    release(gate)
    assert f.result(timeout=T) == 1
    assert f.status == "finished" and f.done() and not f.cancelled()
    bad = client.submit(boom, unique("x"))
    with pytest.raises(ValueError):
        bad.result(timeout=T)
    assert bad.status == "error" and bad.done() and not bad.cancelled()


def test_cancelled_future_status_and_result(eng: Engine, client: Any, gate: str) -> None:
    f = client.submit(gated, gate, 1, pure=False)
    f.cancel()
    _until(lambda: f.cancelled(), "the future shows cancelled")
    assert f.status == "cancelled" and f.done()
    with pytest.raises(eng.CancelledError):
        f.result(timeout=T)
    release(gate)


def test_add_done_callback_gets_the_future(client: Any) -> None:
    got: list[Any] = []
    called = threading.Event()
    f = client.submit(inc, 41, pure=False)

    def cb(fut: Any) -> None:
        got.append(fut)
        called.set()

    f.add_done_callback(cb)
    assert called.wait(T)
    assert got == [f]
    assert got[0].result(timeout=T) == 42


def test_exception_returns_the_error_and_result_raises_its_type(client: Any) -> None:
    f = client.submit(boom, unique("e"))
    err = f.exception(timeout=T)
    assert isinstance(err, ValueError) and "boom" in str(err)
    with pytest.raises(ValueError, match="boom"):
        f.result(timeout=T)
    assert client.submit(inc, 1).exception(timeout=T) is None


def test_traceback_of_a_failed_future(client: Any) -> None:
    f = client.submit(user_frame_raises, unique("tb"))
    f.exception(timeout=T)
    tb = f.traceback(timeout=T)
    names = [frame.name for frame in traceback.extract_tb(tb)]
    assert "user_frame_raises" in names


# -- cancellation ----------------------------------------------------------------------------


def test_cancel_in_one_client_does_not_cancel_another_clients_future(eng: Engine, cluster: Any, client: Any) -> None:
    # as dask's test_cancel_multi_client: both clients hold the key, one cancels its future
    key = unique("shared")
    with eng.Client(cluster) as other:
        mine = client.submit(inc, 1, key=key)
        theirs = other.submit(inc, 1, key=key)
        assert mine.result(timeout=T) == 2 and theirs.result(timeout=T) == 2
        mine.cancel()
        _until(lambda: mine.cancelled(), "my future shows cancelled")
        time.sleep(0.2)  # an absence of effect: give a wrong cancellation time to arrive
        assert not theirs.cancelled()
        assert theirs.result(timeout=T) == 2
        assert theirs.status == "finished"
        with pytest.raises(eng.CancelledError):
            mine.result(timeout=T)


@pytest.mark.parametrize("when", ["pending", "finished"])
def test_submit_with_a_cancelled_future_raises_cancelled_error(eng: Engine, client: Any, gate: str, when: str) -> None:
    f = client.submit(gated, gate, 1, pure=False)
    if when == "finished":
        release(gate)
        assert f.result(timeout=T) == 1
    f.cancel()
    _until(lambda: f.cancelled(), "the future shows cancelled")
    with pytest.raises(eng.CancelledError):
        client.submit(inc, f).result(timeout=T)
    with pytest.raises(eng.CancelledError):
        client.map(inc, [f])[0].result(timeout=T)


def test_wait_over_a_cancelled_future_raises_cancelled_error(eng: Engine, client: Any, gate: str) -> None:
    # dask (2024.7+): wait() raises FuturesCancelledError, a CancelledError, naming the cancelled futures
    f = client.submit(gated, gate, 1, pure=False)
    ok = client.submit(inc, 1, pure=False)
    f.cancel()
    _until(lambda: f.cancelled(), "the future shows cancelled")
    with pytest.raises(eng.CancelledError):
        eng.wait([f, ok], timeout=T)
    release(gate)


def test_client_cancel_takes_a_list(client: Any, gate: str) -> None:
    fs = [client.submit(gated, gate, i, pure=False) for i in range(3)]
    client.cancel(fs)
    _until(lambda: all(f.cancelled() for f in fs), "all cancelled")
    release(gate)


# -- timeouts, also written as strings ----------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.1, "100ms", "0.1s"])
def test_result_timeout_number_or_string(eng: Engine, client: Any, gate: str, timeout: Any) -> None:
    f = client.submit(gated, gate, 1, pure=False)
    with pytest.raises(eng.TimeoutError):
        f.result(timeout=timeout)
    release(gate)
    assert f.result(timeout=T if isinstance(timeout, float) else "30s") == 1


@pytest.mark.parametrize("timeout", [0.1, "100ms"])
def test_wait_timeout_number_or_string(eng: Engine, client: Any, gate: str, timeout: Any) -> None:
    f = client.submit(gated, gate, 1, pure=False)
    with pytest.raises(eng.TimeoutError):
        eng.wait([f], timeout=timeout)
    release(gate)
    done, not_done = eng.wait([f], timeout=T if isinstance(timeout, float) else "30s")
    assert done == {f} and not not_done


@pytest.mark.parametrize("timeout", [0.1, "100ms"])
def test_as_completed_timeout_number_or_string(eng: Engine, client: Any, gate: str, timeout: Any) -> None:
    quick = client.submit(inc, 1, pure=False)
    slow = client.submit(gated, gate, 1, pure=False)
    quick.result(timeout=T)
    seq = eng.as_completed([quick, slow], timeout=timeout)
    assert next(seq) is quick
    with pytest.raises(eng.TimeoutError):
        next(seq)
    release(gate)


def test_wait_first_completed_returns_done_and_not_done(eng: Engine, client: Any, gate: str) -> None:
    quick = client.submit(inc, 1, pure=False)
    slow = client.submit(gated, gate, 1, pure=False)
    result = eng.wait([quick, slow], timeout=T, return_when=eng.FIRST_COMPLETED)
    assert result.done == {quick} and result.not_done == {slow}
    release(gate)
    result = eng.wait([quick, slow], timeout=T, return_when=eng.ALL_COMPLETED)
    assert result.done == {quick, slow} and not result.not_done


# -- async client -------------------------------------------------------------------------------


def test_async_exception_is_awaitable(eng: Engine, cluster: Any) -> None:
    async def main() -> None:
        async with eng.async_client(cluster) as c:
            f = c.submit(boom, unique("async"))
            pending = f.exception()
            assert hasattr(pending, "__await__"), f"exception() returned {pending!r}, not an awaitable"
            err = await pending
            assert isinstance(err, ValueError)
            assert await c.submit(inc, 1).exception() is None

    run_async(main())


def test_async_client_basics(eng: Engine, cluster: Any) -> None:
    async def main() -> None:
        async with eng.async_client(cluster) as c:
            f = c.submit(inc, 1)
            assert await f == 2
            assert await f.result() == 2
            assert await c.gather(c.map(inc, [1, 2, 3])) == [2, 3, 4]
            [x] = await c.scatter([10])
            assert await c.submit(inc, x) == 11
            seen = [g async for g in eng.as_completed(c.map(inc, [5, 6], pure=False))]
            assert len(seen) == 2
            done, _ = await eng.wait(c.map(inc, [7, 8], pure=False), timeout=T)
            assert len(done) == 2

    run_async(main())


@pytest.mark.parametrize("timeout", [0.2, "200ms"])
def test_async_wait_raising_leaves_no_task_unawaited(eng: Engine, cluster: Any, gate: str, timeout: Any) -> None:
    # wait() raises while the future is pending; the future then fails. Nothing wait()
    # started may be left pending, nor fail later with nobody to retrieve its error.
    problems: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: problems.append(str(ctx.get("message"))))
        async with eng.async_client(cluster) as c:
            f = c.submit(gated_boom, gate, pure=False)
            before = asyncio.all_tasks()
            with pytest.raises(eng.TimeoutError):
                await eng.wait([f], timeout=timeout)
            release(gate)
            with pytest.raises(ValueError):
                await f
            await asyncio.sleep(0.2)  # a few loop turns: whatever wait() started has ended by now
            left = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
            assert not [t for t in left if "wait" in repr(t.get_coro())], left
            del left
            gc.collect()
            await asyncio.sleep(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_async(main(), debug=True)
        gc.collect()
    never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not never_awaited
    assert not [p for p in problems if "pending" in p or "never retrieved" in p], problems


# -- gather, errors ----------------------------------------------------------------------------------


def test_gather_raises_the_first_error_by_default(client: Any) -> None:
    with pytest.raises(ValueError, match="boom"):
        client.gather([client.submit(inc, 1), client.submit(boom, unique("g"))])


def test_gather_skip_leaves_failed_futures_out(client: Any) -> None:
    good = client.map(inc, [1, 2])
    bad = client.submit(boom, unique("skip"))
    assert client.gather([good[0], bad, good[1]], errors="skip") == [2, 3]


def test_gather_keeps_the_shape_of_nested_structures(client: Any) -> None:
    x, y = client.map(inc, [1, 2])
    assert client.gather({"a": x, "b": [y, (x, 7)]}) == {"a": 2, "b": [3, (2, 7)]}


def test_remote_traceback_shows_few_library_frames_before_the_users(eng: Engine, client: Any) -> None:
    # everything printed for the error (the chained worker traceback too): at most
    # three frames of the library's own code, and the user's frame among them
    f = client.submit(user_frame_raises, unique("frames"))
    with pytest.raises(KeyError) as info:
        client.gather([f])
    shown = "".join(traceback.format_exception(info.value))
    files = re.findall(r'File "([^"]+)", line \d+, in (\w+)', shown)
    assert "user_frame_raises" in [name for _, name in files], shown
    ours = f"{os.sep}{eng.module.__name__}{os.sep}"
    library = [(path, name) for path, name in files if ours in path]
    assert len(library) <= 3, f"{len(library)} frames of {eng.name}'s own code:\n{shown}"


# -- retry, release -----------------------------------------------------------------------------------


def test_future_retry_reruns_a_failed_task(client: Any, tmp_path: Path) -> None:
    f = client.submit(flaky, str(tmp_path / "mark"), pure=False)
    with pytest.raises(RuntimeError, match="first attempt"):
        f.result(timeout=T)
    f.retry()
    assert f.result(timeout=T) == "ok"
    assert f.status == "finished"


def test_client_retry_reruns_failed_tasks(client: Any, tmp_path: Path) -> None:
    fs = [client.submit(flaky, str(tmp_path / f"mark{i}"), pure=False) for i in range(2)]
    for f in fs:
        assert isinstance(f.exception(timeout=T), RuntimeError)
    client.retry(fs)
    assert client.gather(fs) == ["ok", "ok"]


def test_future_release_lets_the_cluster_forget_the_key(client: Any) -> None:
    key = unique("released")
    f = client.submit(inc, 1, key=key)
    assert f.result(timeout=T) == 2
    assert key in client.who_has()
    f.release()
    _until(lambda: key not in client.who_has(), "the released key is forgotten")


def _until(condition: Any, what: str, timeout: float = T) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what}")
        time.sleep(0.02)
