"""The example of docs/testing.md (failure handling), run as written there: the page and this file must agree."""

from __future__ import annotations

import pytest

from localactors import ActorLostError, Client


class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


@pytest.mark.localactors(n_workers=2)
def test_counter_survives_a_worker_kill(localactors_cluster):
    with Client(localactors_cluster) as client:
        counter = client.submit(Counter, actor=True, max_restarts=1).result()
        assert counter.increment().result(timeout=10) == 1
        localactors_cluster.kill_worker(counter.worker)
        for _attempt in range(3):
            try:  # restarted from its constructor on another worker: its state starts over
                assert counter.increment().result(timeout=30) == 1
                break
            except ActorLostError as err:  # a call that met the death is never replayed
                assert "being restarted" in str(err)


@pytest.mark.localactors(n_workers=1, worker_timeout=2.0)
def test_caller_handles_a_paused_worker(localactors_cluster):
    with Client(localactors_cluster) as client:
        counter = client.submit(Counter, actor=True).result()
        assert counter.increment().result(timeout=10) == 1
        localactors_cluster.pause_worker(counter.worker)
        # the caller's own timeout ends its wait; the worker is not dead, just silent
        with pytest.raises(TimeoutError):
            counter.increment().result(timeout=0.5)
        # past worker_timeout the manager kills the silent worker: the call fails, saying why
        with pytest.raises(ActorLostError, match="stopped responding"):
            counter.increment().result(timeout=30)


def test_this_file_is_the_documented_example() -> None:
    from pathlib import Path

    root = Path(__file__).parent.parent
    page = (root / "docs" / "testing.md").read_text()
    block = page.split("run with the test suite:\n\n```python\n")[1].split("```")[0]
    here = Path(__file__).read_text()
    assert block.replace("import pytest\n", "", 1) in here
