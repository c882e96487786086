"""Relaying: the manager's half that carries a client's worker links for it.

Runs in: the manager process, on its one main thread (no locks needed), plus
the reader thread of each relay link.

A mixin of :class:`~localactors._manager.Manager`, which owns the state it
reads. A client made with ``direct_to_workers=False`` sends its frames for a
worker in ``RelayTo``; each (client, worker) pair gets its own relay link to
that worker, pumped verbatim both ways, the worker's frames going back in
``RelayFrom``. An empty ``RelayFrom`` says the worker's end closed; when the
worker died, it reaches the client after the worker's death notice, so that a
failed call can say how the worker died.
"""

from __future__ import annotations

import os
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from .._wire import protocol as P
from .._wire.connection import Link, LinkClosed, connect

if TYPE_CHECKING:
    from .._base.config import ManagerConfig
    from .scheduler import WorkerState


class _RelayGone:
    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address


class Relaying:
    """Pumps frames between relaying clients and workers."""

    # the manager state this half uses (set up in ``Manager.__init__``)
    config: ManagerConfig
    inbox: SimpleQueue[Any]
    worker_links: dict[Any, WorkerState]
    dying: dict[Any, tuple[WorkerState, Any]]
    relays: dict[tuple[int, str], Link]
    relays_gone: dict[str, list[Link]]

    if TYPE_CHECKING:

        def _send(self, link: Any, msg: P.Message) -> None: ...

    def _relay(self, client: Link, address: str, frames: tuple[bytes, ...]) -> None:
        relay = self.relays.get((client.id, address))
        if relay is None:
            try:
                relay = connect(address, self.config.authkey, f"relay-{client.id}->{os.path.basename(address)}")
                relay.send(P.Hello(f"relay-{client.id}", os.getpid()))
            except OSError:
                self._relay_gone(client, address)
                return

            def back(frames_in: list[bytes]) -> None:
                if frames_in:
                    self._send(client, P.RelayFrom(address, tuple(frames_in)))
                else:  # through the inbox: the client must hear why the worker died first
                    self.inbox.put((client, _RelayGone(address)))

            # a reader, not a thread of our own: only the reader may release the link's socket
            relay.start_reader(lambda _lk, frames_in: back(frames_in), lambda _lk, _err: back([]), raw=True)
            self.relays[(client.id, address)] = relay
        try:
            relay.send_frames(list(frames))
        except LinkClosed:
            # the worker died after this call left the client: its death notice must
            # still reach the client first, so that the failed call can say how it died
            self._relay_gone(client, address)

    def _relay_gone(self, client: Link, address: str) -> None:
        """A relay's worker end closed: tell the client after the worker's death notice."""
        workers = [*self.worker_links.values(), *(ws for ws, _ in self.dying.values())]
        if any(ws.info.address == address for ws in workers):
            self.relays_gone.setdefault(address, []).append(client)  # its link close is on its way
        else:
            self._send(client, P.RelayFrom(address, ()))

    def _release_relays(self, address: str) -> None:
        """A worker's death notice went out: now tell the clients whose relays to it closed."""
        for client in self.relays_gone.pop(address, []):
            self._send(client, P.RelayFrom(address, ()))

    def _close_relays(self, link: Any) -> None:
        """A client's link closed: close its relay links."""
        for (link_id, address), relay in list(self.relays.items()):
            if link_id == link.id:
                relay.close()
                del self.relays[(link_id, address)]
