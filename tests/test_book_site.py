"""The built book (`make book` -> _build/html), checked the way a reader meets it.

* A headless Chromium opens the Table II page and the chapter pages; the rendered DOM must hold a
  table with the eight setups and every one of the paper's Table II values, and each chapter its
  figures. A screenshot of Table II is saved to _build/screenshots/table2.png for a person.
* What a reader needs: no console error on any page; every figure numbered, captioned and with
  real alt text; the math typeset offline by the vendored MathJax; no table cut by pandas
  ("..." columns); at a phone's 420 px width no page is wider than the screen (wide tables
  scroll inside themselves). Screenshots of every page at 1400 and 420 px go to
  _build/screenshots/ for a person.
* Every href/src of every built HTML file that points inside the site resolves to a file.
* No page loads a script or stylesheet from the internet (the site reads offline).

The site tests skip, saying why, only when _build/html does not exist (run `make book`) or no
chromium is installed; CI (.ci/run) installs chromium and builds the book before the tests.
The deviations page is checked from its source and never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("ECGSSL_SITE", ROOT / "_build" / "html"))  # override to test another build
SCREENSHOTS = SITE.parent / "screenshots"  # _build/screenshots
CHAPTERS = [
    "01_data",
    "02_transforms",
    "03_selfkd",
    "04_finetune",
    "05_table1",
    "06_table2",
    "07_fig3",
    "08_samples",
    "09_released",
]
SETUPS = ["T", "S", "TSC", "TSG", "SSL-T", "SSL-S", "SSL-TSC", "SSL-TSG"]


# ------------------------------------------------------------------------------------------
# the deviations page (source): every SPEC bug has its entry


def test_deviations_page_has_an_entry_for_every_spec_bug_b1_to_b28():
    text = (ROOT / "book" / "deviations.md").read_text(encoding="utf-8")
    headings = re.findall(r"^###\s+B(\d+)\.", text, flags=re.M)
    assert [int(h) for h in headings] == list(range(1, 29)), f"B headings found: {headings}"
    # each entry says what the code did, what we do, and why
    entries = re.split(r"^###\s+B\d+\.", text, flags=re.M)[1:]
    for number, entry in enumerate(entries, start=1):
        body = entry.split("\n## ")[0]
        for part in ("**Code:**", "**Here:**", "**Why:**"):
            assert part in body, f"B{number} lacks {part}"


# ------------------------------------------------------------------------------------------
# helpers


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


needs_site = pytest.mark.skipif(
    not (SITE / "index.html").is_file(), reason=f"{SITE} does not exist: build the book first with `make book`"
)
needs_browser = pytest.mark.skipif(
    _chromium() is None, reason="no chromium installed (`apt-get install -y chromium`; .ci/run does it)"
)


def _chromium_run(*args: str, timeout: int = 120, console: list | None = None) -> str:
    """Run headless Chromium with the flags of TOOLCHAIN.md; returns stdout. With `console` (a
    list), the page's console messages are appended to it."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *(["--enable-logging=stderr", "--v=0"] if console is not None else []),
            *args,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    if console is not None:
        console += [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout


def _rendered_dom(page: Path) -> str:
    return _chromium_run("--dump-dom", page.as_uri())


def _page(name: str) -> Path:
    page = SITE / "notebooks" / f"{name}.html"
    assert page.is_file(), f"{page} was not built"
    return page


class _Collector(HTMLParser):
    """Tables (as lists of rows of cell texts), img srcs, and every href/src with its tag."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._depth = 0
        self._cell: list[str] | None = None
        self.images: list[str] = []
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self._figure = 0
        self._caption: list[str] | None = None
        self.figure_images: list[tuple[str, str, bool]] = []  # (src, alt, inside a <figure>) of output images
        self.captions: list[str] = []  # text of every <figcaption>

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._depth += 1
            self.tables.append([])
        elif tag == "tr" and self._depth:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self._depth:
            self._cell = []
        if tag == "img":
            self.images.append(a.get("src") or "")
            if "_images/" in (a.get("src") or ""):
                self.figure_images.append((a.get("src") or "", a.get("alt") or "", self._figure > 0))
        if tag == "figure":
            self._figure += 1
        if tag == "figcaption":
            self._caption = []
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        if tag == "link" and "stylesheet" in (a.get("rel") or ""):
            self.stylesheets.append(a.get("href") or "")
        for attr in ("href", "src"):
            if a.get(attr):
                self.links.append((tag, attr, a[attr]))

    def handle_endtag(self, tag):
        if tag == "figure" and self._figure:
            self._figure -= 1
        if tag == "figcaption" and self._caption is not None:
            self.captions.append(" ".join("".join(self._caption).split()))
            self._caption = None
        if tag in ("td", "th") and self._cell is not None and self._depth and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def _parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


def _paper_table_ii() -> dict[str, list[str]]:
    from ecgssl_nb.analysis.results import METRIC_KEYS, PAPER_TABLE_II

    return {s: [f"{PAPER_TABLE_II.at[s, m]:.2f}" for m in METRIC_KEYS] for s in PAPER_TABLE_II.index}


# ------------------------------------------------------------------------------------------
# in the browser


@needs_site
@needs_browser
def test_table2_page_renders_the_eight_setups_with_the_papers_values_and_is_screenshotted():
    page = _page("06_table2")
    dom = _parse(_rendered_dom(page))
    paper = _paper_table_ii()
    assert list(paper) == SETUPS
    found = False
    for table in dom.tables:
        cells = [c for row in table for c in row]
        if not all(s in cells for s in SETUPS):
            continue
        # the paper's seven values of each setup sit together on that setup's one row, as printed
        if all(any(row and row[0] == setup and row[-7:] == values for row in table) for setup, values in paper.items()):
            found = True
            break
    assert found, f"no table on {page.name} lists the paper's Table II values for all eight setups {SETUPS}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "table2.png"
    shot.unlink(missing_ok=True)
    _chromium_run(f"--screenshot={shot}", "--window-size=1400,2600", "--hide-scrollbars", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, "the screenshot was not written"


@needs_site
@needs_browser
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_page_shows_its_figures(chapter):
    page = _page(chapter)
    dom = _parse(_rendered_dom(page))
    figures = [src for src in dom.images if "_images/" in src or src.startswith("data:image")]
    assert figures, f"{page.name} shows no figure"
    for src in figures:
        assert src.strip(), f"{page.name}: an img has an empty src"
        if not src.startswith("data:"):
            path = (page.parent / unquote(urlsplit(src).path)).resolve()
            assert path.is_file() and path.stat().st_size > 1000, f"{page.name}: figure {src} is missing or empty"


PAGES = ["index", *(f"notebooks/{c}" for c in CHAPTERS)]


def _any_page(name: str) -> Path:
    page = SITE / f"{name}.html"
    assert page.is_file(), f"{page} was not built"
    moved = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', page.read_text(encoding="utf-8")[:500])
    return page.parent / moved.group(1) if moved else page  # index.html redirects to the opening page


@needs_site
@needs_browser
@pytest.mark.parametrize("name", PAGES)
def test_page_loads_without_a_console_error(name):
    console: list[str] = []
    _chromium_run("--dump-dom", _any_page(name).resolve().as_uri(), console=console)
    errors = [c for c in console if re.search(r"Uncaught|Error|Failed to load|has already been declared", c)]
    assert not errors, f"{name}: console errors:\n" + "\n".join(errors[:10])


@needs_site
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_figure_is_numbered_captioned_and_has_alt_text(chapter):
    dom = _parse(_page(chapter).read_text(encoding="utf-8"))
    assert dom.figure_images, f"{chapter}: no figure"
    for src, alt, in_figure in dom.figure_images:
        assert in_figure, f"{chapter}: image {src} is not in a numbered, captioned figure"
        assert alt and not re.fullmatch(r"[0-9a-f]{16,}", alt), f"{chapter}: image {src} has no real alt text ({alt!r})"
    numbered = [c for c in dom.captions if re.match(r"Fig\. \d+", c)]
    assert len(numbered) >= len(dom.figure_images), (
        f"{chapter}: {len(dom.figure_images)} figures, captions {dom.captions}"
    )


@needs_site
@pytest.mark.parametrize("chapter", ["06_table2", "07_fig3"])
def test_table_chapters_show_the_claims_with_named_intervals_pooled_metrics_and_the_training_split(chapter):
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", _page(chapter).read_text(encoding="utf-8")))
    for phrase in (
        "95 % bootstrap over folds",
        "95 % paired t",
        "pooled out-of-fold",
        "mean over folds",
        "eight training folds",
        "can tell",
    ):
        assert phrase in text, f"{chapter}: {phrase!r} is not on the page"
    if chapter == "06_table2":
        assert "margin &gt; fold std?" in text or "margin > fold std?" in text
        assert "paper-exact" in text and "nine training folds" in text


@needs_site
def test_released_chapter_labels_its_small_runs_as_machinery_not_the_answer():
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", _page("09_released").read_text(encoding="utf-8")))
    assert text.count("machinery, not the answer") >= 3  # the warning, the table label, the figure legend/caption


@needs_site
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_table_is_cut_and_no_title_shows_a_raw_column_name(chapter):
    html = _page(chapter).read_text(encoding="utf-8")
    dom = _parse(html)
    cut = [row for table in dom.tables for row in table if any(c in ("...", "…") or c.endswith("...") for c in row)]
    assert not cut, f"{chapter}: a table was cut by pandas: {cut[:2]}"
    assert "train_loss" not in " ".join(dom.captions)


@needs_site
@needs_browser
def test_math_renders_offline_in_the_method_chapters():
    for chapter, equations in (("03_selfkd", 4), ("04_finetune", 4)):
        dom = _rendered_dom(_page(chapter))
        assert dom.count("<mjx-container") >= equations, (
            f"{chapter}: MathJax typeset {dom.count('<mjx-container')} formulas"
        )
        assert "$$" not in re.sub(r"<(script|pre)[^>]*>.*?</\1>", "", dom, flags=re.S), f"{chapter}: raw TeX left"


def _width_probe(page: Path, width: int) -> str:
    """A page beside `page` that shows it in a `width` px iframe and writes the iframe's inner
    width and the page's scroll width into its own body (headless Chromium lays out a window no
    narrower than 500 px, an iframe at any width)."""
    return f"""<html><body><iframe id="f" src="{page.name}" style="width:{width}px;height:900px;border:0"></iframe>
