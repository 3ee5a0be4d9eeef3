"""`python -m ecgssl_nb download`: the PhysioNet/CinC Challenge 2020 training data, verified.

`--from physionet` (default): the loose files of PhysioNet's challenge-2020 1.0.2 (`PHYSIONET_URL`,
`TRANCHES`), each checked against its `SHA256SUMS.txt` (or `--sha256 FILE`, e.g. for a mirror at
`--base-url`); about 86,200 files, 8 GB, 1-3 hours with 8 workers (estimates). A file is hashed as
it is written to `<file>.part` (resumed with HTTP Range) and renamed in only with its listed
SHA-256; a mismatch is kept in `DIR/.physionet/rejected/`; 3 tries. A source is marked complete
only when every file is verified, else one line names the first bad file and a rerun fetches the
rest. `--from bucket`: the six tar.gz archives of the Challenge's bucket (`BASE_URL`, `ARCHIVES`),
accepted only with a SHA-256 from `--sha256 FILE` (none is published) or `--unverified-archives`;
a mismatch is kept as `DIR/.archives/<file>.bad`, a fault in the gzip or tar stream marks nothing.
Either way a source ends in `DIR/<source>/` with `.complete`, finished sources are skipped, and a
`DIR/<source>` without `.complete` is refused before any download (`--force`: moved to
`DIR/.moved-aside/`, hidden from `prepare`, never deleted).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import provenance
from ..core.errors import UserError, check_int
from .records import RECORDS_2020

BASE_URL = "https://storage.googleapis.com/physionet-challenge-2020-12-lead-ecg-public/"
_USER_AGENT = "ecgssl_nb-download (python urllib)"
_SIZE_NOTE = (
    "By default from PhysioNet's loose files (challenge-2020 1.0.2), each checked against its "
    "SHA256SUMS.txt: about 86,200 files, roughly 8 GB, roughly 1-3 hours with 8 workers "
    "(estimates, not measurements); --from bucket for the six archives."
)


@dataclass(frozen=True)
class Archive:
    source: str  # one of records.SOURCES
    file: str  # object name in the bucket
    sha256: str | None = None  # None: no official checksum published (see the module docstring)

    @property
    def records(self) -> int:
        """Records announced by the Challenge (`records.RECORDS_2020`)."""
        return RECORDS_2020[self.source]

    def url(self, base_url: str = BASE_URL) -> str:
        """The archive's address below `base_url` (the public bucket, or a mirror)."""
        return base_url.rstrip("/") + "/" + self.file


# source (records.SOURCES) -> (the bucket's PhysioNetChallenge2020_<name>.tar.gz, PhysioNet's training/<folder>)
_NAMES = {"CPSC": ("Training_CPSC", "cpsc_2018"), "CPSC-Extra": ("Training_2", "cpsc_2018_extra")}
_NAMES |= {"INCART": ("Training_StPetersburg", "st_petersburg_incart"), "PTB": ("Training_PTB", "ptb")}
_NAMES |= {"PTB-XL": ("PTB-XL", "ptb-xl"), "Georgia": ("Training_E", "georgia")}
ARCHIVES = {s: Archive(s, f"PhysioNetChallenge2020_{name}.tar.gz") for s, (name, _) in _NAMES.items()}
TRANCHES: dict[str, str] = {s: folder for s, (_, folder) in _NAMES.items()}  # PhysioNet's tranche folders
_CHUNK = 1 << 20  # bytes per read
_MOVED = ".moved-aside"  # where --force puts a folder that was in the way (hidden from `prepare`)
PHYSIONET_URL = "https://physionet.org/files/challenge-2020/1.0.2/"
SUMS_NAME = "SHA256SUMS.txt"  # at the version's root; lists every file of the version
_STAGE = ".physionet"  # OUT/.physionet/<source>/: a source being fetched (hidden from `prepare`)
_TRIES = 3  # tries of one PhysioNet file
_TIMEOUT_S = 60.0  # seconds without a byte before a try fails
RETRY_BACKOFF_S = 1.0  # seconds before the 2nd try of a file, twice that before the 3rd
ORIGINS = ("physionet", "bucket")


