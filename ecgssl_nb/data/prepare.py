"""`python -m ecgssl_nb prepare`: Challenge records -> one 100 Hz memmap, an index, stats and folds.

Paper Sec. III-A; book: The data; B1-B3, B25. Every `*.hea` below `--data-dir`, in (source, name,
path) order (B3, `walk_corpus`), is kept when it has a scored code, passes `records`' checks, is at
least `WINDOW` samples at 100 Hz (every lead resampled, B1; `--leads lead-i`: lead I in all 12) and
duplicates no kept signal. OUT, built in `OUT.partial/` from resumable chunks (`make_chunks`) and
renamed in: `signals.npy` float32 (T, 12) mV, `index.csv` (`INDEX_COLUMNS`), `skipped.csv` (every
file not kept, with its reason), `stats.json` (per-lead mean and std in mV, counts),
`provenance.json`, `digests.json` and, last, `.complete.json` (the input manifest and `digest`).
Arrays are written by plain writes (a full disk is one line, never a SIGBUS); `load_prepared` checks all.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.signal  # imported before the worker processes fork

from .. import provenance
from . import records as R
from ..atomic import atomic_write, write_json, write_text_atomic
from ..core import labels as L
from ..core.errors import RecordError, UserError, check_int, check_seed
from ..core.settings import LEAD_MODES, TARGET_FS, WINDOW
from .folds import assign_folds
from .records import LEADS, SOURCES, read_header, read_record_raw, source_of

FORMAT_VERSION = 1
DEFAULT_CHUNK = 256  # records per part file (at most)
CHUNK_BYTES = 64 << 20  # signal-file bytes per part file (at most, unless one record is larger)
_SCORED = frozenset(L.SCORED_CODES)
INDEX_COLUMNS = tuple("record source path fs n_samples offset length age sex labels codes dx fold".split())
SKIPPED_COLUMNS = ("record", "path", "reason", "detail")
OUTPUTS = ("signals.npy", "index.csv", "skipped.csv", "stats.json")
_CONTENT = ("signals.npy", "index.csv", "stats.json")  # what corpus_digest covers
_PARTS = ".parts"
_COMPLETE = ".complete.json"
_STAGING_SUFFIX = ".partial"
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def resample_100hz(signal: np.ndarray, fs: float) -> np.ndarray:
    """(12, n) mV at `fs` Hz -> (int(n*100/fs), 12) float32 mV at 100 Hz: scipy.signal.resample (FFT,
    the authors' method and length rule) in float32, within 1e-6 mV of float64 and 1.5-3x faster."""
    n = signal.shape[1]
    new_len = int(n * TARGET_FS / fs)
    x = np.ascontiguousarray(signal, dtype=np.float32)
    if new_len != n:
        x = scipy.signal.resample(x, new_len, axis=1)
    return np.ascontiguousarray(x.T, dtype=np.float32)


def _process_record(hea: Path, rel: str, leads: str = "twelve") -> tuple[dict, np.ndarray]:
    """Metadata and the (L, 12) 100 Hz signal of one record (lead-i: lead I in all 12, B1), else RecordError."""
    header = read_header(hea)
    codes = [c for c in header.dx if c in _SCORED]  # pre-merge, header order
    if not codes:
        raise RecordError(hea, "no scored label", ",".join(header.dx))
    rec, raw = read_record_raw(hea, header)
    x = resample_100hz(rec.signal, rec.fs)
    if x.shape[0] < WINDOW:
        raise RecordError(hea, "too short", f"{x.shape[0]} samples at {TARGET_FS} Hz < {WINDOW}")
    # exact duplicates: SHA-1 (the fastest hashlib digest; a collision only matters if forced) of the raw samples
    h = hashlib.sha1(repr((raw.shape, str(raw.dtype))).encode())
    h.update(np.ascontiguousarray(raw).tobytes())
    if leads == "lead-i":
        x = np.ascontiguousarray(np.repeat(x[:, :1], 12, axis=1))  # (L, 12), every column lead I
    meta = {
        "record": rec.name,
        "source": rec.source,
        "path": rel,
        "fs": float(rec.fs),
        "n_samples": int(rec.signal.shape[1]),
        "length": int(x.shape[0]),
        "age": rec.age,
        "sex": rec.sex,
        "codes": codes,
        "dx": list(rec.dx),
        "hash": h.hexdigest(),
        "mean": x.mean(axis=0, dtype=np.float64).tolist(),
        "std": x.std(axis=0, dtype=np.float64).tolist(),
    }
    return meta, x


def _write_npy(path: Path, n_rows: int, blocks) -> None:
    """A float32 (n_rows, 12) .npy from row blocks, by plain writes (a full disk: OSError, never SIGBUS)."""
    written = 0

    def write(tmp: str) -> None:
        nonlocal written
        with open(tmp, "wb") as fh:
            header = {"descr": "<f4", "fortran_order": False, "shape": (int(n_rows), 12)}
            np.lib.format.write_array_header_1_0(fh, header)
            for b in blocks:
                b = np.ascontiguousarray(b, dtype="<f4")
                written += len(b)
                fh.write(b.data)

    atomic_write(path, write)
    if written != n_rows:
        path.unlink()
        raise RuntimeError(f"{path}: wrote {written} rows, expected {n_rows}")


def _chunk_paths(parts: Path, k: int) -> tuple[Path, Path]:
    return parts / f"chunk-{k:05d}.npy", parts / f"chunk-{k:05d}.json"


def _process_chunk(task: tuple[int, str, list[str], str, str]) -> tuple[int, int]:
    """Records `rels` -> chunk k's part files, atomically: the .npy, then the .json (its completion mark)."""
    k, data_dir, rels, parts, leads = task
    npy_path, json_path = _chunk_paths(Path(parts), k)
    metas, skipped, arrays = [], [], []
    for rel in rels:
        try:
            meta, x = _process_record(Path(data_dir) / rel, rel, leads)
        except RecordError as exc:
            skipped.append(_skip_row(rel, exc.reason, exc.detail))
            continue
        metas.append(meta)
        arrays.append(x)
    _write_npy(npy_path, sum(len(a) for a in arrays), arrays)  # written one by one: no second copy
    arrays.clear()
    write_json(json_path, {"rels": rels, "records": metas, "skipped": skipped}, indent=None)
    return k, len(rels)


def walk_corpus(data_dir: Path) -> tuple[list[str], list[str]]:
    """(headers, orphan .mat files) below data_dir as relative POSIX paths in (source, record name,
    path) order; hidden ones left out, symlinked folders followed once each (loops end)."""
    data_dir = Path(data_dir)
    seen = {_identity(data_dir)}
    heas, mats = [], []
    for root, dirs, files in os.walk(data_dir, followlinks=True):  # sources may be symlinked folders
        keep = []
        for d in sorted(dirs):
            ident = None if d.startswith(".") else _identity(Path(root) / d)
            if ident is not None and ident not in seen:
                seen.add(ident)
                keep.append(d)
        dirs[:] = keep
        base = Path(root).relative_to(data_dir)
        heas += [(base / f).as_posix() for f in files if f.endswith(".hea") and not f.startswith(".")]
        mats += [(base / f).as_posix() for f in files if f.endswith(".mat") and not f.startswith(".")]
    have = set(heas)
    orphans = [m for m in mats if m[: -len(".mat")] + ".hea" not in have]
    return sorted(heas, key=_order_key), sorted(orphans, key=_order_key)


def _identity(path: Path):
    """(device, inode) of the folder `path` leads to, None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _order_key(rel: str):
    stem = Path(rel).stem
    return SOURCES.index(source_of(stem, rel)), stem, rel


def make_chunks(rels: list[str], sizes: list[int], chunk_size: int, chunk_bytes: int = CHUNK_BYTES) -> list[list[str]]:
    """Consecutive groups of at most `chunk_size` records and (unless one is larger) `chunk_bytes`."""
    chunks: list[list[str]] = [[]]
    cur_bytes = 0  # of the last chunk
    for rel, size in zip(rels, sizes):
        if chunks[-1] and (len(chunks[-1]) >= chunk_size or cur_bytes + size > chunk_bytes):
            chunks.append([])
            cur_bytes = 0
        chunks[-1].append(rel)
        cur_bytes += size
    return chunks if rels else []


def _stamp(path: Path) -> tuple[str, int]:
    """('size mtime_ns', size) of a record file; ('error N', 0) when it cannot be read (its record is skipped)."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"error {exc.errno}", 0
    return f"{st.st_size}\0{st.st_mtime_ns}", st.st_size


def _manifest(data_dir: Path, rels: list[str], chunk_size: int, orphans: list[str], leads: str) -> tuple[dict, list]:
    """(what the parts are made from: the input fingerprint `headers` (paths, sizes, mtimes), chunking,
    leads; the size of each header's .mat in bytes, 0 if absent: the chunking budget)."""
    h = hashlib.blake2b(digest_size=16)
    sizes = []
    for rel in rels:
        (hea, _), (mat, size) = _stamp(data_dir / rel), _stamp((data_dir / rel).with_suffix(".mat"))
        h.update(f"{rel}\0{hea}\0{size}\0{mat}\n".encode())
        sizes.append(size)
    for rel in orphans:
        h.update(f"orphan\0{rel}\n".encode())
    manifest = dict(version=FORMAT_VERSION, data_dir=str(data_dir.resolve()), n_headers=len(rels))
    manifest |= dict(headers=h.hexdigest(), chunk_size=chunk_size, chunk_bytes=CHUNK_BYTES, fs=TARGET_FS)
    manifest["leads"] = leads  # B1: recorded so that a lead-I corpus is never taken for a 12-lead one
    return manifest, sizes


def _assemble(out: Path, parts: Path, n_chunks: int, n_folds: int, seed: int, orphans: list[str] = ()) -> dict:
    """The parts, duplicates dropped -> skipped.csv, signals.npy, index.csv, stats.json (atomically, in
    that order); returns the stats. UserError (after skipped.csv) when no record is kept."""
    kept, skipped = _dedup(parts, n_chunks)
    n_headers = len(kept) + len(skipped)
    for rel in orphans:
        skipped.append(_skip_row(rel, "missing header", f"signal file with no {Path(rel).stem}.hea beside it"))
    _write_csv(out / "skipped.csv", pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS)), list(SKIPPED_COLUMNS))
    if not kept:
        reasons = ", ".join(f"{r}: {c}" for r, c in _reason_counts(skipped).items())
        raise UserError(f"no record kept: all {n_headers} headers were skipped ({reasons}); see {out / 'skipped.csv'}")
    total = sum(m["length"] for m in kept)
    _write_npy(out / "signals.npy", total, _kept_blocks(parts, kept))
    index = _index_frame(kept, n_folds, seed)
    _write_csv(out / "index.csv", index, list(INDEX_COLUMNS))
    stats = _stats(kept, skipped, index, len(orphans), n_folds, seed)
    write_json(out / "stats.json", stats)
    return stats


