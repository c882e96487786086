"""``_repr_html_`` of the values a notebook shows: the futures and the Actor proxy.

Runs in: every process that shows them (in practice the user's Jupyter
kernel). The client's and the cluster's, which ask the workers, are in
:mod:`localactors._client.html`. Everything shown is escaped.
"""

from __future__ import annotations

import html
from typing import Any

_STYLE = "text-align: left; padding: 2px 8px;"


def escape(x: object) -> str:
    return html.escape(str(x))


def table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of text cells."""
    head = "".join(f'<th style="{_STYLE}">{escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_STYLE}">{escape(c)}</td>' for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary(title: str, facts: list[tuple[str, str]]) -> str:
    """A title over a list of ``name: value`` lines."""
    items = "".join(f"<li><strong>{escape(k)}:</strong> {escape(v)}</li>" for k, v in facts)
    return f'<div><h3 style="margin: 4px 0;">{escape(title)}</h3><ul style="margin: 0;">{items}</ul></div>'


def actor_html(cls_name: str, key: str, worker: str, methods: tuple[str, ...], attributes: tuple[str, ...]) -> str:
    """An actor handle: its class, key, worker, and its public methods and attributes."""
    facts = [
        ("key", key),
        ("worker", worker),
        ("methods", ", ".join(sorted(methods)) or "-"),
        ("attributes", ", ".join(sorted(attributes)) or "-"),
    ]
    return summary(f"Actor: {cls_name}", facts)


def future_html(key: str, status: str, error: BaseException | None) -> str:
    """A task's future: its key and status (and its error, if it failed)."""
    facts = [("key", key), ("status", status)]
    if error is not None:
        facts.append(("error", f"{type(error).__name__}: {error}"))
    return summary("Future", facts)


def actor_future_html(future: Any) -> str:
    """An actor call's future: the method called, its status, and its value or error once done."""
    facts = [("call", str(future.label) or "?"), ("status", future.status)]
    if future.done():
        if future.error is not None:
            facts.append(("error", f"{type(future.error).__name__}: {future.error}"))
        else:
            text = repr(future.value)
            facts.append(("value", text if len(text) <= 200 else text[:199] + "…"))
    return summary("ActorFuture", facts)