def parse_sources(spec: str) -> list[str]:
    """'all' -> the six sources; 'CPSC,ptb-xl' -> ['CPSC', 'PTB-XL'] (case-insensitive, table order)."""
    spec = (spec or "").strip()
    if spec.lower() == "all":
        return list(ARCHIVES)
    by_lower = {s.lower(): s for s in ARCHIVES}
    wanted = [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in wanted if p.lower() not in by_lower]
    if unknown or not wanted:
        raise UserError(
            f"--sources {spec!r}: {'unknown ' + ', '.join(unknown) if unknown else 'names no source'}; "
            f"choose 'all' or some of {', '.join(ARCHIVES)}"
        )
    chosen = {by_lower[p.lower()] for p in wanted}
    return [s for s in ARCHIVES if s in chosen]


_NO_RETRY = (400, 401, 403, 404, 410)  # HTTP errors that another try will not cure


class _Failed(Exception):
    """One try at one file failed; `final` when another try cannot help."""

    def __init__(self, reason: str, final: bool = False):
        super().__init__(reason)
        self.final = final


def _fetch_once(url: str, part: Path, count: Callable[[int], object], want: str | None) -> str:
    """One try: resume `part` (started over when the server sends the whole file, or cannot
    continue it: HTTP 416), hashing the bytes as they are written, and check the announced size;
    returns the SHA-256 of `part` (at once when a resumable `part` already has the SHA-256 `want`).
    `count(n)` gets each block's size; _Failed otherwise (a `part` that is no prefix is removed)."""
    h, offset = hashlib.sha256(), part.stat().st_size if part.exists() else 0
    if offset and want is not None and _hash_into(h, part) == want:  # all there (stopped before its rename)
        return want
    headers = {"User-Agent": _USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if offset and exc.code == 416:  # our .part is no prefix the server can continue
            part.unlink()
            return _fetch_once(url, part, count, want)
        raise _Failed(f"HTTP {exc.code} {exc.reason}", final=exc.code in _NO_RETRY) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Failed(f"{getattr(exc, 'reason', exc)}") from None
    with resp:
        cr = re.match(r"bytes\s+(\d+)-(?:\d+/(\d+))?", resp.headers.get("Content-Range") or "")
        if getattr(resp, "status", 200) != 206:
            h, offset = hashlib.sha256(), 0  # the whole file (or a file:// URL): start over
        elif not cr or int(cr.group(1)) != offset:
            part.unlink()
            raise _Failed(f"the server resumed at the wrong place ({resp.headers.get('Content-Range')!r})")
        elif want is None:  # the resumed prefix was not hashed above
            _hash_into(h, part)
        total = int(cr.group(2)) if cr and cr.group(2) else None  # the whole file's size, as announced
        if total is None and (resp.headers.get("Content-Length") or "").isdigit():
            total = int(resp.headers["Content-Length"]) + offset
        with open(part, "ab" if offset else "wb") as fh:
            try:
                while block := resp.read(_CHUNK):
                    fh.write(block)
                    h.update(block)
                    count(len(block))
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                raise _Failed(f"interrupted ({exc})") from None
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:  # no prefix of the file: start over next time
            part.unlink()
        raise _Failed(f"got {size} bytes, the server announced {total}")
    return h.hexdigest()


def _hash_into(h, path: Path) -> str:
    """Feed the bytes of `path` to the hash `h`; its hex digest so far."""
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


class _Rejected(str):
    """`_reject`'s reason: the bytes arrived but had another SHA-256, and were kept aside."""


def _reject(path: Path, got: str, want: str, bad: Path) -> _Rejected:
    """Move `path` (SHA-256 `got`, not `want`) to `bad`, kept and never used; the reason, in words."""
    bad.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, bad)
    return _Rejected(f"SHA-256 {got} is not the expected {want}; the file was moved to {bad} (kept, not deleted)")