def _skip_row(rel: str, reason: str, detail: str) -> dict:
    """A skipped.csv row for the file `rel` (relative to the data folder)."""
    return {"record": Path(rel).stem, "path": rel, "reason": reason, "detail": detail}


def _reason_counts(skipped: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(s["reason"] for s in skipped).items()))


def _dedup(parts: Path, n_chunks: int) -> tuple[list[dict], list[dict]]:
    """(kept records with their `offset` in signals.npy and their `chunk` and `start` in its part;
    skipped rows). A signal (hash) or name kept before is skipped."""
    kept, skipped = [], []
    first_by_hash: dict[str, str] = {}
    names: set[str] = set()
    offset = 0
    for k in range(n_chunks):
        info = json.loads(_chunk_paths(parts, k)[1].read_text())
        ok = {m["path"]: m for m in info["records"]}
        bad = {s["path"]: s for s in info["skipped"]}
        start = 0
        for rel in info["rels"]:
            if rel in bad:
                skipped.append(bad[rel])
                continue
            item = ok[rel]
            if item["hash"] in first_by_hash:
                skipped.append(_skip_row(rel, "duplicate signal", f"duplicate of {first_by_hash[item['hash']]}"))
            elif item["record"] in names:
                skipped.append(_skip_row(rel, "duplicate record name", f"another {item['record']} was kept"))
            else:
                first_by_hash[item["hash"]] = item["record"]
                names.add(item["record"])
                kept.append(dict(item, offset=offset, chunk=k, start=start))
                offset += item["length"]
            start += item["length"]
    return kept, skipped


