"""`python -m ecgssl_nb download`: the six PhysioNet/CinC Challenge 2020 training archives.

The Challenge 2020 training data were released as six tar.gz files in the public Google Cloud
bucket `physionet-challenge-2020-12-lead-ecg-public` (announced on the physionet-challenges
mailing list, "four new tranches of 12-lead ECG data", which lists the six files as
`https://storage.cloud.google.com/physionet-challenge-2020-12-lead-ecg-public/<file>`; the same
objects are served without a Google login at `https://storage.googleapis.com/<bucket>/<file>`).
`ARCHIVES` lists them: source, file, records announced.

The same records are also on PhysioNet as loose files (physionet.org/content/challenge-2020/
1.0.2/training/), which this command does not use. No official checksums were found, so the
check is the server's announced size (Content-Length / Content-Range) plus a full read of the
archive while extracting; `Archive.md5` is there for anyone who records one.

Layout written (what `prepare --data-dir DIR` reads; two archives both unpack to `WFDB/`, so each
goes into its own folder):

    DIR/.archives/<file>.part   a partial download (resumed with an HTTP Range request)
    DIR/.archives/<file>        a finished download (removed after extraction unless --keep-archives)
    DIR/<source>/...            the extracted archive; DIR/<source>/.complete marks it finished

Running the command again skips finished sources and resumes partial downloads.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import UserError

BASE_URL = "https://storage.googleapis.com/physionet-challenge-2020-12-lead-ecg-public/"


@dataclass(frozen=True)
class Archive:
    source: str  # one of records.SOURCES
    file: str  # object name in the bucket
    records: int  # records announced by the Challenge
    md5: str | None = None  # no official checksum published

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


def fetch(url: str, dest: Path, md5: str | None = None, progress: bool | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming `dest.part` with an HTTP Range request when the server
    allows it (else starting over). Checks the announced size (and md5 if given), then renames
    `dest.part` to `dest` atomically. Returns dest. UserError on failure (the .part is kept when
    it may be resumed)."""
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
            return fetch(url, dest, md5=md5, progress=progress, timeout=timeout)
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
    if md5 is not None:
        _check_md5(url, part, md5)
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


def _check_md5(url: str, part: Path, md5: str) -> None:
    """UserError (and `part` removed) unless the file's md5 is `md5`."""
    digest = hashlib.md5()
    with open(part, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    if digest.hexdigest() != md5.lower():
        part.unlink()
        raise UserError(f"download of {url}: md5 {digest.hexdigest()} is not the expected {md5}; removed, run again")


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


def extract(archive: Path, target: Path) -> Path:
    """Unpack `archive` (tar.gz) into `target` via a temporary sibling folder renamed at the end,
    then mark it with `target/.complete`. UserError for a corrupt or unsafe archive."""
    archive, target = Path(archive), Path(target)
    tmp = target.with_name(f".extract-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(tar, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)
    except (tarfile.TarError, EOFError, OSError, UserError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{archive} is not a readable tar.gz ({exc}); delete it and run again") from None
    (tmp / ".complete").write_text(archive.name + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def source_state(out: Path, archive: Archive) -> str:
    """'extracted', 'downloaded', 'partial (N bytes)' or 'missing'."""
    if (out / archive.source / ".complete").exists():
        return "extracted"
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
) -> Path:
    """Download and extract the chosen sources into `out/<source>/` (see the module docstring);
    returns `out`. With dry_run, only prints what would be done."""
    out = Path(out)
    names = parse_sources(sources) if isinstance(sources, str) else parse_sources(",".join(sources))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if dry_run:
        for name in names:
            a = ARCHIVES[name]
            print(f"{name:<11} {a.records:>6} records  {source_state(out, a):<20} {a.url(base_url)} -> {out / name}")
        return out
    try:
        (out / ".archives").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out} cannot be created: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} is not writable")
    for name in names:
        a = ARCHIVES[name]
        state = source_state(out, a)
        if state == "extracted":
            print(f"{name}: already extracted in {out / name}", file=sys.stderr)
            continue
        archive = out / ".archives" / a.file
        if state != "downloaded":
            print(f"{name}: downloading {a.url(base_url)}", file=sys.stderr)
            fetch(a.url(base_url), archive, md5=a.md5, progress=progress)
        print(f"{name}: extracting into {out / name}", file=sys.stderr)
        extract(archive, out / name)
        if not keep_archives:
            archive.unlink()
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"download: {message}")


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb download --out DIR [--sources all|CPSC,...] [--dry-run]`."""
    p = _Parser(prog="python -m ecgssl_nb download", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="data folder; each source goes to OUT/<source>/")
    p.add_argument("--sources", default="all", help=f"'all' (default) or a comma list of {', '.join(ARCHIVES)}")
    p.add_argument("--dry-run", action="store_true", help="print the URLs and what is already there; download nothing")
    p.add_argument(
        "--keep-archives", action="store_true", help="keep the .tar.gz files in OUT/.archives after extraction"
    )
    p.add_argument("--base-url", default=BASE_URL, help="a mirror of the bucket (http(s):// or file://)")
    args = p.parse_args(argv)
    download(args.out, args.sources, dry_run=args.dry_run, keep_archives=args.keep_archives, base_url=args.base_url)
    return 0
