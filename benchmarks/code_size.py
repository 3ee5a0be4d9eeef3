"""Size of the library: lines, code lines and the longest functions (the style asks for none over ~80).

    .venv/bin/python benchmarks/code_size.py [--top 10] [ecgssl_nb]

Code lines are lines that hold a Python token other than a comment, i.e. without blank lines,
comments and docstrings (module, class and function docstrings, found with `ast`). A function's
length is from its `def` line to its last line, nested functions counted on their own too.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path

SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def measure(folder: Path) -> tuple[int, int, list[tuple[int, str]]]:
    """(lines, code lines, [(length, 'file.py:line name')]) over folder/**/*.py (its subpackages too)."""
    total = code = 0
    functions = []
    for path in sorted(folder.rglob("*.py")):
        src = path.read_text(encoding="utf-8")
        tree = ast.parse(src)
        total += len(src.splitlines())
        with_code = set()
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type not in SKIP:
                with_code.update(range(tok.start[0], tok.end[0] + 1))
        code += len(with_code - _docstring_lines(tree))
        functions += [
            (n.end_lineno - n.lineno + 1, f"{path.relative_to(folder).as_posix()}:{n.lineno} {n.name}")
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
    return total, code, sorted(functions, reverse=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=str(Path(__file__).resolve().parents[1] / "ecgssl_nb"))
    p.add_argument("--top", type=int, default=10, help="how many of the longest functions to list (default 10)")
    args = p.parse_args()
    total, code, functions = measure(Path(args.folder))
    print(f"{args.folder}: {total} lines, {code} code lines (no blanks, comments, docstrings)")
    print(f"functions: {len(functions)}, over 80 lines: {sum(n > 80 for n, _ in functions)}")
    for n, name in functions[: args.top]:
        print(f"{n:6d}  {name}")


if __name__ == "__main__":
    main()
