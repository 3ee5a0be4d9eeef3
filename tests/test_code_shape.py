"""The library keeps the shape a reader can follow (ARCHITECTURE.md, Rules a test keeps): short functions
and typed public functions. These are checks of the source, measured with `ast`, not style taste:
a refactor that breaks them fails here, with the function named."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "ecgssl_nb"
sys.path.insert(0, str(ROOT / "benchmarks"))

from code_size import measure  # noqa: E402  (the benchmark that reports the same figures)


def _public_functions(folder: Path):
    """(file:line name, node) of every public function and public method of a public class."""
    for path in sorted(folder.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                members = [m for m in node.body if isinstance(m, ast.FunctionDef)]
            else:
                members = [node] if isinstance(node, ast.FunctionDef) else []
            for f in members:
                if not f.name.startswith("_") or f.name == "__init__":
                    yield f"{path.relative_to(folder).as_posix()}:{f.lineno} {f.name}", f


def test_no_library_function_is_longer_than_80_lines():
    _, _, functions = measure(LIBRARY)
    assert functions, "no functions found: the measurement is broken"
    assert [name for n, name in functions if n > 80] == []


def _untyped(folder: Path) -> list[str]:
    missing = []
    for name, f in _public_functions(folder):
        args = [a for a in f.args.posonlyargs + f.args.args + f.args.kwonlyargs if a.arg not in ("self", "cls")]
        untyped = [a.arg for a in args if a.annotation is None]
        if untyped or (f.returns is None and f.name != "__init__"):
            missing.append(f"{name}: {untyped or 'return'}")
    return missing


def test_every_public_function_has_annotated_arguments_and_return():
    assert _untyped(LIBRARY) == []


def test_the_shape_checks_see_a_long_untyped_function(tmp_path):
    # the checks themselves can fail: an 81-line function without hints is found by both
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    (tmp_path / "m.py").write_text(f"def long(a):\n{body}\n")
    (tmp_path / "n.py").write_text("def _private(a):\n    pass\n\n\ndef typed(a: int) -> int:\n    return a\n")
    assert measure(tmp_path)[2][0] == (81, "m.py:1 long")
    assert _untyped(tmp_path) == ["m.py:1 long: ['a']"]


def test_the_shape_checks_see_the_subpackages(tmp_path):
    # ecgssl_nb/core and ecgssl_nb/stages are measured like the top-level modules
    (tmp_path / "core").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    (tmp_path / "core" / "m.py").write_text(f"def long(a):\n{body}\n")
    assert measure(tmp_path)[2][0] == (81, "core/m.py:1 long")
    assert _untyped(tmp_path) == ["core/m.py:1 long: ['a']"]
