"""Bad input at every boundary: each fails by name where it was made, and nothing else breaks.

One bad object per boundary (CPython's concurrent.futures fault catalogue):
arguments that will not pickle or will not unpickle, results and exceptions
that will not pickle or will not be rebuilt, objects nested too deeply,
100 MB messages and many large messages crossing at once, and calls after
close. After each, the actor or worker involved must still serve.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from localactors import (
    ActorLostError,
    Client,
    ClusterClosedError,
    LocalCluster,
    RemoteError,
    RemoteTraceback,
    SerializationError,
)

MiB = 2**20


class Recorder:
    """Remembers every call that reached it."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def record(self, value: Any) -> int:
        self.log.append(value)
        return len(self.log)

    def count(self) -> int:
        return len(self.log)

    def give_lock(self) -> Any:
        return threading.Lock()

    def raise_unpicklable(self) -> None:
        raise ValueError("holding a lock", threading.Lock())

    def raise_odd(self) -> None:
        raise OddError("a", "b")

    def raise_homesick(self) -> None:
        raise HomesickError("only at home")

    def give_homesick(self) -> Any:
        return Homesick()

    def deep(self, depth: int) -> Any:
        return nest(depth)

    def echo(self, data: bytes) -> bytes:
        return data

    def make(self, size: int) -> bytes:
        return os.urandom(16) * (size // 16)

    def swap(self, other: Any, size: int) -> int:
        """Send ``size`` bytes to another actor while the client sends to us."""
        back: bytes = other.echo(b"y" * size).result(timeout=60)
        return len(back)


class OddError(Exception):
    """Pickles, but cannot be rebuilt: ``__init__`` wants two arguments, args holds one."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}+{b}")


def _only_in_a_worker(*args: Any) -> Any:
    if os.environ.get("LOCALACTORS_TEST_HOME") != "worker":
        raise ImportError("this class lives only in the worker")
    return args


class HomesickError(Exception):
    """Rebuilds in the worker (so it is sent as itself) but not in the client."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_homesick, self.args)


def _rebuild_homesick(*args: Any) -> HomesickError:
    _only_in_a_worker()
    return HomesickError(*args)


class Homesick:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_homesick_value, ())


def _rebuild_homesick_value() -> Homesick:
    _only_in_a_worker()
    return Homesick()


class BadUnpickle:
    """Pickles in the caller, raises when the worker unpickles it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_fail_to_load, ())


def _fail_to_load() -> None:
    raise RuntimeError("cannot load me here")


class ExitAtUnpickle:
    """Pickles in the caller; unpickling it ends the worker's process."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os._exit, (7,))