def _kept_blocks(parts: Path, kept: list[dict]):
    """The kept records' signal rows, (length, 12) float32 each, one part at a time."""
    for k, records in itertools.groupby(kept, key=lambda m: m["chunk"]):
        block = np.load(_chunk_paths(parts, k)[0], mmap_mode="r")
        yield from (block[m["start"] : m["start"] + m["length"]] for m in records)


def _index_frame(kept: list[dict], n_folds: int, seed: int) -> pd.DataFrame:
    """index.csv: one row per kept record, its fold stratified on the pre-merge scored codes."""
    index = pd.DataFrame({c: [m[c] for m in kept] for c in INDEX_COLUMNS[:8]})  # record .. age
    index["sex"] = [m["sex"] or "" for m in kept]
    index["labels"] = [" ".join(L.merge_codes(m["codes"])) for m in kept]
    index["codes"] = [" ".join(m["codes"]) for m in kept]
    index["dx"] = [" ".join(m["dx"]) for m in kept]
    index["fold"] = assign_folds(index, n_folds=n_folds, seed=seed, label_col="codes")
    return index


def _stats(kept: list[dict], skipped: list[dict], index: pd.DataFrame, n_orphans: int, n_folds: int, seed: int) -> dict:
    """stats.json: per-lead mean and std in mV (averages of the records' own) and counts."""
    means = np.array([m["mean"] for m in kept], dtype=np.float64).reshape(-1, 12)
    stds = np.array([m["std"] for m in kept], dtype=np.float64).reshape(-1, 12)
    label_matrix, per_source = L.encode_many(index["labels"].tolist()), index["source"].value_counts()
    return {
        "format_version": FORMAT_VERSION,
        "fs": TARGET_FS,
        "leads": list(LEADS),
        "mean": means.mean(axis=0).tolist(),
        "std": stds.mean(axis=0).tolist(),
        "stats_definition": "average over kept records (all folds) of each record's per-lead mean / std (ddof 0) at 100 Hz, mV (book: The data, normalisation)",
        "n_headers": len(kept) + len(skipped) - n_orphans,
        "n_orphan_signal_files": n_orphans,
        "n_records": len(kept),
        "n_skipped": len(skipped),  # = n_headers + n_orphan_signal_files - n_records
        "total_samples": int(index["length"].sum()),
        "per_source": {s: int(per_source[s]) for s in SOURCES if s in per_source},
        "classes": list(L.CLASSES),
        "per_class": {a: int(c) for a, c in zip(L.ABBREVIATIONS, label_matrix.sum(axis=0))},
        "per_skip_reason": _reason_counts(skipped),
        "n_folds": n_folds,
        "seed": seed,
        "per_fold": np.bincount(index["fold"].to_numpy(dtype=np.int64), minlength=n_folds).tolist(),
    }


