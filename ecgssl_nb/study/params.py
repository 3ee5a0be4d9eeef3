"""Notebook parameters: one rule for every chapter, papermill > ECGSSL_* environment > default.

A notebook's `parameters` cell assigns `None` ("not given") to each name, e.g. ``profile = None``;
papermill injects its values after it, and the next cell's `resolve(globals())` fills each name
still `None` from ``ECGSSL_<NAME>`` (how `make book` and nbval pass a profile) or `DEFAULTS`.
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import Any, MutableMapping

from ..core.errors import UserError, check_seed

DEFAULTS: dict[str, Any] = {
    "profile": "tiny",  # tiny (synthetic fixture, CPU), samples (real sample records, CPU) or paper
    "runs": "../runs",  # the study's results folder (reproduce --out), relative to notebooks/
    "data": "",  # real data folder (paper profile); "" = the fixture
    "samples": "../tests/data/ecg-samples",  # the real sample records shipped with the repository
    "fold": 0,  # the outer (reported) fold
    "setup": "ssl-tsg",  # t, s, tsc, tsg and their ssl- variants
    "modality": "time",  # time, spec (or all where a chapter shows both)
    "device": "cpu",
    "seed": 0,
    "max_records": 2000,  # records of one fold in the feature map
    "transforms": "",  # an ablation view set of Fig. 3 (e.g. "gn"); "" = the main run
    "study_config": "",  # the resolved study that `reproduce --as-notebooks` passes (jobs/study.json); "" = none
    "recipe": "corrected",  # the recipe of the runs computed (reproduce --recipe)
    "settings": "",  # `--set` items separated by ";" for the runs computed (reproduce --set)
    "max_steps": 0,  # smoke run: stop each stage after this many optimisation steps (0 = full run)
}


def env_name(name: str) -> str:
    """'max_records' -> 'ECGSSL_MAX_RECORDS'."""
    return "ECGSSL_" + name.upper()


def _convert(shown: str, text: str, default: Any) -> Any:
    """`text` (from the environment or papermill's command line) as a value of the default's type;
    UserError '{shown} is not an integer' otherwise."""
    if isinstance(default, bool):
        return text.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, (int, float)):
        kind, what = (int, "an integer") if isinstance(default, int) else (float, "a number")
        try:
            return kind(text)
        except ValueError:
            raise UserError(f"{shown} is not {what}") from None
    return text


def _given(name: str, value: Any, default: Any) -> Any:
    """A value papermill injected, as the default's type: `-p fold abc` arrives as the text 'abc'
    and `-p fold 1.5` as a float; UserError 'parameter fold='abc' is not an integer'."""
    shown = f"parameter {name}={value!r}"
    if isinstance(value, str) and isinstance(default, (int, float)):
        return _convert(shown, value, default)
    for kind, want, what in ((bool, bool, "true or false"), (int, Integral, "an integer"), (float, Real, "a number")):
        if isinstance(default, kind):  # bool first: a bool is an int too, but no number here
            if not isinstance(value, want) or (kind is not bool and isinstance(value, bool)):
                raise UserError(f"{shown} is not {what}")
            break
    return value


def resolve(
    namespace: MutableMapping[str, Any], environ: MutableMapping[str, str] | None = None, **defaults: Any
) -> dict[str, Any]:
    """Fill the parameters (names of `DEFAULTS` or of a notebook's own `defaults`, which win) in
    `namespace` (a notebook's globals()) that are still None from $ECGSSL_<NAME> (converted to the
    default's type; UserError otherwise) or the default; papermill's values are type-checked and
    kept. Returns {name: value}."""
    environ = os.environ if environ is None else environ
    table = {**DEFAULTS, **defaults}
    resolved = {}
    for name, default in table.items():
        if name not in namespace:
            continue
        value = namespace[name]
        if value is None:
            text = environ.get(env_name(name))
            value = default if text is None else _convert(f"{env_name(name)}={text!r}", text, default)
        else:
            value = _given(name, value, default)
        if name == "seed":
            value = check_seed(f"parameter seed (or {env_name(name)})", value)
        namespace[name] = value
        resolved[name] = value
    return resolved
