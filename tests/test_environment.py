"""environment.yml (conda, for GPU users and Binder) lists the same dependencies as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path


import yaml  # a dependency of jupytext (test extra)

ROOT = Path(__file__).resolve().parent.parent


def _name(spec: str) -> str:
    """'torch>=2.2' -> 'torch'; names normalised as pip does (case, '_' vs '-')."""
    name = re.split(r"[<>=!~;\[ ]", spec.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_specs() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs.extend(extra)
    return {_name(s): s.replace(" ", "") for s in specs}


def _environment_specs() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            specs.extend(d for d in dep.get("pip", []) if not d.startswith("-"))
        else:
            specs.append(dep)
    conda_only = {"python", "pip"}
    return {_name(s): s.replace(" ", "") for s in specs if _name(s) not in conda_only}


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    ours, theirs = _pyproject_specs(), _environment_specs()
    assert sorted(theirs) == sorted(ours), (
        f"only in pyproject.toml: {sorted(set(ours) - set(theirs))}; "
        f"only in environment.yml: {sorted(set(theirs) - set(ours))}"
    )


def test_environment_yml_pins_the_same_versions_as_pyproject():
    ours, theirs = _pyproject_specs(), _environment_specs()
    differ = {k: (ours[k], theirs[k]) for k in ours if k in theirs and ours[k] != theirs[k]}
    assert not differ, f"version specifiers differ (pyproject, environment.yml): {differ}"


def test_environment_yml_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip
