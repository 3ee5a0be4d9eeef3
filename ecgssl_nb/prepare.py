"""`python -m ecgssl_nb prepare`: Challenge records -> one 100 Hz memmap, an index, stats and folds.

What it does (SPEC 1.2-1.5, B1-B3, B25):

* walks `--data-dir` recursively for `*.hea` (hidden folders excepted, symlinks followed) and
  orders the records by (source in `records.SOURCES` order, record name, path), so nothing
  depends on the file system's listing order (B3);
* reads each record (`records.read_record`), keeps it only if it carries at least one of the 27
  scored codes, has 12 leads and no NaN, and is at least 250 samples long at 100 Hz;
* resamples **every lead** to 100 Hz with FFT resampling, `scipy.signal.resample`, new length
  `int(n * 100 / fs)` (B1 fixed: the released code copied lead I into all 12 channels), in
  float32 (within about 1e-6 mV of a float64 computation);
* drops exact duplicate signals (the same raw int16 samples, hashed): the first record in the
  order above is kept, the others are skipped as 'duplicate signal' ('duplicate of <record>' in
  `detail`), so a duplicate never sits on both sides of a split nor counts twice;
* assigns 10 folds by iterative multilabel stratification per source on the pre-merge scored
  codes (`folds.assign_folds`, seed 0).

Output folder:

* `signals.npy`: float32 (T, 12) mV, all kept records back to back (load with mmap_mode='r');
* `index.csv`: one row per kept record: record, source, path (relative to the data dir), fs,
  n_samples (at fs), offset, length (at 100 Hz), age (empty if unknown), sex (Male/Female,
  empty if unknown), labels (merged scored codes, CLASSES order), codes (pre-merge scored codes,
  header order), dx (all header codes, duplicates dropped), fold; codes separated by spaces;
* `skipped.csv`: record, path, reason, detail (every header found is in one of the two files);
* `stats.json`: per-lead mean and std (SPEC 1.4: average over records of the per-record, per-lead
  mean / standard deviation, over all kept records of all folds), counts.

Work is done in chunks (at most 256 records and 64 MiB of signal files), in `--workers`
processes; each chunk's result is written atomically to `OUT/.parts/`, so
a killed run, started again, only does the chunks that are missing and then assembles the same
bytes as an uninterrupted run (whatever the number of workers). The parts are removed after a
successful assembly; `OUT/.complete.json` then marks the folder finished for this input and these
settings, and running the command again does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.signal  # imported before the worker processes fork

from . import labels as L
from .config import TARGET_FS, WINDOW
from .errors import RecordError, UserError
from .folds import assign_folds
from .records import LEADS, SOURCES, read_header, read_record_raw, source_of

FORMAT_VERSION = 1
DEFAULT_CHUNK = 256  # records per part file (at most)
CHUNK_BYTES = 64 << 20  # signal-file bytes per part file (at most, unless one record is larger)
_SCORED = frozenset(L.SCORED_CODES)
INDEX_COLUMNS = (
    "record", "source", "path", "fs", "n_samples", "offset", "length", "age", "sex",
    "labels", "codes", "dx", "fold",
)
SKIPPED_COLUMNS = ("record", "path", "reason", "detail")
_PARTS = ".parts"
_COMPLETE = ".complete.json"


# ----------------------------------------------------------------------------------------------
# one record


def resample_100hz(signal: np.ndarray, fs: float) -> np.ndarray:
    """(12, n) mV at `fs` Hz -> (int(n*100/fs), 12) float32 mV at 100 Hz, every lead resampled
    with scipy.signal.resample (FFT; the authors' method and length rule, SPEC 1.3).

    Computed in float32, 1.5-3x faster than float64 for the record lengths with large prime
    factors (CPSC lengths are arbitrary): it differs from a float64 computation by about 1e-6 mV
    at most (a few float32 ulps), a thousandth of the 1 uV step of the int16 input."""
    n = signal.shape[1]
    new_len = int(n * TARGET_FS / fs)
    x = np.ascontiguousarray(signal, dtype=np.float32)
    if new_len != n:
        x = scipy.signal.resample(x, new_len, axis=1)
    return np.ascontiguousarray(x.T, dtype=np.float32)


def scored_codes(dx) -> list[str]:
    """The record's codes that are among the 27 scored ones, header order, before merging."""
    return [c for c in dx if c in _SCORED]


def _signal_hash(raw: np.ndarray) -> str:
    """Identity of a record's stored samples (the raw int16 signal as in its .mat file, with its
    shape) for exact-duplicate detection."""
    h = hashlib.sha1()  # the fastest hashlib digest here; a collision only matters if forced
    h.update(repr((raw.shape, str(raw.dtype))).encode())
    h.update(np.ascontiguousarray(raw).tobytes())
    return h.hexdigest()


LEAD_MODES = ("twelve", "lead-i")  # B1: every lead resampled, or the released code's lead I in all 12 channels


def _process_record(hea: Path, rel: str, leads: str = "twelve") -> tuple[dict, np.ndarray]:
    """Meta data and the (L, 12) 100 Hz signal of one record; RecordError when it is unusable.
    leads="lead-i" copies lead I into all twelve channels, as the released code does (book:
    Deviations, B1); the statistics are then those of the copied signal."""
    header = read_header(hea)
    codes = scored_codes(header.dx)
    if not codes:
        raise RecordError(hea, "no scored label", ",".join(header.dx))
    rec, raw = read_record_raw(hea, header)
    x = resample_100hz(rec.signal, rec.fs)
    if x.shape[0] < WINDOW:
        raise RecordError(hea, "too short", f"{x.shape[0]} samples at {TARGET_FS} Hz < {WINDOW}")
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
        "hash": _signal_hash(raw),
        "mean": x.mean(axis=0, dtype=np.float64).tolist(),
        "std": x.std(axis=0, dtype=np.float64).tolist(),
    }
    return meta, x


# ----------------------------------------------------------------------------------------------
# chunks and part files


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def _chunk_paths(parts: Path, k: int) -> tuple[Path, Path]:
    return parts / f"chunk-{k:05d}.npy", parts / f"chunk-{k:05d}.json"


def _process_chunk(task: tuple[int, str, list[str], str]) -> tuple[int, int]:
    """Process records `rels` (paths relative to data_dir) into part files of chunk k.
    The .npy goes first, the .json (the completion mark) last, both atomically."""
    k, data_dir, rels, parts, leads = task
    parts_dir = Path(parts)
    npy_path, json_path = _chunk_paths(parts_dir, k)
    metas, skipped, arrays = [], [], []
    for rel in rels:
        hea = Path(data_dir) / rel
        try:
            meta, x = _process_record(hea, rel, leads)
        except RecordError as exc:
            skipped.append({"record": Path(rel).stem, "path": rel, "reason": exc.reason, "detail": exc.detail})
            continue
        metas.append(meta)
        arrays.append(x)
    tmp = npy_path.with_name(npy_path.name + f".tmp{os.getpid()}.npy")
    block = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(sum(len(a) for a in arrays), 12))
    pos = 0
    for a in arrays:  # copied one by one: no second copy of the chunk in memory
        block[pos : pos + len(a)] = a
        pos += len(a)
    block.flush()
    del block
    arrays.clear()
    os.replace(tmp, npy_path)
    _atomic_write_text(json_path, json.dumps({"rels": rels, "records": metas, "skipped": skipped}))
    return k, len(rels)


def find_headers(data_dir: Path) -> list[str]:
    """All *.hea below data_dir (relative POSIX paths), ordered by (source, record name, path).
    Hidden files and folders (e.g. `download`'s unfinished `.extract-*`) are not searched."""
    rels = []
    for root, dirs, files in os.walk(data_dir, followlinks=True):  # sources may be symlinked folders
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root).relative_to(data_dir)
        rels += [(base / f).as_posix() for f in files if f.endswith(".hea") and not f.startswith(".")]
    rank = {s: i for i, s in enumerate(SOURCES)}

    def key(rel: str):
        stem = Path(rel).stem
        return rank[source_of(stem, rel)], stem, rel

    return sorted(rels, key=key)


def _signal_bytes(data_dir: Path, rel: str) -> int:
    """Size of the record's .mat beside its header (0 if absent): the chunking budget."""
    try:
        return (data_dir / rel).with_suffix(".mat").stat().st_size
    except OSError:
        return 0


def make_chunks(rels: list[str], sizes: list[int], chunk_size: int, chunk_bytes: int = CHUNK_BYTES) -> list[list[str]]:
    """Consecutive groups of records: at most `chunk_size` records and, unless a single record
    is larger, at most `chunk_bytes` of signal files (INCART's 30-min records are 11 MB each),
    so one worker never holds much. Depends only on the file list and sizes (resume-safe)."""
    chunks: list[list[str]] = []
    cur: list[str] = []
    cur_bytes = 0
    for rel, size in zip(rels, sizes):
        if cur and (len(cur) >= chunk_size or cur_bytes + size > chunk_bytes):
            chunks.append(cur)
            cur, cur_bytes = [], 0
        cur.append(rel)
        cur_bytes += size
    if cur:
        chunks.append(cur)
    return chunks


