"""One PhysioNet/CinC Challenge 2020/2021 record: WFDB header (.hea) + MATLAB v4 signal (.mat).

Headers are parsed here, not by wfdb, for speed and the released quirks (`E00009.mat` on the first
line, `#Dx:` or `# Dx:`, format `16+24` or `16x1+24`, gains such as `1000.0(0)/mV`, unit `/mv`, age
`NaN` or `Unknown`). mV = (digital - baseline) / gain (WFDB), in LEADS order. An unusable record
raises `RecordError(path, reason)`, the stable reasons skipped.csv groups by: missing or unreadable
header (bytes not UTF-8 too), missing, unreadable or truncated signal file, length mismatch,
unsupported format or unit, not 12 leads, NaN samples, invalid gain (0, "uncalibrated", or outside
[`GAIN_MIN`, `GAIN_MAX`] units per mV) and implausible amplitude (not finite or beyond +-`MAX_ABS_MV`).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import RecordError
from ..core.labels import LEADS

SOURCES = ("CPSC", "CPSC-Extra", "INCART", "PTB", "PTB-XL", "Georgia", "Chapman-Shaoxing", "Ningbo", "unknown")
_LEAD_INDEX = {name.lower(): i for i, name in enumerate(LEADS)}
# Records per source of the Challenge 2020 training set (paper Sec. III-A; 43,101 in all): what
# the archives announced (`download.ARCHIVES`) and the full-size synthetic shape (`fixture`).
RECORDS_2020 = {"CPSC": 6877, "CPSC-Extra": 3453, "INCART": 74, "PTB": 516, "PTB-XL": 21837, "Georgia": 10344}

# Bounds of a usable record. Surface ECGs are a few mV (the 208 real sample records peak at
# 12.5 mV, wander included): 50 mV is an artefact, a wrong gain or a corrupt file. Below 1 unit
# per mV one unit is coarser than the QRS; above 1e5 it is under 10 nV (amplifiers resolve
# 0.5-5 uV; the Challenge uses 200-4880 units/mV) and int16 full scale is less than a QRS.
MAX_ABS_MV = 50.0
GAIN_MIN = 1.0
GAIN_MAX = 1e5

# Record-name prefixes of the Challenge sources (2020 and 2021 releases).
_PREFIX_SOURCE = {"A": "CPSC", "Q": "CPSC-Extra", "I": "INCART", "S": "PTB", "HR": "PTB-XL", "E": "Georgia"}
# JS records: JS00001..JS10646 come from Chapman-Shaoxing, JS10647.. from Ningbo (Challenge 2021).
_JS_LAST_CHAPMAN = 10646
_NAME_RE = re.compile(r"^(HR|JS|A|Q|I|S|E)(\d+)$")
# Folder names used by the Challenge tarballs, the authors' scripts and `download` (lower case).
_FOLDER_SOURCE = {
    folder: source
    for source, folders in {
        "CPSC": "cpsc cpsc_2018 cpsc2018 icbeb2018 training_wfdb",
        "CPSC-Extra": "cpsc-extra cpsc_2018_extra icbeb2018_2 training_2",
        "INCART": "incart st_petersburg_incart stpetersburg training_stpetersburg",
        "PTB": "ptb training_ptb",
        "PTB-XL": "ptb-xl ptb_xl ptbxl",
        "Georgia": "georgia",
        "Chapman-Shaoxing": "chapman-shaoxing chapman_shaoxing",
        "Ningbo": "ningbo",
    }.items()
    for folder in folders.split()
}
_FMT_RE = re.compile(r"^(\d+)(?:x(\d+))?(?::\d+)?(?:\+(\d+))?$")
_COMMENT_RE = re.compile(r"^#\s*(dx|age|sex)\s*:(.*)$", re.IGNORECASE)
_GAIN_RE = re.compile(r"^([-+0-9.eE]+)?(?:\(([-+0-9.eE]+)\))?(?:/(.*))?$")
_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "μv": 1e-3, "µv": 1e-3, "v": 1e3}  # to mV
_NO_SEX = {"", "nan", "unknown", "none", "n/a", "na"}
_SEXES = {"m": "Male", "male": "Male", "f": "Female", "female": "Female"}
# MATLAB v4 MOPT code of a little-endian (M 0) full (T 0) numeric matrix -> its type (P: MOPT / 10)
_V4_TYPES = {0: "<f8", 10: "<f4", 20: "<i4", 30: "<i2", 40: "<u2", 50: "<u1"}


@dataclass(frozen=True)
class Header:
    """What a Challenge header says. `gain` is in digital units per mV (unit already folded in)."""

    name: str  # record name (the .hea file's stem)
    path: Path  # the .hea file
    n_leads: int
    fs: float  # Hz
    n_samples: int
    signal_file: str  # file name of the signal, relative to the header's folder
    leads: tuple[str, ...]
    gain: np.ndarray  # (n_leads,) float64, digital units per mV
    baseline: np.ndarray  # (n_leads,) float64, digital units
    dx: tuple[str, ...]  # SNOMED codes, header order, duplicates removed
    age: float | None
    sex: str | None


@dataclass
class Record:
    """One record: signal float32 (12, N) in mV, standard lead order, at `fs` Hz."""

    name: str
    source: str
    fs: float
    signal: np.ndarray
    dx: list[str] = field(default_factory=list)
    age: float | None = None
    sex: str | None = None
    path: Path | None = None


def source_of(name: str, path: str | Path | None = None) -> str:
    """Source dataset of a record, from its name prefix ('A0001' -> 'CPSC'), else from a folder
    name on its path ('.../georgia/g1/x.hea' -> 'Georgia'), else 'unknown'."""
    stem = Path(str(name)).name
    if stem.lower().endswith((".mat", ".hea")):
        stem = stem[:-4]
    m = _NAME_RE.match(stem)
    parts = reversed(Path(path).parts[:-1]) if path is not None else ()  # the nearest folder first
    hints = (_FOLDER_SOURCE.get(part.lower()) or (part if part in SOURCES[:-1] else None) for part in parts)
    folder_hint = next((h for h in hints if h is not None), None)
    if m is None or (m.group(1) == "JS" and folder_hint in ("Chapman-Shaoxing", "Ningbo")):
        return folder_hint or "unknown"
    if m.group(1) == "JS":
        return "Chapman-Shaoxing" if int(m.group(2)) <= _JS_LAST_CHAPMAN else "Ningbo"
    return _PREFIX_SOURCE[m.group(1)]


def _signal_fields(hea_path: Path, fmt_field: str, gain_field: str, adc_zero_field: str) -> tuple[float, float]:
    """(gain in units per mV, baseline in units) of one signal line's format, gain and ADC zero fields."""
    m = _FMT_RE.match(fmt_field)
    if not m:
        raise RecordError(hea_path, "unreadable header", f"format {fmt_field!r}")
    if m.group(1) != "16" or (m.group(2) not in (None, "1")):  # the byte offset (+24) is not needed
        raise RecordError(hea_path, "unsupported format", f"format {fmt_field!r} (need 16, 1 sample per frame)")
    g = _GAIN_RE.match(gain_field)
    if not g:
        raise RecordError(hea_path, "unreadable header", f"gain {gain_field!r}")
    try:
        gain, adc_zero = float(g.group(1) or 0), float(adc_zero_field)
        baseline = float(g.group(2)) if g.group(2) else adc_zero  # WFDB: baseline defaults to ADC zero
    except ValueError:
        detail = f"gain {gain_field!r} or ADC zero {adc_zero_field!r}"
        raise RecordError(hea_path, "unreadable header", detail) from None
    if gain == 0:  # WFDB: 0 means "uncalibrated"; its default of 200 would be a guess
        raise RecordError(hea_path, "invalid gain", f"gain {gain_field!r} (0: uncalibrated)")
    unit = (g.group(3) or "mV").strip().lower()
    if unit not in _UNIT_SCALE:
        raise RecordError(hea_path, "unsupported unit", f"unit {g.group(3)!r}")
    gain_mv = gain / _UNIT_SCALE[unit]  # gain per unit -> gain per mV (a gain per uV times 1000)
    if not GAIN_MIN <= gain_mv <= GAIN_MAX:  # also catches negative, inf and NaN
        detail = f"gain {gain_field!r} = {gain_mv:g} units/mV, outside [{GAIN_MIN:g}, {GAIN_MAX:g}]"
        raise RecordError(hea_path, "invalid gain", detail)
    if not np.isfinite(baseline):
        raise RecordError(hea_path, "unreadable header", f"baseline {baseline!r}")
    return gain_mv, baseline