def _write_csv(path: Path, df: pd.DataFrame, columns: list[str]) -> None:
    """`df[columns]` as CSV, floats as repr(): exact, the same bytes on every run; '' when missing."""
    text = df[columns].to_csv(index=False, lineterminator="\n", float_format=lambda v: repr(float(v)))
    write_text_atomic(path, text)


def _check_args(data_dir, out, workers, n_folds, seed, chunk_size) -> tuple[Path, Path]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} {'is not a folder' if data_dir.exists() else 'does not exist'}")
    for flag, value, low in (("--workers", workers, 1), ("--n-folds", n_folds, 2), ("--chunk-size", chunk_size, 1)):
        check_int(flag, value, low)
    check_seed("--seed", seed)  # 0 <= seed < 2**63, as in every command
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    parent = Path(os.path.abspath(out)).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out} cannot be created: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} cannot be created: its folder {parent} is not writable")
    return data_dir, out


def staging_dir(out: str | Path) -> Path:
    """`OUT.partial`: where `prepare` builds (and resumes) OUT before renaming it in."""
    out = Path(os.path.abspath(out))
    return out.with_name(out.name + _STAGING_SUFFIX)


def _request(manifest: dict, n_folds: int, seed: int) -> dict:
    """The provenance request of a prepared folder: everything its content depends on."""
    settings = dict(format_version=FORMAT_VERSION, data_dir=manifest["data_dir"], fs=TARGET_FS, min_length=WINDOW)
    settings |= dict(max_abs_mv=R.MAX_ABS_MV, gain_range_per_mv=[R.GAIN_MIN, R.GAIN_MAX], n_folds=int(n_folds))
    settings["leads"] = manifest["leads"]  # B1: a lead-I corpus is never taken for a 12-lead one
    return provenance.request("prepare", settings, {"headers": manifest["headers"]}, seed)


