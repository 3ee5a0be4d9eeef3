"""Notebook parameters: one rule for every chapter, papermill > ECGSSL_* environment > default.

Each notebook's `parameters` cell holds plain assignments that papermill can parse, every value
`None` ("not given"), e.g. ``profile = None  # tiny, samples or paper``. Papermill injects its
values in the cell right after it. The next cell calls `resolve(globals())`, which fills every
name that is still `None` from the environment variable ``ECGSSL_<NAME>`` (how `make book` and
nbval pass a profile in) or else from `DEFAULTS`, converted to the default's type. So a value
given to papermill wins over the environment, and the environment wins over the default.
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import Any, MutableMapping

from .core.errors import UserError, check_seed

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
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise UserError(f"{shown} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise UserError(f"{shown} is not a number") from None
    return text


def _given(name: str, value: Any, default: Any) -> Any:
    """A value papermill injected, as the default's type: `-p fold abc` arrives as the text 'abc'
    and `-p fold 1.5` as a float; UserError 'parameter fold='abc' is not an integer'."""
    shown = f"parameter {name}={value!r}"
    if isinstance(value, str) and isinstance(default, (int, float)):
        return _convert(shown, value, default)
    if isinstance(default, bool) and not isinstance(value, bool):
        raise UserError(f"{shown} is not true or false")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise UserError(f"{shown} is not an integer")
    if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, Real)):
        raise UserError(f"{shown} is not a number")
    return value


def resolve(
    namespace: MutableMapping[str, Any], environ: MutableMapping[str, str] | None = None, **defaults: Any
) -> dict[str, Any]:
    """Fill the parameters in `namespace` (a notebook's globals()) that are still None.

    A parameter is a name of `DEFAULTS` (or of `defaults`, a notebook's own defaults, which win
    over `DEFAULTS`) present in `namespace`. Each None is replaced by $ECGSSL_<NAME> when set
    (converted to the default's type; a clear error otherwise), else by the default. Values that
    are not None (set by papermill) are kept. Returns the resolved parameters, {name: value}."""
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
