"""The error family, and how a remote exception crosses a process boundary.

Runs in: every process.

Errors are named by who caused them:

* ``ClusterClosedError`` -- *you* closed the cluster or client, then used it.
* ``ClusterBrokenError`` -- the manager went away without being asked to.
* ``WorkerLostError`` / ``ActorLostError`` -- a worker died under your work.
* ``KilledWorker`` -- a task took down too many workers and was given up.
* ``SerializationError`` -- an object could not be pickled or unpickled.

A task's or an actor method's own exception re-raises in the caller with its
original type; the worker's formatted traceback hangs off it as ``__cause__``
(a :class:`RemoteTraceback`), the way ``concurrent.futures`` does it.
"""

from __future__ import annotations

import os
import pickle
import traceback
import types
from typing import Any

__all__ = [
    "ActorLostError",
    "ClusterBrokenError",
    "ClusterClosedError",
    "KilledWorker",
    "LocalActorsError",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "WorkerLostError",
]


class LocalActorsError(Exception):
    """Base class of every error localactors raises on its own account."""


class ClusterClosedError(LocalActorsError):
    """The cluster or client was closed by its owner and cannot be used."""


class ClusterBrokenError(LocalActorsError):
    """The manager process died or its link broke; the cluster is unusable."""


class WorkerStartError(ClusterBrokenError):
    """The cluster could not start: its worker processes kept dying before registering."""


class WorkerLostError(LocalActorsError):
    """A worker process died while holding or running the work asked for."""

    def __init__(self, message: str, worker: str | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.worker = worker
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.args[0], self.worker, self.exitcode))


class ActorLostError(WorkerLostError):
    """The actor's worker died; the call did not (or may not have) run."""


class KilledWorker(WorkerLostError):
    """A task was running on too many workers that died, and was given up."""


class SerializationError(LocalActorsError, TypeError):
    """An argument, result or exception could not be pickled or unpickled."""


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in a worker.

    ``frames`` holds the same frames as ``(filename, lineno, name)``, from
    which :func:`remote_traceback` rebuilds a traceback object.
    """

    def __init__(self, tb: str, frames: tuple[tuple[str, int, str], ...] = ()) -> None:
        super().__init__(tb)
        self.tb = tb
        self.frames = frames

    def __str__(self) -> str:
        return self.tb


class RemoteError(LocalActorsError):
    """Stands in for a remote exception that could not be sent as itself.

    Keeps the original type's name and message; the traceback is the cause.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message))


#: our own package: a remote traceback starts at the first frame outside it
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _users_part(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without its leading frames of localactors' own code (the worker running the task)."""
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb


def _format(exc: BaseException) -> tuple[str, tuple[tuple[str, int, str], ...]]:
    tb = _users_part(exc.__traceback__)
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    frames = tuple((f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(tb))
    return text, frames


def remote_traceback(exc: BaseException | None) -> types.TracebackType | None:
    """A traceback object of the worker's frames that raised ``exc`` (``Future.traceback()``).

    Rebuilt, as tblib does for dask, from the frames the worker reported: each
    is a real frame of a code object named and numbered like the original, so
    ``traceback.extract_tb`` and debuggers read it (the source lines come from
    the files, when they exist here). ``None`` for no error or a local one.
    """
    cause = getattr(exc, "__cause__", None)
    if not isinstance(cause, RemoteTraceback) or not cause.frames:
        return exc.__traceback__ if exc is not None else None
    tb: types.TracebackType | None = None
    for filename, lineno, name in reversed(cause.frames):
        frame = _frame_at(filename, max(1, lineno), name)
        if frame is not None:
            tb = types.TracebackType(tb, frame, frame.f_lasti, frame.f_lineno)
    return tb


class _Here(Exception):
    pass


def _frame_at(filename: str, lineno: int, name: str) -> types.FrameType | None:
    """A frame of a code object called ``name``, stopped at line ``lineno`` of ``filename``."""
    try:
        code = compile("\n" * (lineno - 1) + "raise _Here()", filename, "exec").replace(co_name=name)
        exec(code, {"_Here": _Here, "__name__": "<remote>"})
    except _Here as here:
        assert here.__traceback__ is not None and here.__traceback__.tb_next is not None
        return here.__traceback__.tb_next.tb_frame
    except Exception:
        return None
    return None


def without_our_frames(exc: BaseException) -> BaseException:
    """``exc`` ready to be raised again from a public method: a remote error loses
    the frames of our own code it gathered on earlier raises (they tell the user
    nothing; the worker's traceback hangs off it as ``__cause__``)."""
    if isinstance(exc.__cause__, RemoteTraceback) or _is_cancelled(exc):
        return exc.with_traceback(None)
    return exc


def _is_cancelled(exc: Any) -> bool:
    from concurrent.futures import CancelledError

    return isinstance(exc, CancelledError)


def _describe(exc: BaseException) -> tuple[str, str]:
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not lose the error itself
        message = "<str() failed>"
    return f"{type(exc).__module__}.{type(exc).__qualname__}", message


def dump_exception(exc: BaseException) -> bytes:
    """Pickle an exception with its formatted traceback; never raises.

    An exception that cannot be pickled, or cannot be rebuilt from its pickle
    (an ``__init__`` with unusual arguments), is sent as a :class:`RemoteError`.
    Its type's name and message travel beside it, so the receiver can still
    say what it was if *it* cannot rebuild it (its class is not importable there).
    """
    tb, frames = _format(exc)
    type_name, message = _describe(exc)
    body = b""
    try:
        body = pickle.dumps(exc, protocol=5)
        pickle.loads(body)  # catch exceptions that pickle but will not unpickle
    except Exception:
        try:
            import cloudpickle

            body = bytes(cloudpickle.dumps(exc, protocol=5))
            pickle.loads(body)
        except Exception:
            body = b""
    return pickle.dumps((body, tb, type_name, message, frames), protocol=5)


def load_exception(data: bytes) -> BaseException:
    """Rebuild an exception from :func:`dump_exception`, traceback as cause."""
    exc: BaseException
    try:
        body, tb, type_name, message, *rest = pickle.loads(data)
    except Exception as err:  # not made by dump_exception: say so, keep going
        return RemoteError(type(err).__name__, f"garbled remote exception: {err}")
    try:
        exc = pickle.loads(body) if body else RemoteError(type_name, message)
    except Exception as err:  # e.g. its class is not importable here
        exc = RemoteError(type_name, f"{message} (could not be rebuilt here: {type(err).__name__}: {err})")
    if not isinstance(exc, BaseException):
        exc = RemoteError(type_name, message)
    if tb:
        exc.__cause__ = RemoteTraceback(tb, rest[0] if rest else ())
    return exc
