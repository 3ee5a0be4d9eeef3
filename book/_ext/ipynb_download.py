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


def _drop_thebe(app, pagename, templatename, context, doctree):
    """Leave sphinx-thebe's scripts out of every page: the book has no live-code (Binder/thebe)
    launch, and in this build sphinx-thebe's inline `const THEBE_JS_URL = ...` config was added
    to every page twice (its `env-before-read-docs` handler registers it each time it runs), so
    the browser logged "Identifier 'THEBE_JS_URL' has already been declared"."""

    def thebe(js) -> bool:
        body = getattr(js, "attributes", {}).get("body", "") or ""
        return "THEBE_JS_URL" in body or str(js).endswith("sphinx-thebe.js")

    if "script_files" in context:  # filtered in place: Sphinx's mathjax handler appends to this very list
        context["script_files"][:] = [js for js in context["script_files"] if not thebe(js)]


def setup(app):
    app.connect("html-page-context", _offer_ipynb, priority=400)
    app.connect("html-page-context", _drop_thebe, priority=900)  # after every handler that adds scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