def _finished(folder: Path, req: dict) -> bool:
    """True when `folder` is a prepared folder of `req`, byte for byte as written, that passes `load_prepared`."""
    try:
        return provenance.finished(folder, req, *OUTPUTS) and load_prepared(folder) is not None
    except (UserError, OSError, ValueError, TypeError):
        return False


def _content_fault(folder: Path, full: bool) -> str | None:
    """Why the outputs of `folder` are not the ones `prepare` wrote (`provenance.digest_fault`, cheap
    or `full`, and .complete.json's `digest` of those files), None when they are."""
    fault = provenance.digest_fault(folder, OUTPUTS, full=full)
    if fault:
        return fault
    files = provenance.read_digests(folder)["files"]
    digest = _complete_digest(folder)
    if digest is None:
        return f"{folder / _COMPLETE} is unreadable or has no digest"
    if digest != corpus_digest(folder, {n: files[n].get("sha256") for n in _CONTENT}):
        return f"{folder / _COMPLETE}: its digest is not the one of the files recorded in {provenance.DIGESTS}"
    return None


def _complete_digest(folder: Path) -> str | None:
    """`.complete.json`'s `digest`, None when it is unreadable or has none."""
    try:
        return str(json.loads((folder / _COMPLETE).read_text())["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _foreign(out: Path, req: dict) -> str | None:
    """Why the unfinished `out` may not be replaced without --force (None: it is absent or empty)."""
    why = provenance.refusal(out, req)  # an unreadable provenance.json is a refusal too
    if why or not provenance.holds_files(out):
        return why
    complete = all((out / f).is_file() for f in (*OUTPUTS, _COMPLETE))
    return (complete and _content_fault(out, full=True)) or "it was made by this request but is not complete"


def _swap_in(stage: Path, out: Path) -> None:
    """Rename the finished `stage` onto `out`; a non-empty `out` is first moved aside."""
    if provenance.holds_files(out):
        moved = provenance.move_aside(out)
        print(f"{out}: the previous folder was moved aside to {moved.name}", file=sys.stderr)
    elif out.exists():  # an empty folder, or one holding only an old in-folder lock file
        (out / provenance.LOCK).unlink(missing_ok=True)
        out.rmdir()
    os.replace(stage, out)


def prepare(
    data_dir: str | Path,
    out: str | Path,
    workers: int = 2,
    n_folds: int = 10,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool | None = None,
    force: bool = False,
    leads: str = "twelve",
    wait_s: float = 0.0,
) -> Path:
    """Prepare the records below `data_dir` into `out` (the module docstring); returns `out`. A finished `out`
    of the same request is kept; another or a damaged one is refused unless `force` (moved aside, `OUT.stale-<time>`).
    leads: "twelve" or "lead-i" (B1). One writer at a time (the lock of `out`), another's waited for `wait_s` s."""
    data_dir, out = _check_args(data_dir, out, workers, n_folds, seed, chunk_size)
    if leads not in LEAD_MODES:
        raise UserError(f"--leads {leads!r} must be one of {', '.join(LEAD_MODES)}")
    rels, orphans = walk_corpus(data_dir)
    if not rels:
        raise UserError(f"--data-dir {data_dir} holds no .hea header files (searched all sub-folders)")
    manifest, sizes = _manifest(data_dir, rels, int(chunk_size), orphans, leads)
    req = _request(manifest, n_folds, seed)
    if _finished(out, req):
        print(f"{out} is already prepared from {data_dir} ({len(rels)} headers); nothing to do", file=sys.stderr)
        return out
    why = _foreign(out, req)
    if why and not force:
        raise UserError(f"--out {out}: {why}. Use another folder, or --force to move it aside (nothing is deleted)")
    stage = staging_dir(out)
    try:  # the lock of `out` guards the staging folder too: it is renamed onto `out` under that lock
        with provenance.lock(out, wait_s=wait_s):
            if _finished(out, req):  # another writer finished it meanwhile
                return out
            stage.mkdir(parents=True, exist_ok=True)
            if not _finished(stage, req):  # (else: finished but not yet renamed when it was stopped)
                stats = _build(stage, data_dir, rels, orphans, sizes, manifest, req, workers, progress)
                print(
                    f"prepared {stats['n_records']} records ({stats['total_samples']} samples at {TARGET_FS} Hz), "
                    f"skipped {stats['n_skipped']}: {stats['per_skip_reason']} -> {out}",
                    file=sys.stderr,
                )
            _swap_in(stage, out)
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise
        what = "file-size limit reached" if exc.errno == errno.EFBIG else "no space left on device"
        raise UserError(
            f"{exc.filename or stage}: {what} ({exc.strerror}); the partial file was removed and finished "
            f"parts kept: free space and run the same command again to resume"
        ) from None
    return out


def _build(stage: Path, data_dir: Path, rels, orphans, sizes, manifest, req, workers, progress) -> dict:
    """Missing chunks, outputs, provenance, digests and `.complete.json` (last) into `stage`; the stats."""
    n_folds, seed = req["settings"]["n_folds"], req["seed"]
    for name in (_COMPLETE, provenance.PROVENANCE):
        (stage / name).unlink(missing_ok=True)
    parts = _parts_for(stage, manifest)
    chunks = make_chunks(rels, sizes, manifest["chunk_size"])
    todo = [k for k in range(len(chunks)) if not all(p.exists() for p in _chunk_paths(parts, k))]
    if len(todo) < len(chunks):
        print(f"resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already done", file=sys.stderr)
    tasks = [(k, str(data_dir), chunks[k], str(parts), manifest["leads"]) for k in todo]
    from tqdm import tqdm  # tqdm: only when a corpus is built

    total, disable = sum(len(t[2]) for t in tasks), None if progress is None else not progress
    with tqdm(total=total, unit="rec", desc="prepare", disable=disable) as bar, contextlib.ExitStack() as stack:
        if workers == 1 or len(tasks) <= 1:  # here, else in a pool of `workers` processes
            done = map(_process_chunk, tasks)
        else:
            pool = stack.enter_context(multiprocessing.get_context().Pool(min(workers, len(tasks))))
            done = pool.imap_unordered(_process_chunk, tasks)
        for _, n in done:
            bar.update(n)
    stats = _assemble(stage, parts, len(chunks), n_folds, seed, orphans)
    provenance.write(stage, req)
    files = provenance.write_digests(stage, OUTPUTS)["files"]  # one pass over signals.npy
    digest = corpus_digest(stage, {n: files[n]["sha256"] for n in _CONTENT})
    write_json(stage / _COMPLETE, dict(manifest, n_folds=n_folds, seed=seed, digest=digest))
    shutil.rmtree(parts, ignore_errors=True)
    return stats


def _parts_for(stage: Path, manifest: dict) -> Path:
    """`stage/.parts`, with the parts of an earlier run kept only when made from this `manifest`."""
    parts = stage / _PARTS
    try:
        same = json.loads((parts / "manifest.json").read_text()) == manifest
    except (OSError, ValueError):
        same = False
    if parts.exists() and not same:
        print(f"{parts}: parts from another input or settings; starting over", file=sys.stderr)
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not same:
        write_json(parts / "manifest.json", manifest)
    return parts


def corpus_digest(out: Path, shas: dict[str, str] | None = None) -> str:
    """SHA-256 of a prepared corpus's signals, index and stats (`.complete.json`'s `digest`), from
    the SHA-256 of each file (`shas`; when not given, read from `out`)."""
    if shas is None:
        shas = {name: provenance.sha256_file(out / name) for name in _CONTENT}
    return hashlib.sha256("\n".join(f"{name}:{shas[name]}" for name in _CONTENT).encode()).hexdigest()


@dataclass
class Prepared:
    """A prepared folder: signals (T, 12) float32 memmap in mV at 100 Hz, the index, the stats."""

    path: Path
    signals: np.ndarray
    index: pd.DataFrame
    stats: dict
    mean: np.ndarray  # (12,) mV
    std: np.ndarray  # (12,) mV
    digest: str = ""  # corpus_digest, from .complete.json: the input fingerprint of every later stage

    def __len__(self) -> int:
        return len(self.index)

    def label_matrix(self) -> np.ndarray:
        """(N, 24) float32 multi-hot labels in labels.CLASSES order."""
        return L.encode_many(self.index["labels"].tolist())

    def record(self, i: int) -> np.ndarray:
        """Signal of index row i: (12, length) float32 mV at 100 Hz (a copy)."""
        row = self.index.iloc[int(i)]
        off, n = int(row["offset"]), int(row["length"])
        return np.ascontiguousarray(self.signals[off : off + n].T)


def load_prepared(path: str | Path) -> Prepared:
    """Open the prepared folder `path` (every later stage's `--prepared`), the one check of it: every
    file present and as written (cheaply), from `prepare`, a typed index (unique names, known
    labels, folds in range, records back to back) agreeing with stats.json; else UserError."""
    path = Path(path)
    make = f"run `python -m ecgssl_nb prepare --data-dir D --out {path}`"
    if not path.is_dir():
        what = "it does not exist" if not path.exists() else "it is not a folder"
        raise UserError(f"--prepared {path} is not a prepared folder: {what} ({make})")
    try:
        return _open_prepared(path)
    except UserError as exc:  # every fault names the remedy
        raise UserError(f"{exc}; {make} (with --force to move this one aside)") from None


def _open_prepared(path: Path) -> Prepared:
    """`load_prepared`'s checks, in order, of the folder `path`."""
    missing = [f for f in ("index.csv", "signals.npy", "stats.json") if not (path / f).is_file()]
    if missing:
        raise UserError(f"--prepared {path} is not a prepared folder: {', '.join(missing)} missing")
    digest = _complete_digest(path)
    if digest is None:
        raise UserError(f"--prepared {path} is not a finished prepared folder: {_COMPLETE} is missing or has no digest")
    rec = provenance.read(path)  # UserError when unreadable
    if rec is None or rec["request"].get("stage") != "prepare":
        raise UserError(
            f"{path}/{provenance.PROVENANCE} is missing or not from `prepare`: the folder was made by "
            f"something else or an older version"
        )
    try:
        signals = np.load(path / "signals.npy", mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}/signals.npy is not a readable .npy array ({exc})") from None
    if signals.ndim != 2 or signals.shape[1] != 12 or signals.dtype != np.float32:
        raise UserError(f"{path}/signals.npy must be float32 (T, 12), got {signals.dtype} {signals.shape}")
    stats, index = _read_stats(path), _read_index(path)
    fault = _index_fault(index, signals.shape[0], stats)
    if fault:
        raise UserError(f"{path}/{fault}; the folder is damaged or was edited")
    fault = _content_fault(path, full=False)  # sizes, sampled blocks; a changed mtime: every byte
    if fault:
        raise UserError(f"--prepared {fault}")
    mean, std = (np.asarray(stats[k], dtype=np.float32) for k in ("mean", "std"))
    return Prepared(path=path, signals=signals, index=index, stats=stats, mean=mean, std=std, digest=digest)


def _read_stats(path: Path) -> dict:
    """stats.json, with the fields load_prepared relies on checked."""
    try:
        stats = json.loads((path / "stats.json").read_text(), parse_constant=_no_constant)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}/stats.json is not strict JSON: {exc}") from None
    try:
        mean, std = (np.asarray(stats[k], dtype=np.float64) for k in ("mean", "std"))
        ok = mean.shape == std.shape == (12,) and bool(np.isfinite(mean).all() and np.isfinite(std).all())
        ok = ok and bool((std > 0).all()) and stats["n_folds"] >= 2
        ok = ok and all(isinstance(stats[k], int) for k in ("n_records", "total_samples", "n_folds"))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(
            f"{path}/stats.json lacks 12 finite per-lead means and positive stds, n_records, total_samples or n_folds"
        )
    return stats


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _read_index(path: Path) -> pd.DataFrame:
    """index.csv with every column present and typed (strings; fs, age float; ints)."""
    str_cols = {c: str for c in ("record", "source", "path", "sex", "labels", "codes", "dx")}
    try:
        index = pd.read_csv(path / "index.csv", dtype=str_cols, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}/index.csv is not a readable CSV file: {exc}") from None
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise UserError(
            f"{path}/index.csv has no column {', '.join(map(repr, missing))} (columns: {', '.join(map(str, index.columns))})"
        )
    index["age"] = pd.to_numeric(index["age"].replace("", np.nan), errors="coerce").astype(np.float64)
    for col in ("fs", "n_samples", "offset", "length", "fold"):
        dtype = np.float64 if col == "fs" else np.int64
        try:
            index[col] = index[col].astype(dtype)
        except (ValueError, TypeError):
            raise UserError(
                f"{path}/index.csv: column {col!r} holds a value that is not {'a number' if dtype is np.float64 else 'an integer'}"
            ) from None
    return index


def _index_fault(index: pd.DataFrame, n_rows: int, stats: dict) -> str | None:
    """What is wrong with the index against signals.npy (`n_rows` rows) and stats.json, or None."""
    n, rec = len(index), index["record"].to_numpy()
    off, length = index["offset"].to_numpy(), index["length"].to_numpy()
    end = off + length
    if n != stats["n_records"]:
        return f"index.csv: {n} rows, but stats.json says n_records {stats['n_records']}"
    if n == 0:
        return "index.csv: no records"
    if int(end.max()) > n_rows or int(off.min()) < 0:
        return f"index.csv points past the end of signals.npy ({n_rows} rows): the folder is incomplete"
    if n_rows != stats["total_samples"]:
        return f"signals.npy: {n_rows} rows, but stats.json says total_samples {stats['total_samples']}"
    dup = index["record"].duplicated().to_numpy()
    if dup.any():
        return f"index.csv: record name {rec[dup.argmax()]!r} appears more than once"
    if (length <= 0).any():
        i = int((length <= 0).argmax())
        return f"index.csv: record {rec[i]!r} has length {length[i]}"
    starts = np.concatenate([[0], end[:-1]])
    if (off != starts).any() or end[-1] != n_rows:
        i = int((off != starts).argmax()) if (off != starts).any() else n - 1
        return (
            f"index.csv: record {rec[i]!r} has offset {off[i]} and length {length[i]}; records must lie back to back "
            f"and fill signals.npy ({n_rows} rows)"
        )
    fold, k = index["fold"].to_numpy(), int(stats["n_folds"])
    bad = (fold < 0) | (fold >= k)
    if bad.any():
        return f"index.csv: record {rec[bad.argmax()]!r} has fold {fold[bad.argmax()]}, outside 0..{k - 1} (stats.json n_folds {k})"
    classes = set(L.CLASSES)
    bad_labels = {t for t in pd.unique(index["labels"]) if not t.split() or not set(t.split()) <= classes}
    if bad_labels:  # checked once per distinct label string: a few hundred at most
        i = int(index["labels"].isin(bad_labels).to_numpy().argmax())
        unknown = [c for c in index["labels"].iloc[i].split() if c not in classes]  # none: no code at all
        if not unknown:
            return f"index.csv: record {rec[i]!r} has no label"
        return f"index.csv: record {rec[i]!r} has label code {unknown[0]!r}, not one of the {L.N_CLASSES} classes"
    return None


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb prepare --data-dir DIR --out OUT [--workers N] [--n-folds K] [--seed S] [--force]`."""
    p = provenance.CommandParser(prog="python -m ecgssl_nb prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder of the records (*.hea + *.mat), searched recursively")
    p.add_argument("--out", required=True, help="output folder (signals.npy, index.csv, skipped.csv, stats.json)")
    p.add_argument("--workers", type=int, default=2, help="processes reading and resampling records (default 2)")
    p.add_argument("--n-folds", type=int, default=10, help="folds for iterative stratification (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratification's tie-breaks (default 0)")
    p.add_argument(
        "--chunk-size", type=int, default=DEFAULT_CHUNK, help="records per resumable part (default %(default)s)"
    )
    force = "rebuild an --out made from other data or settings, or damaged (the old one is moved aside to "
    p.add_argument("--force", action="store_true", help=force + "OUT.stale-<time>, never deleted)")
    leads = "twelve (default) or lead-i: the released code's lead I copied into all 12 channels (B1)"
    p.add_argument("--leads", default="twelve", choices=LEAD_MODES, help=leads)
    prepare(**vars(p.parse_args(argv)))
    return 0
