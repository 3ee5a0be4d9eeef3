"""Notebook parameters: papermill parses every `parameters` cell cleanly, and the precedence
papermill > ECGSSL_* environment > default of `ecgssl_nb.study.params.resolve` holds."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ecgssl_nb.study import params
from ecgssl_nb.core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [*sorted((ROOT / "notebooks").glob("[0-9]*.py")), ROOT / "book" / "intro.py"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_parses_every_parameter_of_each_notebook_without_a_warning(path, tmp_path, caplog):
    jupytext = pytest.importorskip("jupytext")
    papermill = pytest.importorskip("papermill")
    nb = tmp_path / f"{path.stem}.ipynb"
    jupytext.write(jupytext.read(path), nb)
    with caplog.at_level(logging.DEBUG):
        found = papermill.inspect_notebook(str(nb))
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noise == [], f"{path.name}: papermill warned {noise}"
    assert {"runs", "device"} <= set(found), f"{path.name}: parameters found {sorted(found)}"
    # every resolvable parameter defaults to None, so that papermill's value > environment > default
    for name in set(found) & set(params.DEFAULTS):
        assert found[name]["default"] == "None", f"{path.name}: {name} = {found[name]['default']}"


def test_resolve_precedence_is_papermill_then_environment_then_default():
    ns = {"profile": "paper", "runs": None, "fold": None, "seed": None, "unrelated": None}
    env = {"ECGSSL_PROFILE": "samples", "ECGSSL_RUNS": "/scratch/runs", "ECGSSL_FOLD": "3"}
    got = params.resolve(ns, environ=env)
    assert got == {"profile": "paper", "runs": "/scratch/runs", "fold": 3, "seed": 0}
    assert ns["profile"] == "paper" and ns["fold"] == 3 and isinstance(ns["fold"], int)
    assert ns["unrelated"] is None  # only the known parameters are touched


def test_resolve_uses_a_notebook_own_default_over_the_shared_one():
    ns = {"modality": None}
    assert params.resolve(ns, environ={}, modality="all") == {"modality": "all"}
    assert params.resolve({"modality": None}, environ={"ECGSSL_MODALITY": "spec"}, modality="all") == {
        "modality": "spec"
    }


def test_resolve_names_the_variable_when_an_integer_is_malformed():
    with pytest.raises(UserError, match="ECGSSL_FOLD='x'"):
        params.resolve({"fold": None}, environ={"ECGSSL_FOLD": "x"})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_parameter_default_reads_the_environment_inside_the_parameters_cell(path, tmp_path):
    """A default like os.environ.get("ECGSSL_PROFILE", "tiny") in the parameters cell (as
    09_released had) bypasses params.resolve: the environment is read there, not in one place.
    Environment-backed parameters are None there; constants (a record name) may stay literal."""
    jupytext = pytest.importorskip("jupytext")
    papermill = pytest.importorskip("papermill")
    nb = tmp_path / f"{path.stem}.ipynb"
    jupytext.write(jupytext.read(path), nb)
    found = papermill.inspect_notebook(str(nb))
    assert {n: p["default"] for n, p in found.items() if "environ" in p["default"]} == {}
