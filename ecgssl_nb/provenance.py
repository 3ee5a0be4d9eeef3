"""Provenance: what made a stage's output folder, and whether it may be reused.

`provenance.json` = {"request": {"stage", "settings", "inputs", "seed"}, "code_version", "created"}
(ARCHITECTURE.md, A study on disk). A folder is reused only when its `request` equals the one asked
now, key for key; else it is refused naming the keys that differ (`refusal`) or, with force, moved
aside (`move_aside`), never deleted. The code version is recorded, not matched. `digests.json`
(`write_digests`, last) fingerprints every output, checked cheaply on open and in full before reuse
and by `python -m ecgssl_nb verify` (`digest_fault`). `lock(folder)` locks `.<name>.lock` BESIDE the
folder (moving the folder aside keeps it); the OS frees it when its holder dies.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from itertools import count
from pathlib import Path
from typing import Any, Iterator, NoReturn

from filelock import FileLock, Timeout

from . import __version__
from .atomic import write_json
from .core.errors import UserError

PROVENANCE = "provenance.json"
LOCK = ".lock"  # where versions before the sibling lock kept it, inside the folder: ignored there


class CommandParser(argparse.ArgumentParser):
    """The parser of a data command (`prepare`, `download`, `verify`): a bad argument is one line,
    '<command>: <argparse's message>' (a UserError: exit 2, via the dispatcher)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog.split()[-1]}: {message}")


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


# What is verified when (book: Reproduce the study, Verifying a runs folder): on every open
# (`digest_fault(full=False)`) sizes and SAMPLE_BLOCKS sampled blocks (about 1 MiB a file), and
# the full SHA-256 of a file whose mtime changed; before reuse and by `verify`, every byte.
DIGESTS = "digests.json"
SAMPLE_BLOCKS = 16  # the first block, the last, and 14 evenly between
SAMPLE_BLOCK = 1 << 16  # 64 KiB each: 1 MiB read per file, whatever its size


