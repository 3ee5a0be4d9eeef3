"""Errors that carry a message meant for a person (file or parameter named, what is wrong)."""


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
