"""Where ``progress()`` draws: a terminal, a plain stream, or a notebook's output area.

Runs in: the user's process.

``progress()`` computes the lines (one bar per kind of work) and hands them
to a screen from :func:`make_screen`:

* a terminal: the bars are redrawn in place (ANSI cursor movement);
* a plain stream (a log, a CI job, a file): only the final state, once;
* a Jupyter kernel, when no ``file`` was given: one output that is updated
  in place through ``IPython.display`` (no ipywidgets needed).
"""

from __future__ import annotations

import html
import importlib
import sys
from typing import IO, Any, Protocol


class Screen(Protocol):
    def draw(self, lines: list[str], final: bool) -> None: ...


class TextScreen:
    """A stream: redrawn in place on a terminal, else written once at the end."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.live = bool(getattr(file, "isatty", lambda: False)())
        self._drawn = 0

    def draw(self, lines: list[str], final: bool) -> None:
        if not self.live and not final:
            return
        if self.live and self._drawn:
            self.file.write(f"\x1b[{self._drawn}F")  # back to the first line we drew
        self.file.write("".join(f"{line}\x1b[K\n" if self.live else f"{line}\n" for line in lines))
        self.file.flush()
        self._drawn = len(lines)


class NotebookScreen:
    """One output of a Jupyter cell, updated in place as the work goes on."""

    def __init__(self) -> None:
        self._handle: Any = None

    @staticmethod
    def _html(lines: list[str]) -> Any:
        ipd: Any = importlib.import_module("IPython.display")
        return ipd.HTML("<pre style='margin: 0'>" + html.escape("\n".join(lines)) + "</pre>")

    def draw(self, lines: list[str], final: bool) -> None:
        if self._handle is None:
            ipd: Any = importlib.import_module("IPython.display")
            self._handle = ipd.display(self._html(lines), display_id=True)
        else:
            self._handle.update(self._html(lines))


def in_notebook() -> bool:
    """Is this process a Jupyter kernel (an IPython shell with a kernel)?"""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_screen(file: IO[str] | None) -> Screen:
    """The screen for ``progress(file=...)``: a notebook's output when no file is given in a kernel."""
    if file is None and in_notebook():
        return NotebookScreen()
    return TextScreen(file if file is not None else sys.stdout)
