"""The manager's collaborators on their own, with no processes: the RelayBoard and the control messages.

Each owns its state and is handed what it needs, so a test drives it with
plain callables and looks at what it sent or posted.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from localactors._manager.relay import RelayBoard
from localactors._wire import control as C
from localactors._wire import protocol as P


class FakeLink:
    def __init__(self, link_id: int) -> None:
        self.id = link_id


def board(pending: set[str]) -> tuple[RelayBoard, list[tuple[Any, P.Message]], list[Any]]:
    sent: list[tuple[Any, P.Message]] = []
    posted: list[Any] = []
    relays = RelayBoard(b"k" * 32, lambda link, msg: sent.append((link, msg)), posted.append, pending.__contains__)
    return relays, sent, posted


def test_a_relay_to_a_dead_worker_is_reported_after_its_notice() -> None:
    pending = {"/w/worker-1"}
    relays, sent, _ = board(pending)
    client = FakeLink(7)
    relays.gone(client, "/w/worker-1")  # type: ignore[arg-type]
    assert sent == []  # its death notice is still to come: the client must hear that first
    pending.clear()
    relays.release("/w/worker-1")
    assert sent == [(client, P.RelayFrom("/w/worker-1", ()))]
    relays.release("/w/worker-1")  # once only
    assert len(sent) == 1


def test_a_relay_to_a_worker_long_gone_is_reported_at_once() -> None:
    relays, sent, _ = board(set())
    client = FakeLink(3)
    relays.gone(client, "/w/worker-9")  # type: ignore[arg-type]
    assert sent == [(client, P.RelayFrom("/w/worker-9", ()))]


def test_relaying_to_an_unreachable_worker_says_so(tmp_path: Any) -> None:
    relays, sent, posted = board(set())
    client = FakeLink(1)
    relays.relay(client, str(tmp_path / "nobody"), (b"frame",))  # type: ignore[arg-type]
    assert sent == [(client, P.RelayFrom(str(tmp_path / "nobody"), ()))]
    assert posted == []  # nothing for the inbox: no relay link was opened


@pytest.mark.parametrize(
    "msg",
    [
        C.StopCluster(),
        C.ScaleTo(3, 2),
        C.ListWorkers(4),
        C.Ready("/d/manager", (P.WorkerInfo("worker-0", "/d/worker-0", 1, 1, (), None),)),
        C.StartFailed("why"),
        C.Scaled(5, "workers keep dying"),
        C.WorkerList(6, ()),
    ],
    ids=lambda m: type(m).__name__,
)
def test_control_messages_cross_the_pipe(msg: object) -> None:
    assert pickle.loads(pickle.dumps(msg)) == msg
