"""Errors that carry a message meant for a person (file or parameter named, what is wrong)."""

from numbers import Integral


class UserError(Exception):
    """Bad input from the user: a missing folder, a wrong parameter. The CLI prints it on one
    line and exits with status 2, without a traceback."""


class RecordError(Exception):
    """One Challenge record cannot be used. `reason` is a short, stable category
    (e.g. 'unreadable header', 'missing signal file') used in skipped.csv."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


def check_int(name: str, value: object, low: int) -> int:
    """`value` as an int when it is an integer >= `low` (a Python or numpy integer; a bool is
    not one, nor is an integral float such as 3.0); else UserError
    "{name} must be an integer >= {low}, got {value!r}"."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


SEED_LIMIT = 2**63  # seeds are 0 <= seed < 2**63: torch takes < 2**64, the results tables hold int64


def check_seed(name: str, value: object) -> int:
    """`value` as a seed when it is an integer 0 <= seed < 2**63 (what torch and the results
    tables hold; numpy takes any such integer through SeedSequence); else UserError
    "{name} must be an integer 0 <= n < 2**63, got {value!r}". Every command's --seed."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value < SEED_LIMIT:
        raise UserError(f"{name} must be an integer 0 <= n < 2**63, got {value!r}")
    return int(value)
