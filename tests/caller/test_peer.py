"""A caller's path to one worker alone: request ids, flow control, failing everything.

No process and no socket: the :class:`~localactors._caller.peer.PeerLink` is
relayed (no link), so what it sends reaches a fake owner's ``relay``, and the
test answers by calling ``reply`` as the node does when a reply arrives.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import wait_until

from localactors._base.errors import ActorLostError, ClusterClosedError, WorkerLostError
from localactors._base.futures import Completion
from localactors._caller.peer import PeerLink
from localactors._wire import codec as W
from localactors._wire import protocol as P

T = 10.0


class FakeOwner:
    """The node's side of a peer link: records what is sent, answers questions."""

    def __init__(self, may_block: bool = True) -> None:
        self.name = "unit"
        self.broken: BaseException | None = None
        self.closed = False
        self.sent: list[P.Message] = []
        self.notice: P.WorkerDied | None = None
        self.restarting: set[str] = set()
        self._may_block = may_block

    def closed_error(self) -> BaseException | None:
        return ClusterClosedError("the client is closed") if self.closed else None

    def death_notice(self, address: str) -> P.WorkerDied | None:
        return self.notice

    def await_death_notice(self, address: str, timeout: float) -> None:
        pass

    def is_restarting(self, key: str) -> bool:
        return key in self.restarting

    def may_block(self) -> bool:
        return self._may_block

    def relay(self, address: str, frames: list[Any]) -> None:
        self.sent.append(W.decode(frames[0], frames[1:]))


def _flushers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("localactors-flush-unit")]


@pytest.fixture(autouse=True)
def no_flusher_left() -> Iterator[None]:
    yield
    wait_until(lambda: not _flushers(), T, "the backlog's flusher ended")


def _get(peer: PeerLink, key: str = "", block: bool | None = None) -> Completion:
    comp = Completion()
    peer.request(lambda req_id: P.GetData(req_id, ("x",)), comp, "data of 'x'", key, block)
    return comp


def _ids(owner: FakeOwner) -> list[int]:
    return [msg.req_id for msg in owner.sent if isinstance(msg, P.GetData)]


def test_each_request_gets_a_fresh_id_and_its_reply() -> None:
    owner = FakeOwner()
    peer = PeerLink(owner, "/w/worker-1", "worker-1", None, limit=10)
    first, second = _get(peer), _get(peer)
    assert _ids(owner) == [0, 1]
    request = peer.reply(1)
    assert request is not None and request.comp is second and request.label == "data of 'x'"
    assert peer.reply(1) is None  # answered once
    assert list(peer.pending) == [0] and not first.done()


def test_past_the_limit_a_caller_that_must_not_block_queues_in_order() -> None:
    owner = FakeOwner(may_block=False)
    peer = PeerLink(owner, "/w/worker-1", "worker-1", None, limit=2)
    comps = [_get(peer) for _ in range(5)]
    assert _ids(owner) == [0, 1] and len(peer.backlog) == 3
    for req_id in range(5):
        peer.reply(req_id)
        wait_until(lambda n=req_id: len(owner.sent) >= min(5, n + 3), T, "the flusher sent the next one")
        assert len(peer.pending) <= 2
    assert _ids(owner) == [0, 1, 2, 3, 4]  # in the order they were made
    assert not any(c.done() for c in comps)  # replies are the node's to set


def test_past_the_limit_a_plain_thread_waits_for_room() -> None:
    owner = FakeOwner(may_block=True)
    peer = PeerLink(owner, "/w/worker-1", "worker-1", None, limit=1)
    _get(peer)
    third = threading.Thread(target=_get, args=(peer,), name="unit-blocked-caller")
    third.start()
    wait_until(lambda: peer.blocked == 1, T, "the second caller waits")
    assert _ids(owner) == [0] and not peer.backlog
    peer.reply(0)
    third.join(T)
    assert _ids(owner) == [0, 1] and peer.blocked == 0


def test_fail_all_fails_pending_and_queued_requests_and_later_ones() -> None:
    owner = FakeOwner(may_block=False)
    peer = PeerLink(owner, "/w/worker-1", "worker-1", None, limit=1)
    sent, queued = _get(peer), _get(peer, key="actor-1")
    peer.fail_all()
    assert isinstance(sent.error, WorkerLostError) and not isinstance(sent.error, ActorLostError)
    assert isinstance(queued.error, ActorLostError)  # a call to an actor: the actor is lost
    assert "no word from the manager" in str(sent.error)
    later = _get(peer)
    assert isinstance(later.error, WorkerLostError) and _ids(owner) == [0]


def test_errors_say_what_the_manager_said() -> None:
    owner = FakeOwner()
    peer = PeerLink(owner, "/w/worker-1", "worker-1", None, limit=10)
    comp = _get(peer, key="actor-1")
    owner.notice = P.WorkerDied("worker-1", "/w/worker-1", reason="was killed by signal 9", exitcode=-9)
    owner.restarting.add("actor-1")
    peer.fail_all()
    assert isinstance(comp.error, ActorLostError)
    assert "killed by signal 9" in str(comp.error) and "being restarted" in str(comp.error)


def test_a_closed_owner_abandons_rather_than_loses() -> None:
    owner = FakeOwner()
    peer = PeerLink(owner, "/w/worker-1", "worker-1", None, limit=10)
    comp = _get(peer)
    owner.closed = True
    peer.fail_all()
    assert isinstance(comp.error, ClusterClosedError)