def _read_bytes(path: Path, missing: str, unreadable: str) -> bytes:
    """The bytes of `path`; RecordError with reason `missing` or `unreadable` when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RecordError(path, missing) from None
    except OSError as exc:
        raise RecordError(path, unreadable, exc.strerror or str(exc)) from None


def _record_line(hea_path: Path, line: str) -> tuple[int, float, int]:
    """(leads, sampling rate in Hz, samples per lead) from the header's first line."""
    first = line.split()
    try:  # fs '500', '500/10' or '500(0)' (WFDB counter frequency / base): 500.0
        n_leads, fs, n_samples = int(first[1]), float(re.split(r"[/(]", first[2], maxsplit=1)[0]), int(first[3])
    except (IndexError, ValueError):
        raise RecordError(hea_path, "unreadable header", f"record line {line!r}") from None
    if n_leads <= 0 or fs <= 0 or n_samples < 0:
        raise RecordError(hea_path, "unreadable header", f"record line {line!r}")
    return n_leads, fs, n_samples


def _signal_lines(hea_path: Path, lines: list[str]) -> tuple[str, list[str], np.ndarray]:
    """(signal file, lead names, (2, n_leads) float64 gains in units per mV and baselines in units)."""
    files, leads, fields = set(), [], []
    seen: dict[tuple[str, str, str], tuple[float, float]] = {}
    for ln in lines:
        parts = ln.split()
        if len(parts) < 9:
            raise RecordError(hea_path, "unreadable header", f"signal line without lead name: {ln!r}")
        files.add(parts[0])
        key = (parts[1], parts[2], parts[4])  # format, gain, ADC zero: shared by the 12 lines as a rule
        if key not in seen:
            seen[key] = _signal_fields(hea_path, *key)
        fields.append(seen[key])
        leads.append(" ".join(parts[8:]))
    if len(files) != 1:
        raise RecordError(hea_path, "unreadable header", f"signals in several files {sorted(files)}")
    return files.pop(), leads, np.asarray(fields, dtype=np.float64).T