<script>document.getElementById('f').onload = function () {{ setTimeout(function () {{
var w = document.getElementById('f').contentWindow;
document.body.setAttribute('data-inner-width', w.innerWidth);
document.body.setAttribute('data-scroll-width', w.document.documentElement.scrollWidth); }}, 500); }};</script></body></html>"""


@needs_site
@needs_browser
@pytest.mark.parametrize("name", PAGES)
def test_page_is_usable_at_phone_width_and_is_screenshotted(name):
    page = _any_page(name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    stem = name.replace("/", "_")
    for width, height in ((1400, 2200), (420, 2400)):
        shot = SCREENSHOTS / f"{stem}_{width}.png"
        shot.unlink(missing_ok=True)
        _chromium_run(
            f"--screenshot={shot}", f"--window-size={width},{height}", "--hide-scrollbars", page.resolve().as_uri()
        )
        assert shot.is_file() and shot.stat().st_size > 5_000, f"{shot} was not written"
    probe = page.with_name(f".probe_{page.name}")  # beside the page, so its relative links resolve
    try:
        probe.write_text(_width_probe(page, 420), encoding="utf-8")
        dom = _chromium_run("--dump-dom", "--allow-file-access-from-files", probe.resolve().as_uri())
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'data-scroll-width="(\d+)"', dom)
    inner = re.search(r'data-inner-width="(\d+)"', dom)
    assert found and inner, f"{name}: the width probe did not run"
    assert int(inner.group(1)) <= 420, f"the probe window is {inner.group(1)} px wide, not a phone's"
    assert int(found.group(1)) <= int(inner.group(1)) + 2, (
        f"{name} is {found.group(1)} px wide in a {inner.group(1)} px window: content is cut off at phone width"
    )


# ------------------------------------------------------------------------------------------
# every built file


def _html_files() -> list[Path]:
    return sorted(p for p in SITE.rglob("*.html") if "_static" not in p.parts)


@needs_site
def test_no_broken_internal_links_in_any_built_page():
    broken = []
    for page in _html_files():
        for tag, attr, value in _parse(page.read_text(encoding="utf-8")).links:
            parts = urlsplit(value)
            if parts.scheme or value.startswith(("#", "//", "mailto:", "javascript:", "data:")):
                continue
            if not parts.path:
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(SITE)}: <{tag} {attr}={value!r}>")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:30])


@needs_site
def test_the_site_loads_no_script_or_stylesheet_from_the_internet():
    remote = []
    for page in _html_files():
        dom = _parse(page.read_text(encoding="utf-8"))
        for src in dom.scripts + dom.stylesheets:
            if urlsplit(src).scheme in ("http", "https") or src.startswith("//"):
                remote.append(f"{page.relative_to(SITE)}: {src}")
    assert not remote, "remote resources (the site must read offline):\n" + "\n".join(remote[:30])


@needs_site
def test_no_page_links_to_a_placeholder_repository_binder_or_issue_tracker():
    # the repository has no public address: _config.yml turns every such link off
    bad = re.compile(r"github\.com/(ecgssl-book|executablebooks)|mybinder\.org|colab\.research|/issues/new")
    found = []
    for page in _html_files():
        for tag, attr, value in _parse(page.read_text(encoding="utf-8")).links:
            if bad.search(value):
                found.append(f"{page.relative_to(SITE)}: {value}")
    assert not found, "links to nowhere:\n" + "\n".join(found[:20])


@needs_site
def test_no_chapter_shows_stderr_noise():
    for chapter in CHAPTERS:
        html = _page(chapter).read_text(encoding="utf-8")
        assert "output stderr" not in html and not re.search(r"prepared \d+ records", html), f"{chapter} shows stderr"


@needs_site
def test_math_is_typeset_by_the_vendored_mathjax():
    mathjax = SITE / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.is_file(), "the vendored MathJax was not copied into the site"
    pages_with_math = [p for p in _html_files() if "tex-chtml.js" in p.read_text(encoding="utf-8")]
    assert {_page("03_selfkd"), _page("04_finetune")} <= set(pages_with_math), "the method chapters load no MathJax"
    for page in pages_with_math:
        assert "_static/mathjax/tex-chtml.js" in page.read_text(encoding="utf-8")


@needs_site
def test_every_chapter_offers_its_executed_notebook_as_ipynb():
    for chapter in CHAPTERS:
        html = _page(chapter).read_text(encoding="utf-8")
        assert f"_sources/notebooks/{chapter}.ipynb" in html, f"{chapter}: no .ipynb download"
        nb = SITE / "_sources" / "notebooks" / f"{chapter}.ipynb"
        assert nb.is_file() and '"outputs"' in nb.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------
# the notebooks' sources (no execution): parameters and the nbval collector


PARAMETERS = ("profile", "runs", "data", "fold", "setup", "modality", "device", "seed")


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.py"))


def test_every_chapter_notebook_is_in_the_toc_and_exists():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert [p.stem for p in _notebooks()] == CHAPTERS
    for chapter in CHAPTERS:
        assert f"file: notebooks/{chapter}" in toc


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_starts_with_one_parameters_cell_resolved_to_the_tiny_profile_or_the_environment(name):
    import jupytext

    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0], "exactly one parameters cell, the first code cell"
    from ecgssl_nb.study import params

    namespace: dict = {}
    exec(tagged[0].source, namespace)  # noqa: S102 - our own parameters cell: plain assignments
    present = [k for k in PARAMETERS if k in namespace]
    assert {"runs", "device"} <= set(present), f"parameters: {present}"
    defaults = params.resolve(dict(namespace), environ={})
    assert defaults["device"] == "cpu" and defaults["runs"] == "../runs"
    assert defaults.get("profile", "tiny") == "tiny"
    env = {"ECGSSL_PROFILE": "paper", "ECGSSL_RUNS": "/elsewhere/runs"}
    overridden = params.resolve(dict(namespace), environ=env)
    assert overridden["runs"] == "/elsewhere/runs" and overridden.get("profile", "paper") == "paper"


def test_nbval_collects_every_code_cell_of_every_notebook_through_the_jupytext_collector():
    import jupytext

    expected = sum(sum(1 for c in jupytext.read(p).cells if c.cell_type == "code") for p in _notebooks())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "notebooks",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    items = [line for line in done.stdout.splitlines() if line.startswith("notebooks/") and "::" in line]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(items) == expected, f"collected {len(items)} cells, the notebooks have {expected} code cells"
