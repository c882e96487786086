"""More of the shared surface, checked on both engines: the keywords and methods issue 12
added beyond the first portable tests (cancel(force=), has_what, run's options, scatter's
keywords, as_completed.has_ready, string timeouts in more places)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from .engines import Engine, T
from .tasks import boom, gated, inc, pid, release


def _key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_cancel_with_force_cancels_every_clients_future(eng: Engine, cluster: Any, client: Any) -> None:
    key = _key("forced")
    with eng.Client(cluster) as other:
        mine = client.submit(inc, 1, key=key)
        theirs = other.submit(inc, 1, key=key)
        assert theirs.result(timeout=T) == 2
        client.cancel([mine], force=True)
        # the other client hears it on its own connection: a moment later, on both engines
        deadline = time.monotonic() + T
        while not theirs.cancelled():
            assert time.monotonic() < deadline, "the other client's future never showed cancelled"
            time.sleep(0.01)
        with pytest.raises(eng.CancelledError):
            theirs.result(timeout=T)


def test_has_what_is_the_other_side_of_who_has(client: Any) -> None:
    f = client.submit(inc, 100, key=_key("hw"))
    f.result(timeout=T)
    [holder] = client.who_has([f])[f.key]
    has_what = client.has_what()
    assert set(has_what) == set(client.nthreads())
    assert f.key in has_what[holder]


def test_run_on_error_return_and_ignore(client: Any) -> None:
    got = client.run(boom, "r", on_error="return")
    assert len(got) == 2 and all(isinstance(e, ValueError) for e in got.values())
    assert client.run(boom, "r", on_error="ignore") == {}
    assert len(set(client.run(pid, workers=list(client.nthreads())).values())) == 2


def test_scatter_takes_dasks_keywords(client: Any) -> None:
    [x] = client.scatter([5], broadcast=True, hash=False, timeout="10s")
    assert client.submit(inc, x).result(timeout=T) == 6


def test_as_completed_has_ready(eng: Engine, client: Any, gate: str) -> None:
    slow = client.submit(gated, gate, 1, pure=False)
    seq = eng.as_completed([slow], timeout=T)
    assert not seq.has_ready()
    release(gate)
    eng.wait([slow], timeout=T)
    deadline = time.monotonic() + T
    while not seq.has_ready():  # dask queues it from its loop a moment after the future finishes
        assert time.monotonic() < deadline, "has_ready() never became true"
        time.sleep(0.01)
    assert seq.next() is slow


def test_string_timeouts_in_exception_and_wait_for_workers(eng: Engine, client: Any, gate: str) -> None:
    f = client.submit(gated, gate, 1, pure=False)
    with pytest.raises(eng.TimeoutError):
        f.exception(timeout="50ms")
    release(gate)
    assert f.exception(timeout="30s") is None
    client.wait_for_workers(2, timeout="10s")
