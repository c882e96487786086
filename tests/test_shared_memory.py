"""Large data through shared memory: what arrives, and that no segment outlives its cluster.

Every test points ``LOCALACTORS_SHM_DIR`` at a directory of its own (inside
``/dev/shm`` when there is one), which the cluster's children inherit: the
segments counted are this test's, whatever else runs on the machine. The
lifetime tests kill real processes with real signals: a worker, the manager,
and the user's process itself.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from localactors import Client, LocalCluster
from localactors._base import serialize as S
from localactors._base.errors import SerializationError
from localactors._wire import codec as W
from localactors._wire import protocol as P
from localactors._wire import shm, shm_files

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
T = 30.0


def segments(folder: Path, prefix: str = "la-") -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(prefix))


def unpooled(folder: Path) -> list[str]:
    """The segments not in a sender's pool: those their receiver unlinks at once."""
    return [n for n in segments(folder) if not shm_files.pooled(n)]


class Holder:
    """An actor that echoes large data, and can leave a segment written but never sent."""

    def echo(self, value: Any) -> Any:
        return value

    def describe(self, value: Any) -> tuple[str, int, bool]:
        writable = bool(getattr(getattr(value, "flags", None), "writeable", not isinstance(value, bytes)))
        return type(value).__name__, len(memoryview(value).cast("B")), writable

    def make(self, kind: str, n: int) -> Any:
        if kind == "bytes":
            return bytes(n)
        import numpy as np

        return np.arange(n // 8, dtype=np.float64)

    def hold(self, prefix: str, n: int) -> str:
        self.held = shm.share(b"", [shm.BYTES], [bytes(n)], prefix)
        return self.held.segment

    def pid(self) -> int:
        return os.getpid()


class _Node:
    def __init__(self, authkey: bytes) -> None:
        self.authkey = authkey


def _through_the_wire(payload: bytes) -> Any:
    frames = W.encode(P.CallOk(1, payload))
    msg = W.decode(bytes(frames[0]), [bytearray(f) for f in frames[1:]])
    assert isinstance(msg, P.CallOk)
    return msg.payload


# ---------------------------------------------------------------- what arrives


def test_large_buffers_arrive_through_a_segment(shm_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        holder = client.submit(Holder, actor=True).result(timeout=T)
        big = os.urandom(2 * MB)
        assert holder.echo(big).result(timeout=T) == big
        got = holder.echo(bytearray(big)).result(timeout=T)
        assert type(got) is bytearray and got == big
        view = holder.echo(memoryview(big)).result(timeout=T)
        assert type(view) is memoryview and view == big
        assert holder.echo(memoryview(b"small")).result(timeout=T) == b"small"
        arr = np.arange(MB, dtype=np.float32).reshape(1024, 1024)
        back = holder.echo(arr).result(timeout=T)
        assert back.dtype == arr.dtype and back.shape == arr.shape and (back == arr).all()
        assert back.flags.writeable  # a private mapping: writable, as an unpickled array is
        back[0, 0] = -1.0  # the write stays here
        assert holder.describe(arr).result(timeout=T) == ("ndarray", arr.nbytes, True)
        assert holder.describe(big).result(timeout=T) == ("bytes", len(big), False)
        made = holder.make("array", 16 * MB).result(timeout=T)
        assert made.nbytes == 16 * MB and made[-1] == 16 * MB // 8 - 1
        mixed = holder.echo({"a": [big, 1], "b": (arr, "x")}).result(timeout=T)
        assert mixed["a"] == [big, 1] and (mixed["b"][0] == arr).all()
        assert unpooled(shm_dir) == []  # each unlinked by its receiver at once


def test_a_task_result_fetched_twice_arrives_twice(shm_dir: Path) -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        fut = client.submit(bytes, 3 * MB)
        assert fut.result(timeout=T) == bytes(3 * MB)
        assert client.gather([fut, fut]) == [bytes(3 * MB)] * 2
        assert client.submit(len, fut).result(timeout=T) == 3 * MB  # worker to worker
        assert unpooled(shm_dir) == []


def test_small_payloads_stay_plain_bytes() -> None:
    node = _Node(b"k" * 32)
    assert type(S.dumps(((1, b"x" * 1000), {}), S.SerialContext(node=node), shared=True)) is bytes
    assert type(S.dumps(bytes(2 * MB), S.SerialContext(node=node))) is bytes  # not shared: plain


def test_unpickling_twice_gives_objects_that_do_not_share_memory(shm_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    node = _Node(os.urandom(32))
    payload = _through_the_wire(S.dumps(np.zeros(MB), S.SerialContext(node=node), shared=True))
    a, b = S.loads(payload), S.loads(payload)
    a[0] = 1.0
    assert b[0] == 0.0


def test_the_pickle_stream_itself_goes_when_large(shm_dir: Path) -> None:
    node = _Node(os.urandom(32))
    value = list(range(400_000))
    payload = S.dumps(value, S.SerialContext(node=node), shared=True)
    assert isinstance(payload, shm.Shared) and payload.segment and len(payload) == 0
    assert S.loads(_through_the_wire(payload)) == value
    assert unpooled(shm_dir) == []


# ---------------------------------------------------------------- security


@pytest.mark.parametrize(
    "case", ["untrusted prefix", "path in the name", "wrong size", "symlink", "group-readable", "missing"]
)
def test_receiver_opens_only_what_it_expects(shm_dir: Path, case: str) -> None:
    authkey = os.urandom(32)
    prefix = shm.prefix_for(authkey)
    shm.trust(authkey)
    name = f"{prefix}-{os.getpid()}-1-0123abcd"
    path = shm_dir / name
    size = 2 * MB
    if case == "untrusted prefix":
        name = f"{shm.prefix_for(os.urandom(32))}-{os.getpid()}-1-0123abcd"
        (shm_dir / name).write_bytes(bytes(size))
        os.chmod(shm_dir / name, 0o600)
    elif case == "path in the name":
        name = "../" + name
    elif case == "wrong size":
        path.write_bytes(bytes(size - 1))
        os.chmod(path, 0o600)
    elif case == "symlink":
        target = shm_dir / "target"
        target.write_bytes(bytes(size))
        os.chmod(target, 0o600)
        os.symlink(target, path)
    elif case == "group-readable":
        path.write_bytes(bytes(size))
        os.chmod(path, 0o640)
    payload = shm._claim(b"", name, size, ((shm.BYTES, 0, size),))
    assert payload.error and payload.mapping is None
    with pytest.raises(SerializationError, match="shared-memory segment"):
        S.loads(payload)


def test_a_bad_segment_fails_the_call_not_the_link(shm_dir: Path) -> None:
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
        holder = client.submit(Holder, actor=True).result(timeout=T)
        forged = shm._blank(pickle.dumps(((0,), {}), protocol=5))
        forged.segment, forged.size, forged.spans = f"{shm.prefix_for(cluster.authkey)}-1-1-deadbeef", MB, ()
        fut = holder._send("echo", P.CallKind.METHOD, forged)
        with pytest.raises(SerializationError, match="shared-memory segment"):
            fut.result(timeout=T)
        assert holder.echo(1).result(timeout=T) == 1  # the link lives on


def test_segments_are_private_to_their_user(shm_dir: Path) -> None:
    prefix = shm.prefix_for(os.urandom(32))
    payload = shm.share(b"", [shm.BYTES], [bytes(2 * MB)], prefix)
    st = os.stat(shm_dir / payload.segment)
    assert st.st_mode & 0o777 == 0o600
    shm.sweep(prefix)
    assert segments(shm_dir) == []


# ---------------------------------------------------------------- no room: the socket


def test_no_room_falls_back_to_the_socket_with_one_log_line(
    shm_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(shm_files, "_warned", False)
    real_pwrite = os.pwrite

    def full(fd: int, data: Any, offset: int) -> int:  # room for 1 MiB: a short write, then ENOSPC
        if offset >= MB:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, memoryview(data)[: MB - offset], offset)

    monkeypatch.setattr(shm.os, "pwrite", full)
    node = _Node(os.urandom(32))
    caplog.set_level(logging.WARNING, logger="localactors.shm")
    for _ in range(3):
        value = os.urandom(3 * MB)
        payload = S.dumps(((value,), {}), S.SerialContext(node=node), shared=True)
        assert isinstance(payload, shm.Shared) and not payload.segment
        assert S.loads(_through_the_wire(payload)) == ((value,), {})
    assert segments(shm_dir) == []  # the part-written one was unlinked
    assert len([r for r in caplog.records if r.name == "localactors.shm"]) == 1


def test_a_64_mb_shm_directory_sends_100_mb_through_the_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    small = tmp_path / "shm"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        monkeypatch.setenv("LOCALACTORS_SHM_DIR", str(small))
        with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
            holder = client.submit(Holder, actor=True).result(timeout=T)
            big = bytes(100 * MB)
            assert holder.describe(big).result(timeout=T) == ("bytes", 100 * MB, False)
            assert len(holder.make("bytes", 100 * MB).result(timeout=T)) == 100 * MB
            assert len(holder.echo(bytes(40 * MB)).result(timeout=T)) == 40 * MB  # fits: a segment
            assert segments(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


# ---------------------------------------------------------------- lifetime


def test_no_segment_survives_a_closed_cluster(shm_dir: Path) -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        prefix = shm.prefix_for(cluster.authkey)
        holders = [client.submit(Holder, actor=True, workers=[w.name]).result(timeout=T) for w in cluster.workers]
        for h in holders:
            h.hold(prefix, 2 * MB).result(timeout=T)
        mine = shm.share(b"", [shm.BYTES], [bytes(2 * MB)], prefix)  # written here, never sent
        assert len(segments(shm_dir, prefix)) == 3
    assert segments(shm_dir) == []
    shm_files.unlink(mine.segment)


def test_no_segment_survives_a_sigkilled_worker(shm_dir: Path) -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        prefix = shm.prefix_for(cluster.authkey)
        victim = client.submit(Holder, actor=True, workers=[cluster.workers[0].name]).result(timeout=T)
        pid = victim.pid().result(timeout=T)
        name = victim.hold(prefix, 4 * MB).result(timeout=T)
        assert segments(shm_dir) == [name]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not segments(shm_dir), T, "the dead worker's segment unlinked")
        other = client.submit(Holder, actor=True, workers=[cluster.workers[-1].name]).result(timeout=T)
        assert len(other.echo(bytes(2 * MB)).result(timeout=T)) == 2 * MB  # the cluster goes on
        assert unpooled(shm_dir) == []


def test_no_segment_survives_a_sigkilled_manager(shm_dir: Path) -> None:
    with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:
        prefix = shm.prefix_for(cluster.authkey)
        holders = [client.submit(Holder, actor=True, workers=[w.name]).result(timeout=T) for w in cluster.workers]
        pids = [h.pid().result(timeout=T) for h in holders]
        for h in holders:
            h.hold(prefix, 2 * MB).result(timeout=T)
        assert len(segments(shm_dir)) == 2
        os.kill(cluster._process.pid, signal.SIGKILL)
        # the cluster kills the manager's process group, then sweeps what its members wrote
        wait_until(lambda: not segments(shm_dir), T, "the workers' segments unlinked")
        wait_until(lambda: not any(_alive(p) for p in pids), T, "the workers gone")
    assert segments(shm_dir) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


USER_PROGRAM = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    from localactors import Client, LocalCluster
    from localactors._wire import shm
    from test_shared_memory import Holder

    if __name__ == "__main__":
        cluster = LocalCluster(n_workers=1)
        client = Client(cluster)
        prefix = shm.prefix_for(cluster.authkey)
        holder = client.submit(Holder, actor=True).result(timeout=30)
        holder.hold(prefix, 2 << 20).result(timeout=30)
        shm.share(b"", [shm.BYTES], [bytes(2 << 20)], prefix)  # the user's own, never sent
        pids = [cluster._process.pid] + [w.pid for w in cluster.workers]
        print(prefix, *pids, flush=True)
        time.sleep(60)
    """
)


def test_no_segment_survives_a_sigkilled_user_process(shm_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(USER_PROGRAM.format(root=str(ROOT), tests=str(ROOT / "tests")))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        prefix, *pids = proc.stdout.readline().split()
        assert len(segments(shm_dir, prefix)) == 2
        proc.kill()
        proc.wait(T)
        # the manager sees its parent go, exits, and sweeps the cluster's prefix
        wait_until(lambda: not segments(shm_dir, prefix), T, "the cluster's segments swept")
        wait_until(lambda: not any(_alive(int(p)) for p in pids), T, "the manager and worker gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(T)
