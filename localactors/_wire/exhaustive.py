"""``assert_never``: the last ``case`` of a dispatch over a closed union of messages.

Runs in: every process.

mypy proves the ``match`` before it exhaustive (a message type added to the
union and not handled is a type error); at run time it raises, naming what
slipped through. ``typing.assert_never`` on 3.11 and newer; the same contract
on 3.10.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - the same contract, for Python 3.10
    from typing import NoReturn

    def assert_never(value: NoReturn) -> NoReturn:
        raise AssertionError(f"unhandled: {value!r}")


__all__ = ["assert_never"]
