"""The package's import rule: subpackages by process, imports pointing one way, no cycles.

Reads every module under ``localactors/`` with :mod:`ast` and collects every
import of the package itself: at the top, under ``if TYPE_CHECKING:`` and
inside functions; relative and absolute. The rule is the table in the package
docstring (``localactors/__init__.py``); :data:`MAY_IMPORT` below is the same
table, and :func:`test_the_package_docstring_states_this_rule` keeps them equal.

Also checks, in a fresh interpreter, that the user's process starting a cluster
never imports manager or worker code (the children start by entry-point name).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import localactors

PACKAGE = Path(localactors.__file__).parent
NAME = "localactors"

#: layer -> the other layers it may import (every layer may import itself).
#: ``None``: anything. A module in a folder or file not named here fails the test.
MAY_IMPORT: dict[str, frozenset[str] | None] = {
    "_wire": frozenset(),
    "_base": frozenset({"_wire"}),
    "_caller": frozenset({"_base", "_wire"}),
    "_manager": frozenset({"_base", "_wire"}),
    "_client": frozenset({"_caller", "_base", "_wire"}),
    "_worker": frozenset({"_client", "_caller", "_base", "_wire"}),
    "_tools": None,
    "__init__": None,
    "__main__": None,
    "testing": None,
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    path: Path
    line: int
    kind: str  # "top", "type" (under TYPE_CHECKING) or "lazy" (inside a function)
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(PACKAGE.parent)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """``localactors._base.futures`` -> ``_base``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_package: bool) -> list[str]:
    """The package modules an import statement names (``from x import y``: ``x.y`` if a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == NAME or a.name.startswith(NAME + ".")]
    if node.level:
        base = source.split(".") if is_package else source.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    if origin != NAME and not origin.startswith(NAME + "."):
        return []
    found = [f"{origin}.{a.name}" for a in node.names if _is_module(f"{origin}.{a.name}")]
    if len(found) < len(node.names):  # some names are attributes of ``origin`` itself
        found.append(origin)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(test) if isinstance(n, ast.Attribute)}
    return "TYPE_CHECKING" in names


def imports_of(path: Path, text: str | None = None) -> list[Import]:
    """Every package import in the module at ``path`` (parsed from ``text`` if given)."""
    source = module_name(path)
    found: list[Import] = []

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            k = kind
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                k = "lazy"
            elif isinstance(child, ast.If) and _is_type_checking(child.test) and kind == "top":
                k = "type"
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(child, source, path.name == "__init__.py"):
                    found.append(Import(source, target, path, child.lineno, k, ast.unparse(child)))
            visit(child, k)

    visit(ast.parse(path.read_text() if text is None else text, str(path)), "top")
    return found


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def all_modules() -> list[str]:
    return [module_name(p) for p in sorted(PACKAGE.rglob("*.py"))]


def _rule(layer: str) -> str:
    allowed = MAY_IMPORT[layer]
    if allowed is None:
        return f"{layer} may import anything"
    return f"{layer} may import only " + (", ".join(sorted(allowed)) if allowed else "the standard library")


def test_every_module_is_in_a_layer() -> None:
    strays = [m for m in all_modules() if layer_of(m) not in MAY_IMPORT]
    assert not strays, f"modules in no layer (add their folder to MAY_IMPORT and the package docstring): {strays}"


def test_the_scan_sees_every_kind_of_import() -> None:
    """The scanner itself: relative, absolute, ``from . import``, TYPE_CHECKING, lazy."""
    probe = PACKAGE / "_base" / "probe.py"  # never written: parsed from the text below
    code = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        import localactors._wire.codec
        from localactors._client.core import ClientCore
        from . import errors
        from .. import Client
        from .._caller import node
        if TYPE_CHECKING:
            from .._worker.worker import Worker
        def f():
            from .serialize import dumps
        """
    )
    seen = {(i.target, i.kind) for i in imports_of(probe, code)}
    assert seen == {
        ("localactors._wire.codec", "top"),
        ("localactors._client.core", "top"),
        ("localactors._base.errors", "top"),
        ("localactors", "top"),
        ("localactors._caller.node", "top"),
        ("localactors._worker.worker", "type"),
        ("localactors._base.serialize", "lazy"),
    }


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for imp in all_imports():
        src, dst = layer_of(imp.source), layer_of(imp.target)
        allowed = MAY_IMPORT.get(src)
        if src == dst or allowed is None or dst in allowed:
            continue
        wrong.append(f"{imp.where()} ({imp.kind}) {src} -> {dst}: `{imp.text}` breaks '{_rule(src)}'")
    assert not wrong, "imports against the layering:\n  " + "\n  ".join(wrong)


