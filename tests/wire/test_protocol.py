"""Unit tests of ``_wire/protocol.py`` and ``_wire/codec.py``: every message round-trips; big payloads out of band."""

from __future__ import annotations

import enum
import pickle
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localactors._wire import codec as W
from localactors._wire import protocol as P

# -- a sample value for every field type, built from the annotations --------------


def _sample(hint: Any, depth: int = 0) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is str:
        return f"s{depth}"
    if hint is bool:
        return True
    if hint is int:
        return 7 + depth
    if hint is float:
        return 1.5
    if hint is bytes:
        return b"payload-%d" % depth
    if hint is type(None):
        return None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return list(hint)[-1]
    if origin in (typing.Union, types.UnionType):
        # prefer the non-None member, so the field is really exercised
        return _sample(next(a for a in args if a is not type(None)), depth + 1)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return (_sample(args[0], depth + 1), _sample(args[0], depth + 2))
        return tuple(_sample(a, depth + 1) for a in args)
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return _instance(hint, depth + 1)
    raise NotImplementedError(f"no sample for {hint!r}")


def _instance(cls: type, depth: int = 0) -> Any:
    hints = typing.get_type_hints(cls, vars(P))
    values = [_sample(hints[f], depth) for f in W._FIELDS.get(cls, tuple(cls.__dataclass_fields__))]  # type: ignore[attr-defined]
    return cls(*values)


ALL_TYPES = list(W._TYPES)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_every_message_round_trips(cls: type) -> None:
    msg = _instance(cls)
    frames = W.encode(msg)
    assert W.extra_frames(bytes(frames[0])) == len(frames) - 1 == 0  # nothing big: one frame
    back = W.decode(bytes(frames[0]), [bytes(f) for f in frames[1:]])
    assert type(back) is cls
    assert back == msg


def test_every_tag_is_distinct() -> None:
    assert len(set(W._TAG.values())) == len(W._TYPES)
    assert all(isinstance(t, type) for t in W._TYPES)


def _round_trip(msg: P.Message) -> tuple[P.Message, list[Any]]:
    frames = W.encode(msg)
    first = bytes(frames[0])
    assert W.extra_frames(first) == len(frames) - 1
    return W.decode(first, [bytes(f) for f in frames[1:]]), frames


BIG = b"x" * W.OUT_OF_BAND


def test_large_payload_travels_out_of_band() -> None:
    msg = P.CallOk(3, BIG)
    back, frames = _round_trip(msg)
    assert back == msg
    assert len(frames) == 2
    assert len(bytes(frames[0])) < 1024  # the envelope does not carry the payload
    assert bytes(frames[1]) == BIG


def test_just_below_the_threshold_stays_in_band() -> None:
    small = b"y" * (W.OUT_OF_BAND - 1)
    back, frames = _round_trip(P.CallOk(1, small))
    assert len(frames) == 1
    assert back == P.CallOk(1, small)


def test_several_large_items_each_get_a_frame() -> None:
    items = tuple((f"k{i}", bytes([i]) * W.OUT_OF_BAND) for i in range(3))
    msg = P.DataReply(9, (*items, ("small", b"s")), ("gone",))
    back, frames = _round_trip(msg)
    assert len(frames) == 4
    assert back == msg


def test_task_spec_payload_goes_out_of_band_inside_run_task_and_submit() -> None:
    spec = P.TaskSpec("k", BIG, ("dep",), workers=("w",), resources=(("GPU", 1.0),), retries=2)
    for msg in (P.RunTask(spec, (("dep", "/tmp/x/worker-0"),)), P.SubmitTasks((spec, spec))):
        back, frames = _round_trip(msg)
        assert back == msg
        assert len(frames) >= 2
        assert len(bytes(frames[0])) < 4096


def test_relay_frames_go_out_of_band() -> None:
    inner = W.encode(P.CallOk(1, BIG))
    msg = P.RelayTo("/tmp/a/worker-1", tuple(bytes(f) for f in inner))
    back, frames = _round_trip(msg)
    assert back == msg
    assert len(frames) == 2
    assert isinstance(back, P.RelayTo)
    assert W.decode(back.frames[0], list(back.frames[1:])) == P.CallOk(1, BIG)


def test_more_than_255_out_of_band_frames() -> None:
    # a gather or scatter of many large values: the frame count must not overflow
    msg = P.Scatter(tuple((f"k{i}", BIG) for i in range(300)))
    back, frames = _round_trip(msg)
    assert len(frames) == 301
    assert back == msg


# -- garbled input --------------------------------------------------------------------


def test_empty_frame_is_rejected() -> None:
    with pytest.raises(ValueError):
        W.extra_frames(b"")
    with pytest.raises(ValueError):
        W.decode(b"", [])


@pytest.mark.parametrize(
    "first",
    [
        W._COUNT.pack(0) + b"not a pickle",
        W._COUNT.pack(0) + pickle.dumps(None),
        W._COUNT.pack(0) + pickle.dumps((10_000, 1, 2)),  # unknown tag
        W._COUNT.pack(0) + pickle.dumps((-1, 1)),  # a negative tag is not a tag
        W._COUNT.pack(0) + pickle.dumps(("Hello", 1)),  # a tag must be an int
        W._COUNT.pack(0) + pickle.dumps((W._TAG[P.Hello], "only-one-field")),
        W._COUNT.pack(0) + pickle.dumps((W._TAG[P.Ack], 1, 2, 3)),
    ],
)
def test_garbled_envelope_raises_value_error(first: bytes) -> None:
    with pytest.raises(ValueError, match="garbled"):
        W.decode(first, [])


def test_truncated_envelope_and_missing_frames_raise_value_error() -> None:
    frames = W.encode(P.CallOk(1, BIG))
    first = bytes(frames[0])
    with pytest.raises(ValueError):
        W.decode(first[: len(first) // 2], [bytes(frames[1])])
    with pytest.raises(ValueError):
        W.decode(first, [])  # the out-of-band frame never came


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_value_error(data: bytes) -> None:
    try:
        msg = W.decode(data, [])
    except ValueError:
        return
    assert type(msg) in W._TYPES  # the rare valid message is still a message


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**62),
    st.binary(max_size=64),
    st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=32)), max_size=5),
)
def test_round_trip_of_arbitrary_field_values(req_id: int, blob: bytes, items: list[tuple[str, bytes]]) -> None:
    for msg in (P.CallOk(req_id, blob), P.DataReply(req_id, tuple(items), ("m",), blob)):
        back, _ = _round_trip(msg)
        assert back == msg
