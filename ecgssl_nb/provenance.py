"""Provenance: what made a stage's output folder, and whether it may be reused.

Every stage folder holds `provenance.json` (format and reuse rules: ARCHITECTURE.md, Provenance):

    {"request": {"stage": "finetune", "settings": {...every resolved value...},
                 "inputs": {"prepared": "<sha256>", "backbone.time": "<sha256>"}, "seed": 3},
     "code_version": "0.1.0+a7af6ff", "created": "2026-12-02T06:40:00Z"}

A folder is reused only when its `request` equals the one asked now, key for key; otherwise it
is refused naming the keys that differ (`refusal`), or with force moved aside (`move_aside`),
never deleted. The code version is recorded but not matched: a change of documentation must not
invalidate a 300-epoch pre-training; a change that alters results must change a setting or the
stage's `FORMAT` instead. `lock(folder)` is an exclusive, non-blocking `flock` on `folder/.lock`
that the kernel drops when its holder dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from .atomic import write_text_atomic
from .errors import UserError

PROVENANCE = "provenance.json"
LOCK = ".lock"


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


def record(req: dict, recorded: dict | None = None) -> dict:
    """A full provenance record for `req`: the request plus the code version and a UTC time, and
    `recorded`: settings kept for the reader but not matched (e.g. a pre-training's process count)."""
    rec = {
        "request": req,
        "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if recorded is not None:
        rec["recorded"] = canonical(recorded)
    return rec


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


def write(folder: str | os.PathLike, req: dict, recorded: dict | None = None) -> dict:
    """Write `folder/provenance.json` for `req` (and `recorded`, see `record`) atomically; returns the record."""
    rec = record(req, recorded)
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
    """True when `folder` is a folder holding anything besides its lock file."""
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


def claim(
    folder: str | os.PathLike, req: dict, force: bool = False, what: str = "--out", recorded: dict | None = None
) -> str:
    """Make `folder` the home of `req`. Returns 'new' (created, or was empty), 'same' (it holds
    this request: resume it or reuse what is finished), or 'moved' (it held something else and
    `force` moved it aside). Without `force`, a folder `refusal` objects to is a UserError naming
    why. Writes the record (with `recorded`, see `record`)."""
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
    write(folder, req, recorded)
    return status


@contextlib.contextmanager
def lock(folder: str | os.PathLike, what: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (created if missing) for the duration of the block.
    A second writer gets a UserError naming the holder; the lock dies with its process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            raise UserError(
                f"{what} {folder} is in use by {holder}; wait for it to finish or use another folder"
            ) from None
        info = (
            f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the flock


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