def test_the_wire_layer_uses_the_standard_library_only() -> None:
    wrong = []
    for path in sorted((PACKAGE / "_wire").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "__future__" and top not in sys.stdlib_module_names:
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {name}")
    assert not wrong, "_wire may import only the standard library:\n  " + "\n  ".join(wrong)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(sorted(component))
    return found


def shortest_cycle(start: str, graph: dict[str, set[str]], inside: set[str]) -> list[str]:
    """The shortest path ``start -> ... -> start`` through modules of ``inside``."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & inside):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    return []


def _describe_cycle(component: list[str], graph: dict[str, set[str]], edges: dict[tuple[str, str], Import]) -> str:
    inside = set(component)
    cycle = shortest_cycle(component[0], graph, inside)
    lines = [f"{len(component)} modules in a cycle, e.g. " + " -> ".join(m.removeprefix(NAME + ".") for m in cycle)]
    lines.append("  imports among them:")
    for (src, dst), imp in sorted(edges.items()):
        if src in inside and dst in inside:
            lines.append(f"    {imp.where()} ({imp.kind}) `{imp.text}`")
    return "\n  ".join(lines)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in all_modules()}
    edges: dict[tuple[str, str], Import] = {}
    for imp in all_imports():
        graph[imp.source].add(imp.target)
        edges.setdefault((imp.source, imp.target), imp)
    selves = [edges[(m, m)] for m in graph if m in graph[m]]
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    problems = [f"{imp.where()} {imp.source} imports itself" for imp in selves]
    problems += [_describe_cycle(c, graph, edges) for c in cycles]
    assert not problems, "import cycles (counting TYPE_CHECKING and function-level imports):\n  " + "\n  ".join(
        problems
    )


def test_the_cycle_finder_itself() -> None:
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d"], ["e"]]
    assert shortest_cycle("a", graph, {"a", "b", "c"}) == ["a", "b", "a"]
    assert shortest_cycle("c", graph, {"a", "b", "c"}) == ["c", "a", "b", "c"]


def test_the_package_docstring_states_this_rule() -> None:
    """The table in ``localactors/__init__.py`` says what :data:`MAY_IMPORT` says."""
    doc = localactors.__doc__ or ""
    stated: dict[str, frozenset[str] | None] = {}
    for line in doc.splitlines():
        m = re.match(r"^ {4}(_[a-z]+) +(.+?) {2,}\S", line)
        if not m:
            continue
        words = m.group(2).split()
        if words == ["anything"]:
            stated[m.group(1)] = None
        else:
            stated[m.group(1)] = frozenset() if words == ["stdlib", "only"] else frozenset(words)
    expected = {k: v for k, v in MAY_IMPORT.items() if k.startswith("_") and not k.startswith("__")}
    assert stated == expected, f"the package docstring's layer table disagrees with tests/test_layers.py: {stated}"


CHILD = """
import sys
from localactors import Client, LocalCluster

with LocalCluster(n_workers=1) as cluster, Client(cluster) as client:
    assert client.submit(abs, -3).result(timeout=60) == 3
bad = sorted(m for m in sys.modules if m.startswith(("localactors._manager", "localactors._worker")))
print("imported:", bad)
sys.exit(1 if bad else 0)
"""


def test_the_users_process_does_not_import_manager_or_worker_code() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent
    )
    assert done.returncode == 0, f"the user's process imported manager or worker modules:\n{done.stdout}{done.stderr}"
