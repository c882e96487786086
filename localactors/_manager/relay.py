"""RelayBoard: the manager's relay links, carrying a client's worker links for it.

Runs in: the manager process, on its one main thread (no locks needed), plus
the reader thread of each relay link (which only sends or posts to the inbox).

A client made with ``direct_to_workers=False`` sends its frames for a worker
in ``RelayTo``; each (client, worker) pair gets its own relay link to that
worker, pumped verbatim both ways, the worker's frames going back in
``RelayFrom``. An empty ``RelayFrom`` says the worker's end closed; when the
worker died, it reaches the client after the worker's death notice, so that a
failed call can say how the worker died.

The board owns its relays and the clients waiting to hear that one closed;
the manager hands it a ``send`` callable, its inbox's ``post`` and a way to
ask whether a worker's death notice is still to come.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._wire import protocol as P
from .._wire.connection import Link, LinkClosed, connect
from .inbox import Post, RelayGone


class RelayBoard:
    """Pumps frames between relaying clients and workers."""

    def __init__(
        self,
        authkey: bytes,
        send: Callable[[Any, P.Message], None],
        post: Post,
        notice_pending: Callable[[str], bool],
    ) -> None:
        """``notice_pending(address)``: is that worker live, or dead with its notice not sent yet?"""
        self._authkey = authkey
        self._send = send
        self._post = post
        self._notice_pending = notice_pending
        self._relays: dict[tuple[int, str], Link] = {}  # (client link id, worker address) -> relay
        self._gone: dict[str, list[Link]] = {}  # worker address -> clients to tell after its notice

    def relay(self, client: Link, address: str, frames: tuple[bytes, ...]) -> None:
        """Forward a client's ``RelayTo`` to its worker, opening the relay on first use."""
        relay = self._relays.get((client.id, address))
        if relay is None:
            try:
                relay = connect(address, self._authkey, f"relay-{client.id}->{os.path.basename(address)}")
                relay.send(P.Hello(f"relay-{client.id}", os.getpid()))
            except OSError:
                self.gone(client, address)
                return

            def back(frames_in: list[bytes]) -> None:
                if frames_in:
                    self._send(client, P.RelayFrom(address, tuple(frames_in)))
                else:  # through the inbox: the client must hear why the worker died first
                    self._post(RelayGone(client, address))

            # a reader, not a thread of our own: only the reader may release the link's socket
            relay.start_reader(lambda _lk, frames_in: back(frames_in), lambda _lk, _err: back([]), raw=True)
            self._relays[(client.id, address)] = relay
        try:
            relay.send_frames(list(frames))
        except LinkClosed:
            # the worker died after this call left the client: its death notice must
            # still reach the client first, so that the failed call can say how it died
            self.gone(client, address)

    def gone(self, client: Link, address: str) -> None:
        """A relay's worker end closed: tell the client, after the worker's death notice."""
        if self._notice_pending(address):
            self._gone.setdefault(address, []).append(client)  # its link close is on its way
        else:
            self._send(client, P.RelayFrom(address, ()))

    def release(self, address: str) -> None:
        """A worker's death notice went out: now tell the clients whose relays to it closed."""
        for client in self._gone.pop(address, []):
            self._send(client, P.RelayFrom(address, ()))

    def client_closed(self, client: Link) -> None:
        """A client's link closed: close its relay links."""
        for (link_id, address), relay in list(self._relays.items()):
            if link_id == client.id:
                relay.close()
                del self._relays[(link_id, address)]

    def close(self) -> None:
        for relay in self._relays.values():
            relay.close()
