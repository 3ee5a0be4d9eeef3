"""Pre-trainings and fine-tunings as executed chapter notebooks (papermill).

A pre-training runs as `notebooks/03_selfkd.py`, a fine-tuning as `notebooks/04_finetune.py`:
the jupytext source is read in memory, its `parameters` cell gets the run's parameters (with
`study_config`, the study's resolved settings), and the notebook computes the run through
`reproduce.ensure_*`, then shows it; the executed notebook is the run's record,
`<run folder>/notebook.ipynb`. The kernel runs in notebooks/ and imports this checkout's `ecgssl_nb`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import UserError

if TYPE_CHECKING:  # papermill's dependency, imported where a notebook runs
    import nbformat

ROOT = Path(__file__).resolve().parents[2]  # the repository checkout holding notebooks/
NOTEBOOK_DIR = ROOT / "notebooks"
CHAPTERS = {"pretrain": "03_selfkd.py", "finetune": "04_finetune.py"}  # job kind -> chapter notebook
NOTEBOOK_RECORD = "notebook.ipynb"  # the executed notebook, inside the run folder
PATH_PARAMETERS = ("runs", "data", "samples", "study_config")  # parameters that name a file or folder


def chapter(kind: str) -> Path:
    """The chapter notebook (jupytext source) that runs and shows a job of `kind`."""
    if kind not in CHAPTERS:
        raise UserError(f"no chapter notebook runs a {kind!r} job (only {', '.join(CHAPTERS)})")
    path = NOTEBOOK_DIR / CHAPTERS[kind]
    if not path.is_file():
        raise UserError(
            f"{path} is missing: running jobs as notebooks needs the repository checkout, not only "
            f"the installed package"
        )
    return path


def declared_parameters(nb: nbformat.NotebookNode) -> set[str]:
    """The names assigned in a notebook's cell tagged `parameters` (plain `name = value` lines)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return {m.group(1) for c in cells for m in re.finditer(r"^(\w+)\s*=", c.source, flags=re.MULTILINE)}


@contextlib.contextmanager
def _kernel_env() -> Iterator[None]:
    """PYTHONPATH starting with this checkout while a kernel starts, so the notebook imports the
    same `ecgssl_nb` as the caller (the kernel runs in notebooks/)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def execute(kind: str, parameters: dict, out: str | os.PathLike) -> Path:
    """Execute the chapter notebook of `kind` with `parameters` (every relative path of
    `PATH_PARAMETERS` made absolute from this process's folder: the kernel runs in notebooks/) and
    keep it at `out`, moved in only when every cell succeeded; papermill writes beside the run
    folder meanwhile (<folder>.notebook.partial.ipynb). A failing cell raises RuntimeError naming
    the cell's error and that partial notebook."""
    import jupytext  # ~0.5 s with papermill: only when a notebook runs
    import papermill  # (with jupytext above) only when a notebook runs

    src, out = chapter(kind), Path(out).resolve()
    nb, absolute = jupytext.read(src), {k for k in PATH_PARAMETERS if isinstance(parameters.get(k), str)}
    parameters = {k: str(Path(v).resolve()) if k in absolute and v else v for k, v in parameters.items()}
    unknown = sorted(set(parameters) - declared_parameters(nb))
    if unknown:  # papermill would only warn, and the run would silently use other settings
        raise UserError(f"{src.name} has no parameter {', '.join(unknown)}")
    partial = out.parent.with_name(f"{out.parent.name}.notebook.partial.ipynb")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with _kernel_env():
        try:
            papermill.execute_notebook(
                nb,
                str(partial),
                parameters=dict(parameters),
                cwd=str(NOTEBOOK_DIR),
                kernel_name="python3",
                progress_bar=False,
            )
        except papermill.PapermillExecutionError as exc:
            raise RuntimeError(
                f"{src.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                f"(the executed notebook: {partial})"
            ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, out)
    return out


def execute_subprocess(kind: str, parameters: dict, out: str | os.PathLike, log: str | os.PathLike) -> Path:
    """`execute` in a child process (`python -m ecgssl_nb.study.notebook_jobs`), its output in `log`;
    RuntimeError with the last line of the log when it fails."""
    cmd = [sys.executable, "-m", "ecgssl_nb.study.notebook_jobs", kind, str(out), json.dumps(parameters)]
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with _kernel_env(), open(log, "w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ)).returncode
    if rc != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise RuntimeError(f"exit status {rc}: {lines[-1].strip()[:300] if lines else ''} (log: {log})")
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    """`python -m ecgssl_nb.study.notebook_jobs KIND OUT PARAMETERS_JSON`: one job as its notebook."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3:
        print(
            "usage: python -m ecgssl_nb.study.notebook_jobs pretrain|finetune OUT.ipynb PARAMETERS_JSON",
            file=sys.stderr,
        )
        return 2
    try:
        execute(argv[0], json.loads(argv[2]), argv[1])
    except (UserError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
