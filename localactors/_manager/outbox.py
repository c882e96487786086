"""The manager's outbox: what a run of inbox items makes it send, batched per link.

Runs in: the manager process, on its one main thread (no locks needed).

The scheduler sends one message per task and per event (``RunTask``,
``KeyDone``, ``FreeKeys``); a ``SubmitTasks`` of a whole ``map`` makes
thousands. The outbox keeps each link's messages in order and merges a run of
consecutive ones of a kind into one message: ``RunTask`` of plain tasks with
small payloads into ``RunTasks``, ``KeyDone`` of plain results held on one
worker into ``KeysDone``, ``FreeKeys`` into one ``FreeKeys``. Order is kept
exactly: only neighbours merge, so a ``FreeKeys`` sent before a ``RunTask``
of the same key still arrives before it. A lone message goes as it came.

A link's messages are written once the run of inbox items is handled
(:meth:`Outbox.flush`), or as soon as a batch holds :data:`BATCH` tasks, so
that a worker starts on a large ``map`` while the manager still places the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._wire import protocol as P
from .._wire.connection import LinkClosed

logger = logging.getLogger("localactors.manager")

#: tasks (or keys) in one batched message at most: a worker starts on the first
#: ones while the manager places the rest, and an envelope stays a few hundred KiB
BATCH = 500


class _Runs:
    """Consecutive ``RunTask`` of plain tasks on one link, becoming one ``RunTasks``."""

    __slots__ = ("first", "items")

    def __init__(self, first: P.RunTask) -> None:
        self.first = first
        self.items: list[P.RunItem] = [(first.spec.key, first.spec.payload, first.who_has)]


class _Dones:
    """Consecutive ``KeyDone`` of plain results on one worker, becoming one ``KeysDone``."""

    __slots__ = ("first", "items")

    def __init__(self, first: P.KeyDone) -> None:
        self.first = first
        self.items: list[tuple[str, str]] = [(first.key, first.type_name)]


class _Frees:
    """Consecutive ``FreeKeys`` on one link, becoming one."""

    __slots__ = ("keys",)

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = list(keys)


Entry = P.Message | _Runs | _Dones | _Frees


class Outbox:
    """Messages per link, in order, neighbours of a kind merged; ``write(link, msgs)`` sends them."""

    def __init__(self, write: Callable[[Any, list[P.Message]], None]) -> None:
        self._write = write
        self._box: dict[Any, list[Entry]] = {}

    def add(self, link: Any, msg: P.Message) -> None:
        entries = self._box.get(link)
        if entries is None:
            entries = self._box[link] = []
        last = entries[-1] if entries else None
        cls = type(msg)
        if cls is P.RunTask:
            run: P.RunTask = msg  # type: ignore[assignment]
            spec = run.spec
            if not spec.actor and len(spec.payload) < P.OUT_OF_BAND:
                if type(last) is _Runs:
                    last.items.append((spec.key, spec.payload, run.who_has))
                    if len(last.items) >= BATCH:
                        self._flush_link(link)
                    return
                entries.append(_Runs(msg))  # type: ignore[arg-type]
                return
        elif cls is P.KeyDone:
            if msg.actor is None:  # type: ignore[union-attr]
                if type(last) is _Dones and last.first.address == msg.address:  # type: ignore[union-attr]
                    last.items.append((msg.key, msg.type_name))  # type: ignore[union-attr]
                    if len(last.items) >= BATCH:
                        self._flush_link(link)
                    return
                entries.append(_Dones(msg))  # type: ignore[arg-type]
                return
        elif cls is P.FreeKeys:
            if type(last) is _Frees:
                last.keys.extend(msg.keys)  # type: ignore[union-attr]
                return
            entries.append(_Frees(msg.keys))  # type: ignore[union-attr]
            return
        entries.append(msg)

    def flush(self) -> None:
        """Write every link's messages (one write per link), and forget them."""
        box, self._box = self._box, {}
        for link, entries in box.items():
            if entries:
                self._write(link, [_message(e) for e in entries])

    def _flush_link(self, link: Any) -> None:
        entries = self._box.pop(link)
        self._write(link, [_message(e) for e in entries])


def _message(entry: Entry) -> P.Message:
    cls = type(entry)
    if cls is _Runs:
        runs: _Runs = entry  # type: ignore[assignment]
        return runs.first if len(runs.items) == 1 else P.RunTasks(tuple(runs.items))
    if cls is _Dones:
        dones: _Dones = entry  # type: ignore[assignment]
        first = dones.first
        return first if len(dones.items) == 1 else P.KeysDone(first.worker, first.address, tuple(dones.items))
    if cls is _Frees:
        return P.FreeKeys(tuple(entry.keys))  # type: ignore[union-attr]
    return entry  # type: ignore[return-value]


def write_to(link: Any, msgs: list[P.Message]) -> None:
    """Send ``msgs`` on ``link`` in as few writes as it can; a closed link is its reader's to report."""
    try:
        link.send_many(msgs)
    except LinkClosed:
        pass  # its reader will report the close
    except Exception:
        logger.exception("manager failed sending %d messages to %s", len(msgs), link)
