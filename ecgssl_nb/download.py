"""`python -m ecgssl_nb download`: the six PhysioNet/CinC Challenge 2020 training archives.

The Challenge 2020 training data were released as six tar.gz files in the public Google Cloud
bucket `physionet-challenge-2020-12-lead-ecg-public` (announced on the physionet-challenges
mailing list, "four new tranches of 12-lead ECG data", which lists the six files as
`https://storage.cloud.google.com/physionet-challenge-2020-12-lead-ecg-public/<file>`; the same
objects are served without a Google login at `https://storage.googleapis.com/<bucket>/<file>`).
`ARCHIVES` lists them: source, file, records announced.

The same records are also on PhysioNet as loose files (physionet.org/content/challenge-2020/
1.0.2/training/), which this command does not use.

Verification. No checksum of these six archives is published: PhysioNet's `SHA256SUMS.txt` for
challenge-2020 1.0.2 lists the loose files, not the bucket's archives, and no sum is recorded
here that was not found verbatim in an official source (`Archive.sha256` is None for all six).
So an archive is only accepted with a SHA-256 from `--sha256 FILE` (lines "<hex>  <file name>",
as `sha256sum` writes them; for a mirror, or sums you computed from a copy you trust), and
without one the command refuses before it downloads anything, unless you pass the loudly named
`--unverified-archives` (then each archive is reported as unverified). A mismatch moves the file
to `DIR/.archives/<file>.bad` (kept for inspection, never deleted) and fails; running again
downloads it afresh. The sums file may also list extracted files by name (PhysioNet's own
`SHA256SUMS.txt`, say): every extracted file whose name it lists must match. Extraction fails
loudly on any fault of the gzip or tar stream (a CRC error, a truncated stream, a damaged header
anywhere, data after the end of the archive): the archive is kept, nothing is marked complete.

Layout written (what `prepare --data-dir DIR` reads; two archives both unpack to `WFDB/`, so each
goes into its own folder):

    DIR/.archives/<file>.part   a partial download (resumed with an HTTP Range request)
    DIR/.archives/<file>        a finished download (removed after extraction unless --keep-archives)
    DIR/<source>/...            the extracted archive; DIR/<source>/.complete marks it finished

Running the command again skips finished sources and resumes partial downloads. A folder
`DIR/<source>` without `.complete` (not made by this command) is refused before anything is
downloaded; with `--force` it is moved to `DIR/.moved-aside/<source>.stale-<time>` (hidden, so
`prepare` never reads it), never deleted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import provenance
from .errors import UserError

BASE_URL = "https://storage.googleapis.com/physionet-challenge-2020-12-lead-ecg-public/"


@dataclass(frozen=True)
class Archive:
    source: str  # one of records.SOURCES
    file: str  # object name in the bucket
    records: int  # records announced by the Challenge
    sha256: str | None = None  # None: no official checksum published (see the module docstring)

    def url(self, base_url: str = BASE_URL) -> str:
        """The archive's address below `base_url` (the public bucket, or a mirror)."""
        return base_url.rstrip("/") + "/" + self.file


ARCHIVES: dict[str, Archive] = {
    a.source: a
    for a in (
        Archive("CPSC", "PhysioNetChallenge2020_Training_CPSC.tar.gz", 6877),
        Archive("CPSC-Extra", "PhysioNetChallenge2020_Training_2.tar.gz", 3453),
        Archive("INCART", "PhysioNetChallenge2020_Training_StPetersburg.tar.gz", 74),
        Archive("PTB", "PhysioNetChallenge2020_Training_PTB.tar.gz", 516),
        Archive("PTB-XL", "PhysioNetChallenge2020_PTB-XL.tar.gz", 21837),
        Archive("Georgia", "PhysioNetChallenge2020_Training_E.tar.gz", 10344),
    )
}
_CHUNK = 1 << 20  # bytes per read
_MOVED = ".moved-aside"  # where --force puts a folder that was in the way (hidden from `prepare`)


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


def _total_from_headers(resp, offset: int) -> int | None:
    """Size of the whole file announced by a 200 (Content-Length) or 206 (Content-Range) reply."""
    cr = resp.headers.get("Content-Range")
    if cr:
        m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", cr)
        if m and m.group(3) != "*":
            return int(m.group(3))
    cl = resp.headers.get("Content-Length")
    if cl is not None and cl.isdigit():
        return int(cl) + offset
    return None


