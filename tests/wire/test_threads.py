"""The runtime's threads block SIGINT, so that a Ctrl-C reaches the main thread's wait (``_wire/threads.py``)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from localactors import Client
from localactors._wire import threads

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")

T = 30


def _blocks_sigint(native_id: int) -> bool:
    """Does the thread ``native_id`` of this process block SIGINT? (Its ``SigBlk`` mask in /proc.)"""
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    raise AssertionError(f"no SigBlk line for thread {native_id}")


def test_a_started_thread_blocks_sigint_and_the_starter_does_not() -> None:
    seen: list[set[int]] = []
    thread = threading.Thread(target=lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    threads.start(thread)
    thread.join(T)
    assert seen and signal.SIGINT in seen[0]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the caller's mask is as it was


def test_every_thread_of_a_client_blocks_sigint_but_the_main_thread(client: Client) -> None:
    counter = client.submit(_Counter, actor=True).result(timeout=T)
    assert counter.increment().result(timeout=T) == 1
    ours = [t for t in threading.enumerate() if t.name.startswith("localactors-") and t.native_id is not None]
    assert ours, [t.name for t in threading.enumerate()]
    assert [t.name for t in ours if not _blocks_sigint(t.native_id or 0)] == []
    assert not _blocks_sigint(threading.main_thread().native_id or 0)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n
