"""All-or-nothing file writes: a reader sees the old file or the new one, never half of one.

Write to a temporary file in the target's folder, fsync it, give it the usual permissions, then
`os.replace` it over the target (atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(OSError):
    """A file the system refused to write (a full disk, a file-size limit): one line naming the
    file and the cause. An OSError (errno, filename), so code that handles one keeps working;
    the CLI prints it on one line and exits with status 1 (`__main__`)."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror} (errno {self.errno}); the file is left as it was"


def _system_cause(exc: BaseException, tmp: str) -> OSError | None:
    """The OSError behind `exc` that concerns the file being written (`tmp`, or no file named):
    `exc` itself, or one it was raised from or during (torch.save turns a failed write into a
    RuntimeError 'unexpected pos 64 vs 0' raised while handling the OSError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` to fill a temporary file beside `path`, then rename it onto `path`.
    On any error the temporary file is removed and `path` is left as it was; a failure of the
    write itself (a full disk, a file-size limit: an OSError naming no file or the temporary one,
    also when wrapped by the writer) is raised as one `WriteError` naming `path` and the cause."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = _system_cause(exc, tmp)
        if cause is not None:
            raise WriteError(cause.errno, cause.strerror or str(cause), str(path)) from None
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8, '\\n' line ends) to `path` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"))


def write_json(
    path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = False, ensure_ascii: bool = True
) -> Path:
    """Write `obj` as strict JSON (a NaN or inf is a ValueError, never a bare `NaN` in the file)
    atomically, with a final newline when indented. The text is made before the file is touched,
    so a value that cannot be written leaves the old file intact. The one JSON writer of the
    library (`write_json_atomic` converts numpy values first)."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False, ensure_ascii=ensure_ascii)
    return write_text_atomic(path, text + ("\n" if indent is not None else ""))


def to_jsonable(obj: Any, where: str = "$") -> Any:
    """`obj` as plain JSON values: numpy -> Python, NaN/inf -> None, Path -> str, datetime -> ISO.
    Raises TypeError naming the place (`$.metrics.paper`) of anything else."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):  # numpy's float64 too
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            key = key.item() if hasattr(key, "item") and not isinstance(key, (str, int, float)) else key
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise TypeError(f"{where}: key {key!r} of type {type(key).__name__} cannot be a JSON key")
            out[str(key)] = to_jsonable(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if callable(getattr(obj, "tolist", None)):  # numpy scalars and arrays, torch tensors, pandas Series
        return to_jsonable(obj.tolist(), where)
    raise TypeError(f"{where}: a {type(obj).__name__} cannot be written to JSON")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """`write_json` of `to_jsonable(obj)` (NaN/inf as null, UTF-8 kept): an unserialisable value
    raises TypeError naming where it is and leaves the old file intact."""
    return write_json(path, to_jsonable(obj), indent=indent, ensure_ascii=False)


def write_csv_atomic(path: str | os.PathLike, df: pd.DataFrame, index: bool = False) -> Path:
    """Write a DataFrame as CSV atomically (floats at full precision, NaN as an empty cell)."""
    return write_text_atomic(path, df.to_csv(index=index, lineterminator="\n"))
