"""Offer each executed notebook page as an .ipynb download.

sphinx-book-theme adds the ".ipynb" download button only for MyST-markdown notebooks; ours are
jupytext py:percent files, so this copies the executed notebook that myst-nb wrote to
`_build/jupyter_execute/<page>.ipynb` into the site's `_sources/` and tells the theme about it.
It runs before the theme's header buttons (priority 400 < 501).
"""

from __future__ import annotations

from pathlib import Path
from shutil import copy2


def _offer_ipynb(app, pagename, templatename, context, doctree):
    source = context.get("sourcename") or ""
    if not (source.endswith(".py") or source.endswith(".py.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.exists():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app):
    app.connect("html-page-context", _offer_ipynb, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