def fetch(url: str, dest: Path, sha256: str | None = None, progress: bool | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming `dest.part` with an HTTP Range request when the server
    allows it (else starting over). Checks the announced size (and the SHA-256 if given), then
    renames `dest.part` to `dest` atomically. Returns dest. UserError on failure (the .part is
    kept when it may be resumed; one with the wrong SHA-256 is moved to `dest.bad`)."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # our .part is not a prefix the server can continue
            part.unlink()
            return fetch(url, dest, sha256=sha256, progress=progress, timeout=timeout)
        raise UserError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise UserError(f"download of {url} failed: {getattr(exc, 'reason', exc)}; run again to resume") from None

    with resp:
        total = _receive(resp, url, part, offset, progress)
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise UserError(f"download of {url}: got {size} bytes, the server announced {total}; run again to resume")
    if sha256 is not None:
        check_sha256(part, sha256, url, bad=dest.with_name(dest.name + ".bad"))
    os.replace(part, dest)
    return dest


def _receive(resp, url: str, part: Path, offset: int, progress: bool | None) -> int | None:
    """Append the reply's body to `part` (206: a resumed range starting at `offset`) or write it
    anew (200); returns the whole file's announced size in bytes (None when not announced)."""
    from tqdm import tqdm

    status = getattr(resp, "status", None) or resp.getcode() or 200
    if status == 206:
        m = re.match(r"bytes\s+(\d+)-", resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            raise UserError(
                f"download of {url}: the server resumed at the wrong place ({resp.headers.get('Content-Range')!r})"
            )
        mode = "ab"
    else:  # 200 (or a file:// URL): the server sent the whole file, start over
        offset, mode = 0, "wb"
    total = _total_from_headers(resp, offset)
    disable = None if progress is None else not progress
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"), disable=disable
    )
    try:
        with open(part, mode) as fh:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                    raise UserError(f"download of {url} interrupted: {exc}; run again to resume") from None
                if not block:
                    return total
                fh.write(block)
                bar.update(len(block))
    finally:
        bar.close()


def check_sha256(path: Path, expected: str, what: str, bad: Path) -> None:
    """UserError unless the file's SHA-256 is `expected`; a mismatching file is first moved to
    `bad` (kept for inspection, never deleted), so that running again downloads it afresh."""
    got = provenance.sha256_file(path)
    if got != expected.lower():
        os.replace(path, bad)
        raise UserError(
            f"{what}: SHA-256 {got} is not the expected {expected.lower()}; the file was moved to {bad} "
            f"(kept, not deleted): run again to download it afresh"
        )


_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def read_sums(path: str | Path) -> dict[str, str]:
    """{file name: lower-case hex SHA-256} from a SHA256SUMS-style file (`sha256sum` output:
    "<64 hex>  <name>" or "<64 hex> *<name>"; blank lines and # comments ignored). A name with
    folders is also listed under its last part. UserError naming the file and line otherwise."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--sha256 {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    sums: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _SUM_LINE.fullmatch(line.strip())
        if not m:
            raise UserError(f"--sha256 {path} line {n}: expected '<64 hex digits>  <file name>', got {line.strip()!r}")
        name, digest = m.group(2).strip(), m.group(1).lower()
        for key in {name, PurePosixPath(name).name}:
            if sums.get(key, digest) != digest:
                raise UserError(f"--sha256 {path} line {n}: {key!r} is listed twice with different sums")
            sums[key] = digest
    return sums


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Regular files and folders with relative paths inside the target; UserError otherwise."""
    members = []
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts:
            raise UserError(f"{archive}: refusing to extract {m.name!r} (path leaves the target folder)")
        if m.isdir() or m.isfile():
            members.append(m)
        # links, devices and fifos are not part of a Challenge archive: skipped
    return members


def _read_to_the_end(tar: tarfile.TarFile, archive: Path) -> None:
    """UserError unless everything after the last member is the tar end blocks (zeros) up to a
    clean end of the compressed stream. `tarfile` ends its listing, without a word, at the first
    damaged header after the first one; reading on to the end also makes gzip check its CRC and
    length."""
    stream = tar.fileobj
    stream.seek(tar.offset)
    while block := stream.read(_CHUNK):
        if block.count(0) != len(block):
            raise UserError(
                f"{archive}: damaged tar stream (unreadable data at byte {tar.offset} of the unpacked "
                f"archive, after {len(tar.getmembers())} members)"
            )


def _check_members(tmp: Path, members: list[tarfile.TarInfo], sums: dict[str, str], archive: Path) -> None:
    """UserError naming the first extracted file whose name `sums` lists with another SHA-256."""
    for m in members:
        want = sums.get(m.name) or sums.get(PurePosixPath(m.name).name)
        if m.isfile() and want is not None and provenance.sha256_file(tmp / m.name) != want:
            raise UserError(f"{archive}: the extracted {m.name} does not have the SHA-256 the sums file lists")


def extract(archive: Path, target: Path, sums: dict[str, str] | None = None, force: bool = False) -> Path:
    """Unpack `archive` (tar.gz) into `target` via a temporary sibling folder renamed at the end,
    then mark it with `target/.complete`. Every extracted file that `sums` names must match it.
    UserError for a corrupt, truncated or unsafe archive (the archive is left where it is, nothing
    is marked complete), and for a `target` that holds files, unless `force` (then it is moved
    to `<target's folder>/.moved-aside/`, never deleted)."""
    archive, target = Path(archive), Path(target)
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
        _check_members(tmp, members, sums or {}, archive)
    except (tarfile.TarError, EOFError, OSError, zlib.error, UserError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, UserError):
            raise UserError(f"{exc}; nothing was extracted and {archive} is kept: delete it and run again") from None
        raise UserError(
            f"{archive} is not a readable tar.gz ({exc}); nothing was extracted and the archive is kept: "
            f"delete it and run again"
        ) from None
    (tmp / ".complete").write_text(archive.name + "\n")
    if _occupied(target) or (target / ".complete").exists():
        _move_aside(target)
    elif target.exists():
        target.rmdir()  # an empty folder
    os.replace(tmp, target)
    return target


def _occupied(target: Path) -> bool:
    """True when `target` is a file, or a folder holding anything, that `download` did not finish
    (no `.complete` in it)."""
    if not target.exists() or (target / ".complete").exists():
        return False
    return not target.is_dir() or any(target.iterdir())


def _in_the_way(target: Path) -> str:
    return (
        f"{target} holds files but no .complete marker (it was not made by `download`); move it away, "
        f"or pass --force to move it to {target.parent / _MOVED} (nothing is deleted)"
    )


def _move_aside(target: Path) -> Path:
    """Move `target` to `<its folder>/.moved-aside/<name>.stale-<UTC time>` (hidden: `prepare`
    never reads it) and say so."""
    aside = target.parent / _MOVED
    aside.mkdir(exist_ok=True)
    moved = provenance.move_aside(target)
    final = aside / moved.name
    os.replace(moved, final)
    print(f"{target}: moved aside to {final}", file=sys.stderr)
    return final


def source_state(out: Path, archive: Archive) -> str:
    """'extracted', 'in the way' (OUT/<source> holds files but no .complete), 'downloaded',
    'partial (N bytes)' or 'missing'."""
    if (out / archive.source / ".complete").exists():
        return "extracted"
    if _occupied(out / archive.source):
        return "in the way"
    store = out / ".archives"
    if (store / archive.file).exists():
        return "downloaded"
    part = store / (archive.file + ".part")
    if part.exists():
        return f"partial ({part.stat().st_size} bytes)"
    return "missing"


def download(
    out: str | Path,
    sources: str | list[str] = "all",
    dry_run: bool = False,
    keep_archives: bool = False,
    base_url: str = BASE_URL,
    progress: bool | None = None,
    sha256: str | Path | None = None,
    unverified: bool = False,
    force: bool = False,
) -> Path:
    """Download, verify and extract the chosen sources into `out/<source>/` (see the module
    docstring); returns `out`. sha256: a SHA256SUMS-style file with the archives' sums (and maybe
    the extracted files'); unverified: accept an archive with no known sum (said loudly); force:
    move a folder `out/<source>` that `download` did not make aside. With dry_run, only prints
    what would be done. Every refusal comes before anything is downloaded or moved."""
    out = Path(out)
    names = parse_sources(sources) if isinstance(sources, str) else parse_sources(",".join(sources))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    sums = read_sums(sha256) if sha256 is not None else {}
    if dry_run:
        for name in names:
            a = ARCHIVES[name]
            print(f"{name:<11} {a.records:>6} records  {source_state(out, a):<20} {a.url(base_url)} -> {out / name}")
        return out
    todo = [ARCHIVES[n] for n in names if source_state(out, ARCHIVES[n]) != "extracted"]
    expected = {a.source: sums.get(a.file) or a.sha256 for a in todo}
    _check_plan(out, todo, expected, unverified, force)
    try:
        (out / ".archives").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out} cannot be created: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} is not writable")
    for name in names:
        if name not in expected:
            print(f"{name}: already extracted in {out / name}", file=sys.stderr)
    for a in todo:
        _get_one(out, a, expected[a.source], sums, base_url, keep_archives, progress, force)
    return out


