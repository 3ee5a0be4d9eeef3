"""Let nbval execute the jupytext notebooks in notebooks/ (py:percent .py files) cell by cell.

nbval only collects .ipynb files. This hook hands each `notebooks/*.py` to nbval's own collector,
with the notebook read by `jupytext.read` instead of `nbformat.read`, so
`pytest --nbval-lax --nbval-current-env notebooks/` runs every cell; a failing cell (an
exception or a failed assert) fails the test. The kernel runs in notebooks/, like Jupyter Book
and papermill (cwd), so all three executors share one default `runs/` folder.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

NOTEBOOK_DIR = Path(__file__).resolve().parent / "notebooks"


def _is_notebook(path: Path) -> bool:
    if path.suffix != ".py" or path.parent.resolve() != NOTEBOOK_DIR:
        return False
    head = path.read_text(encoding="utf-8", errors="replace")[:2000]
    return "# %%" in head  # py:percent notebooks only


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)):
        return None
    path = Path(file_path)
    if not _is_notebook(path):
        return None
    from nbval.plugin import IPyNbFile

    class JupytextNbFile(IPyNbFile):
        """nbval's notebook collector, reading a py:percent notebook through jupytext."""

        def collect(self):
            import jupytext

            with mock.patch("nbval.plugin.nbformat.read", lambda fp, as_version=4: jupytext.read(fp)):
                return list(super().collect())

    return JupytextNbFile.from_parent(parent, path=path)
