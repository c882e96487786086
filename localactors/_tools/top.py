"""``python -m localactors top``: a live text view of a running cluster.

Runs in: its own process, attached to a cluster another process started.

It finds the cluster through the ``cluster.json`` the cluster keeps in its
private directory (see ``_diagnostics``): ``--dir``, else
``$LOCALACTORS_CLUSTER``, else the newest cluster of this user in the temp
directory. It connects as one more client, asks every worker for its
statistics each ``--interval`` seconds, and redraws: one row per worker
(CPU, memory, results held, actors) and one per actor (calls, calls per
second since the last screen, errors, mean and max latency, queue depth).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import IO

from .._base.errors import ClusterBrokenError, ClusterClosedError
from .._client.cluster_file import ClusterRecord, locate
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


def run(directory: str | None = None, interval: float = 1.0, once: bool = False, out: IO[str] | None = None) -> int:
    """Attach and draw until interrupted (or once); returns an exit status."""
    from .._client.client import Client

    out = out if out is not None else sys.stdout
    try:
        record = locate(directory)
    except (LookupError, OSError) as err:
        print(f"localactors top: {err}", file=sys.stderr)
        return 1
    live = not once and out.isatty()
    previous: Snapshot | None = None
    last = time.monotonic()
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
                time.sleep(interval)  # the refresh rate of the view
        except KeyboardInterrupt:
            return 0
        except (ClusterClosedError, ClusterBrokenError) as err:
            print(f"localactors top: the cluster went away ({err})", file=sys.stderr)
            return 0
