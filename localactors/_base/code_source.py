"""Code pickled by value keeps where it came from, so remote tracebacks show its lines.

Runs in: every process (the sender pickles, the receiver rebuilds).

cloudpickle sends functions and classes of ``__main__`` (a script, a notebook
cell) by value and names every such code object's file ``<dynamic-code>``:
a traceback raised on a worker then shows neither the file nor the line.
:func:`dumps` is ``cloudpickle.dumps`` with one change: a code object keeps
its real file name, and when that file is not on disk (a notebook cell,
``python -c``) its source lines travel with it, once per file and pickle.
The receiver registers them in :mod:`linecache`, where ``traceback`` looks.
"""

from __future__ import annotations

import io
import linecache
import os
import types
from collections.abc import Callable
from typing import Any

#: source lines sent per file at most (a larger file is not sent: its traceback shows no lines)
MAX_SOURCE_LINES = 20_000


def dumps(obj: object, buffer_callback: Callable[[Any], object] | None = None) -> bytes:
    """``cloudpickle.dumps(obj, protocol=5)``, code objects keeping their file and source."""
    import cloudpickle

    table = cloudpickle.Pickler.dispatch_table
    reduce_code = table.get(types.CodeType)
    if reduce_code is None:  # every cloudpickle so far has one; if not, plain cloudpickle
        return bytes(cloudpickle.dumps(obj, protocol=5, buffer_callback=buffer_callback))
    sources: dict[str, list[str] | None] = {}

    def code_with_source(code: types.CodeType) -> tuple[Any, ...]:
        rebuild, args = reduce_code(code)
        filename = code.co_filename
        if filename not in sources:
            sources[filename] = _lines_to_send(filename)
        return (_rebuild_code, (rebuild, args, filename, sources[filename]))

    out = io.BytesIO()
    pickler = cloudpickle.Pickler.__new__(cloudpickle.Pickler)
    # the C pickler reads its dispatch table once, when initialised
    pickler.dispatch_table = {**table, types.CodeType: code_with_source}
    pickler.__init__(out, protocol=5, buffer_callback=buffer_callback)  # type: ignore[misc]
    pickler.dump(obj)
    return out.getvalue()


def _lines_to_send(filename: str) -> list[str] | None:
    if os.path.isfile(filename):  # one machine: the receiver reads the same file
        return None
    lines = linecache.getlines(filename)
    return lines if 0 < len(lines) <= MAX_SOURCE_LINES else None


def _rebuild_code(
    rebuild: Callable[..., types.CodeType], args: tuple[Any, ...], filename: str, lines: list[str] | None
) -> types.CodeType:
    code = rebuild(*args)
    if lines is not None and filename not in linecache.cache:
        # mtime None: linecache.checkcache keeps the entry (there is no file to compare with)
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return code.replace(co_filename=filename) if code.co_filename != filename else code
