"""Seeing what happens: forwarded output, actor statistics, ``top``, ``progress``."""

from __future__ import annotations

import io
import logging
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
from helpers import eventually

from localactors import Client, LocalCluster, progress
from localactors._client.cluster_file import find_clusters, locate, read_cluster_file

T = 10  # every blocking call's timeout


class Talker:
    def say(self, text: str) -> str:
        print(text)
        print(f"to stderr: {text}", file=sys.stderr)
        logging.getLogger("talker").warning("logged: %s", text)
        return text

    def fail(self) -> None:
        raise ValueError("on purpose")

    def last_words(self) -> None:
        sys.stdout.write("last words, no newline")
        sys.stdout.flush()
        os._exit(3)


# ----------------------------------------------------------------- output


def test_worker_output_and_logging_reach_us_prefixed(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    talker = client.submit(Talker, actor=True).result(timeout=T)
    talker.say("hello").result(timeout=T)
    pid = client.scheduler_info()["workers"][talker.worker]["pid"]
    prefix = f"({talker.worker} pid={pid}) "
    out, err = "", ""

    def arrived() -> bool:
        nonlocal out, err
        o, e = capsys.readouterr()
        out, err = out + o, err + e
        return "hello\n" in out and "logged: hello" in err

    assert eventually(arrived, T), (out, err)
    assert prefix + "hello\n" in out
    assert prefix + "to stderr: hello\n" in err
    assert prefix + "WARNING talker: logged: hello\n" in err


def test_last_words_of_a_dying_worker_arrive(capsys: pytest.CaptureFixture[str]) -> None:
    with LocalCluster(n_workers=1) as cluster, Client(cluster) as c:
        talker = c.submit(Talker, actor=True).result(timeout=T)
        pid = c.scheduler_info()["workers"][talker.worker]["pid"]
        with pytest.raises(Exception):  # noqa: B017 -- which error is the failure docs' business
            talker.last_words().result(timeout=T)
        seen = ""

        def arrived() -> bool:
            nonlocal seen
            seen += capsys.readouterr().out
            return "last words" in seen

        assert eventually(arrived, T), seen
        assert f"({talker.worker} pid={pid}) last words, no newline\n" in seen


def test_forward_output_false_leaves_the_descriptors_alone(capfd: pytest.CaptureFixture[str]) -> None:
    with LocalCluster(n_workers=1, forward_output=False) as cluster, Client(cluster) as c:
        talker = c.submit(Talker, actor=True).result(timeout=T)
        talker.say("plain").result(timeout=T)
        seen = ""

        def arrived() -> bool:
            nonlocal seen
            seen += capfd.readouterr().out
            return "plain" in seen

        assert eventually(arrived, T), seen
        assert "plain\n" in seen and "pid=" not in seen.split("plain")[0][-30:]


# ----------------------------------------------------------------- statistics


def test_actor_stats_count_calls_errors_and_latency(client: Client) -> None:
    talker = client.submit(Talker, actor=True).result(timeout=T)
    for i in range(3):
        talker.say(str(i)).result(timeout=T)
    with pytest.raises(ValueError):
        talker.fail().result(timeout=T)
    stats = client.actor_stats()[talker.key]
    assert stats["class"] == "Talker" and stats["worker"] == talker.worker
    assert stats["calls"] == 4 and stats["errors"] == 1
    assert 0 < stats["mean_latency"] <= stats["max_latency"]
    assert stats["queued"] == 0 and stats["running"] == 0


GATE = threading.Event()  # in-process, the actor and the test share this module


class Gated:
    def block(self) -> str:
        GATE.wait(T)
        return "released"

    def quick(self) -> int:
        return 1


def test_actor_stats_show_the_queue() -> None:
    GATE.clear()
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        gated = c.submit(Gated, actor=True).result(timeout=T)
        first = gated.block()
        rest = [gated.quick() for _ in range(3)]

        def queued() -> dict[str, object] | None:
            s = c.actor_stats()[gated.key]
            return s if s["queued"] == 3 and s["running"] == 1 else None

        assert eventually(queued, T), c.actor_stats()
        GATE.set()
        assert first.result(timeout=T) == "released"
        assert [f.result(timeout=T) for f in rest] == [1, 1, 1]
        s = c.actor_stats()[gated.key]
        assert (s["calls"], s["queued"], s["running"]) == (4, 0, 0)


def test_actor_stats_forget_released_actors(client: Client) -> None:
    talker = client.submit(Talker, actor=True).result(timeout=T)
    key = talker.key
    assert key in client.actor_stats()
    del talker
    assert eventually(lambda: key not in client.actor_stats(), T)


@pytest.mark.localactors  # the plugin runs this async test; no pytest-asyncio needed
async def test_actor_stats_is_awaitable_in_async_code() -> None:
    async with (
        LocalCluster(n_workers=1, processes=False, asynchronous=True) as cluster,
        Client(cluster, asynchronous=True) as c,
    ):
        talker = await c.submit(Talker, actor=True)
        await talker.say("x")
        stats = await c.actor_stats()
        assert stats[talker.key]["calls"] == 1


# ----------------------------------------------------------------- top and the cluster file


def test_cluster_file_is_private(cluster: LocalCluster) -> None:
    path = os.path.join(cluster.directory, "cluster.json")
    assert stat.S_IMODE(os.stat(cluster.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    record = read_cluster_file(cluster.directory)
    assert (record.address, record.authkey) == (cluster.manager_address, cluster.authkey)
    assert any(r.directory == cluster.directory for r in find_clusters())


def test_a_cluster_file_open_to_others_is_refused(tmp_path: object) -> None:
    directory = str(tmp_path)
    os.chmod(directory, 0o755)
    with open(os.path.join(directory, "cluster.json"), "w") as f:
        f.write('{"address": "x", "authkey": "00", "pid": 1, "started": 0}')
    with pytest.raises(PermissionError, match="open to group or others"):
        locate(directory)
    os.chmod(directory, 0o700)
    os.chmod(os.path.join(directory, "cluster.json"), 0o644)
    with pytest.raises(PermissionError, match="open to group or others"):
        locate(directory)


def test_top_once_shows_workers_and_actors(client: Client, cluster: LocalCluster) -> None:
    talker = client.submit(Talker, actor=True).result(timeout=T)
    for _ in range(5):
        talker.fail()
    talker.say("done").result(timeout=T)
    env = dict(os.environ, LOCALACTORS_CLUSTER=cluster.directory)
    out = subprocess.run(
        [sys.executable, "-m", "localactors", "top", "--once"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"localactors top - {cluster.directory}")
    assert sum(line.startswith("worker-") for line in lines) == 2
    row = next(line for line in lines if line.startswith(talker.key[:27]))
    cols = row.split()
    assert cols[1:5] == ["Talker", talker.worker, "6", "0.0"]  # class, worker, calls, calls/s
    assert cols[5] == "5"  # errors


def test_top_without_a_cluster_says_so(tmp_path: object) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "localactors", "top", "--once", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "localactors top:" in out.stderr


# ----------------------------------------------------------------- progress


def slow_square(x: int) -> int:
    time.sleep(0.01 * x)
    return x * x


def test_progress_counts_tasks_and_actor_calls(client: Client) -> None:
    talker = client.submit(Talker, actor=True).result(timeout=T)
    futures = client.map(slow_square, range(10))
    calls = [talker.say(str(i)) for i in range(5)] + [talker.fail()]
    out = io.StringIO()
    progress(futures, {"calls": calls}, file=out, timeout=T)
    lines = out.getvalue().splitlines()  # not a terminal: only the final state
    assert len(lines) == 3
    by_group = {line.split()[0]: line for line in lines}
    assert "100% 10/10" in by_group["slow_square"]
    assert "100% 5/5" in by_group["Talker.say"]
    assert "100% 1/1" in by_group["Talker.fail"] and "1 erred" in by_group["Talker.fail"]


def test_progress_times_out(client: Client) -> None:
    GATE.clear()
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as c:
        gated = c.submit(Gated, actor=True).result(timeout=T)
        blocked = gated.block()
        out = io.StringIO()
        with pytest.raises(TimeoutError):
            progress(blocked, file=out, timeout=0.2)
        assert "0% 0/1" in out.getvalue()
        GATE.set()
        blocked.result(timeout=T)


def test_progress_redraws_in_place_on_a_terminal(client: Client) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    progress(client.map(slow_square, range(5)), file=out, interval=0.01, timeout=T)
    text = out.getvalue()
    assert "\x1b[1F" in text  # moved back up to redraw
    assert text.rstrip().endswith("\x1b[K")
    assert "100% 5/5" in text
