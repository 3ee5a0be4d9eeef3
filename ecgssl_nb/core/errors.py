"""Errors that carry a message meant for a person (file or parameter named, what is wrong), and
the checks of a number that every module shares."""

import math
from numbers import Integral
from typing import Any, Iterable


class UserError(Exception):
    """Bad input from the user (a missing folder, a wrong parameter): the CLI prints one line, exit status 2."""


class RecordError(Exception):
    """One Challenge record cannot be used. `reason` is a short, stable category
    (e.g. 'unreadable header', 'missing signal file') used in skipped.csv."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


SEED_LIMIT = 2**63  # seeds are 0 <= seed < 2**63: torch takes < 2**64, the results tables hold int64


def is_int(value: object, low: int, high: int | None = None) -> bool:
    """True for an integer low <= value (< high when given): a Python or numpy integer; a bool
    is not one, nor is an integral float such as 3.0."""
    ok = isinstance(value, Integral) and not isinstance(value, bool) and low <= value
    return ok and (high is None or value < high)


def check_int(name: str, value: object, low: int) -> int:
    """`value` as an int when `is_int(value, low)`; else UserError
    "{name} must be an integer >= {low}, got {value!r}"."""
    if not is_int(value, low):
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_seed(name: str, value: object) -> int:
    """`value` as a seed, an integer 0 <= seed < 2**63 (what torch and the results tables hold);
    else UserError "{name} must be an integer 0 <= n < 2**63, got {value!r}". Every command's --seed."""
    if not is_int(value, 0, SEED_LIMIT):
        raise UserError(f"{name} must be an integer 0 <= n < 2**63, got {value!r}")
    return int(value)


def check_pair(name: str, pair: Any, lo_min: float, hi_max: float, lo_open: bool = False) -> tuple[float, float]:
    """(lo, hi) floats with lo_min <= lo <= hi <= hi_max, both finite (lo > lo_min when lo_open):
    the range of a uniform draw (settings.AugmentConfig, the transforms); else UserError naming `name`."""
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a pair (lo, hi) of numbers, got {pair!r}") from None
    if not (lo > lo_min if lo_open else lo >= lo_min) or not lo <= hi <= hi_max or not math.isfinite(lo + hi):
        raise UserError(f"{name} must satisfy {lo_min} {'<' if lo_open else '<='} lo <= hi <= {hi_max}, got {pair!r}")
    return lo, hi


def check_choice(name: str, value: Any, choices: Iterable[str], what: str = "") -> Any:
    """`value` when it is one of the named `choices`; else UserError "{name} {value!r} is not
    {what}; choose one of a, b" ("{name} {value!r} must be one of a, b" without `what`)."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        problem = f"is not {what}; choose one of" if what else "must be one of"
        raise UserError(f"{name} {value!r} {problem} {', '.join(choices)}")
    return value
