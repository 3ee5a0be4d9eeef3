"""The library's import graph keeps the rules of ARCHITECTURE.md (Rules a test keeps): no cycle
between modules, counting imports inside functions and under `if TYPE_CHECKING:`; nothing imports
the command line (`__main__`); and an import inside a function is never a standard-library one
(they cost nothing at the top) and always says why it is there, in a `#` comment on its line."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "ecgssl_nb"


def _module(path: Path, library: Path) -> str:
    parts = [library.name, *path.relative_to(library).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.ImportFrom | ast.Import, here: str, is_package: bool, modules: set[str]) -> list[str]:
    """The library modules `node` imports (relative imports resolved; `from pkg import mod`
    counted as pkg.mod when mod is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = here.split(".") if is_package else here.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        names = [f"{name}.{a.name}" if f"{name}.{a.name}" in modules else name for a in node.names]
    return [n for n in names if n in modules]


def import_graph(library: Path) -> dict[str, set[str]]:
    """module -> the library modules it imports, wherever the import stands."""
    paths = sorted(library.rglob("*.py"))
    modules = {_module(p, library) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        here = _module(path, library)
        edges = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_imported(node, here, path.name == "__init__.py", modules))
        edges.discard(here)
    return graph


def _packages_of(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), sorted; a package importing
    its own submodules (its `__init__`) is not counted as a cycle with them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w in _packages_of(v):  # a submodule importing its package's __init__
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def function_level_imports(library: Path) -> list[tuple[str, ast.stmt, str]]:
    """(file:line, node, its source lines) of every import inside a function."""
    out = []
    for path in sorted(library.rglob("*.py")):
        src = path.read_text(encoding="utf-8")
        lines = src.splitlines()
        for fn in ast.walk(ast.parse(src)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        where = f"{path.relative_to(library).as_posix()}:{node.lineno}"
                        out.append((where, node, "\n".join(lines[node.lineno - 1 : node.end_lineno])))
    return out


def _top_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    return [] if node.level else [(node.module or "").split(".")[0]]


def test_the_library_has_no_import_cycle():
    graph = import_graph(LIBRARY)
    assert len(graph) >= 30 and sum(map(len, graph.values())) >= 50, "the graph was not read: the check is broken"
    assert cycles(graph) == []


def test_nothing_imports_the_command_line():
    graph = import_graph(LIBRARY)
    assert [m for m, edges in graph.items() if "ecgssl_nb.__main__" in edges] == []


def test_no_function_imports_the_standard_library():
    assert [
        w for w, node, _ in function_level_imports(LIBRARY) if set(_top_names(node)) & sys.stdlib_module_names
    ] == []


def test_every_function_level_import_says_why():
    assert [w for w, _, line in function_level_imports(LIBRARY) if "#" not in line] == []


def test_the_layer_checks_see_a_cycle_a_stdlib_import_and_a_silent_import(tmp_path):
    # the checks themselves can fail: a cycle through a function-level import, a relative import
    # of a sibling, a stdlib import inside a function and one without its reason are each found
    lib = tmp_path / "ecgssl_nb"
    (lib / "sub").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "sub" / "__init__.py").write_text("from . import b\n")
    (lib / "a.py").write_text("def f():\n    from .sub import b  # only when asked\n")
    (lib / "sub" / "b.py").write_text("from ..a import f\n\n\ndef g():\n    import json\n")
    (lib / "c.py").write_text("from ecgssl_nb import a\n")
    graph = import_graph(lib)
    assert graph["ecgssl_nb.a"] == {"ecgssl_nb.sub.b"}
    assert graph["ecgssl_nb.sub.b"] == {"ecgssl_nb.a"}
    assert graph["ecgssl_nb.c"] == {"ecgssl_nb.a"}
    assert cycles(graph) == [["ecgssl_nb.a", "ecgssl_nb.sub.b"]]
    found = function_level_imports(lib)
    assert [w for w, node, _ in found if set(_top_names(node)) & sys.stdlib_module_names] == ["sub/b.py:5"]
    assert [w for w, _, line in found if "#" not in line] == ["sub/b.py:5"]
