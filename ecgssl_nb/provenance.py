"""Provenance: what made a stage's output folder, and whether it may be reused.

Every stage folder holds `provenance.json` (format and reuse rules: ARCHITECTURE.md, Provenance):

    {"request": {"stage": "finetune", "settings": {...every resolved value...},
                 "inputs": {"prepared": "<sha256>", "backbone.time": "<sha256>"}, "seed": 3},
     "code_version": "0.1.0+a7af6ff", "created": "2026-12-02T06:40:00Z"}

A folder is reused only when its `request` equals the one asked now, key for key; otherwise it
is refused naming the keys that differ (`refusal`), or with force moved aside (`move_aside`),
never deleted. The code version is recorded but not matched: a change of documentation must not
invalidate a 300-epoch pre-training; a change that alters results must change a setting or the
stage's `FORMAT` instead.

`lock(folder)` is an exclusive lock (the `filelock` package: `flock` on POSIX, the native lock on
Windows) on `.<name>.lock` BESIDE the folder, never inside it: moving a folder aside (`--force`)
neither moves nor frees its lock, so a second writer is refused while the first lives. The
operating system drops the lock when its holder dies, so a killed run never leaves a stale lock;
the file itself stays, holding the last holder's pid, host and start time for refusals. A
finished run is read without its lock (`finished`): its outputs are written atomically, last,
and never change, so reading a finished study needs no write access.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from .atomic import write_text_atomic
from .errors import UserError

PROVENANCE = "provenance.json"
LOCK = ".lock"  # where versions before the sibling lock kept it, inside the folder: ignored there


class Busy(UserError):
    """A folder's lock is held by another process (or thread), and waiting for it ran out."""


# --- fingerprints -------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical(obj: Any) -> Any:
    """`obj` as plain JSON values (tuples -> lists, dict keys -> str) so that a request read back
    from disk compares equal to the same request built in memory."""
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default, allow_nan=False))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable in a provenance record")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """'<package version>+<git commit>[-dirty]' when the package runs from a git checkout,
    else the package version."""
    try:
        from importlib.metadata import version

        base = version("ecgssl_nb")
    except Exception:
        base = "unknown"
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not commit:
            return base
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(here)],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+{commit}{'-dirty' if dirty else ''}"


def request(stage: str, settings: dict, inputs: dict[str, str], seed: int) -> dict:
    """What is asked of a stage: the part of a provenance record that must match for reuse."""
    return canonical({"stage": stage, "settings": settings, "inputs": inputs, "seed": int(seed)})


def record(req: dict) -> dict:
    """A full provenance record for `req`: the request plus the code version and a UTC time."""
    return {
        "request": req,
        "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted keys at which two requests differ, e.g. ['settings.epochs: 3 -> 5']."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{where}.{k}" if where else str(k)
            if k not in old:
                out.append(f"{key}: (absent) -> {_short(new[k])}")
            elif k not in new:
                out.append(f"{key}: {_short(old[k])} -> (absent)")
            else:
                out.extend(differences(old[k], new[k], key))
        return out
    return [] if old == new else [f"{where or '(value)'}: {_short(old)} -> {_short(new)}"]


def _short(v: Any, n: int = 40) -> str:
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return s if len(s) <= n else s[: n - 3] + "..."


# --- folders ------------------------------------------------------------------------------------


def read(folder: str | os.PathLike) -> dict | None:
    """The provenance record of `folder`, None when it has none; UserError when it is unreadable."""
    path = Path(folder) / PROVENANCE
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable provenance record: {exc}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("request"), dict):
        raise UserError(f"{path} is not a provenance record (no 'request' object)")
    return rec


def write(folder: str | os.PathLike, req: dict) -> dict:
    """Write `folder/provenance.json` for `req` (atomically); returns the record."""
    rec = record(req)
    write_text_atomic(Path(folder) / PROVENANCE, json.dumps(rec, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return rec


def move_aside(folder: str | os.PathLike) -> Path:
    """Rename `folder` to `folder.stale-<UTC time>[-n]` beside it and return the new path."""
    folder = Path(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = folder.with_name(f"{folder.name}.stale-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.stale-{stamp}-{n}")
    os.replace(folder, target)
    return target


def holds_files(folder: str | os.PathLike) -> bool:
    """True when `folder` is a folder holding anything besides an old in-folder lock file."""
    folder = Path(folder)
    return folder.is_dir() and any(p.name != LOCK for p in folder.iterdir())


def refusal(folder: str | os.PathLike, req: dict) -> str | None:
    """Why `folder` may not be used for `req` (it holds files with no provenance record, or one of
    another request, naming the keys that differ); None when it is absent, empty or made by `req`.
    UserError when its provenance.json is unreadable."""
    if not holds_files(folder):
        return None
    old = read(folder)
    if old is None:
        return "it holds files but no provenance.json (made by something else, or by an older version)"
    if old["request"] == req:
        return None
    diff = differences(old["request"], req)
    more = f" (+{len(diff) - 6} more)" if len(diff) > 6 else ""
    return "it was made by a different request: " + "; ".join(diff[:6]) + more


def claim(folder: str | os.PathLike, req: dict, force: bool = False, what: str = "--out") -> str:
    """Make `folder` the home of `req`. Returns 'new' (created, or was empty), 'same' (it holds
    this request: resume it or reuse what is finished), or 'moved' (it held something else and
    `force` moved it aside). Without `force`, a folder `refusal` objects to is a UserError naming
    why. Writes the record."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {folder} exists and is not a folder")
    why = refusal(folder, req)
    if why is None and holds_files(folder):
        return "same"
    status = "new"
    if why is not None:
        if not force:
            raise UserError(
                f"{what} {folder}: {why}. Use another folder, or --force to move it aside (nothing is deleted)"
            )
        moved = move_aside(folder)
        print(f"{folder}: {why}; moved aside to {moved.name}", flush=True)
        status = "moved"
    folder.mkdir(parents=True, exist_ok=True)
    write(folder, req)
    return status