def _manifest(data_dir: Path, rels: list[str], sizes: list[int], chunk_size: int, leads: str = "twelve") -> dict:
    h = hashlib.blake2b(digest_size=16)
    for rel, size in zip(rels, sizes):
        st = (data_dir / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{size}\n".encode())
    return {
        "version": FORMAT_VERSION,
        "data_dir": str(data_dir.resolve()),
        "n_headers": len(rels),
        "headers": h.hexdigest(),
        "chunk_size": chunk_size,
        "chunk_bytes": CHUNK_BYTES,
        "fs": TARGET_FS,
        "leads": leads,  # B1: recorded so that a lead-I corpus is never taken for a 12-lead one
    }


# ----------------------------------------------------------------------------------------------
# assembly


def _fmt_float(v) -> str:
    """'' for a missing value (None or NaN), else the shortest exact repr."""
    return "" if v is None or v != v else repr(float(v))


def _assemble(out: Path, parts: Path, n_chunks: int, n_folds: int, seed: int) -> dict:
    """Read the part files in order, drop duplicates, write signals.npy, index.csv, skipped.csv,
    stats.json (each atomically). Holds one chunk's signals in memory at a time."""
    kept: list[dict] = []
    skipped: list[dict] = []
    first_by_hash: dict[str, str] = {}
    names: set[str] = set()
    take: list[list[tuple[int, int]]] = []  # per chunk: (start, length) of kept records in its block
    offset = 0
    for k in range(n_chunks):
        info = json.loads(_chunk_paths(parts, k)[1].read_text())
        by_rel = {m["path"]: ("ok", m) for m in info["records"]}
        by_rel.update({s["path"]: ("skip", s) for s in info["skipped"]})
        start, chunk_take = 0, []
        for rel in info["rels"]:
            kind, item = by_rel[rel]
            if kind == "skip":
                skipped.append(item)
                continue
            block_start, start = start, start + item["length"]
            reason = None
            if item["hash"] in first_by_hash:
                reason, detail = "duplicate signal", f"duplicate of {first_by_hash[item['hash']]}"
            elif item["record"] in names:
                reason, detail = "duplicate record name", f"another {item['record']} was kept"
            if reason:
                skipped.append({"record": item["record"], "path": rel, "reason": reason, "detail": detail})
                continue
            first_by_hash[item["hash"]] = item["record"]
            names.add(item["record"])
            item = dict(item, offset=offset)
            offset += item["length"]
            kept.append(item)
            chunk_take.append((block_start, item["length"]))
        take.append(chunk_take)
    total = offset

    tmp_sig = out / "signals.tmp.npy"
    sig = np.lib.format.open_memmap(tmp_sig, mode="w+", dtype=np.float32, shape=(total, 12))
    pos = 0
    for k in range(n_chunks):
        if not take[k]:
            continue
        block = np.load(_chunk_paths(parts, k)[0], mmap_mode="r")
        for s, n in take[k]:
            sig[pos : pos + n] = block[s : s + n]
            pos += n
        del block
    sig.flush()
    del sig
    os.replace(tmp_sig, out / "signals.npy")

    index = pd.DataFrame(
        {
            "record": [m["record"] for m in kept],
            "source": [m["source"] for m in kept],
            "path": [m["path"] for m in kept],
            "fs": [m["fs"] for m in kept],
            "n_samples": [m["n_samples"] for m in kept],
            "offset": [m["offset"] for m in kept],
            "length": [m["length"] for m in kept],
            "age": [m["age"] for m in kept],
            "sex": [m["sex"] or "" for m in kept],
            "labels": [" ".join(L.merge_codes(m["codes"])) for m in kept],
            "codes": [" ".join(m["codes"]) for m in kept],
            "dx": [" ".join(m["dx"]) for m in kept],
        }
    )
    index["fold"] = assign_folds(index, n_folds=n_folds, seed=seed, label_col="codes") if len(index) else []
    skipped_df = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))

    _write_csv(out / "index.csv", index, list(INDEX_COLUMNS))
    _write_csv(out / "skipped.csv", skipped_df, list(SKIPPED_COLUMNS))

    means = np.array([m["mean"] for m in kept], dtype=np.float64).reshape(-1, 12)
    stds = np.array([m["std"] for m in kept], dtype=np.float64).reshape(-1, 12)
    label_matrix = L.encode_many(index["labels"].tolist())
    stats = {
        "format_version": FORMAT_VERSION,
        "fs": TARGET_FS,
        "leads": list(LEADS),
        "mean": means.mean(axis=0).tolist() if len(kept) else [0.0] * 12,
        "std": stds.mean(axis=0).tolist() if len(kept) else [1.0] * 12,
        "stats_definition": "average over kept records (all folds) of each record's per-lead mean / std (ddof 0) at 100 Hz, mV (SPEC 1.4)",
        "n_headers": len(kept) + len(skipped),
        "n_records": len(kept),
        "n_skipped": len(skipped),
        "total_samples": int(total),
        "per_source": {s: int(c) for s in SOURCES if (c := sum(m["source"] == s for m in kept))},
        "classes": list(L.CLASSES),
        "per_class": {a: int(c) for a, c in zip(L.ABBREVIATIONS, label_matrix.sum(axis=0))}
        if len(kept) else {a: 0 for a in L.ABBREVIATIONS},
        "per_skip_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "n_folds": n_folds,
        "seed": seed,
        "per_fold": np.bincount(index["fold"].to_numpy(dtype=np.int64), minlength=n_folds).tolist() if len(kept) else [0] * n_folds,
    }
    _atomic_write_text(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def _write_csv(path: Path, df: pd.DataFrame, columns: list[str]) -> None:
    df = df[columns].copy()
    for col in ("fs", "age"):  # repr() floats: exact, and the same bytes on every run
        if col in df.columns:
            df[col] = [_fmt_float(v) for v in df[col].tolist()]
    _atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


# ----------------------------------------------------------------------------------------------
# the command


def _check_args(data_dir, out, workers, n_folds, seed, chunk_size) -> tuple[Path, Path]:
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise UserError(f"--data-dir {data_dir} does not exist")
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise UserError(f"--workers must be an integer >= 1, got {workers!r}")
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise UserError(f"--n-folds must be an integer >= 2, got {n_folds!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed!r}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise UserError(f"--chunk-size must be an integer >= 1, got {chunk_size!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out} cannot be created: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} is not writable")
    return data_dir, out


def prepare(
    data_dir: str | Path,
    out: str | Path,
    workers: int = 2,
    n_folds: int = 10,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool | None = None,
    leads: str = "twelve",
) -> Path:
    """Prepare the records below `data_dir` into `out` (see the module docstring); returns `out`.
    leads: "twelve" (every lead) or "lead-i" (the released code's lead I in all 12 channels, B1).
    Resumes from `out/.parts` after an interruption; a finished `out` for the same input and
    settings is left as it is."""
    data_dir, out = _check_args(data_dir, out, workers, n_folds, seed, chunk_size)
    if leads not in LEAD_MODES:
        raise UserError(f"--leads {leads!r} must be one of {', '.join(LEAD_MODES)}")
    rels = find_headers(data_dir)
    if not rels:
        raise UserError(f"--data-dir {data_dir} holds no .hea header files (searched all sub-folders)")
    sizes = [_signal_bytes(data_dir, rel) for rel in rels]
    manifest = _manifest(data_dir, rels, sizes, int(chunk_size), leads)
    done_mark = dict(manifest, n_folds=int(n_folds), seed=int(seed))
    complete = out / _COMPLETE
    if complete.exists() and all((out / f).exists() for f in ("signals.npy", "index.csv", "skipped.csv", "stats.json")):
        try:
            if {k: v for k, v in json.loads(complete.read_text()).items() if k != "digest"} == done_mark:
                print(f"{out} is already prepared from {data_dir} ({len(rels)} headers); nothing to do", file=sys.stderr)
                return out
        except ValueError:
            pass
    if complete.exists():
        complete.unlink()

    parts = out / _PARTS
    mpath = parts / "manifest.json"
    if parts.exists():
        try:
            same = json.loads(mpath.read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if not same:
            print(f"{parts}: parts from another input or settings; starting over", file=sys.stderr)
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not mpath.exists():
        _atomic_write_text(mpath, json.dumps(manifest, indent=2))

    chunks = make_chunks(rels, sizes, int(chunk_size))
    todo = [k for k in range(len(chunks)) if not all(p.exists() for p in _chunk_paths(parts, k))]
    if len(todo) < len(chunks):
        print(f"resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already done", file=sys.stderr)
    tasks = [(k, str(data_dir), chunks[k], str(parts), leads) for k in todo]
    _run_tasks(tasks, workers, total=sum(len(t[2]) for t in tasks), progress=progress)

    stats = _assemble(out, parts, len(chunks), int(n_folds), int(seed))
    done_mark = dict(done_mark, digest=corpus_digest(out))
    _atomic_write_text(complete, json.dumps(done_mark, indent=2))
    shutil.rmtree(parts, ignore_errors=True)
    print(
        f"prepared {stats['n_records']} records ({stats['total_samples']} samples at {TARGET_FS} Hz), "
        f"skipped {stats['n_skipped']}: {stats['per_skip_reason']} -> {out}",
        file=sys.stderr,
    )
    return out


def _run_tasks(tasks: list, workers: int, total: int, progress: bool | None) -> None:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="rec", desc="prepare", disable=(None if progress is None else not progress))
    try:
        if workers == 1 or len(tasks) <= 1:
            for t in tasks:
                _, n = _process_chunk(t)
                bar.update(n)
        else:
            import multiprocessing as mp

            with mp.get_context().Pool(min(workers, len(tasks))) as pool:
                for _, n in pool.imap_unordered(_process_chunk, tasks):
                    bar.update(n)
    finally:
        bar.close()


# ----------------------------------------------------------------------------------------------
# reading a prepared folder


def corpus_digest(out: Path) -> str:
    """SHA-256 fingerprint of a prepared corpus's content: its signals, index and statistics
    (skipped.csv is a report, not content). Stored in `.complete.json` as `digest`."""
    from .provenance import sha256_file

    parts = [f"{name}:{sha256_file(out / name)}" for name in ("signals.npy", "index.csv", "stats.json")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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
    """Open a folder written by `prepare`; UserError if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a prepared folder: it does not exist (run `python -m ecgssl_nb prepare`)")
    missing = [f for f in ("signals.npy", "index.csv", "stats.json") if not (path / f).exists()]
    if missing:
        raise UserError(
            f"{path} is not a prepared folder: {', '.join(missing)} missing (run `python -m ecgssl_nb prepare --data-dir D --out {path}`)"
        )
    try:
        signals = np.load(path / "signals.npy", mmap_mode="r")
        stats = json.loads((path / "stats.json").read_text())
        str_cols = {c: str for c in ("record", "source", "path", "sex", "labels", "codes", "dx")}
        index = pd.read_csv(path / "index.csv", dtype=str_cols, keep_default_na=False)
        index["age"] = pd.to_numeric(index["age"].replace("", np.nan), errors="coerce").astype(np.float64)
        index["fs"] = index["fs"].astype(np.float64)
        for col in ("n_samples", "offset", "length", "fold"):
            index[col] = index[col].astype(np.int64)
    except (ValueError, KeyError, OSError) as exc:
        raise UserError(f"{path} is not a readable prepared folder: {exc}") from None
    if signals.ndim != 2 or signals.shape[1] != 12 or signals.dtype != np.float32:
        raise UserError(f"{path}/signals.npy must be float32 (T, 12), got {signals.dtype} {signals.shape}")
    if len(index) and int((index["offset"] + index["length"]).max()) > signals.shape[0]:
        raise UserError(f"{path}/index.csv points past the end of signals.npy: the folder is incomplete")
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    try:
        digest = str(json.loads((path / _COMPLETE).read_text())["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a finished prepared folder: {_COMPLETE} is missing or has no digest "
                        f"(run `python -m ecgssl_nb prepare` again to finish it)") from None
    return Prepared(path=path, signals=signals, index=index, stats=stats, mean=mean, std=std, digest=digest)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, via the dispatcher
        raise UserError(f"prepare: {message}")


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb prepare --data-dir DIR --out OUT [--workers N] [--n-folds K] [--seed S]`."""
    p = _Parser(prog="python -m ecgssl_nb prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder with the Challenge records (*.hea + *.mat), searched recursively")
    p.add_argument("--out", required=True, help="output folder (signals.npy, index.csv, skipped.csv, stats.json)")
    p.add_argument("--workers", type=int, default=2, help="processes reading and resampling records (default 2)")
    p.add_argument("--n-folds", type=int, default=10, help="folds for iterative stratification (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratification's tie-breaks (default 0)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help=f"records per resumable part (default {DEFAULT_CHUNK})")
    p.add_argument("--leads", default="twelve", choices=LEAD_MODES,
                   help="twelve (default) or lead-i: the released code's lead I copied into all 12 channels (B1)")
    args = p.parse_args(argv)
    prepare(args.data_dir, args.out, workers=args.workers, n_folds=args.n_folds, seed=args.seed, chunk_size=args.chunk_size,
            leads=args.leads)
    return 0
