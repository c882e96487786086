"""The wire format: how a message becomes frames and frames a message again.

Runs in: every process (each link encodes what it sends and decodes what it reads).

A message is one pickled tuple ``(tag, *fields)``, the tag being the index of
its type in the :data:`~localactors._protocol.Message` union, prefixed by the
count of out-of-band frames that follow it. Payloads of 1 MiB and more follow
as those frames (pickle protocol 5), so large data is not copied into the
envelope. A :class:`~localactors._wire.shm.Shared` payload pickles as the name
of its shared-memory segment (opened and unlinked by the receiver while the
envelope is unpickled, see :mod:`~localactors._wire.shm`), or, when there was
no room for a segment, as its buffers, which become out-of-band frames here.
The message types themselves live in :mod:`~localactors._protocol`.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import fields
from typing import Any

from .protocol import OUT_OF_BAND, ActorCall, CallErr, CallKind, CallOk, Message
from .records import _Big

_TYPES: tuple[type, ...] = Message.__args__  # type: ignore[attr-defined]
_TAG = {cls: i for i, cls in enumerate(_TYPES)}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _TYPES}

#: the envelope starts with how many out-of-band frames follow it (a gather or
#: scatter of many large values can have hundreds: one byte is not enough)
_COUNT = struct.Struct("!I")


def _wrap(value: object) -> object:
    if type(value) in (bytes, bytearray) and len(value) >= OUT_OF_BAND:  # type: ignore[arg-type]
        return _Big(value)  # type: ignore[arg-type]  # (a large received frame is a bytearray)
    if type(value) is tuple and value and type(value[-1]) in (tuple, bytes, bytearray):
        # ((key, payload), ...), (key, payload) and frame tuples
        return tuple(_wrap(v) for v in value)
    return value


#: actor calls are the hot path: their kind travels as a plain int, because
#: pickling an enum member costs a global lookup and an Enum call on each side
_CALL_TAG = _TAG[ActorCall]
_KINDS = {kind.value: kind for kind in CallKind}
#: per message type, the fields whose type mentions bytes: only they may carry
#: a payload to send out of band (TaskSpec wraps its own payload); the others
#: are not walked, which matters for the thousands of messages of a map()
_MAY_BE_LARGE = {cls: tuple(i for i, f in enumerate(fields(cls)) if "bytes" in str(f.type)) for cls in _TYPES}


def encode(msg: Message) -> list[bytes | pickle.PickleBuffer]:
    """Frames for ``msg``: the envelope, then one frame per large payload."""
    cls = type(msg)
    buffers: list[pickle.PickleBuffer] = []
    if cls is ActorCall:
        call: ActorCall = msg  # type: ignore[assignment]
        values: list[Any] = [call.call_id, call.actor, call.name, int(call.kind), _wrap(call.payload)]
    else:
        values = [getattr(msg, name) for name in _FIELDS[cls]]
        for i in _MAY_BE_LARGE[cls]:
            values[i] = _wrap(values[i])
    head = pickle.dumps((_TAG[cls], *values), protocol=5, buffer_callback=buffers.append)
    return [_COUNT.pack(len(buffers)) + head, *buffers]


#: a frame's size (multiprocessing's framing, see link.py) and then the envelope's count of out-of-band frames
_FRAME_HEAD = struct.Struct("!iI")
_OK_TAG = _TAG[CallOk]
_ERR_TAG = _TAG[CallErr]


#: what ``Link.send_call`` pickles, the hot path's own copy of :func:`encode` for an
#: ActorCall with a small payload: ``(CALL_TAG, call_id, actor, name, KIND_VALUE[kind], payload)``
CALL_TAG = _CALL_TAG
KIND_VALUE = {kind: kind.value for kind in CallKind}  # a dict lookup: no Python-level call


def frame_reply(msg: CallOk | CallErr) -> bytes | None:
    """A reply with a small payload as one frame ready to write; ``None`` when it is not small."""
    if type(msg) is CallOk:
        tag, data = _OK_TAG, msg.payload
    else:
        tag, data = _ERR_TAG, msg.error  # type: ignore[union-attr]
    if type(data) is not bytes or len(data) >= OUT_OF_BAND:
        return None
    head = pickle.dumps((tag, msg.call_id, data), 5)
    return _FRAME_HEAD.pack(len(head) + 4, 0) + head


def decode_small(envelope: bytes) -> Message:
    """:func:`decode` for a message with no out-of-band frames, given its envelope
    without the count (the hot path: a reply of a few dozen bytes)."""
    try:
        tagged = pickle.loads(envelope)
        tag = tagged[0]
        if type(tag) is int:
            if tag == _OK_TAG:
                return CallOk(tagged[1], tagged[2])
            if tag == _CALL_TAG and len(tagged) == 6:  # a request: the worker's hot path
                return ActorCall(tagged[1], tagged[2], tagged[3], _KINDS[tagged[4]], tagged[5])
        return _message(tagged)
    except Exception as err:
        raise ValueError(f"garbled message: {type(err).__name__}: {err}") from err


def decode(first: bytes, rest: list[bytes]) -> Message:
    """Rebuild a message from its frames; raise ``ValueError`` if garbled."""
    try:
        return _message(pickle.loads(memoryview(first)[_COUNT.size :], buffers=rest))
    except Exception as err:
        raise ValueError(f"garbled message: {type(err).__name__}: {err}") from err


def _message(tagged: Any) -> Message:
    tag = tagged[0]
    if type(tag) is not int or not 0 <= tag < len(_TYPES):
        raise TypeError(f"{tag!r} is not a message tag")
    if tag == _CALL_TAG:
        call_id, actor, name, kind, payload = tagged[1:]
        return ActorCall(call_id, actor, name, _KINDS[kind], payload)
    return _TYPES[tag](*tagged[1:])  # type: ignore[no-any-return]


def extra_frames(first: bytes) -> int:
    """How many out-of-band frames follow this envelope."""
    if len(first) < _COUNT.size:
        raise ValueError("garbled message: frame too short for a header")
    return int(_COUNT.unpack_from(first)[0])