def finished(folder: str | os.PathLike, req: dict, *outputs: str) -> bool:
    """True when `folder` holds every file of `outputs` and a provenance record of `req`: a
    finished run, which is read as it is, without its lock (so without write access)."""
    folder = Path(folder)
    try:
        return all((folder / f).is_file() for f in outputs) and (read(folder) or {}).get("request") == req
    except UserError:  # an unreadable record: the locked path reports it
        return False


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of `folder`: `.<name>.lock` beside it (outside: see the module docstring)."""
    folder = Path(os.path.abspath(folder))
    if not folder.name:
        raise UserError(f"{folder} is a file system root; choose a folder below it")
    return folder.with_name(f".{folder.name}.lock")


def holder(folder: str | os.PathLike) -> str:
    """Who holds (or last held) `folder`'s lock: 'pid N on HOST since TIME', as its holder wrote it."""
    try:
        text = lock_path(folder).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text[:200] or "another process"


def _write_holder(fd: int) -> None:
    """Record the new holder in the lock file, through the descriptor that holds the lock."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode())


_LENT = threading.local()  # .held: {lock file: FileLock} held by this thread and lent to its block


@contextlib.contextmanager
def lock(
    folder: str | os.PathLike, what: str = "--out", wait_s: float = 0.0, tell_every_s: float = 300.0, lend: bool = False
) -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (`lock_path`; its parent is created, not the folder)
    for the duration of the block. Held by another process or thread (or by this thread,
    unlent): wait up to `wait_s` seconds (saying on stderr whom it waits for, then every
    `tell_every_s`), then `Busy` naming the holder. lend: the block's own code in this thread may
    take the lock again (a stage that its orchestrator runs once it holds the stage's folder)."""
    folder = Path(folder)
    path = lock_path(folder)
    lent = _LENT.__dict__.setdefault("held", {})
    if str(path) in lent:  # taken again inside the block that lent it: the same hold, counted
        lent[str(path)].acquire(timeout=0)
        try:
            yield folder
        finally:
            lent[str(path)].release()
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{what} {folder}: cannot create {path.parent} for its lock: {exc.strerror or exc}") from None
    held = FileLock(path, on_acquired=_write_holder)
    _acquire(held, folder, what, float(wait_s), float(tell_every_s))
    if lend:
        lent[str(path)] = held
    try:
        yield folder
    finally:
        if lend:
            del lent[str(path)]
        held.release()


def _acquire(held: FileLock, folder: Path, what: str, wait_s: float, tell_every_s: float) -> None:
    """Acquire `held` (the lock of `folder`), waiting in the lock itself: no look-then-leap."""
    t0 = time.monotonic()
    waited = False
    while True:
        left = max(0.0, wait_s - (time.monotonic() - t0))
        try:
            held.acquire(timeout=min(left, tell_every_s) if waited else 0)
            return
        except Timeout:
            pass
        except IsADirectoryError:
            raise UserError(
                f"{what} {folder}: its lock file {held.lock_file} is a folder; move that folder away and try again"
            ) from None
        except OSError as exc:
            raise UserError(f"{what} {folder}: cannot take its lock {held.lock_file}: {exc.strerror or exc}") from None
        busy = f"{what} {folder} is in use by {holder(folder)}"
        elapsed = time.monotonic() - t0
        if elapsed >= wait_s:
            if wait_s <= 0:
                raise Busy(f"{busy}; wait for it to finish or use another folder")
            raise Busy(
                f"{busy}; gave up after waiting {_duration(elapsed)} (the wait limit, wait_s): run again once "
                f"it has finished, or wait longer"
            )
        head = f"still waiting ({_duration(elapsed)} so far)" if waited else "waiting"
        print(f"{head}: {busy} (for at most {_duration(wait_s)})", file=sys.stderr, flush=True)
        waited = True


def _duration(seconds: float) -> str:
    """'0.5 s', '12 min', '48.0 h': a wait as a reader says it."""
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# --- checkpoints --------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike) -> Any:
    """A training checkpoint read with `torch.load(weights_only=True)`: tensors, dicts, lists and
    plain values only. Anything that would need arbitrary code to unpickle (a planted file) is
    refused with a UserError and never runs."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a checkpoint of plain tensors and values; refusing to load it "
            f"(nothing in it was run): {first}"
        ) from None
