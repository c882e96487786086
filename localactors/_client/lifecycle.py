"""Live clusters and clients of this process: closed at interpreter exit; the main-guard check.

Runs in: the user's process.

A script that never calls ``close()`` must still exit, leaving no child
process and no private directory behind, as dask's do. Every
:class:`~localactors.LocalCluster` and :class:`~localactors.Client` that
starts registers here (weakly: the registry keeps nothing alive), and one
``atexit`` hook closes whatever is still open: clients first, then
clusters. The hook is registered after ``multiprocessing``'s own (hooks run
last registered first), so it runs before ``multiprocessing`` joins its
children: that join is what made such a script hang.

:func:`check_main_guard` turns the commonest first mistake, starting a
cluster at the top level of a script under the ``spawn`` start method (each
child re-runs the script, which starts a cluster, which...), into one line
that says what to do, before anything is started.
"""

from __future__ import annotations

import ast
import atexit
import logging
import multiprocessing
import multiprocessing.util  # registers its exit hook now: ours, registered later, runs first
import os
import sys
import threading
import weakref
from typing import Any

logger = logging.getLogger("localactors.lifecycle")

_clusters: weakref.WeakSet[Any] = weakref.WeakSet()
_clients: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_hooked = False
#: seconds each cluster gets to close at exit before its processes are killed
EXIT_TIMEOUT = 2.0


def _hook() -> None:
    global _hooked
    with _lock:
        if not _hooked:
            atexit.register(close_all)
            _hooked = True


def track_cluster(cluster: Any) -> None:
    """Remember a started cluster, weakly, to close it at exit if it is still open."""
    _hook()
    _clusters.add(cluster)


def track_client(client: Any) -> None:
    """Remember a started client, weakly, to close it at exit if it is still open."""
    _hook()
    _clients.add(client)


def live_clusters() -> list[Any]:
    """This process's clusters that are running (started and not closed)."""
    return [c for c in list(_clusters) if getattr(c, "status", None) == "running"]


def live_clients() -> list[Any]:
    """This process's clients that are running (started and not closed)."""
    return [c for c in list(_clients) if getattr(c, "status", None) == "running"]


def close_all(timeout: float = EXIT_TIMEOUT) -> None:
    """Close every client, then every cluster, still open in this process (the exit hook)."""
    for client in live_clients():
        try:
            client._close(timeout)
        except BaseException as err:  # at exit: report, and go on closing the rest
            logger.debug("closing %r at exit failed: %r", client, err)
    for cluster in live_clusters():
        try:
            cluster._close(timeout)
        except BaseException as err:
            logger.debug("closing %r at exit failed: %r", cluster, err)


# ------------------------------------------------------------- the main guard


class MainGuardError(RuntimeError):
    """A cluster was started at the top level of a script the children would run again."""


GUARD_MESSAGE = (
    "{where}: start the cluster under `if __name__ == \"__main__\":` -- with the {method!r} start method "
    "every worker process runs this script again (or pass start_method=\"fork\")"
)


def _guarded_lines(path: str) -> list[tuple[int, int]] | None:
    """Line ranges of the top-level ``if __name__ == "__main__":`` blocks of ``path`` (None: unreadable)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    ranges = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            ranges.append((node.lineno, node.end_lineno or node.lineno))
    return ranges


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is))):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


def unguarded_call_site(skip: int = 0) -> str | None:
    """``"script.py:12"`` when this call comes from the top level of ``__main__``'s file outside its main guard."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None  # the REPL, `python -c`, a notebook: spawn's children do not run it again
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__")):
        return None  # `python -m package` (pytest, unittest): as multiprocessing.spawn, children skip it
    if spec_name is None and os.path.splitext(os.path.basename(path))[0] == "ipython":
        return None  # multiprocessing.spawn skips it too
    path = os.path.abspath(path)
    frame = sys._getframe(skip + 1)
    outer = None
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and os.path.abspath(code.co_filename) == path:
            outer = frame  # keep going: the outermost one is the script's top level
        frame = frame.f_back  # type: ignore[assignment]
    if outer is None:
        return None
    ranges = _guarded_lines(path)
    if ranges is None:
        return None
    line = outer.f_lineno
    if any(start <= line <= end for start, end in ranges):
        return None
    return f"{os.path.basename(path)}:{line}"


def check_main_guard(start_method: str) -> None:
    """Raise :class:`MainGuardError` (one line) for a cluster started where spawned children would start it again."""
    if start_method == "fork":
        return
    inheriting = getattr(multiprocessing.current_process(), "_inheriting", False)
    if inheriting:
        # a spawned child, running the parent's script again while it starts: no traceback
        # of ours in every child, one line, and the parent's own check said it already
        raise SystemExit(GUARD_MESSAGE.format(where="a child process", method=start_method))
    where = unguarded_call_site(skip=1)
    if where is not None:
        raise MainGuardError(GUARD_MESSAGE.format(where=where, method=start_method))
