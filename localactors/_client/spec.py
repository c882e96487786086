"""Turning a call into a :class:`~localactors._wire.protocol.TaskSpec`: pickle it, name its key.

Runs in: the user's process (and in workers, under their ``get_client()``).

Pickling happens here, in the caller's thread, so a bad argument fails where
it was passed. A pure call's key is a hash of its pickled form (the same call
twice shares one task); an impure call or an actor gets a fresh key.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from .._base.serialize import SerialContext, dumps
from .._caller.node import Node
from .._wire import protocol as P


def funcname(fn: Any) -> str:
    """``fn``'s name, fit for a key (its prefix groups the key's tasks in ``progress``)."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return str(name).replace("<", "").replace(">", "")


def make_spec(
    node: Node, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None, pure: bool,
    workers: Any, resources: dict[str, float] | None, allow_other_workers: bool, retries: int,
    actor: bool, max_restarts: int, prefix: str | None = None,
) -> tuple[P.TaskSpec, SerialContext]:  # fmt: skip
    """The ``TaskSpec`` of ``fn(*args, **kwargs)``, pickled with ``node`` owning its handles.

    Without ``key`` the key is ``<prefix>-<token>``, the prefix being the
    function's name unless given (``map(key="INC")``, as dask names them):
    the token hashes the pickled call when pure, else it is random.
    """
    ctx = SerialContext(node=node, collect_deps=True)
    payload = dumps((fn, args, kwargs), ctx, what=f"the call of {funcname(fn)}")
    if key is None:
        if pure and not actor:
            token = hashlib.blake2b(payload, digest_size=16).hexdigest()
        else:
            token = uuid.uuid4().hex
        key = f"{prefix or funcname(fn)}-{token}"
    if isinstance(workers, str):
        workers = (workers,)
    spec = P.TaskSpec(
        key=key,
        payload=payload,
        deps=tuple(ctx.deps),
        workers=tuple(workers or ()),
        resources=tuple(sorted((resources or {}).items())),
        allow_other_workers=allow_other_workers,
        retries=retries,
        actor=actor,
        max_restarts=max_restarts,
    )
    return spec, ctx
