"""System calls per operation, counted by the kernel: a figure that load cannot move.

Runs in: the localactors benchmark child (``suite.measure``).

:func:`per_call` attaches a counter to each process named, runs the
operation ``n`` times, detaches, and divides. It uses ``perf stat`` (the
``raw_syscalls:sys_enter`` tracepoint: it counts without slowing the threads)
and falls back to ``strace -c -f`` (which slows them enough to add a few
wake-ups of its own). Without either tool, or without the permission to
attach, it returns ``None`` and the benchmark prints the row as missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

ATTACH = 0.5  #: seconds a counter is given to attach before the operations start


def per_call(pids: dict[str, int], fn: Callable[[], object], n: int) -> dict[str, float] | None:
    """System calls per ``fn()`` in each process of ``pids`` (name -> pid), all threads included."""
    for tool in (_perf, _strace):
        counts = tool(pids, fn, n)
        if counts is not None:
            return counts
    return None


def _run(commands: dict[str, list[str]], fn: Callable[[], object], n: int) -> dict[str, str] | None:
    """Start a counter per process, run ``fn`` ``n`` times, stop them; their outputs by name."""
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, cmd in commands.items():
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(ATTACH)  # neither tool says when it has attached
        if any(p.poll() is not None for p in procs.values()):
            return None  # refused: no permission, no tracepoint
        for _ in range(n):
            fn()
        outputs = {}
        for name, p in procs.items():
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=30)
            outputs[name] = err
        return outputs
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _perf(pids: dict[str, int], fn: Callable[[], object], n: int) -> dict[str, float] | None:
    perf = shutil.which("perf")
    if perf is None:
        return None
    event = "raw_syscalls:sys_enter"
    commands = {name: [perf, "stat", "-x,", "-e", event, "-p", str(pid)] for name, pid in pids.items()}
    outputs = _run(commands, fn, n)
    if outputs is None:
        return None
    counts = {}
    for name, err in outputs.items():
        for line in err.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] == event and fields[0].isdigit():
                counts[name] = int(fields[0]) / n
                break
        else:
            return None
    return counts


def _strace(pids: dict[str, int], fn: Callable[[], object], n: int) -> dict[str, float] | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: os.path.join(tmp, name) for name in pids}
        commands = {name: [strace, "-c", "-f", "-o", files[name], "-p", str(pid)] for name, pid in pids.items()}
        if _run(commands, fn, n) is None:
            return None
        counts = {}
        for name, path in files.items():
            try:
                with open(path) as f:
                    total = [line.split() for line in f if line.rstrip().endswith(" total")]
            except OSError:
                return None
            if not total or len(total[0]) < 4 or not total[0][3].isdigit():
                return None
            counts[name] = int(total[0][3]) / n
    return counts