def _comments(comments: list[str]) -> tuple[tuple[str, ...], float | None, str | None]:
    """(Dx codes in header order without repeats, age in years, sex) from the `#` lines."""
    dx: dict[str, None] = {}
    age = sex = None
    for m in filter(None, map(_COMMENT_RE.match, comments)):
        key, text = m.group(1).lower(), m.group(2).strip()
        if key == "dx":
            dx.update(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
        elif key == "age":  # 'NaN', 'Unknown', '': None
            with contextlib.suppress(ValueError):
                age = float(text)
            age = None if age is not None and np.isnan(age) else age
        else:
            sex = None if text.lower() in _NO_SEX else _SEXES.get(text.lower(), text)
    return tuple(dx), age, sex


def read_header(hea_path: str | Path) -> Header:
    """Parse one WFDB header; RecordError: missing/unreadable header, unsupported format/unit, invalid gain.
    Bytes that are not UTF-8 are 'unreadable header' (never decoded into a wrong Dx code)."""
    hea_path = Path(hea_path)
    raw = _read_bytes(hea_path, "missing header", "unreadable header")
    try:
        lines = [ln.strip() for ln in raw.decode("utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RecordError(hea_path, "unreadable header", f"bytes that are not UTF-8 on line {line}") from None
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise RecordError(hea_path, "unreadable header", "no record line")
    n_leads, fs, n_samples = _record_line(hea_path, body[0])
    if len(body) - 1 < n_leads:
        raise RecordError(hea_path, "unreadable header", f"{n_leads} signals announced, {len(body) - 1} signal lines")
    signal_file, leads, (gain, baseline) = _signal_lines(hea_path, body[1 : 1 + n_leads])
    dx, age, sex = _comments([ln for ln in lines if ln.startswith("#")])
    return Header(
        hea_path.stem, hea_path, n_leads, fs, n_samples, signal_file, tuple(leads), gain, baseline, dx, age, sex
    )


def read_mat_val(mat_path: str | Path) -> np.ndarray:
    """The `val` matrix of a Challenge .mat file as stored (rows x cols): little-endian MATLAB v4
    (what the Challenge ships) parsed here, 10x faster than scipy.io.loadmat, the fallback for the rest."""
    mat_path = Path(mat_path)
    raw = _read_bytes(mat_path, "missing signal file", "unreadable signal file")
    if len(raw) < 20:
        raise RecordError(mat_path, "truncated signal file", f"{len(raw)} bytes")
    mopt, mrows, ncols, imagf, namlen = (int(v) for v in np.frombuffer(raw[:20], dtype="<i4"))
    if mopt not in _V4_TYPES or imagf != 0 or mrows < 0 or ncols < 0 or not (0 < namlen < 64):
        return _read_mat_scipy(mat_path)
    if raw[20 : 20 + namlen].rstrip(b"\x00") != b"val":
        return _read_mat_scipy(mat_path)
    dtype = np.dtype(_V4_TYPES[mopt])
    start = 20 + namlen
    need = mrows * ncols * dtype.itemsize
    if len(raw) - start < need:
        raise RecordError(mat_path, "truncated signal file", f"{len(raw) - start} of {need} data bytes")
    # MATLAB stores column-major: the bytes are (ncols, mrows) in C order
    return np.frombuffer(raw, dtype=dtype, count=mrows * ncols, offset=start).reshape(ncols, mrows).T


def _read_mat_scipy(mat_path: Path) -> np.ndarray:
    import scipy.io  # scipy.io: ~110 ms at import, only for a .mat that is not MATLAB v4

    try:
        val = scipy.io.loadmat(str(mat_path), variable_names=["val"]).get("val")
    except Exception as exc:  # scipy raises several types for corrupt files
        msg = str(exc)
        truncated = "end of file" in msg.lower() or "truncat" in msg.lower()
        reason = "truncated signal file" if truncated else "unreadable signal file"
        raise RecordError(mat_path, reason, msg[:200]) from None
    if val is None:
        raise RecordError(mat_path, "unreadable signal file", "no variable 'val'")
    return np.asarray(val)


def _lead_order(leads: tuple[str, ...] | list[str], path: str | Path = "") -> np.ndarray:
    """Row of each standard lead (LEADS order) in the header's order; RecordError 'not 12 leads' unless those 12."""
    if len(leads) != 12:
        raise RecordError(path, "not 12 leads", f"{len(leads)} leads")
    found = [_LEAD_INDEX.get(name.strip().lower()) for name in leads]
    missing = [LEADS[i] for i in range(12) if i not in found]
    if missing:
        raise RecordError(path, "not 12 leads", f"missing {', '.join(missing)}; header has {', '.join(leads)}")
    return np.argsort(found)  # the inverse of the permutation `found`


def _read_val(header: Header) -> np.ndarray:
    """The .mat `val` of a parsed header, (n_leads, N) in the header's lead order, as stored."""
    mat_path = header.path.parent / header.signal_file
    if not mat_path.exists():  # a header that names the record file oddly: NAME.mat beside it
        if not header.path.with_suffix(".mat").exists():
            raise RecordError(header.path, "missing signal file", str(mat_path.name))
        mat_path = header.path.with_suffix(".mat")
    val = read_mat_val(mat_path)
    if val.ndim != 2:
        raise RecordError(mat_path, "unreadable signal file", f"val has shape {val.shape}")
    if val.shape[0] != header.n_leads and val.shape[1] == header.n_leads:
        val = val.T
    if val.shape[0] != header.n_leads:
        raise RecordError(mat_path, "not 12 leads", f"val has {val.shape[0]} rows, header {header.n_leads} leads")
    if val.shape[1] != header.n_samples:
        raise RecordError(mat_path, "length mismatch", f"val has {val.shape[1]} samples, header {header.n_samples}")
    return val


def read_record(hea_path: str | Path, header: Header | None = None) -> Record:
    """Read one record: float32 (12, N) mV in LEADS order (C-contiguous), dx codes, age, sex, source.
    `header`: the already parsed header of `hea_path`."""
    return read_record_raw(hea_path, header)[0]


def read_record_raw(hea_path: str | Path, header: Header | None = None) -> tuple[Record, np.ndarray]:
    """`read_record` plus the stored samples, (N, n_leads) in the header's lead order (usually
    int16; what `prepare` hashes to find duplicates)."""
    header = header if header is not None else read_header(hea_path)
    order = _lead_order(header.leads, header.path)
    nt = _read_val(header).T  # (N, 12): contiguous for MATLAB v4 files (a transposed view), so fast
    x = _to_mv(header, nt)  # (N, 12) float32 mV, header order
    if not np.array_equal(order, np.arange(12)):
        x = x[:, order]
    source, signal = source_of(header.name, header.path), np.ascontiguousarray(x.T)
    return Record(header.name, source, header.fs, signal, list(header.dx), header.age, header.sex, header.path), nt


def _to_mv(header: Header, nt: np.ndarray) -> np.ndarray:
    """Stored samples (N, n_leads) -> float32 mV, (digital - baseline) / gain; RecordError 'NaN samples'
    (NaN, or -32768: WFDB's 'no sample') or 'implausible amplitude' (beyond +-MAX_ABS_MV)."""
    if nt.dtype.kind == "f":
        missing = not np.isfinite(nt).all()
    else:
        missing = nt.dtype == np.int16 and bool((nt == -32768).any())
    if missing:
        raise RecordError(header.path, "NaN samples")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught just below
        x = nt.astype(np.float32)
        x -= header.baseline.astype(np.float32)
        x /= header.gain.astype(np.float32)
    peaks = np.abs(x).max(axis=0, initial=0.0)  # (n_leads,) mV, header order; inf after an overflow
    if not (peaks <= MAX_ABS_MV).all():  # NaN compares False too
        j = int(np.argmax(np.where(peaks <= MAX_ABS_MV, -1.0, np.nan_to_num(peaks, nan=np.inf))))
        detail = f"|x| up to {peaks[j]:.3g} mV in lead {header.leads[j]} (limit {MAX_ABS_MV:g} mV)"
        raise RecordError(header.path, "implausible amplitude", detail)
    return x
