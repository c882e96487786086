"""Pooled segments: a sender writes copied-out data into its own segments again, once their receiver let go.

Most tests send and receive in this process (the receiver's side is a
different open file, as in another process); the counts come from
``shm_pool.stats``, which noise cannot move. A receiver SIGKILLed while it
holds a segment is a child process of its own; the pool's lifetime with
real workers is in ``test_shared_memory``.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from test_shared_memory import Holder, _Node, _through_the_wire, segments, unpooled

from localactors import Client, LocalCluster
from localactors._base import serialize as S
from localactors._wire import shm, shm_files, shm_pool, shm_stream

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
T = 30.0


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """An empty pool for this test, and its counts."""
    stats = dict.fromkeys(shm_pool.stats, 0)
    monkeypatch.setattr(shm_pool, "_pool", [])
    monkeypatch.setattr(shm_pool, "_draining", [])
    monkeypatch.setattr(shm_pool, "stats", stats)
    yield stats


def _send(value: Any, node: _Node) -> shm.Shared:
    payload = S.dumps(value, S.SerialContext(node=node), shared=True)
    assert isinstance(payload, shm.Shared) and payload.segment
    return payload


def _written() -> None:
    wait_until(lambda: not shm_stream._writing, T, "the writer threads done")


def test_a_sender_writes_its_segment_again(shm_dir: Path, pool: dict[str, int]) -> None:
    node = _Node(os.urandom(32))
    names = set()
    for _ in range(10):
        value = os.urandom(6 * MB)  # streamed; new contents each time
        payload = _send(value, node)
        names.add(payload.segment)
        assert S.loads(_through_the_wire(payload)) == value
        _written()
    assert pool["created"] == 1 and pool["reused"] == 9
    assert pool["mapped"] == 1  # from the second send on: a copy into its mapping
    assert len(names) == 1 and shm_files.pooled(names.pop())
    assert len(segments(shm_dir)) == 1


def test_smaller_fits_larger_grows(shm_dir: Path, pool: dict[str, int]) -> None:
    node = _Node(os.urandom(32))
    for size in (3 * MB, 2 * MB, 7 * MB + 5, 5 * MB):
        value = os.urandom(size)
        assert S.loads(_through_the_wire(_send([value, bytearray(value)], node))) == [value, bytearray(value)]
        _written()
    assert pool["created"] == 1 and pool["reused"] == 3 and pool["grown"] == 1


def test_a_segment_its_receiver_holds_is_not_written(shm_dir: Path, pool: dict[str, int]) -> None:
    node = _Node(os.urandom(32))
    first = os.urandom(6 * MB)
    held = _through_the_wire(_send(first, node))  # opened, not yet read
    assert held.reader is not None
    name = held.reader.name
    second = os.urandom(6 * MB)
    other = _send(second, node)
    assert other.segment != name
    assert S.loads(_through_the_wire(other)) == second
    _written()
    assert S.loads(held) == first  # untouched
    del held
    gc.collect()
    third = os.urandom(6 * MB)
    again = _send(third, node)
    assert S.loads(_through_the_wire(again)) == third
    assert pool["created"] == 2 and pool["reused"] == 1
    assert again.segment in (name, other.segment)


def test_a_receiver_that_lets_go_early_waits_for_the_writer(
    shm_dir: Path, pool: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_put = shm_stream.put
    gate = threading.Event()

    def slow(fd: int, view: memoryview, offset: int, mapped: Any = None) -> None:
        if offset >= 2 * MB:
            gate.wait(T)
        real_put(fd, view, offset, mapped)

    monkeypatch.setattr(shm_stream, "put", slow)
    node = _Node(os.urandom(32))
    first = _send(os.urandom(6 * MB), node)
    received = _through_the_wire(first)
    del received  # dropped unread (a cancelled call): its segment is FREE, its writer still writes
    gc.collect()
    second = _send(os.urandom(6 * MB), node)
    assert second.segment != first.segment
    gate.set()
    _written()
    value = os.urandom(6 * MB)
    third = _send(value, node)
    assert third.segment == first.segment
    assert S.loads(_through_the_wire(third)) == value


def test_the_pool_is_bounded(shm_dir: Path, pool: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shm_pool, "SEGMENTS", 2)
    monkeypatch.setattr(shm_pool, "BYTES", 16 * MB)
    node = _Node(os.urandom(32))
    held = [_through_the_wire(_send(os.urandom(5 * MB), node)) for _ in range(4)]  # all held
    assert pool["created"] == 2
    assert len(segments(shm_dir)) == 2 and unpooled(shm_dir) == []  # (the other two: unlinked by their receiver)
    big = os.urandom(17 * MB)  # more than the pool may hold
    assert S.loads(_through_the_wire(_send(big, node))) == big
    assert pool["created"] == 2
    for payload in held:
        assert len(S.loads(payload)) == 5 * MB


def test_numpy_arrays_never_come_from_the_pool(shm_dir: Path, pool: dict[str, int]) -> None:
    np = pytest.importorskip("numpy")
    node = _Node(os.urandom(32))
    arr = np.arange(MB, dtype=np.float64)
    for _ in range(3):
        payload = _send([arr, os.urandom(5 * MB)], node)
        assert not shm_files.pooled(payload.segment)
        got = S.loads(_through_the_wire(payload))
        assert (got[0] == arr).all()
    assert pool["created"] == 0 and segments(shm_dir) == []


def test_a_pooled_name_with_buffers_to_map_is_refused(shm_dir: Path, pool: dict[str, int]) -> None:
    authkey = os.urandom(32)
    shm.trust(authkey)
    name = f"{shm.prefix_for(authkey)}-{os.getpid()}-p1-0123abcd"
    (shm_dir / name).write_bytes(bytes(2 * MB))
    os.chmod(shm_dir / name, 0o600)
    payload = shm._claim(b"", name, 2 * MB, ((shm.VIEW, 64, MB),))
    assert "pooled" in payload.error
    del payload
    assert segments(shm_dir) == [name]  # a pooled one stays for its sender


def test_idle_segments_are_unlinked(shm_dir: Path, pool: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shm_pool, "IDLE", 0.2)
    monkeypatch.setattr(shm_pool, "ROUND", 0.05)
    node = _Node(os.urandom(32))
    value = os.urandom(6 * MB)
    held = _through_the_wire(_send(value, node))  # held past the idle time
    assert held.reader is not None
    name = held.reader.name
    assert S.loads(_through_the_wire(_send(value, node))) == value  # a second one, free
    assert len(segments(shm_dir)) == 2
    wait_until(lambda: len(segments(shm_dir)) == 1, T, "the idle free one unlinked")
    wait_until(lambda: not shm_pool._pool, T, "the held one out of the pool")
    assert shm_pool.names() == [name]  # draining
    del held
    gc.collect()
    assert S.loads(_through_the_wire(_send(value, node))) == value  # a send unlinks the drained one
    assert len(segments(shm_dir)) == 1 and pool["created"] == 3
    wait_until(lambda: not segments(shm_dir), T, "the last one unlinked")
    wait_until(lambda: not shm_pool._keeper.is_set(), T, "the keeper ended")


RECEIVER = textwrap.dedent(
    """
    import os, pickle, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from localactors._wire import shm, shm_files

    shm.trust(bytes.fromhex(sys.argv[1]))
    payload = pickle.loads(bytes.fromhex(sys.stdin.readline()))  # opens it, as a link's reader would
    assert payload.reader is not None and not payload.error
    print("opened", flush=True)
    sys.stdin.read()
    """
)


def test_a_killed_receiver_does_not_let_its_segment_be_written(
    shm_dir: Path, tmp_path: Path, pool: dict[str, int]
) -> None:
    import pickle

    authkey = os.urandom(32)
    node = _Node(authkey)
    script = tmp_path / "receiver.py"
    script.write_text(RECEIVER.format(root=str(ROOT), tests=str(ROOT / "tests")))
    first = os.urandom(6 * MB)
    payload = _send(first, node)
    _written()
    proc = subprocess.Popen(
        [sys.executable, str(script), authkey.hex()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(pickle.dumps(payload, protocol=5).hex() + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "opened"
        proc.kill()
        proc.wait(T)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(T)
    second = os.urandom(6 * MB)
    other = _send(second, node)
    assert other.segment != payload.segment  # still BUSY: never written again
    assert S.loads(_through_the_wire(other)) == second
    shm.release_created()  # what the sender's exit does
    assert segments(shm_dir) == []


def test_through_a_cluster_each_side_reuses(shm_dir: Path) -> None:
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        holder = client.submit(Holder, actor=True).result(timeout=T)
        before = dict(shm_pool.stats)
        for _ in range(8):
            value = os.urandom(5 * MB)
            assert holder.echo(value).result(timeout=T) == value
        assert shm_pool.stats["created"] - before["created"] <= 2  # (a receiver may still hold one)
        assert shm_pool.stats["reused"] - before["reused"] >= 6
        worker = client.submit(_stats, workers=[cluster.workers[0].name]).result(timeout=T)
        assert worker["created"] <= 2 and worker["reused"] >= 6
        assert len(segments(shm_dir)) <= 4 and unpooled(shm_dir) == []
    assert segments(shm_dir) == []  # swept when the cluster closed


def _stats() -> dict[str, int]:
    return dict(shm_pool.stats)
