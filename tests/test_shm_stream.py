"""Streamed segments: large ``bytes`` written behind the message, copied by the receiver as chunks land.

Small chunks (64 KiB) make many chunk boundaries out of a few MiB. The
sender's writer thread runs in this process for most tests (the receiver is
this process too: its lock is a different open file, so it still waits); a
sender SIGKILLed part-way runs in a child process of its own.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import pickle
import signal
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
from localactors._base.errors import SerializationError
from localactors._wire import shm, shm_closer, shm_raw, shm_stream

ROOT = Path(__file__).resolve().parent.parent
KB = 1 << 10
MB = 1 << 20
T = 30.0
CHUNK = 64 * KB


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not shm_stream.AVAILABLE:
        pytest.skip("no open-file-description locks here: nothing is streamed")
    monkeypatch.setattr(shm_stream, "CHUNK", CHUNK)
    monkeypatch.setattr(shm, "STREAM_MIN", 2 * MB)
    yield


def _send(value: Any, node: _Node) -> shm.Shared:
    payload = S.dumps(value, S.SerialContext(node=node), shared=True)
    assert isinstance(payload, shm.Shared)
    return payload


def _round_trip(value: Any) -> Any:
    payload = _send(value, _Node(os.urandom(32)))
    assert payload.segment and payload.chunk == CHUNK  # streamed
    return S.loads(_through_the_wire(payload))


# ---------------------------------------------------------------- what arrives


@pytest.mark.parametrize("size", [2 * MB, 2 * MB + 1, 3 * MB - 1, 2 * MB + CHUNK // 2, 5 * MB + 4097])
def test_content_arrives_whole_across_chunk_boundaries(shm_dir: Path, small_chunks: None, size: int) -> None:
    big = os.urandom(size)
    got = _round_trip(big)
    assert type(got) is bytes and got == big
    gc.collect()
    assert unpooled(shm_dir) == []


def test_several_buffers_nested_in_containers(shm_dir: Path, small_chunks: None) -> None:
    a, b, c = os.urandom(2 * MB + 3), os.urandom(1 * MB + 5), os.urandom(3 * MB)
    mutable = bytearray(os.urandom(MB + 7))
    value = {"a": [a, 1, (b, "x")], "c": c, "same": a, "m": mutable, "v": memoryview(c)}
    got = _round_trip(value)
    assert got["a"] == [a, 1, (b, "x")] and got["c"] == c and got["same"] == a
    assert got["same"] is got["a"][0]  # one object sent once arrives as one object
    assert type(got["m"]) is bytearray and got["m"] == mutable
    assert type(got["v"]) is memoryview and got["v"] == c


def test_a_large_pickle_stream_is_streamed_too(shm_dir: Path, small_chunks: None) -> None:
    value = [os.urandom(16) for _ in range(200_000)]  # about 7 MB in band
    assert _round_trip(value) == value


def test_numpy_arrays_beside_streamed_bytes(shm_dir: Path, small_chunks: None) -> None:
    np = pytest.importorskip("numpy")
    arr = np.arange(MB, dtype=np.float64)
    big = os.urandom(3 * MB)
    got = _round_trip((arr, big))
    assert (got[0] == arr).all() and got[0].flags.writeable and got[1] == big


def test_a_bytearray_is_written_before_dumps_returns(shm_dir: Path, small_chunks: None) -> None:
    original = os.urandom(3 * MB)
    mutable = bytearray(original)
    payload = _send((mutable, os.urandom(3 * MB)), _Node(os.urandom(32)))
    assert payload.chunk  # the bytes are streamed, the bytearray is not
    mutable[:] = bytes(len(mutable))  # the caller may change it once the call is sent
    got = S.loads(_through_the_wire(payload))
    assert got[0] == original


def test_unpickled_twice(shm_dir: Path, small_chunks: None) -> None:
    big = os.urandom(3 * MB)
    payload = _through_the_wire(_send([big, bytearray(big)], _Node(os.urandom(32))))
    first, second = S.loads(payload), S.loads(payload)
    assert first == second == [big, bytearray(big)]
    assert first[1] is not second[1]


def test_small_payloads_are_not_streamed(shm_dir: Path, small_chunks: None) -> None:
    big = os.urandom(MB + 1)
    payload = _send(big, _Node(os.urandom(32)))
    assert payload.segment and payload.chunk == 0
    assert S.loads(_through_the_wire(payload)) == big


def test_without_ctypes_the_receiver_waits_then_reads(
    shm_dir: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm_raw, "_api", False)
    big = os.urandom(3 * MB + 11)
    assert _round_trip({"x": big}) == {"x": big}


def test_without_locks_everything_is_written_first(
    shm_dir: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(fd: int, start: int, length: int) -> bool:
        return False

    monkeypatch.setattr(shm_stream, "lock", refused)
    big = os.urandom(3 * MB)
    payload = _send(big, _Node(os.urandom(32)))
    assert payload.segment and payload.chunk == 0
    assert S.loads(_through_the_wire(payload)) == big


def test_through_a_cluster_both_ways(shm_dir: Path) -> None:
    big = os.urandom(2 * shm.STREAM_MIN + 12_345)  # real chunks, in real processes
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        holder = client.submit(Holder, actor=True).result(timeout=T)
        assert holder.echo(big).result(timeout=T) == big
        got = holder.echo({"k": [big, big[:-1]]}).result(timeout=T)
        assert got == {"k": [big, big[:-1]]}
        assert holder.describe(big).result(timeout=T) == ("bytes", len(big), False)
    assert segments(shm_dir) == []


# ---------------------------------------------------------------- the sender fails part-way


def test_no_room_part_way_fails_the_call_with_a_named_error(
    shm_dir: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_pwrite = os.pwrite

    def full(fd: int, data: Any, offset: int) -> int:  # another process takes the room part-way
        if offset >= 2 * MB:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(shm_stream.os, "pwrite", full)
    caplog.set_level(logging.WARNING, logger="localactors.shm")
    payload = _through_the_wire(_send(((os.urandom(4 * MB),), {}), _Node(os.urandom(32))))
    with pytest.raises(SerializationError, match="ran out of room"):
        S.loads(payload)
    with pytest.raises(SerializationError, match="ran out of room"):
        S.loads(payload)  # and again: never the part that was written
    assert len([r for r in caplog.records if "part-way" in r.getMessage()]) == 1
    del payload
    gc.collect()
    assert segments(shm_dir) == []


SENDER = textwrap.dedent(
    """
    import os, pickle, sys, threading
    sys.path[:0] = [{root!r}, {tests!r}]
    from localactors._base import serialize as S
    from localactors._wire import codec as W, protocol as P, shm, shm_stream
    from test_shared_memory import _Node

    shm_stream.CHUNK = {chunk}
    shm.STREAM_MIN = 1 << 20
    real_pwrite = os.pwrite
    stuck = threading.Event()

    def pwrite(fd, data, offset):
        if offset >= {stop}:  # the writer gets this far, and no further
            stuck.wait()
        return real_pwrite(fd, data, offset)

    os.pwrite = pwrite
    payload = S.dumps(bytes(range(256)) * {n}, S.SerialContext(node=_Node(bytes.fromhex(sys.argv[1]))), shared=True)
    print(pickle.dumps(payload, protocol=5).hex(), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("opened", ["before", "after"])
def test_a_sender_killed_part_way_fails_the_receiver(shm_dir: Path, tmp_path: Path, opened: str) -> None:
    authkey = os.urandom(32)
    shm.trust(authkey)
    script = tmp_path / "sender.py"
    n = 4 * MB // 256
    script.write_text(SENDER.format(root=str(ROOT), tests=str(ROOT / "tests"), chunk=CHUNK, stop=MB, n=n))
    proc = subprocess.Popen(
        [sys.executable, str(script), authkey.hex()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the sender did not start"
        if opened == "after":  # the receiver opens the segment only once its sender is dead
            proc.kill()
            proc.wait(T)
        payload = pickle.loads(bytes.fromhex(line))  # opens it, as a link's reader would
        assert isinstance(payload, shm.Shared) and payload.chunk == CHUNK and not payload.error
        failure: list[BaseException] = []

        def receive() -> None:
            try:
                S.loads(payload)
            except BaseException as err:
                failure.append(err)

        receiver = threading.Thread(target=receive)
        receiver.start()
        if opened == "before":  # the receiver may be waiting for a chunk already
            proc.send_signal(signal.SIGKILL)
            proc.wait(T)
        receiver.join(T)
        assert not receiver.is_alive(), "the receiver hangs on a dead sender"
        assert len(failure) == 1 and isinstance(failure[0], SerializationError)
        assert "died part-way" in str(failure[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(T)
    assert segments(shm_dir) == []


def _open_here(name: str) -> bool:
    """Does this process hold a descriptor of the (unlinked) segment ``name``?"""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if name in os.readlink(f"/proc/self/fd/{fd}"):
                return True
        except OSError:
            pass
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_large_received_segment_is_closed_by_the_closer_thread(
    shm_dir: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm_closer, "CLOSE_LATER", 2 * MB)
    big = os.urandom(3 * MB)
    payload = _through_the_wire(_send(big, _Node(os.urandom(32))))
    name = payload.reader.name if payload.reader is not None else ""
    assert _open_here(name)
    assert S.loads(payload) == big
    del payload
    wait_until(lambda: not _open_here(name), T, "the segment closed")
    # the closer ends by itself once idle (the leak check after this test waits for it)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_writing_does_not_hold_the_lock(
    shm_dir: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite
    stuck = threading.Event()

    def slow(fd: int, data: Any, offset: int) -> int:
        if offset >= 2 * MB:  # the writer waits here until the child has looked
            stuck.wait(T)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(shm_stream.os, "pwrite", slow)
    big = os.urandom(4 * MB)
    payload = _send(big, _Node(os.urandom(32)))
    writing = set(shm_stream._writing)
    assert len(writing) == 1
    pid = os.fork()
    if pid == 0:  # the child: its copy of the writer's descriptor is closed
        try:
            os.fstat(writing.pop())
        except OSError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    stuck.set()
    assert os.waitstatus_to_exitcode(status) == 0
    assert S.loads(_through_the_wire(payload)) == big
