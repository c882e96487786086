"""RefTracker: a process's count of the handles it holds, per key.

Runs in: the user's process (inside a client) and in every worker.

The first and last handle of a key, and every handle sent or received (a
*pin*, held until the receiver has its own), become a ``RefDelta`` to the
manager, which frees what nobody holds any more.
"""

from __future__ import annotations

from queue import SimpleQueue

from .._wire import protocol as P


class RefTracker:
    """Counts local handles per key; produces ordered ``RefDelta`` messages.

    ``incref``/``decref``/``unpin`` only append to a queue (safe from
    ``__del__`` in any thread); ``drain`` runs under the manager link's send
    lock, so changes reach the manager in the order they happened.
    """

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[int, str, str]] = SimpleQueue()
        self._counts: dict[str, int] = {}
        self.wake: SimpleQueue[None] = SimpleQueue()
        self.closed = False

    def incref(self, key: str) -> None:
        self._queue.put((0, key, ""))
        self.wake.put(None)

    def decref(self, key: str) -> None:
        if not self.closed:
            self._queue.put((1, key, ""))
            self.wake.put(None)

    def pin(self, pins: list[tuple[str, str]]) -> None:
        for token, key in pins:
            self._queue.put((2, key, token))

    def unpin(self, tokens: list[str]) -> None:
        for token in tokens:
            self._queue.put((3, "", token))
        if tokens:
            self.wake.put(None)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def drain(self) -> P.RefDelta | None:
        changes: list[tuple[str, int]] = []
        pins: list[tuple[str, str]] = []
        unpins: list[str] = []
        counts = self._counts
        while not self._queue.empty():
            kind, key, token = self._queue.get_nowait()
            if kind == 0:
                n = counts.get(key, 0) + 1
                counts[key] = n
                if n == 1:
                    changes.append((key, 1))
            elif kind == 1:
                n = counts.get(key, 0) - 1
                if n <= 0:
                    counts.pop(key, None)
                    changes.append((key, -1))
                else:
                    counts[key] = n
            elif kind == 2:
                pins.append((token, key))
            else:
                unpins.append(token)
        if changes or pins or unpins:
            return P.RefDelta(tuple(changes), tuple(pins), tuple(unpins))
        return None
