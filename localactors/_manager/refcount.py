"""References: who holds which key, and releasing keys nobody references.

Runs in: the manager process, on its one main thread (no locks needed).

A mixin of :class:`~localactors._scheduler.Scheduler`, which owns the state
it reads. A key is released when nobody references it: no client or worker
holds a handle (``RefDelta``), no handle for it is in flight (pins), and no
waiting task depends on it. Then its worker frees the data or drops the actor.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from .._wire import protocol as P

if TYPE_CHECKING:
    from .scheduler import Send, Task, WorkerState


class References:
    """Reference counts per key and holder, pins for handles in flight."""

    send: Send
    tasks: dict[str, Task]
    no_worker: dict[str, Task]
    orphans: dict[str, Task]
    client_links: set[Any]
    holders: dict[str, Counter[Any]]  # key -> link -> count
    pins: dict[str, str]  # token -> key
    pin_count: Counter[str]
    early_unpins: set[str]

    if TYPE_CHECKING:

        def _state(self, key: str) -> str: ...

        def _done_message(self, task: Task) -> P.Message: ...

        def _give_back(self, ws: WorkerState, task: Task) -> None: ...

    def _notify(self, key: str, msg: P.Message) -> None:
        for link, n in self.holders.get(key, {}).items():
            if n > 0 and link in self.client_links:
                self.send(link, msg)

    def ref_delta(self, link: Any, msg: P.RefDelta) -> None:
        # increments first, decrements last: a count never dips below the truth
        for key, d in msg.changes:
            if d > 0:
                holders = self.holders.setdefault(key, Counter())
                holders[link] += 1
                task = self.tasks.get(key)
                if (
                    link in self.client_links
                    and task is not None
                    and task.state not in ("waiting", "processing", "no-worker")
                ):
                    self.send(link, self._done_message(task))
        for token, key in msg.pins:
            if token in self.early_unpins:
                self.early_unpins.discard(token)
            else:
                self.pins[token] = key
                self.pin_count[key] += 1
        for token in msg.unpins:
            pinned = self.pins.pop(token, None)
            if pinned is None:
                self.early_unpins.add(token)
                continue
            self.pin_count[pinned] -= 1
            if self.pin_count[pinned] <= 0:
                del self.pin_count[pinned]
            self._maybe_release(pinned)
        for key, d in msg.changes:
            if d < 0:
                held = self.holders.get(key)
                if held is not None:
                    held[link] -= 1
                    if held[link] <= 0:
                        del held[link]
                    if not held:
                        del self.holders[key]
                self._maybe_release(key)

    def drop_holder(self, link: Any) -> None:
        """A client or worker went away: drop every reference it held."""
        self.client_links.discard(link)
        for key in [k for k, h in self.holders.items() if link in h]:
            holders = self.holders[key]
            del holders[link]
            if not holders:
                del self.holders[key]
            self._maybe_release(key)

    def _referenced(self, key: str) -> bool:
        task = self.tasks.get(key)
        return bool(
            self.holders.get(key)
            or self.pin_count.get(key)
            or (
                task is not None
                and any(self._state(d) not in ("memory", "erred", "cancelled") for d in task.dependents)
            )
        )

    def _maybe_release(self, key: str) -> None:
        if not self._referenced(key):
            self._release(key)

    def _release(self, key: str, force: bool = False) -> None:
        task = self.tasks.get(key)
        if task is None:
            return
        if task.state == "processing" and not force:
            # let it finish; task_done will free the result and the resources
            del self.tasks[key]
            if task.spec is not None and task.spec.resources:
                self.orphans[key] = task
            return
        del self.tasks[key]
        self.no_worker.pop(key, None)
        ws = task.worker
        if ws is not None and ws.alive:
            ws.has.discard(key)
            if key in ws.actors:
                ws.actors.discard(key)
                self._give_back(ws, task)
            self.send(ws.link, P.FreeKeys((key,)))