def nest(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def mark_worker() -> None:
    os.environ["LOCALACTORS_TEST_HOME"] = "worker"


def inc(x: int) -> int:
    return x + 1


def give_lock() -> Any:
    return threading.Lock()


def size_of(data: bytes) -> int:
    return len(data)


def call_and_wait(actor: Any, method: str, arg: Any) -> Any:
    return getattr(actor, method)(arg).result(timeout=120)


@pytest.fixture(scope="module")
def recorder(client: Client) -> Iterator[Any]:
    for name in client.scheduler_info()["workers"]:
        client.submit(mark_worker, workers=[name], pure=False).result(timeout=30)
    actor = client.submit(Recorder, actor=True).result(timeout=30)
    yield actor
    del actor


# ---------------------------------------------------------------- arguments


def test_unpicklable_argument_fails_at_the_call_site(recorder: Any) -> None:
    before = recorder.count().result(timeout=10)
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        recorder.record([1, {"deep": threading.Lock()}])
    assert recorder.count().result(timeout=10) == before  # nothing was sent
    assert recorder.record(1).result(timeout=10) == before + 1


def test_unpicklable_task_argument_fails_at_submit(client: Client) -> None:
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        client.submit(inc, threading.Lock())
    assert client.submit(inc, 1).result(timeout=10) == 2


def test_argument_that_will_not_unpickle_in_the_worker(recorder: Any) -> None:
    with pytest.raises(SerializationError, match="cannot unpickle") as info:
        recorder.record(BadUnpickle()).result(timeout=10)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "cannot load me here" in str(info.value.__cause__)
    assert recorder.count().result(timeout=10) >= 0


def test_argument_that_kills_the_worker_when_unpickled() -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        actor = client.submit(Recorder, actor=True).result(timeout=30)
        with pytest.raises(ActorLostError, match="exited with code 7") as info:
            actor.record(ExitAtUnpickle()).result(timeout=10)
        assert info.value.exitcode == 7
        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


def test_too_deep_argument_fails_clearly(recorder: Any) -> None:
    with pytest.raises(SerializationError, match="nested too deeply"):
        recorder.record(nest(100_000))
    assert recorder.record("after").result(timeout=10) >= 1


# ---------------------------------------------------------------- results and exceptions


def test_unpicklable_result_carries_the_remote_traceback(recorder: Any) -> None:
    with pytest.raises(SerializationError, match=r"_thread\.lock") as info:
        recorder.give_lock().result(timeout=10)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "Traceback" in str(info.value.__cause__)
    assert recorder.record("still fine").result(timeout=10) >= 1


def test_unpicklable_task_result(client: Client) -> None:
    fut = client.submit(give_lock)
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        fut.result(timeout=10)
    assert client.submit(inc, 2).result(timeout=10) == 3


def test_too_deep_result_fails_clearly(recorder: Any) -> None:
    with pytest.raises(SerializationError, match="nested too deeply"):
        recorder.deep(100_000).result(timeout=30)
    assert recorder.count().result(timeout=10) >= 0


def test_unpicklable_exception_arrives_as_a_wrapper(recorder: Any) -> None:
    with pytest.raises(RemoteError) as info:
        recorder.raise_unpicklable().result(timeout=10)
    err = info.value
    assert err.type_name == "builtins.ValueError" and "holding a lock" in err.message
    assert isinstance(err.__cause__, RemoteTraceback) and "raise_unpicklable" in str(err.__cause__)


def test_exception_with_odd_init_arrives_as_a_wrapper(recorder: Any) -> None:
    with pytest.raises(RemoteError) as info:
        recorder.raise_odd().result(timeout=10)
    err = info.value
    assert err.type_name.endswith("OddError") and "a+b" in err.message
    assert "raise_odd" in str(err.__cause__)


def test_exception_that_only_rebuilds_in_the_worker(recorder: Any) -> None:
    with pytest.raises(RemoteError) as info:
        recorder.raise_homesick().result(timeout=10)
    err = info.value
    assert err.type_name.endswith("HomesickError") and "only at home" in err.message
    assert "raise_homesick" in str(err.__cause__)


def test_result_that_only_rebuilds_in_the_worker(recorder: Any) -> None:
    with pytest.raises(SerializationError, match="cannot unpickle"):
        recorder.give_homesick().result(timeout=10)
    assert recorder.count().result(timeout=10) >= 0


# ---------------------------------------------------------------- large messages


def test_100_mb_both_ways(recorder: Any, client: Client) -> None:
    data = b"z" * (100 * MiB)
    back = recorder.echo(data).result(timeout=120)
    assert len(back) == len(data) and back[:4] == b"zzzz"
    del back
    fut = client.submit(size_of, data)
    assert fut.result(timeout=120) == 100 * MiB
    big = recorder.make(100 * MiB).result(timeout=120)
    assert len(big) == 100 * MiB


def test_many_large_messages_cross_at_once(client: Client) -> None:
    names = sorted(client.scheduler_info()["workers"])
    a, a2 = (client.submit(Recorder, actor=True, workers=[names[0]]).result(timeout=30) for _ in "12")
    b, b2 = (client.submit(Recorder, actor=True, workers=[names[-1]]).result(timeout=30) for _ in "12")
    size = 8 * MiB
    payload = b"q" * size
    with ThreadPoolExecutor(8) as pool:
        # the client pushes to both workers while they push to each other and back
        # (a.swap(b) with b.swap(a) would be the callers' own deadlock: each actor
        # waits inside a method for the other; so the pairs are distinct actors)
        echoes = [pool.submit(call_and_wait, x, "echo", payload) for x in (a, b) * 3]
        makes = [pool.submit(call_and_wait, x, "make", size) for x in (a, b)]
        swaps = [a2.swap(b, size), b2.swap(a, size)]
        assert all(len(f.result(timeout=120)) == size for f in echoes + makes)
        assert [f.result(timeout=120) for f in swaps] == [size, size]


def test_large_messages_through_the_manager_relay(cluster: LocalCluster) -> None:
    with Client(cluster, direct_to_workers=False) as relayed:
        actor = relayed.submit(Recorder, actor=True).result(timeout=30)
        futs = [actor.echo(b"r" * (4 * MiB)) for _ in range(4)]
        assert [len(f.result(timeout=120)) for f in futs] == [4 * MiB] * 4


# ---------------------------------------------------------------- after close


def test_everything_after_close_is_cluster_closed(cluster: LocalCluster) -> None:
    client = Client(cluster)
    actor = client.submit(Recorder, actor=True).result(timeout=30)
    fut = client.submit(inc, 10, pure=False)
    assert fut.result(timeout=10) == 11
    client.close()
    with pytest.raises(ClusterClosedError):
        client.submit(inc, 1)
    with pytest.raises(ClusterClosedError):
        client.map(inc, [1, 2])
    with pytest.raises(ClusterClosedError):
        client.scatter([1])
    with pytest.raises(ClusterClosedError):
        actor.record(1)
    with pytest.raises(ClusterClosedError):
        actor.log  # noqa: B018 -- an attribute read is a call
    with pytest.raises(ClusterClosedError):
        fut.result(timeout=5)
