"""The core is the paper and nothing else (ARCHITECTURE.md, Rules a test keeps): every module of
ecgssl_nb/core imports only the core, the standard library, numpy, scipy and torch, at module
level, inside functions and under `if TYPE_CHECKING:` alike, and importing it loads none of the
machinery (pandas, provenance, checkpoints)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "ecgssl_nb" / "core"
ALLOWED = {"numpy", "scipy", "torch", "ecgssl_nb"}  # ecgssl_nb: only ecgssl_nb.core (checked below)


def _imports(path: Path, core: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in `path` (a file below the core folder `core`), wherever it
    stands; relative ones resolved, and `from package import name` as package.name."""
    package = ["ecgssl_nb", *path.relative_to(core.parent).parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                name = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                name = node.module
            if name.split(".")[0] == "ecgssl_nb":  # `from package import name`: name may be a module
                found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, name))
    return found


def _outside_the_method(folder: Path) -> list[str]:
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for line, name in _imports(path, folder):
            top = name.split(".")[0]
            if top == "ecgssl_nb":
                ok = name.startswith("ecgssl_nb.core.") or name == "ecgssl_nb.core"
            else:
                ok = top in ALLOWED or top in sys.stdlib_module_names
            if not ok:
                bad.append(f"{path.relative_to(folder).as_posix()}:{line} imports {name}")
    return bad


def test_every_core_module_imports_only_the_core_the_standard_library_numpy_scipy_and_torch():
    assert len(list(CORE.rglob("*.py"))) >= 10, "the core was not found: the check is broken"
    assert _outside_the_method(CORE) == []


def test_the_import_check_sees_function_level_relative_and_type_checking_imports(tmp_path):
    # the check itself can fail: a function-level pandas, a relative climb out of the core and an
    # annotation-only import of the machinery are each found
    core = tmp_path / "core"
    core.mkdir()
    (core / "a.py").write_text("import math\n\n\ndef f():\n    import pandas\n")
    (core / "b.py").write_text("from ..provenance import request\nfrom .a import f\n")
    (core / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ecgssl_nb import prepare\n"
    )
    assert _outside_the_method(core) == [
        "a.py:5 imports pandas",
        "b.py:1 imports ecgssl_nb.provenance.request",
        "c.py:3 imports ecgssl_nb.prepare",
    ]


def test_importing_the_core_loads_no_pandas_provenance_or_checkpoints():
    code = (
        "import sys, pkgutil, importlib, ecgssl_nb.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('ecgssl_nb.core.' + m.name)\n"
        "print(sorted(m for m in ('pandas', 'ecgssl_nb.provenance', 'ecgssl_nb.checkpoint', 'ecgssl_nb.config',"
        " 'ecgssl_nb.atomic', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
