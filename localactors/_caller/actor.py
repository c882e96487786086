"""The ``Actor`` proxy: a handle on an object living in a worker.

Runs in: any calling process (clients, tasks, other actors).

A method call sends the request at once and returns an :class:`ActorFuture`;
an attribute read blocks and returns the value, except where the node says
calls return awaitables (``Node.in_async_context``: an asynchronous client's
event loop, or a worker's), where it returns the ``ActorFuture`` to await. The proxy knows its actor's public members
from the worker's report after construction, so a misspelt name fails here,
immediately, with ``AttributeError``.

A handle sent anywhere (to a task, another actor, back to a client) arrives
as a working proxy that calls the owning worker directly; while in flight it
is *pinned* at the manager so the actor cannot be freed under it.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Callable
from typing import Any

from .._base import html
from .._base.context import default_node
from .._base.errors import ClusterClosedError
from .._base.futures import ActorFuture, Future
from .._base.nested import futures_in, replace
from .._base.serialize import EMPTY_ARGS, SerialContext, current_context, dumps, plain_values
from .._wire import protocol as P
from .._wire.shm import THRESHOLD
from .node import Node


class Actor:
    """A proxy for an actor living in a worker.

    >>> counter = client.submit(Counter, actor=True).result()
    >>> counter.increment().result()
    1
    """

    __slots__ = ("__weakref__", "_address", "_info", "_key", "_node", "_worker")
    _key: str
    _address: str
    _worker: str
    _info: P.ActorInfo
    _node: Node  # the calling side of this process (a client's, or a worker's)

    def __new__(cls, key: str, address: str, worker: str, info: P.ActorInfo, node: Node | None) -> Actor:
        # each actor class gets a proxy class of its own, with the remote methods as methods
        return object.__new__(_proxy_class(info) if cls is Actor else cls)

    def __init__(self, key: str, address: str, worker: str, info: P.ActorInfo, node: Node | None) -> None:
        if node is None:
            raise ClusterClosedError("no client or worker in this process to call the actor through")
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_address", address)
        object.__setattr__(self, "_worker", worker)
        object.__setattr__(self, "_info", info)
        object.__setattr__(self, "_node", node)
        node.refs.incref(key)

    def __del__(self) -> None:
        try:
            self._node.refs.decref(self._key)
        except Exception:
            pass

    @property
    def key(self) -> str:
        return str(self._key)

    @property
    def worker(self) -> str:
        """The name of the worker holding the actor (its current one, after a restart)."""
        address = self._node.actor_address(self._key, self._address)
        if address != self._address:  # restarted elsewhere; a worker's socket is named after it
            return str(os.path.basename(address))
        return str(self._worker)

    def __repr__(self) -> str:
        return f"<Actor: {self._info.cls_name}, key={self._key}>"

    def _repr_html_(self) -> str:
        info = self._info
        return html.actor_html(info.cls_name, self._key, self._worker, info.methods, info.attributes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Actor) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __dir__(self) -> list[str]:
        return sorted({*self._info.methods, *self._info.attributes})

    def __getattr__(self, name: str) -> Any:
        # (the actor's methods are the proxy class's own: see _proxy_class)
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._info.attributes:
            fut = self._send(name, P.CallKind.GETATTR, EMPTY_ARGS)
            if self._node.in_async_context():
                return fut
            return fut.result()
        raise AttributeError(f"{self._info.cls_name!r} actor has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"cannot set {name!r} on an actor proxy: change the actor's state by calling one of its methods"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r} on an actor proxy")

    def _send(self, name: str, kind: P.CallKind, payload: bytes, ctx: SerialContext | None = None) -> ActorFuture:
        node = self._node
        if ctx is not None:
            node.send_pins(ctx)
        fut: ActorFuture = node.call_actor(
            self._address, self._key, name, kind, payload, f"{self._info.cls_name}.{name}"
        )
        if not fut.done():
            # the pending call keeps this proxy (so the actor) alive: dropping the
            # last handle right after a fire-and-forget call must not let the
            # release, which goes through the manager, overtake the call.
            fut.keep_until_done(self)  # (after sending: it is dropped again if the reply came first)
        return fut

    def __reduce__(self) -> tuple[Any, ...]:
        ctx = current_context()
        token = ""
        if ctx is not None and ctx.resolve is None:  # being sent by a node
            token = uuid.uuid4().hex
            ctx.pins.append((token, self._key))
        # a restarted actor travels with its new address (a node that joined
        # after the restart never heard of the move)
        address = self._node.actor_address(self._key, self._address)
        return (_rebuild, (self._key, address, self._worker, self._info, token))


def _rebuild(key: str, address: str, worker: str, info: P.ActorInfo, token: str) -> Actor:
    ctx = current_context()
    node = ctx.node if ctx is not None and ctx.node is not None else default_node(address)
    actor = Actor(key, address, worker, info, node)
    if token and ctx is not None:
        ctx.unpins.append(token)
    return actor


_METHOD = P.CallKind.METHOD


def _remote_method(cls_name: str, name: str) -> Callable[..., ActorFuture]:
    """The method ``name`` of proxies of ``cls_name``: calling it sends the request, returns a future."""

    def method(self: Actor, *args: Any, **kwargs: Any) -> ActorFuture:
        if not args and not kwargs:  # the common call, made lean: straight to the node
            return self._node.call_actor(self._address, self._key, name, _METHOD, EMPTY_ARGS, label, self)
        if plain_values((*args, *kwargs.values()) if kwargs else args, THRESHOLD):
            # plain values only (numbers, strings, small bytes, small containers of them):
            # no future or handle can be inside, so no walk, no context, no shared-memory
            # scan; one pickle, and the usual path again if it turns out large
            payload = pickle.dumps((args, kwargs), 5)
            if len(payload) < THRESHOLD:
                return self._node.call_actor(self._address, self._key, name, _METHOD, payload, label, self)
        found = futures_in((args, kwargs))
        if found:
            if self._node.in_async_context() and not all(_ready(f) for f in found):
                # resolving would block the event loop (for ever, if the future
                # needs this loop); sending later would let later calls overtake
                raise TypeError(
                    f"{label}: in async code, await futures before passing them "
                    "to an actor method (their values are sent, and these are not ready)"
                )
            args, kwargs = replace((args, kwargs), _value)
        ctx = SerialContext(node=self._node)
        payload = dumps((args, kwargs), ctx, what=f"the arguments of {label}", shared=True)
        return self._send(name, P.CallKind.METHOD, payload, ctx)

    label = f"{cls_name}.{name}"
    method.__name__ = name
    method.__qualname__ = label
    method.__doc__ = f"Call ``{label}`` on the actor: returns an :class:`ActorFuture` at once."
    return method


def _proxy_class(info: P.ActorInfo) -> type[Actor]:
    """The proxy class for actors of ``info``'s class: :class:`Actor` with their methods as its own.

    A method is then found by a plain attribute lookup (no ``__getattr__``, no
    object made per call). Names :class:`Actor` has itself (``key``,
    ``worker``) stay the proxy's, as they are under ``__getattr__``.
    """
    token = (info.cls_name, info.methods)
    cls = _proxy_classes.get(token)
    if cls is None:
        members: dict[str, Any] = {"__slots__": ()}
        for name in info.methods:
            if not hasattr(Actor, name):
                members[name] = _remote_method(info.cls_name, name)
        cls = type(f"Actor[{info.cls_name}]", (Actor,), members)
        cls.__module__ = Actor.__module__
        if len(_proxy_classes) < _MAX_PROXY_CLASSES:
            _proxy_classes[token] = cls
    return cls


#: proxy classes by (class name, methods); bounded: a program making classes
#: without end gets a fresh proxy class for each actor beyond it
_proxy_classes: dict[tuple[str, Any], type[Actor]] = {}
_MAX_PROXY_CLASSES = 1024


def _ready(f: Future | ActorFuture) -> bool:
    """Can ``f`` give its value without blocking? (A task's value is a round trip away.)"""
    return isinstance(f, ActorFuture) and f.done()


def _value(f: Future | ActorFuture) -> Any:
    """``f``'s value, waiting for it in this thread (never an awaitable)."""
    if isinstance(f, ActorFuture):
        f.wait_done(None)
        return f.outcome()
    return f.result()