def sample_digest(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's size and SAMPLE_BLOCKS fixed blocks (the whole of a small file)."""
    size = os.path.getsize(path)
    h = hashlib.sha256(f"{size}\n".encode())
    with open(path, "rb") as fh:
        if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK:
            h.update(fh.read())
        else:
            step = (size - SAMPLE_BLOCK) / (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                fh.seek(round(i * step))
                h.update(fh.read(SAMPLE_BLOCK))
    return h.hexdigest()


def fingerprint(path: str | os.PathLike) -> dict:
    """{size (bytes), mtime_ns, sample (`sample_digest`), sha256} of one output file."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sample": sample_digest(path), "sha256": sha256_file(path)}


@functools.lru_cache(maxsize=256)
def _sha256_of_stat(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """sha256_file, remembered per process for a file whose stat is unchanged."""
    return sha256_file(path)


def write_digests(folder: str | os.PathLike, names: tuple[str, ...]) -> dict:
    """Write (atomically, last) `folder/digests.json`: the provenance request and each output's `fingerprint`."""
    folder = Path(folder)
    rec = read(folder)
    if rec is None:
        raise UserError(f"{folder} has no {PROVENANCE}; its outputs cannot be recorded")
    digests = {"request": rec["request"], "files": {n: fingerprint(folder / n) for n in names}}
    write_json(folder / DIGESTS, digests, sort_keys=True)
    return digests


def read_digests(folder: str | os.PathLike) -> dict | None:
    """`folder/digests.json` ({"request", "files": {name: fingerprint}}), None when absent or not one."""
    try:
        digests = json.loads((Path(folder) / DIGESTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(digests, dict) and isinstance(digests.get("files"), dict)
    return digests if ok and all(isinstance(v, dict) for v in digests["files"].values()) else None


def digest_fault(folder: str | os.PathLike, names: tuple[str, ...] = (), full: bool = False) -> str | None:
    """Why the recorded outputs of `folder` (at least `names`) cannot be trusted, a sentence naming the
    file; None when every one is as recorded (cheaply; with `full`, its SHA-256)."""
    folder = Path(folder)
    digests = read_digests(folder)
    if digests is None:
        what = "unreadable" if (folder / DIGESTS).exists() else "missing"
        return f"{folder / DIGESTS} is {what}: the run is unfinished, or was made by an older version"
    try:
        rec = read(folder)
    except UserError as exc:
        return str(exc)
    if rec is None or rec["request"] != digests.get("request"):
        diff = "; ".join(differences(digests.get("request"), rec["request"])[:3]) if rec else "it is missing"
        return f"{folder / PROVENANCE} is not the one its outputs were made under ({diff})"
    files = digests["files"]
    unrecorded = [n for n in names if n not in files]
    if unrecorded:
        return f"{folder / DIGESTS} records no digest of {', '.join(unrecorded)}"
    for name, want in sorted(files.items()):
        if fault := _file_fault(folder / name, want, full):
            return f"{folder / name} {fault}"
    return None


def _file_fault(path: Path, want: dict, full: bool) -> str | None:
    """What differs between the file `path` and its recorded fingerprint `want`, None if nothing."""
    try:
        st = os.stat(path)
        if st.st_size != want.get("size"):
            return f"changed since it was written: {st.st_size} bytes, {want.get('size')} recorded"
        if sample_digest(path) != want.get("sample"):
            return "changed since it was written (sampled blocks differ)"
        if not full and st.st_mtime_ns == want.get("mtime_ns"):
            return None
        sha = sha256_file(path) if full else _sha256_of_stat(str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None if sha == want.get("sha256") else "changed since it was written (its SHA-256 differs)"


def canonical(obj: Any) -> Any:
    """`obj` as plain JSON values (tuples -> lists, keys -> str): a request read back equals the one in memory."""
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default, allow_nan=False))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable in a provenance record")


def package_version() -> str:
    """The version of this ecgssl_nb (`ecgssl_nb.__version__`, the one place it is written)."""
    return __version__


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """'<package version>+<git commit>[-dirty]' from a git checkout, else the package version."""
    base = package_version()
    here = Path(__file__).resolve().parent
    git = functools.partial(subprocess.run, cwd=here, capture_output=True, text=True, timeout=10)
    try:
        commit = git(["git", "rev-parse", "--short=12", "HEAD"]).stdout.strip()
        if not commit:
            return base
        dirty = git(["git", "status", "--porcelain", "--untracked-files=no", "--", str(here)]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+{commit}{'-dirty' if dirty else ''}"


def request(stage: str, settings: dict, inputs: dict[str, str], seed: int) -> dict:
    """What is asked of a stage: the part of a provenance record that must match for reuse."""
    return canonical({"stage": stage, "settings": settings, "inputs": inputs, "seed": int(seed)})


def record(req: dict, recorded: dict | None = None) -> dict:
    """The provenance record of `req`, with the code version, a UTC time and `recorded` (not matched)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rec = {"request": req, "code_version": code_version(), "created": created}
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
    write_json(Path(folder) / PROVENANCE, rec, sort_keys=True)
    return rec


def move_aside(folder: str | os.PathLike) -> Path:
    """Rename `folder` to `folder.stale-<UTC time>[-n]` beside it and return the new path."""
    folder = Path(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    names = (f"{folder.name}.stale-{stamp}" + (f"-{n}" if n > 1 else "") for n in count(1))
    target = next(t for t in map(folder.with_name, names) if not t.exists())
    os.replace(folder, target)
    return target


def holds_files(folder: str | os.PathLike) -> bool:
    """True when `folder` is a folder holding anything besides an old in-folder lock file."""
    folder = Path(folder)
    return folder.is_dir() and any(p.name != LOCK for p in folder.iterdir())


def refusal(folder: str | os.PathLike, req: dict) -> str | None:
    """Why `folder` may not hold `req` (no record, a damaged one, another request's: keys that differ), else None."""
    if not holds_files(folder):
        return None
    try:
        old = read(folder)
    except UserError as exc:
        return f"its {PROVENANCE} is damaged ({exc})"
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
    """Make `folder` the home of `req` and write its record: 'new' (created, or was empty), 'same'
    (it holds this request) or 'moved' (`force` moved another aside; without it, UserError)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {folder} exists and is not a folder")
    why = refusal(folder, req)
    if why is None and holds_files(folder):
        return "same"
    if why is not None:
        if not force:
            raise UserError(
                f"{what} {folder}: {why}. Use another folder, or --force to move it aside (nothing is deleted)"
            )
        moved = move_aside(folder)
        print(f"{folder}: {why}; moved aside to {moved.name}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    write(folder, req, recorded)
    return "new" if why is None else "moved"


def finished(folder: str | os.PathLike, req: dict, *outputs: str) -> bool:
    """True when `folder` is a finished run of `req` holding `outputs` (full `digest_fault`), read without its lock."""
    folder = Path(folder)
    try:
        if not all((folder / f).is_file() for f in outputs) or (read(folder) or {}).get("request") != req:
            return False
    except UserError:  # an unreadable record: the locked path reports it
        return False
    return digest_fault(folder, outputs, full=True) is None


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of `folder`: `.<name>.lock` beside it (outside: see the module docstring)."""
    folder = Path(os.path.abspath(folder))
    if not folder.name:
        raise UserError(f"{folder} is a file system root; choose a folder below it")
    return folder.with_name(f".{folder.name}.lock")


def holder(folder: str | os.PathLike) -> str:
    """Who holds (or last held) `folder`'s lock: 'pid N on HOST since TIME', as its holder wrote it."""
    with contextlib.suppress(OSError):
        return lock_path(folder).read_text(encoding="utf-8", errors="replace").strip()[:200] or "another process"
    return "another process"


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
    """Hold the lock of `folder` (`lock_path`) for the block; held elsewhere: wait `wait_s` seconds
    (saying for whom every `tell_every_s`), then `Busy`. lend: this thread's block may take it again."""
    folder, path = Path(folder), lock_path(folder)
    lent = _LENT.__dict__.setdefault("held", {})
    held = lent.get(str(path))
    again = held is not None
    if again:  # taken again inside the block that lent it: the same hold, counted
        held.acquire(timeout=0)
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{what} {folder}: cannot create {path.parent} for its lock: {exc.strerror or exc}"
            ) from None
        held = FileLock(path, on_acquired=_write_holder)
        _acquire(held, folder, what, float(wait_s), float(tell_every_s))
        if lend:
            lent[str(path)] = held
    try:
        yield folder
    finally:
        if lend and not again:
            del lent[str(path)]
        held.release()


def _acquire(held: FileLock, folder: Path, what: str, wait_s: float, tell_every_s: float) -> None:
    """Acquire `held` (the lock of `folder`), waiting in the lock itself: no look-then-leap."""
    t0, waited = time.monotonic(), False
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
    """A checkpoint by `torch.load(weights_only=True)`; anything needing code to unpickle is a UserError, never run."""
    import torch  # ~1 s at import: only where a checkpoint is read

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a checkpoint of plain tensors and values; refusing to load it "
            f"(nothing in it was run): {first}"
        ) from None


# --- on demand: python -m ecgssl_nb verify ------------------------------------------------------


def stage_folders(root: str | os.PathLike) -> list[Path]:
    """Every stage folder (with provenance.json) at or below `root`, in path order; not *.stale-*, *.partial, hidden."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and ".stale-" not in d and not d.endswith(".partial"))
        if PROVENANCE in files:
            found.append(Path(dirpath))
    return found


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb verify PATH`: hash every recorded output of the stage folders below PATH."""
    p = CommandParser(prog="python -m ecgssl_nb verify", description=cli.__doc__.split(":")[0])
    p.add_argument("path", help="a runs folder, a prepared folder or one run folder")
    root = Path(p.parse_args(argv).path)
    if not root.is_dir():
        raise UserError(f"verify: {root} is not a folder")
    folders = stage_folders(root)
    if not folders:
        raise UserError(f"verify: {root} holds no stage folder (no {PROVENANCE} at or below it)")
    changed = 0
    for folder in folders:  # each in full: "ok", "changed" or "unverified" (no digests)
        if not (folder / DIGESTS).exists():
            status, detail = "unverified", f"no {DIGESTS} (unfinished, an older version, or not a stage output)"
        elif fault := digest_fault(folder, full=True):
            status, detail = "changed", fault
        else:
            stage = (read_digests(folder) or {}).get("request", {}).get("stage")
            status, detail = "ok", f"{stage}: every recorded output as written"
        changed += status == "changed"
        print(f"{status:<10} {folder}: {detail}", flush=True)
    print(f"{len(folders)} folders: {len(folders) - changed} unchanged or unverified, {changed} changed")
    if changed:
        raise UserError(f"verify: {changed} of {len(folders)} folders below {root} changed since they were written")
    return 0
