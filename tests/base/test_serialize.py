"""Unit tests of ``_base/serialize.py`` (pickle, cloudpickle fallback, clear errors) and of
how ``_base/errors.py`` carries a remote exception across a process boundary."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from localactors import RemoteError, RemoteTraceback, SerializationError
from localactors._base import code_source
from localactors._base.errors import dump_exception, load_exception
from localactors._base.futures import Future, TaskState
from localactors._base.serialize import SerialContext, dumps, loads
from localactors._caller.node import RefTracker


def plain(x: int) -> int:
    return x * 2


class Plain:
    def __init__(self, v: int) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and other.v == self.v


@pytest.fixture
def cloudpickle_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every object handed to cloudpickle (the fallback, through ``code_source.dumps``)."""
    calls: list[object] = []
    real = code_source.dumps

    def spy(obj: object, *args: Any, **kwargs: Any) -> bytes:
        calls.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(code_source, "dumps", spy)
    return calls


# -- pickle first, cloudpickle when needed ------------------------------------------


@pytest.mark.parametrize("obj", [1, "s", b"b", [1, (2, 3)], {"a": {1, 2}}, plain, Plain(3), None])
def test_plain_pickle_for_importable_objects(obj: object, cloudpickle_calls: list[object]) -> None:
    data = dumps(obj)
    assert cloudpickle_calls == []
    assert data == pickle.dumps(obj, protocol=5)
    assert loads(data) == obj


def test_lambda_falls_back_to_cloudpickle(cloudpickle_calls: list[object]) -> None:
    fn = lambda x: x + 41  # noqa: E731
    data = dumps(fn)
    assert cloudpickle_calls == [fn]
    assert loads(data)(1) == 42


def test_closure_falls_back_to_cloudpickle(cloudpickle_calls: list[object]) -> None:
    offset = 100

    def add(x: int) -> int:
        return x + offset

    back = loads(dumps((add, (1,), {})))
    assert len(cloudpickle_calls) == 1
    assert back[0](*back[1]) == 101


def test_local_class_and_its_instances(cloudpickle_calls: list[object]) -> None:
    class Local:
        def __init__(self) -> None:
            self.n = 5

        def twice(self) -> int:
            return self.n * 2

    cls = loads(dumps(Local))
    assert cls().twice() == 10
    obj = loads(dumps(Local()))
    assert obj.twice() == 10
    assert len(cloudpickle_calls) == 2


def test_objects_from_main_go_by_value(monkeypatch: pytest.MonkeyPatch, cloudpickle_calls: list[object]) -> None:
    # plain pickle *can* write `__main__.fn`, but a worker's __main__ is not ours
    def from_main(x: int) -> int:
        return x - 1

    from_main.__module__ = "__main__"
    from_main.__qualname__ = "from_main"
    monkeypatch.setattr(sys.modules["__main__"], "from_main", from_main, raising=False)
    data = dumps(from_main)
    assert cloudpickle_calls == [from_main]
    # a fresh interpreter whose __main__ has no `from_main` can still run it
    code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())(10))"
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60, check=True)
    assert out.stdout.strip() == b"9"


# -- clear errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "type_name"),
    [
        (threading.Lock(), "_thread.lock"),
        ([1, {"deep": [threading.Lock()]}], "_thread.lock"),
        ((i for i in range(3)), "builtins.generator"),
    ],
)
def test_unpicklable_names_the_type(obj: object, type_name: str) -> None:
    with pytest.raises(SerializationError, match=type_name) as info:
        dumps(obj, what="the call of f")
    assert "the call of f" in str(info.value)
    assert isinstance(info.value, TypeError)  # SerializationError is a TypeError too


def test_unpicklable_attribute_of_an_object_is_named() -> None:
    sock = socket.socket()
    try:
        holder = Plain(1)
        holder.conn = sock  # type: ignore[attr-defined]
        with pytest.raises(SerializationError, match=r"socket"):
            dumps(holder)
    finally:
        sock.close()


def _deep_list(n: int) -> list[Any]:
    x: list[Any] = []
    for _ in range(n):
        x = [x]
    return x


def test_too_deep_object_gives_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="nested too deeply"):
        dumps(_deep_list(100_000), what="the argument")


def test_too_deep_object_in_the_cloudpickle_path_gives_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="nested too deeply"):
        dumps([lambda: 0, _deep_list(100_000)])


