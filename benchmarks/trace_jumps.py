"""How many package files one operation passes through: ``python benchmarks/trace_jumps.py``.

Runs in: one process. The cluster is in-process (``LocalCluster(processes=False)``),
so the client, the manager and the worker are all threads here and one profile
hook sees every thread.

After 50 warm-up calls, the hook records every call into and every return out of a
function of the package, on every thread, for exactly one operation:
``counter.add(1).result()`` (an actor call) and ``client.submit(inc, 41).result()``
(a task round trip). A *jump* is a change of the package file that is executing,
on one thread: a call into another file, or a return to one. Excursions into the
standard library or user code do not count. Messages are counted where they are
encoded (``_wire/codec.encode``) or sent by a hot path that frames them itself
(``Link.send_call``: an ``ActorCall``; ``Link.send_replies``: a ``CallOk``, or
a ``CallOks`` for several), once each (a hot path that falls back to ``encode`` is counted there
only). Each operation is measured ``--repeat`` times; a quiet window with no
operation first shows what background threads do on their own; a thread that
does nothing else during an operation is left out of its counts (and the manager's
periodic worker check is slowed down for the run so that it does not count).

``--path`` also prints, per thread, the files in order with the functions run in each.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's package, not an installed one

import localactors
from localactors import Client, LocalCluster

PACKAGE = str(Path(localactors.__file__).parent) + "/"
ENCODE = "_wire/codec.py"
LINK = "_wire/link.py"
#: Link methods that frame and send one message themselves, without ``codec.encode``:
#: name -> the message's type (``None``: the type of the ``msg`` argument)
HOT_SENDS: dict[str, str | None] = {"send_call": "ActorCall", "send_replies": "CallOk"}
SETTLE = 0.3  # seconds after the operation returns: its tails on other threads (refs, KeyDone)

Entry = tuple[str, str, str]  # (thread, package file, function)


class Recorder:
    """A profile hook for every thread; records only while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.entries: list[Entry] = []
        self.messages: list[tuple[str, str]] = []  # (thread, message type) as encoded

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event not in ("call", "return"):
            return
        where = frame if event == "call" else frame.f_back
        if where is None:
            return
        path = where.f_code.co_filename
        if not path.startswith(PACKAGE):
            return
        file = path[len(PACKAGE) :]
        thread = threading.current_thread().name.removeprefix("localactors-")
        self.entries.append((thread, file, where.f_code.co_name))
        if event == "call":
            name = frame.f_code.co_name
            if file == ENCODE and name == "encode":
                if not _inside_hot_send(frame):  # (a hot send that fell back: counted there)
                    self.messages.append((thread, type(frame.f_locals.get("msg")).__name__))
            elif file == LINK and name in HOT_SENDS:
                self.messages.append((thread, HOT_SENDS[name] or type(frame.f_locals.get("msg")).__name__))

    def record(self, operation: Callable[[], object]) -> tuple[list[Entry], list[tuple[str, str]]]:
        """The entries and the messages of one ``operation`` and its tails on other threads."""
        self.entries, self.messages = [], []
        self.on = True
        operation()
        time.sleep(SETTLE)
        self.on = False
        return self.entries, self.messages


def _inside_hot_send(frame: FrameType) -> bool:
    """Is this ``encode`` called (through ``Link.send``) by one of :data:`HOT_SENDS`?"""
    caller = frame.f_back
    for _ in range(3):
        if caller is None:
            return False
        code = caller.f_code
        if code.co_name in HOT_SENDS and code.co_filename.endswith(LINK):
            return True
        caller = caller.f_back
    return False


def per_thread(entries: list[Entry]) -> dict[str, list[Entry]]:
    threads: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        threads[entry[0]].append(entry)
    return dict(threads)


def jumps(entries: list[Entry]) -> int:
    return sum(1 for a, b in itertools.pairwise(entries) if a[1] != b[1])


def stays(entries: list[Entry]) -> list[tuple[str, list[str]]]:
    """Runs of consecutive entries in one file, with the functions entered there."""
    runs: list[tuple[str, list[str]]] = []
    for _, file, function in entries:
        if not runs or runs[-1][0] != file:
            runs.append((file, []))
        if function not in runs[-1][1]:
            runs[-1][1].append(function)
    return runs


