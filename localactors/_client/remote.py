"""What ``Client.run`` and ``upload_file`` need besides messages.

Runs in: the user's process (``run_results``) and in workers
(``install_file``, sent there by ``Client.upload_file`` through ``Client.run``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from typing import Any

from .._base.errors import load_exception
from .._base.serialize import SerialContext, loads
from .._caller.node import Node
from .._wire import protocol as P


def run_results(node: Node, reply: P.RunReply, on_error: str) -> dict[str, Any]:
    """``{worker address: result}`` from the manager's ``RunReply``; errors as ``on_error`` says."""
    out: dict[str, Any] = {}
    for address, ok, payload in reply.results:
        if ok:
            ctx = SerialContext(node=node)
            try:
                out[address] = loads(payload, ctx, what=f"run()'s result from {address}")
            finally:
                node.refs.unpin(ctx.unpins)
            continue
        error = load_exception(payload)
        if on_error == "raise":
            raise error
        if on_error == "return":
            out[address] = error
    return out


def install_file(name: str, data: bytes, load: bool) -> None:
    """Write an uploaded file where this worker imports from (runs in a worker, by ``Client.run``).

    ``.py`` files go to an ``uploads`` directory of the cluster's private
    directory, put on ``sys.path``; archives (``.zip``, ``.egg``, ``.whl``,
    ``.pyz``) go there too, and on ``sys.path`` themselves. Written to a
    temporary name then renamed: the workers of a cluster share the directory.
    """
    from .._base.context import get_worker

    if os.sep in name or name in ("", ".", ".."):
        raise ValueError(f"upload_file: bad file name {name!r}")
    directory = os.path.join(get_worker().config.directory, "uploads")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.part"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
    module, ext = os.path.splitext(name)
    entry = path if ext in (".zip", ".egg", ".whl", ".pyz") else directory
    if entry not in sys.path:
        sys.path.insert(0, entry)
    if ext == ".py":
        # a bytecode cache is checked by the source's size and mtime in whole seconds: a
        # same-sized file uploaded again within the second would be read from the old one
        try:
            os.remove(importlib.util.cache_from_source(path))
        except OSError:
            pass
    importlib.invalidate_caches()
    if not load or ext not in (".py", ".zip", ".egg", ".pyz"):
        return
    try:
        if module in sys.modules:
            importlib.reload(sys.modules[module])
        else:
            importlib.import_module(module)
    except ModuleNotFoundError:
        if ext == ".py":
            raise
        # an archive need not hold a module of its own name: it is on sys.path, that is enough
