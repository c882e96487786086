"""References: who holds a handle to which key, and which handles are in flight.

Runs in: the manager process, on its one main thread (no locks needed).

A collaborator of :class:`~localactors._manager.scheduler.Scheduler`, which
applies each ``RefDelta`` through it and releases a key once nothing refers to
it: no client or worker holds a handle (:meth:`References.hold`), no handle for
it is in flight (a *pin*, by token, until the receiver has its own handle), and
no unfinished task depends on it (the scheduler's part). A receiver may retire
a pin before the sender's ``RefDelta`` registering it arrives: that unpin is
remembered, and the pin, when it comes, is not counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class References:
    """Reference counts per key and holder, pins for handles in flight."""

    def __init__(self) -> None:
        self._holders: dict[str, dict[Any, int]] = {}  # key -> link -> handles (each count > 0)
        self._pins: dict[str, str] = {}  # token -> key
        self._pin_count: Counter[str] = Counter()  # key -> pins
        self._early_unpins: set[str] = set()  # tokens unpinned before their pin came

    def held(self, key: str) -> bool:
        """Whether a holder or a handle in flight refers to ``key``."""
        return key in self._holders or bool(self._pin_count.get(key))

    def holders(self, key: str) -> list[Any]:
        """The links holding a handle to ``key``."""
        return list(self._holders.get(key, ()))

    def hold(self, link: Any, key: str) -> None:
        held = self._holders.get(key)
        if held is None:
            self._holders[key] = {link: 1}
        else:
            held[link] = held.get(link, 0) + 1

    def drop(self, link: Any, key: str) -> None:
        held = self._holders.get(key)
        if held is None or link not in held:
            return
        n = held[link] - 1
        if n > 0:
            held[link] = n
            return
        del held[link]
        if not held:
            del self._holders[key]

    def held_by(self, link: Any) -> list[str]:
        """The keys ``link`` holds handles to."""
        return [k for k, h in self._holders.items() if link in h]

    def forget(self, link: Any, key: str) -> None:
        """Drop every handle ``link`` holds to ``key`` (``link`` went away)."""
        holders = self._holders[key]
        del holders[link]
        if not holders:
            del self._holders[key]

    def pin(self, token: str, key: str) -> None:
        if token in self._early_unpins:
            self._early_unpins.discard(token)
        else:
            self._pins[token] = key
            self._pin_count[key] += 1

    def unpin(self, token: str) -> str | None:
        """Retire the pin ``token``; returns its key, or None if the pin has not come yet."""
        key = self._pins.pop(token, None)
        if key is None:
            self._early_unpins.add(token)
            return None
        self._pin_count[key] -= 1
        if self._pin_count[key] <= 0:
            del self._pin_count[key]
        return key