Sample = tuple[list[Entry], list[tuple[str, str]]]


def without_background(samples: list[Sample], quiet: list[Sample]) -> list[Sample]:
    """Drop the threads that did nothing but what they also do in a quiet window (a poll loop waking)."""
    idle = {entry for entries, _ in quiet for entry in entries}
    kept = []
    for entries, messages in samples:
        busy = {name for name, es in per_thread(entries).items() if not set(es) <= idle}
        kept.append(([e for e in entries if e[0] in busy], messages))
    return kept


def report(title: str, samples: list[Sample], show_path: bool) -> None:
    totals = [sum(jumps(es) for es in per_thread(entries).values()) for entries, _ in samples]
    entries, messages = samples[len(samples) // 2]  # the median-ish sample, for the details
    threads = per_thread(entries)
    files = sorted({e[1] for e in entries})
    spread = f"{min(totals)}..{max(totals)}" if min(totals) != max(totals) else "stable"
    print(f"\n{title}")
    print(f"  jumps between files: {statistics.median(totals):g} (over {len(samples)} runs: {spread})")
    print(f"  files touched: {len(files)}; threads taking part: {len(threads)}")
    print(f"  messages sent: {len(messages)}: {', '.join(f'{m} ({t})' for t, m in messages) or '-'}")
    print(f"  {'thread':<34} {'jumps':>5} {'files':>5} {'entries':>7}")
    for name, es in sorted(threads.items(), key=lambda kv: -jumps(kv[1])):
        print(f"  {name:<34} {jumps(es):>5} {len({e[1] for e in es}):>5} {len(es):>7}")
    print(f"  files: {' '.join(files)}")
    if show_path:
        for name, es in threads.items():
            print(f"  -- {name}")
            for file, functions in stays(es):
                print(f"       {file:<26} {', '.join(functions)}")


#: the manager's periodic check of its workers (memory limits) ticks every 0.1 s on
#: its main thread; it is work of no operation, so it is slowed down while measuring
CHECK_INTERVAL = "localactors._manager.manager:MEMORY_CHECK_INTERVAL"


def quiet_the_manager() -> bool:
    module, _, name = CHECK_INTERVAL.partition(":")
    try:
        target = importlib.import_module(module)
    except ImportError:
        return False
    if not hasattr(target, name):
        return False
    setattr(target, name, 3600.0)
    return True


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, x: int) -> int:
        self.n += x
        return self.n


def inc(x: int) -> int:
    return x + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="measurements per operation (default 3)")
    parser.add_argument("--path", action="store_true", help="print each thread's path through the files")
    args = parser.parse_args()
    runs = args.repeat
    quieted = quiet_the_manager()
    rec = Recorder()
    threading.setprofile(rec.hook)
    sys.setprofile(rec.hook)
    try:
        with LocalCluster(n_workers=1, processes=False) as cluster, Client(cluster) as client:
            counter = client.submit(Counter, actor=True).result(timeout=30)
            for _ in range(50):
                counter.add(1).result(timeout=30)
                client.submit(inc, 41, pure=False).result(timeout=30)
            time.sleep(SETTLE)
            quiet = [rec.record(lambda: None) for _ in range(runs)]
            actor = [rec.record(lambda: counter.add(1).result(timeout=30)) for _ in range(runs)]
            # pure=False: a fresh key each time, so each run is a whole round trip, not a cache hit
            task = [rec.record(lambda: client.submit(inc, 41, pure=False).result(timeout=30)) for _ in range(runs)]
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    print("file-to-file jumps (calls and returns) on every thread; in-process cluster, 1 worker")
    if not quieted:
        print(
            f"  (could not find {CHECK_INTERVAL}: the manager's periodic worker check may count, see the quiet window)"
        )
    report(f"nothing (a quiet window of {SETTLE} s: background noise)", quiet, args.path)
    report("counter.add(1).result()", without_background(actor, quiet), args.path)
    report("client.submit(inc, 41).result()", without_background(task, quiet), args.path)


if __name__ == "__main__":
    main()