def _get(url: str, dest: Path, want: str | None, bad: Path, count: Callable[[int], object], tries: int) -> str | None:
    """Make `dest` the bytes of `url` (`_fetch_once`, resuming `dest.part`) with SHA-256 `want`
    (any when None) in up to `tries` tries, RETRY_BACKOFF_S s apart times the try; bytes with
    another SHA-256 are moved to `bad`. None on success, else the last reason (the .part kept)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, reason = dest.with_name(dest.name + ".part"), "not tried"
    for attempt in range(1, tries + 1):
        try:
            got = _fetch_once(url, part, count, want)
            if want is None or got == want:
                os.replace(part, dest)
                return None
            reason = _reject(part, got, want, bad)
        except _Failed as exc:
            reason = str(exc)
            if exc.final:
                break
        if attempt < tries:
            time.sleep(RETRY_BACKOFF_S * attempt)
    return reason


def fetch(url: str, dest: Path, sha256: str | None = None, progress: bool | None = None) -> Path:
    """Download `url` to `dest` in one try (`_get`: `dest.part` resumed with an HTTP Range
    request, the announced size checked, the SHA-256 checked if given, then renamed onto `dest`).
    Returns dest. UserError on failure (the .part is kept when it may be resumed; one with the
    wrong SHA-256 is moved to `dest.bad`)."""
    from tqdm import tqdm  # only when something is downloaded

    dest = Path(dest)
    disable = None if progress is None else not progress
    with tqdm(unit="B", unit_scale=True, desc=dest.name, disable=disable) as bar:
        want = None if sha256 is None else sha256.lower()
        reason = _get(url, dest, want, dest.with_name(dest.name + ".bad"), bar.update, 1)
    if isinstance(reason, _Rejected):
        raise UserError(f"{url}: {reason}: run again to download it afresh")
    if reason is not None:
        raise UserError(f"download of {url} failed: {reason}; run again to resume")
    return dest


# "<64 hex> <name>" as PhysioNet writes SHA256SUMS.txt (one space, paths from the version's root),
# "<64 hex>  <name>" or "<64 hex> *<name>" as `sha256sum` writes it.
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64})(?: \*| {1,2})(.+)")


def parse_sums(text: str, where: str) -> dict[str, str]:
    """{listed path: lower-case hex SHA-256} from the text of a SHA256SUMS-style file (blank lines
    and # comments ignored). UserError naming `where` and the line for anything else, or for a
    path listed twice with different sums."""
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _SUM_LINE.fullmatch(line.strip())
        if not m:
            raise UserError(f"{where} line {n}: expected '<64 hex digits>  <file name>', got {line.strip()!r}")
        name, digest = m.group(2).strip(), m.group(1).lower()
        if sums.get(name, digest) != digest:
            raise UserError(f"{where} line {n}: {name!r} is listed twice with different sums")
        sums[name] = digest
    return sums


def read_sums(path: str | Path) -> dict[str, str]:
    """{file name: lower-case hex SHA-256} from a SHA256SUMS-style file (see `parse_sums`). A name
    with folders is also listed under its last part. UserError naming the file and line otherwise."""
    sums: dict[str, str] = {}
    for name, digest in _read_list(path)[0].items():
        for key in {name, PurePosixPath(name).name}:
            if sums.get(key, digest) != digest:
                raise UserError(f"--sha256 {path}: {key!r} is listed twice with different sums")
            sums[key] = digest
    return sums


def _read_list(sums_file: str | Path) -> tuple[dict[str, str], str]:
    """`--sha256 FILE` in place of the fetched list (a copy you trust, e.g. for a mirror)."""
    path = Path(sums_file)
    try:
        return parse_sums(path.read_text(encoding="utf-8"), f"--sha256 {path}"), f"--sha256 {path}"
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--sha256 {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Regular files and folders with relative paths inside the target; UserError otherwise."""
    members = tar.getmembers()
    for m in members:
        path = PurePosixPath(m.name)
        if path.is_absolute() or ".." in path.parts:
            raise UserError(f"{archive}: refusing to extract {m.name!r} (path leaves the target folder)")
    # links, devices and fifos are not part of a Challenge archive: skipped
    return [m for m in members if m.isdir() or m.isfile()]


def _read_to_the_end(tar: tarfile.TarFile, archive: Path) -> None:
    """UserError unless all after the last member is zeros up to a clean end of the gzip stream
    (`tarfile` stops listing at a damaged header without a word; gzip checks its CRC at the end)."""
    stream = tar.fileobj
    stream.seek(tar.offset)
    while block := stream.read(_CHUNK):
        if block.count(0) != len(block):
            raise UserError(
                f"{archive}: damaged tar stream (unreadable data at byte {tar.offset} of the unpacked "
                f"archive, after {len(tar.getmembers())} members)"
            )


def extract(archive: Path, target: Path, sums: dict[str, str] | None = None, force: bool = False) -> Path:
    """Unpack `archive` (tar.gz) into `target` (via a sibling folder renamed in, marked with
    `.complete`); every extracted file that `sums` names must match. UserError for a corrupt,
    truncated or unsafe archive (kept; nothing marked), or a `target` in the way (unless `force`)."""
    archive, target, sums = Path(archive), Path(target), sums or {}
    if _occupied(target) and not force:
        raise UserError(_in_the_way(target))
    tmp = target.with_name(f".extract-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)  # our own unfinished extraction, never a user's folder
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(tar, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)
            _read_to_the_end(tar, archive)
        for m in members:  # the first extracted file whose name `sums` lists with another SHA-256
            want = sums.get(m.name) or sums.get(PurePosixPath(m.name).name)
            if m.isfile() and want is not None and provenance.sha256_file(tmp / m.name) != want:
                raise UserError(f"{archive}: the extracted {m.name} does not have the SHA-256 the sums file lists")
    except (tarfile.TarError, EOFError, OSError, zlib.error, UserError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = exc if isinstance(exc, UserError) else f"{archive} is not a readable tar.gz ({exc})"
        raise UserError(f"{why}; nothing was extracted and the archive is kept: delete it and run again") from None
    _install(tmp, target, archive.name, force)
    return target


def _install(tmp: Path, target: Path, marker: str, force: bool) -> None:
    """Mark the finished folder `tmp` with `.complete` (its line `marker`) and rename it onto
    `target`; a `target` in the way is refused unless `force`, one holding anything is moved to
    `<its folder>/.moved-aside/<name>.stale-<UTC time>` (hidden), and that is said."""
    if _occupied(target) and not force:
        raise UserError(_in_the_way(target))
    (tmp / ".complete").write_text(marker + "\n")
    if _occupied(target) or (target / ".complete").exists():
        (target.parent / _MOVED).mkdir(exist_ok=True)
        moved = provenance.move_aside(target)
        os.replace(moved, target.parent / _MOVED / moved.name)
        print(f"{target}: moved aside to {target.parent / _MOVED / moved.name}", file=sys.stderr)
    elif target.exists():
        target.rmdir()  # an empty folder
    os.replace(tmp, target)


def _occupied(target: Path) -> bool:
    """True when `target` is a file, or a folder holding anything, without `download`'s `.complete`."""
    if not target.exists() or (target / ".complete").exists():
        return False
    return not target.is_dir() or any(target.iterdir())


def _in_the_way(target: Path) -> str:
    return (
        f"{target} holds files but no .complete marker (it was not made by `download`); move it away, "
        f"or pass --force to move it to {target.parent / _MOVED} (nothing is deleted)"
    )


def source_state(out: Path, archive: Archive | str, origin: str = "bucket") -> str:
    """'extracted' (OUT/<source>/.complete), 'in the way' (it holds files but no .complete), else
    from the bucket 'downloaded', 'partial (N bytes)' or 'missing', from PhysioNet 'partial (N
    files)' or 'missing'."""
    a = ARCHIVES[archive] if isinstance(archive, str) else archive
    if (out / a.source / ".complete").exists():
        return "extracted"
    if _occupied(out / a.source):
        return "in the way"
    if origin == "physionet":
        stage = out / _STAGE / a.source
        n = sum(1 for p in stage.rglob("*") if p.is_file() and not p.name.endswith(".part")) if stage.is_dir() else 0
        return f"partial ({n} files)" if n else "missing"
    if (out / ".archives" / a.file).exists():
        return "downloaded"
    part = out / ".archives" / (a.file + ".part")
    return f"partial ({part.stat().st_size} bytes)" if part.exists() else "missing"


def _make(out: Path, folder: str) -> None:
    """Create OUT/<folder>; UserError when that cannot be done."""
    try:
        (out / folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out} cannot be created: {exc.strerror or exc}") from None


def download(
    out: str | Path,
    sources: str | list[str] = "all",
    origin: str = "physionet",
    dry_run: bool = False,
    force: bool = False,
    progress: bool | None = None,
    base_url: str | None = None,
    sha256: str | Path | None = None,
    unverified: bool = False,
    keep_archives: bool = False,
    workers: int = 8,
) -> Path:
    """The chosen sources into `out/<source>/` from `origin` 'physionet' or 'bucket', as the
    module docstring and the CLI flags of the same names say; every refusal comes before anything
    is downloaded or moved, and dry_run only prints the plan. Returns `out`."""
    if origin not in ORIGINS:
        raise UserError(f"--from {origin!r}: choose one of {', '.join(ORIGINS)}")
    bucket = origin == "bucket"
    wrong = [flag for flag, on in (("--unverified-archives", unverified), ("--keep-archives", keep_archives)) if on]
    if wrong and not bucket:
        raise UserError(f"{wrong[0]} applies to --from bucket only (PhysioNet's files are always verified)")
    out, names = Path(out), parse_sources(sources if isinstance(sources, str) else ",".join(sources))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if not bucket and check_int("--workers", workers, 1) > 64:
        raise UserError(f"--workers {workers}: at most 64 (PhysioNet is a shared server)")
    given = _read_list(sha256) if sha256 is not None and not bucket else None  # a bad FILE is refused first
    sums = read_sums(sha256) if sha256 is not None and bucket else {}
    base_url = (base_url or (BASE_URL if bucket else PHYSIONET_URL)).rstrip("/")
    if dry_run:
        if not bucket:
            print(f"{'list':<11} {'':>6}          {'':<20} {base_url}/{SUMS_NAME}")
        for name in names:
            url = ARCHIVES[name].url(base_url) if bucket else f"{base_url}/training/{TRANCHES[name]}/"
            state = source_state(out, name, origin)
            print(f"{name:<11} {ARCHIVES[name].records:>6} records  {state:<20} {url} -> {out / name}")
        return out
    todo = [n for n in names if source_state(out, n, origin) != "extracted"]
    blocked = [n for n in todo if _occupied(out / n)]
    if blocked and not force:
        raise UserError(_in_the_way(out / blocked[0]) + (f" (also: {', '.join(blocked[1:])})" if blocked[1:] else ""))
    for name in [n for n in names if n not in todo]:
        print(f"{name}: already complete in {out / name}", file=sys.stderr)
    if bucket:
        _get_archives(out, todo, sums, base_url, unverified, keep_archives, progress, force)
    elif todo:
        _get_physionet(out, todo, given, base_url, workers, progress, force)
    return out


def download_archives(out: str | Path, sources: str | list[str] = "all", **kwargs) -> Path:
    """`download(out, sources, "bucket", ...)`: the six tar.gz archives of the Challenge's bucket."""
    return download(out, sources, "bucket", **kwargs)


def _get_archives(
    out: Path, todo: list[str], sums: dict, base_url: str, unverified: bool, keep: bool, progress, force: bool
) -> None:
    """`--from bucket`: refuse archives with no known SHA-256 (unless `unverified`), then fetch
    each (unless there), verify and extract it; the archive removed after (unless `keep`)."""
    expected = {s: sums.get(ARCHIVES[s].file) or ARCHIVES[s].sha256 for s in todo}
    unknown = [ARCHIVES[s].file for s in todo if expected[s] is None]
    if unknown and not unverified:
        raise UserError(
            f"no SHA-256 is known for {', '.join(unknown)} (none is published for the Challenge's archives): "
            f"pass --sha256 FILE with lines '<sha256>  <file name>', or --unverified-archives to accept "
            f"them unchecked; nothing was downloaded"
        )
    _make(out, ".archives")
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} is not writable")
    for s in todo:
        a, want = ARCHIVES[s], expected[s]
        archive = out / ".archives" / a.file
        if archive.exists():  # downloaded earlier: verified again before use (a mismatch kept as <file>.bad)
            got = provenance.sha256_file(archive) if want is not None else None
            if got is not None and got != want:
                why = _reject(archive, got, want, archive.with_name(archive.name + ".bad"))
                raise UserError(f"{archive}: {why}: run again to download it afresh")
        else:
            print(f"{s}: downloading {a.url(base_url)}", file=sys.stderr)
            fetch(a.url(base_url), archive, sha256=want, progress=progress)
        if want is None:
            print(f"{s}: WARNING: {a.file} is UNVERIFIED (no SHA-256 known; --unverified-archives)", file=sys.stderr)
        print(f"{s}: extracting into {out / s}", file=sys.stderr)
        extract(archive, out / s, sums=sums, force=force)
        if not keep:
            archive.unlink()


# --- the default origin: PhysioNet's loose files, each verified against its SHA256SUMS.txt -------


@dataclass(frozen=True)
class Listed:
    """One file PhysioNet lists: its path below the version's root and its source folder, its SHA-256."""

    path: str  # 'training/cpsc_2018/g1/A0001.hea'
    rel: str  # 'g1/A0001.hea' (where it goes below OUT/<source>/)
    sha256: str


def physionet_plan(sums: dict[str, str], names: list[str], where: str = SUMS_NAME) -> dict[str, list[Listed]]:
    """{source: its listed .hea/.mat files} for the chosen sources, from a parsed SHA256SUMS.txt.
    UserError naming `where` when a listed path is unsafe or a chosen source has no file."""
    plan: dict[str, list[Listed]] = {name: [] for name in names}
    folder_source = {f"training/{folder}": s for s, folder in TRANCHES.items() if s in plan}
    for path, digest in sorted(sums.items()):
        parts = PurePosixPath(path).parts
        if PurePosixPath(path).is_absolute() or ".." in parts or "\\" in path:
            raise UserError(f"{where} lists an unsafe path {path!r} (it leaves the data folder)")
        source = folder_source.get("/".join(parts[:2]))
        if source is not None and len(parts) > 2 and path.endswith((".hea", ".mat")):
            plan[source].append(Listed(path, "/".join(parts[2:]), digest))
    empty = [s for s, files in plan.items() if not files]
    if empty:
        raise UserError(
            f"{where} lists no .hea/.mat file under training/{TRANCHES[empty[0]]}/ for {empty[0]}: "
            f"is it the SHA256SUMS.txt of challenge-2020 1.0.2?"
        )
    return plan


def _get_physionet(
    out: Path, todo: list[str], given: tuple | None, base_url: str, workers: int, progress, force: bool
) -> None:
    """Fetch SHA256SUMS.txt (unless `given`: --sha256 FILE) into OUT/.physionet/, then the
    pending sources' files; every fully verified source is finished, the first failure is said."""
    _make(out, _STAGE)
    if given is None:
        url, dest = f"{base_url}/{SUMS_NAME}", out / _STAGE / SUMS_NAME
        print(f"downloading the list of files and their SHA-256: {url}", file=sys.stderr)
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)  # small: always fetched whole
        try:
            given = parse_sums(fetch(url, dest, progress=False).read_text(encoding="utf-8"), url), url
        except UnicodeDecodeError:
            raise UserError(f"{url} is not a text SHA256SUMS file; run again, or pass --sha256 FILE") from None
    sums, origin = given
    plan = physionet_plan(sums, todo, origin)
    bad = _fetch_plan(out, plan, base_url, workers, progress)
    failed = list(dict.fromkeys(name for name, _, _ in bad))  # the sources with a file not verified
    for name in [n for n in todo if n not in failed]:  # marked complete, then moved to OUT/<source>
        stage, target, n = out / _STAGE / name, out / name, len(plan[name])
        missing = [f.path for f in plan[name] if not (stage / f.rel).is_file()]
        if missing:  # cannot happen after a clean _fetch_plan; checked because it is what .complete claims
            raise UserError(f"{name}: {missing[0]} is missing from {stage} after its download; run again")
        _install(stage, target, f"challenge-2020 1.0.2, {n} .hea/.mat files, each verified against {origin}", force)
        print(f"{name}: {n} files verified, complete in {target}", file=sys.stderr)
    if bad:
        (name, path, reason), n_bad = bad[0], sum(b[0] == failed[0] for b in bad)
        others = f"; also {', '.join(failed[1:])}" if failed[1:] else ""
        raise UserError(
            f"{name}: {n_bad} of {len(plan[name])} files not verified (first: {path}: {reason}){others}; "
            f"nothing of {', '.join(failed)} was marked complete and every verified file is kept in "
            f"{out / _STAGE}: run the same command again to fetch the rest"
        )


def _fetch_plan(out: Path, plan: dict[str, list[Listed]], base_url: str, workers: int, progress) -> list[tuple]:
    """Fetch the plan with `workers` threads (a file already there with its listed SHA-256 is
    skipped; `_TRIES` tries, a mismatch kept in OUT/.physionet/rejected/); (source, path, reason)
    of each file not verified, in the plan's order."""
    from tqdm import tqdm  # only when something is downloaded

    jobs = [(name, f) for name, files in plan.items() for f in files]
    disable = None if progress is None else not progress
    files_bar = tqdm(total=len(jobs), unit="file", desc="files verified", disable=disable)
    bytes_bar = tqdm(unit="B", unit_scale=True, desc="downloaded", disable=disable)
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            bytes_bar.update(n)

    def one(job: tuple[str, Listed]) -> str | None:
        name, f = job
        url, dest = f"{base_url}/{urllib.parse.quote(f.path)}", out / _STAGE / name / f.rel
        try:
            reason = None
            if not (dest.exists() and provenance.sha256_file(dest) == f.sha256):
                reason = _get(url, dest, f.sha256, out / _STAGE / "rejected" / name / f.rel, count, _TRIES)
        except OSError as exc:  # a folder or file that cannot be written here
            reason = f"cannot be written: {exc.strerror or exc}"
        with lock:
            files_bar.update(reason is None)
        return reason

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        reasons = list(pool.map(one, jobs))
    finally:  # on Ctrl-C: the files in flight finish (or keep their .part), the queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        files_bar.close()
        bytes_bar.close()
    return [(name, f.path, reason) for (name, f), reason in zip(jobs, reasons) if reason is not None]


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb download --out DIR [--sources all|CPSC,...] [--from physionet|bucket] ...`."""
    p = provenance.CommandParser(
        prog="python -m ecgssl_nb download",
        description=__doc__.split("\n\n")[0] + " " + _SIZE_NOTE,
        epilog="The module docstring (python -m pydoc ecgssl_nb.data.download) describes the layout and each check.",
    )
    p.add_argument("--out", required=True, help="data folder; each source goes to OUT/<source>/")
    p.add_argument("--sources", default="all", help=f"'all' (default) or a comma list of {', '.join(ARCHIVES)}")
    origin = (
        "physionet (default): PhysioNet's loose files, each checked against its SHA256SUMS.txt; bucket: the six "
        "tar.gz archives of the Challenge's cloud bucket (no published sums: needs --sha256 FILE or "
        "--unverified-archives)"
    )
    p.add_argument("--from", dest="origin", default="physionet", choices=ORIGINS, help=origin)
    p.add_argument("--dry-run", action="store_true", help="print the URLs and what is already there; download nothing")
    p.add_argument("--workers", type=int, default=8, help="files fetched at once from PhysioNet (default 8)")
    mirror = f"a mirror: of PhysioNet's tree (default {PHYSIONET_URL}) or, with --from bucket, of the bucket "
    p.add_argument("--base-url", help=mirror + f"(default {BASE_URL}); http(s):// or file://")
    sums = (
        "a SHA256SUMS-style file ('<sha256>  <file name>' lines): for physionet, used instead of the fetched "
        "SHA256SUMS.txt (a copy you trust, for a mirror); for bucket, the archives' sums (extracted files it "
        "lists are checked too)"
    )
    p.add_argument("--sha256", metavar="FILE", help=sums)
    unsafe = "--from bucket: accept archives with no known SHA-256 (UNSAFE: a damaged or altered archive "
    p.add_argument("--unverified-archives", dest="unverified", action="store_true", help=unsafe + "goes unnoticed)")
    keep = "--from bucket: keep the .tar.gz files in OUT/.archives"
    p.add_argument("--keep-archives", action="store_true", help=keep)
    aside = "move a folder OUT/<source> that download did not make to OUT/.moved-aside/ (never deleted)"
    p.add_argument("--force", action="store_true", help=aside)
    download(**vars(p.parse_args(argv)))
    return 0