def test_unpickle_failure_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot unpickle the result"):
        loads(b"\x80\x05garbage", what="the result")


# -- futures inside a payload become dependencies ------------------------------------


class _FakeCore:
    def __init__(self) -> None:
        self.refs = RefTracker()
        self.asynchronous = False
        self.loop = None


def test_future_in_arguments_is_a_dependency() -> None:
    core = _FakeCore()
    fut = Future("key-1", core, TaskState())  # type: ignore[arg-type]
    ctx = SerialContext(collect_deps=True)  # as submit() pickles a task's arguments
    data = dumps((plain, ([fut], {"x": fut}), {}), ctx)
    assert list(ctx.deps) == ["key-1"]
    seen: list[str] = []

    def resolve(key: str) -> int:
        seen.append(key)
        return 21

    fn, args, _kwargs = loads(data, SerialContext(resolve=resolve))
    assert fn is plain
    assert args == ([21], {"x": 21})
    assert seen == ["key-1"]  # pickle memoizes the one Future: resolved once


def test_future_dependency_survives_the_cloudpickle_fallback() -> None:
    core = _FakeCore()
    fut = Future("key-2", core, TaskState())  # type: ignore[arg-type]
    ctx = SerialContext(collect_deps=True)
    data = dumps((lambda v: v + 1, (fut,), {}), ctx)
    assert list(ctx.deps) == ["key-2"]
    fn, args, _ = loads(data, SerialContext(resolve=lambda key: 1))
    assert fn(*args) == 2


def test_future_outside_submit_cannot_be_pickled() -> None:
    core = _FakeCore()
    fut = Future("key-3", core, TaskState())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="only be sent as an argument"):
        pickle.dumps(fut)


# -- remote exceptions -----------------------------------------------------------------


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as err:
        return err


def test_exception_keeps_its_type_and_carries_the_traceback() -> None:
    err = _raise(KeyError("missing"))
    back = load_exception(dump_exception(err))
    assert type(back) is KeyError
    assert back.args == ("missing",)
    assert isinstance(back.__cause__, RemoteTraceback)
    assert "_raise" in str(back.__cause__)
    assert "KeyError: 'missing'" in back.__cause__.tb


def test_local_exception_class_goes_by_value() -> None:
    class Custom(ValueError):
        pass

    back = load_exception(dump_exception(_raise(Custom("c"))))
    assert type(back).__name__ == "Custom"
    assert isinstance(back, ValueError)
    assert str(back) == "c"


class TwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}+{b}")  # args no longer match __init__: pickle cannot rebuild it


class Unpicklable(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.lock = threading.Lock()


@pytest.mark.parametrize("exc", [TwoArgs(1, 2), Unpicklable("locked")], ids=["unrebuildable", "unpicklable"])
def test_exception_that_cannot_travel_becomes_remote_error(exc: Exception) -> None:
    back = load_exception(dump_exception(_raise(exc)))
    assert isinstance(back, RemoteError)
    assert back.type_name.endswith(type(exc).__qualname__)
    assert back.message == str(exc)
    assert isinstance(back.__cause__, RemoteTraceback)
    assert type(exc).__name__ in back.__cause__.tb


def test_exception_whose_class_is_missing_here_becomes_remote_error() -> None:
    # build the pickle in a fresh interpreter, with a class this process cannot import
    code = (
        "import sys, types\n"
        "mod = types.ModuleType('only_there'); sys.modules['only_there'] = mod\n"
        "exec('class Gone(Exception): pass', mod.__dict__)\n"
        "from localactors._base.errors import dump_exception\n"
        "try:\n    raise mod.Gone('bye')\nexcept Exception as e:\n    sys.stdout.buffer.write(dump_exception(e))\n"
    )
    data = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True).stdout
    back = load_exception(data)
    assert isinstance(back, RemoteError)
    assert back.type_name == "only_there.Gone"
    assert "bye" in str(back)
    assert isinstance(back.__cause__, RemoteTraceback)


def test_garbled_exception_bytes_do_not_raise() -> None:
    back = load_exception(b"not a pickle")
    assert isinstance(back, RemoteError)


def test_exception_with_a_broken_str_still_travels() -> None:
    class BadStr(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    back = load_exception(dump_exception(_raise(BadStr())))
    assert type(back).__name__ == "BadStr"
