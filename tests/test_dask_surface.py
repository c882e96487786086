"""What issue 12 added to the shared surface, where localactors says more than the portable tests can.

The portable tests (tests/portable) hold both engines to the shared behaviour;
these check our side's details: the timeout parser, how few of our frames a
remote error shows, cancellation per client followed by a resubmission,
``run``'s options, ``upload_file`` with an archive, ``restart`` with actors,
and the async forms of the new methods.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
import uuid
import zipfile
from concurrent.futures import CancelledError
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import T, gated, wait_until

from localactors import ActorLostError, Client, LocalCluster, as_completed, wait
from localactors._base.timeouts import seconds

PACKAGE = os.sep + "localactors" + os.sep


def inc(x: int) -> int:
    return x + 1


def user_raises(x: Any) -> Any:
    raise KeyError(f"user {x}")


def flaky(path: str) -> str:
    if not os.path.exists(path):
        with open(path, "w"):
            pass
        raise RuntimeError("first attempt fails")
    return "ok"


def pid(*_: Any) -> int:
    return os.getpid()


def worker_name_of(dask_worker: Any) -> str:
    return str(dask_worker.name)


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def import_attr(module: str, attr: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), attr)


class Counter:
    n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        (None, None), (1, 1.0), (0.25, 0.25), ("1s", 1.0), ("100ms", 0.1), ("0.1s", 0.1), ("2 minutes", 120.0),
        ("1.5h", 5400.0), ("3", 3.0), ("250 milliseconds", 0.25), ("10us", 1e-5), ("1d", 86400.0),
        ("ms", 1e-3), ("2 S", 2.0), (timedelta(seconds=3), 3.0),
    ],
)  # fmt: skip
def test_timeouts_read_as_dask_reads_them(given: Any, expected: float | None) -> None:
    assert seconds(given) == pytest.approx(expected) if expected is not None else seconds(given) is None


@pytest.mark.parametrize(
    "bad, error", [("1 fortnight", ValueError), ("soon", ValueError), (True, TypeError), ([1], TypeError)]
)
def test_timeouts_that_are_not(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        seconds(bad)


def test_string_timeouts_in_gather_scatter_cancel_close_and_actor_futures(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    f = client.submit(gated, gate, 1, pure=False)
    with pytest.raises(TimeoutError):
        client.gather([f], timeout="50ms")
    with pytest.raises(TimeoutError):
        f.exception(timeout="50ms")
    [x] = client.scatter([1], timeout="5s")
    counter = client.submit(Counter, actor=True).result(timeout="30s")
    assert counter.increment().result(timeout="30s") == 1
    assert counter.increment().exception(timeout="30 seconds") is None
    client.cancel([f], timeout="30s")
    assert x.result(timeout="1 minute") == 1
    with Client(client.cluster) as other:
        other.close(timeout="2s")
    assert other.status == "closed"


# -- remote tracebacks -----------------------------------------------------------------------


def test_a_remote_error_shows_at_most_three_of_our_frames(client: Client) -> None:
    f = client.submit(user_raises, uuid.uuid4().hex)
    for fetch in (lambda: client.gather([f]), lambda: f.result(timeout=T), lambda: client.gather([f])):
        with pytest.raises(KeyError) as info:
            fetch()
        ours = [fr for fr in traceback.extract_tb(info.value.__traceback__) if PACKAGE in fr.filename]
        assert len(ours) <= 3, ours
        # the worker's part starts at the user's frame: none of ours before it
        cause = info.value.__cause__
        remote = [fr for fr in traceback.extract_tb(f.traceback()) if PACKAGE in fr.filename]
        assert cause is not None and not remote
        assert "user_raises" in str(cause)


def test_future_traceback_is_a_traceback_object_of_the_workers_frames(client: Client) -> None:
    f = client.submit(user_raises, "tb")
    tb = f.traceback(timeout=T)
    frames = traceback.extract_tb(tb)
    assert [fr.name for fr in frames][-1] == "user_raises"
    assert frames[-1].filename == __file__
    assert client.submit(inc, 1).traceback(timeout=T) is None


# -- cancellation per client ------------------------------------------------------------------


def test_a_client_that_cancelled_a_shared_key_can_submit_it_again(cluster: LocalCluster, client: Client) -> None:
    key = f"shared-{uuid.uuid4().hex}"
    with Client(cluster) as other:
        mine = client.submit(inc, 1, key=key)
        theirs = other.submit(inc, 1, key=key)
        assert mine.result(timeout=T) == 2 and theirs.result(timeout=T) == 2
        mine.cancel()
        assert mine.cancelled() and not theirs.cancelled()
        again = client.submit(inc, 1, key=key)  # the key lives on for the other client: share it
        assert again.result(timeout=T) == 2
        assert mine.cancelled()  # the old future stays cancelled
        assert theirs.result(timeout=T) == 2


def test_the_only_holder_cancelling_cancels_the_task_and_its_dependents(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    f = client.submit(gated, gate, 1, pure=False)
    g = client.submit(inc, f)
    f.cancel()
    wait_until(lambda: g.cancelled(), what="the dependent is cancelled too")
    with pytest.raises(CancelledError):
        wait([f, g], timeout=T)
    with open(gate, "w"):
        pass


# -- run, upload_file, restart ----------------------------------------------------------------


def test_run_options(client: Client, tmp_path: Path) -> None:
    names = client.run(worker_name_of)
    assert sorted(names.values()) == ["worker-0", "worker-1"]
    assert set(client.run(async_double, 21).values()) == {42}
    errors = client.run(user_raises, "run", on_error="return")
    assert len(errors) == 2 and all(isinstance(e, KeyError) for e in errors.values())
    assert client.run(user_raises, "run", on_error="ignore") == {}
    with pytest.raises(ValueError):
        client.run(pid, on_error="sometimes")
    assert client.run(pid, wait=False) is None


def test_run_does_not_wait_for_a_busy_task_slot(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    busy = [client.submit(gated, gate, i, pure=False) for i in range(2)]  # one thread per worker: both busy
    try:
        assert len(client.run(pid)) == 2
    finally:
        with open(gate, "w"):
            pass
    assert client.gather(busy) == [0, 1]


def test_upload_file_of_a_zip_archive(client: Client, tmp_path: Path) -> None:
    name = f"zipped_{uuid.uuid4().hex[:8]}"
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{name}/__init__.py", "VALUE = 'from the zip'\n")
    client.upload_file(str(archive))
    assert client.submit(import_attr, name, "VALUE", pure=False).result(timeout=T) == "from the zip"


def test_upload_file_again_reloads_the_module(client: Client, tmp_path: Path) -> None:
    name = f"reloaded_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text("VALUE = 1\n")
    client.upload_file(str(path))
    path.write_text("VALUE = 2\n")
    client.upload_file(str(path))
    assert set(client.run(import_attr, name, "VALUE").values()) == {2}


def test_restart_cancels_futures_and_loses_actors() -> None:
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as client:
        counter = client.submit(Counter, actor=True).result(timeout=T)
        f = client.submit(inc, 1)
        assert f.result(timeout=T) == 2
        client.restart(timeout="30s")
        assert f.cancelled()
        with pytest.raises((ActorLostError, CancelledError)):
            counter.increment().result(timeout=T)
        assert client.submit(inc, 1).result(timeout=T) == 2
        assert len(client.nthreads()) == 1


# -- retry, release, who_has ------------------------------------------------------------------


def test_retry_reruns_the_failed_input_of_a_failed_task(client: Client, tmp_path: Path) -> None:
    first = client.submit(flaky, str(tmp_path / "mark"), pure=False)
    middle = client.submit(len, first, pure=False)  # held: a failed input nobody holds is forgotten
    second = client.submit(inc, middle, pure=False)
    assert isinstance(second.exception(timeout=T), RuntimeError)
    second.retry()
    assert second.result(timeout=T) == 3
    assert first.result(timeout=T) == "ok" and middle.result(timeout=T) == 2  # they ran again, and say so


def test_release_twice_and_who_has_of_everything(client: Client) -> None:
    f = client.submit(inc, 10, key=f"rel-{uuid.uuid4().hex}")
    f.result(timeout=T)
    everything = client.who_has()
    assert everything[f.key] and all(isinstance(v, tuple) for v in everything.values())
    f.release()
    f.release()  # once is what counts
    wait_until(lambda: f.key not in client.who_has(), what="the key is forgotten")


# -- sync, and the async forms ----------------------------------------------------------------


def test_sync_runs_a_coroutine_inside_a_running_loop_too(client: Client) -> None:
    async def main() -> int:
        return int(client.sync(async_double, 4))  # a sync client in a running loop (as in Jupyter): blocks

    assert asyncio.run(main()) == 8
    assert client.sync(inc, 1) == 2  # a plain function's value, as it is
    with pytest.raises(TimeoutError):
        client.sync(asyncio.sleep, 5, callback_timeout="50ms")


def test_async_client_new_methods_are_awaitable(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as c:
            assert len(await c.run(pid)) == 2
            assert list((await c.nthreads()).values()) == [1, 1]
            assert await c.wait_for_workers(2, timeout="10s") is None
            f = c.submit(inc, 1)
            await f
            assert (await c.who_has([f]))[f.key]
            assert await c.sync(async_double, 2) == 4
            bad = c.submit(user_raises, "async")
            assert isinstance(await bad.exception(), KeyError)
            assert await bad.traceback() is not None
            await c.retry([bad])  # fails again, but it ran again
            assert isinstance(await bad.exception(), KeyError)
            assert f.key in (await c.has_what())[(await c.who_has([f]))[f.key][0]]
            # off the loop, the same methods block and return values (the one rule)
            assert len(await asyncio.to_thread(c.run, pid)) == 2
            assert list((await asyncio.to_thread(c.nthreads)).values()) == [1, 1]
            assert await asyncio.to_thread(c.wait_for_workers, 2) is None
            assert (await asyncio.to_thread(c.who_has, [f]))[f.key]
            assert f.key in str(await asyncio.to_thread(c.has_what))
            assert await asyncio.to_thread(c.sync, async_double, 3) == 6
            assert await asyncio.to_thread(bad.traceback) is not None

    asyncio.run(main())


def test_sync_of_an_async_client_from_another_thread_runs_on_its_loop(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as c:
            loop = asyncio.get_running_loop()

            async def where() -> bool:
                return asyncio.get_running_loop() is loop

            assert await asyncio.to_thread(c.sync, where)

    asyncio.run(main())


# -- as_completed, wait, scatter, map ---------------------------------------------------------


def test_as_completed_clear_from_another_thread_ends_a_blocked_iteration(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    seq = as_completed([client.submit(gated, gate, 1, pure=False)], timeout=T)
    threading.Timer(0.1, seq.clear).start()
    start = time.monotonic()
    assert list(seq) == []
    assert time.monotonic() - start < 5
    with open(gate, "w"):
        pass


def test_wait_ignores_what_is_not_a_future(client: Client) -> None:
    f = client.submit(inc, 1)
    done, not_done = wait([f, 1, "x"], timeout=T)
    assert done == {f} and not not_done


def test_scatter_a_dict_with_other_keys_and_broadcast(client: Client) -> None:
    futures = client.scatter({1: "one", f"k-{uuid.uuid4().hex}": 2}, broadcast=True)
    assert futures[1].key == "1" and client.gather(futures[1]) == "one"


def test_map_of_an_iterator_raises_type_error(client: Client) -> None:
    with pytest.raises(TypeError):
        client.map(inc, iter([1, 2]))


def test_cancel_with_force_cancels_for_every_client_and_reason_is_told(cluster: LocalCluster, client: Client) -> None:
    key = f"forced-{uuid.uuid4().hex}"
    with Client(cluster) as other:
        mine = client.submit(inc, 1, key=key)
        theirs = other.submit(inc, 1, key=key)
        assert theirs.result(timeout=T) == 2
        mine.cancel(reason="no longer wanted", force=True)
        wait_until(lambda: theirs.cancelled(), what="the other client's future is cancelled too")
        with pytest.raises(CancelledError, match="no longer wanted"):
            mine.result(timeout=T)


def test_has_what_is_the_other_side_of_who_has(client: Client) -> None:
    f = client.submit(inc, 20, key=f"hw-{uuid.uuid4().hex}")
    f.result(timeout=T)
    [holder] = client.who_has([f])[f.key]
    has_what = client.has_what()
    assert set(has_what) == set(client.nthreads()) and f.key in has_what[holder]


def test_shutdown_closes_a_cluster_the_client_did_not_start() -> None:
    cluster = LocalCluster(n_workers=1, processes=False)
    client = Client(cluster)
    client.shutdown()
    assert client.status == "closed"
    wait_until(lambda: cluster.status == "closed", what="the cluster is closed")
