"""``python -m localactors top``: a live text view of a running cluster.

Runs in: its own process, attached to a cluster another process started.

It finds the cluster through the ``cluster.json`` the cluster keeps in its
private directory (see :mod:`localactors._client.cluster_file`): ``--dir``, else
``$LOCALACTORS_CLUSTER``, else ``--pid`` (the program that started it), else
the only cluster of this user in the temp directory; with several it lists
them and asks for ``--pid`` rather than guess. ``q`` quits.

It connects as one more client, asks every worker for its
statistics each ``--interval`` seconds, and redraws: one row per worker
(CPU, memory, results held, actors) and one per actor (calls, calls per
second since the last screen, errors, mean and max latency, queue depth).
"""

from __future__ import annotations

import os
import select
import shutil
import sys
import time
from typing import IO, Any

from .._base.errors import ClusterBrokenError, ClusterClosedError
from .._client.cluster_file import ENV_VAR, ClusterRecord, find_clusters, read_cluster_file
from .._client.diagnostics import Snapshot, collect


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n else "-"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def render(
    snap: Snapshot, record: ClusterRecord, previous: Snapshot | None, dt: float, max_rows: int | None = None
) -> str:
    """The screen for one snapshot; ``previous`` (taken ``dt`` s earlier) gives the rates."""
    before = {a.key: a.calls for _, a in previous.actors} if previous is not None else {}
    lines = [
        f"localactors top - {record.directory} (started by pid {record.pid}) - "
        f"{len(snap.workers)} workers, {len(snap.actors)} actors - {time.strftime('%H:%M:%S')}",
        "",
        f"{'WORKER':<12} {'PID':>8} {'CPU%':>6} {'RSS':>11} {'RESULTS':>8} {'ACTORS':>7}",
    ]
    for w in sorted(snap.workers, key=lambda w: w.name):
        lines.append(f"{w.name:<12} {w.pid:>8} {w.cpu_percent:>6.1f} {_mib(w.rss):>11} {w.n_data:>8} {w.n_actors:>7}")
    for name in snap.unreachable:
        lines.append(f"{name:<12} {'(no answer)':>8}")
    lines += [
        "",
        f"{'ACTOR':<28} {'CLASS':<16} {'WORKER':<10} {'CALLS':>8} {'CALLS/S':>8} {'ERRORS':>7} "
        f"{'MEAN ms':>8} {'MAX ms':>8} {'QUEUED':>7} {'RUNNING':>7}",
    ]
    rows = []
    for worker, a in snap.actors:
        rate = (a.calls - before[a.key]) / dt if a.key in before and dt > 0 else 0.0
        mean = a.total_time / a.calls if a.calls else 0.0
        rows.append((rate, a.calls, worker, a, mean))
    rows.sort(key=lambda r: (-r[0], -r[1], r[3].key))
    shown = rows if max_rows is None else rows[: max(0, max_rows)]
    for rate, calls, worker, a, mean in shown:
        key = a.key if len(a.key) <= 28 else a.key[:27] + "~"
        lines.append(
            f"{key:<28} {a.cls_name[:16]:<16} {worker:<10} {calls:>8} {rate:>8.1f} {a.errors:>7} "
            f"{_ms(mean):>8} {_ms(a.max_time):>8} {a.queued:>7} {a.running:>7}"
        )
    if len(shown) < len(rows):
        lines.append(f"... and {len(rows) - len(shown)} more actors")
    return "\n".join(lines)


def _program(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline()) or "?"
    except psutil.Error:
        return "?"


def describe(records: list[ClusterRecord]) -> str:
    """One line per cluster: the pid and command line of the program that started it."""
    lines = [f"{'PID':>8}  {'STARTED':<8}  {'DIRECTORY':<28}  PROGRAM"]
    for r in records:
        started = time.strftime("%H:%M:%S", time.localtime(r.started))
        lines.append(f"{r.pid:>8}  {started:<8}  {r.directory:<28}  {_program(r.pid)[:80]}")
    return "\n".join(lines)


def list_clusters(out: IO[str] | None = None) -> int:
    """``localactors top --list``: this user's running clusters, newest first."""
    out = out if out is not None else sys.stdout
    records = find_clusters()
    if not records:
        print("no running localactors cluster of yours", file=out)
        return 0
    print(describe(records), file=out)
    return 0


def choose(directory: str | None, pid: int | None) -> ClusterRecord:
    """The cluster to watch; ``LookupError`` with what to do when there is no single answer."""
    directory = directory or os.environ.get(ENV_VAR) or None
    if directory:
        return read_cluster_file(directory)
    records = find_clusters()
    if pid is not None:
        mine = [r for r in records if r.pid == pid]
        if not mine:
            raise LookupError(f"no running cluster was started by pid {pid}; `localactors top --list` shows yours")
        if len(mine) > 1:
            raise LookupError(f"pid {pid} runs {len(mine)} clusters; choose one with --dir:\n{describe(mine)}")
        return mine[0]
    if not records:
        raise LookupError("no running localactors cluster of yours: start one (LocalCluster or Client()) first")
    if len(records) > 1:
        raise LookupError(
            f"{len(records)} clusters are running; choose one with --pid PID:\n{describe(records)}"
        )
    return records[0]


class _Keys:
    """Single key presses from a terminal (``q`` quits), restored on exit; a no-op elsewhere."""

    def __init__(self) -> None:
        self._saved: Any = None
        self._fd = -1
        try:
            if sys.stdin is not None and sys.stdin.isatty():
                import termios
                import tty

                self._fd = sys.stdin.fileno()
                self._saved = termios.tcgetattr(self._fd)
                tty.setcbreak(self._fd)
        except (OSError, ValueError, ImportError):
            self._saved = None

    def wait_for_quit(self, timeout: float) -> bool:
        """Wait ``timeout`` seconds (the refresh interval); True as soon as ``q`` is pressed."""
        if self._saved is None:
            time.sleep(timeout)  # no keyboard to listen to: the refresh rate of the view
            return False
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready and os.read(self._fd, 1) in (b"q", b"Q"):
                return True

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None


def run(
    directory: str | None = None,
    interval: float = 1.0,
    once: bool = False,
    out: IO[str] | None = None,
    pid: int | None = None,
) -> int:
    """Attach and draw until ``q`` or Ctrl-C (or once); returns an exit status."""
    from .._client.client import Client

    out = out if out is not None else sys.stdout
    try:
        record = choose(directory, pid)
    except (LookupError, OSError) as err:
        print(f"localactors top: {err}", file=sys.stderr)
        return 1
    live = not once and out.isatty()
    previous: Snapshot | None = None
    last = time.monotonic()
    keys = _Keys() if live else None
    with Client(record.address, authkey=record.authkey, name=f"top-{os.getpid()}") as client:
        try:
            while True:
                try:
                    snap = collect(client)
                except TimeoutError:
                    continue  # the manager is busy: try again
                now = time.monotonic()
                height = shutil.get_terminal_size().lines - 8 - len(snap.workers) if live else None
                screen = render(snap, record, previous, now - last, height)
                previous, last = snap, now
                if live:
                    out.write("\x1b[H\x1b[2J")  # home and clear: redraw in place
                out.write(screen + "\n")
                out.flush()
                if once:
                    return 0
                if keys is not None:
                    if keys.wait_for_quit(interval):
                        return 0
                else:
                    time.sleep(interval)  # the refresh rate of the view
        except KeyboardInterrupt:
            return 0
        except (ClusterClosedError, ClusterBrokenError) as err:
            print(f"localactors top: the cluster went away ({err})", file=sys.stderr)
            return 0
        finally:
            if keys is not None:
                keys.restore()