def _check_plan(out: Path, todo: list[Archive], expected: dict[str, str | None], unverified: bool, force: bool) -> None:
    """Refuse, before anything is written, a source folder in the way (without `force`) or an
    archive with no known SHA-256 (without `unverified`)."""
    blocked = [a.source for a in todo if _occupied(out / a.source)]
    if blocked and not force:
        raise UserError(_in_the_way(out / blocked[0]) + (f" (also: {', '.join(blocked[1:])})" if blocked[1:] else ""))
    unknown = [a.file for a in todo if expected[a.source] is None]
    if unknown and not unverified:
        raise UserError(
            f"no SHA-256 is known for {', '.join(unknown)} (none is published for the Challenge's archives): "
            f"pass --sha256 FILE with lines '<sha256>  <file name>', or --unverified-archives to accept "
            f"them unchecked; nothing was downloaded"
        )


def _get_one(
    out: Path, a: Archive, sha256: str | None, sums: dict, base_url: str, keep: bool, progress, force: bool
) -> None:
    """Fetch (unless already downloaded), verify and extract one source; the archive is removed
    only after a clean extraction (unless `keep`)."""
    archive = out / ".archives" / a.file
    bad = archive.with_name(archive.name + ".bad")
    if archive.exists():  # downloaded earlier: verified again before use
        if sha256 is not None:
            check_sha256(archive, sha256, str(archive), bad)
    else:
        print(f"{a.source}: downloading {a.url(base_url)}", file=sys.stderr)
        fetch(a.url(base_url), archive, sha256=sha256, progress=progress)
    if sha256 is None:
        print(f"{a.source}: WARNING: {a.file} is UNVERIFIED (no SHA-256 known; --unverified-archives)", file=sys.stderr)
    print(f"{a.source}: extracting into {out / a.source}", file=sys.stderr)
    extract(archive, out / a.source, sums=sums, force=force)
    if not keep:
        archive.unlink()


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"download: {message}")


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb download --out DIR [--sources all|CPSC,...] [--sha256 FILE] [--dry-run]`."""
    p = _Parser(prog="python -m ecgssl_nb download", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="data folder; each source goes to OUT/<source>/")
    p.add_argument("--sources", default="all", help=f"'all' (default) or a comma list of {', '.join(ARCHIVES)}")
    p.add_argument("--dry-run", action="store_true", help="print the URLs and what is already there; download nothing")
    p.add_argument(
        "--keep-archives", action="store_true", help="keep the .tar.gz files in OUT/.archives after extraction"
    )
    p.add_argument("--base-url", default=BASE_URL, help="a mirror of the bucket (http(s):// or file://)")
    p.add_argument(
        "--sha256",
        metavar="FILE",
        help="SHA256SUMS-style file ('<sha256>  <file name>' lines) with the archives' sums; "
        "extracted files it lists are checked too",
    )
    p.add_argument(
        "--unverified-archives",
        action="store_true",
        help="accept archives with no known SHA-256 (UNSAFE: a damaged or altered archive goes unnoticed)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="move a folder OUT/<source> that download did not make to OUT/.moved-aside/ (never deleted)",
    )
    args = p.parse_args(argv)
    download(
        args.out,
        args.sources,
        dry_run=args.dry_run,
        keep_archives=args.keep_archives,
        base_url=args.base_url,
        sha256=args.sha256,
        unverified=args.unverified_archives,
        force=args.force,
    )
    return 0
