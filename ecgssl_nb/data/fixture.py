"""A tiny, deterministic, learnable synthetic corpus in the exact Challenge 2020 on-disk format.

`make_fixture(out, n_records=400, seed=0)` writes per record a WFDB `NAME.hea` and a MATLAB v4
`NAME.mat` (`val`, int16 12 x N, 1000/mV) into one folder per source as in the real archives
(`FIXTURE_SOURCES`), with `fixture.json` and `fixture_records.csv`; same seed, size and shape, same
bytes. Each of the 24 classes is the primary label of about n/24 records, with a compatible rhythm,
up to two more diagnoses and the real headers' quirks (codes the merges remove, unscored codes,
a repeated code, `#Age: NaN`). Waveforms (`synth_ecg`): Gaussian waves of a 3-D heart vector
projected onto the leads (Einthoven, Goldberger), wander and noise, shaped by the labels so that a
model learns them in a few epochs. Test data, not a clinical model.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import scipy.io
from scipy.signal import sawtooth

from ..atomic import write_json
from ..core import labels
from ..core.errors import UserError, check_int, check_seed, is_int
from ..core.labels import LEADS
from .records import RECORDS_2020

GAIN = 1000  # ADC units per mV, as in most Challenge 2020 headers
FIXTURE_VERSION = 1
MARKER = "fixture.json"
MANIFEST = "fixture_records.csv"


@dataclass(frozen=True)
class FixtureSource:
    """Where and how one source's records are written."""

    name: str  # a `records.SOURCES` name
    folder: str  # relative to OUT, "/"-separated
    prefix: str  # record name prefix, as in the real archive
    digits: int  # zero-padded record number width
    fs: int  # sampling rate (Hz)
    seconds: tuple  # (min, max) record length in seconds
    share: float  # fraction of the corpus
    date: str  # the conversion date the real headers carry


FIXTURE_SOURCES: dict[str, FixtureSource] = {
    s.name: s
    for s in (
        FixtureSource("CPSC", "CPSC/Training_WFDB", "A", 4, 500, (6.0, 30.0), 0.24, "12-May-2020"),
        FixtureSource("CPSC-Extra", "CPSC-Extra/Training_2", "Q", 4, 500, (6.0, 30.0), 0.12, "15-May-2020"),
        FixtureSource("INCART", "INCART/Training_StPetersburg", "I", 4, 257, (30.0, 40.0), 0.03, "16-May-2020"),
        FixtureSource("PTB", "PTB/Training_PTB", "S", 4, 1000, (10.0, 14.0), 0.04, "18-May-2020"),
        FixtureSource("PTB-XL", "PTB-XL/WFDB", "HR", 5, 500, (10.0, 10.0), 0.34, "04-Jun-2020"),
        FixtureSource("Georgia", "Georgia/WFDB", "E", 5, 500, (10.0, 10.0), 0.23, "05-May-2020"),
    )
}

# shape="physionet2020": the real training set's source shares and record lengths (paper Sec.
# III-A; 30-minute INCART, long PTB records), for the full-size benchmarks; same folders and names.
_PHYSIONET2020_SECONDS = {"CPSC": (6.0, 60.0), "CPSC-Extra": (6.0, 60.0), "INCART": (1800.0, 1800.0)}
_PHYSIONET2020_SECONDS |= {"PTB": (38.0, 120.0), "PTB-XL": (10.0, 10.0), "Georgia": (10.0, 10.0)}
SHAPES = {
    "tiny": FIXTURE_SOURCES,
    "physionet2020": {
        k: replace(s, seconds=_PHYSIONET2020_SECONDS[k], share=RECORDS_2020[k] / sum(RECORDS_2020.values()))
        for k, s in FIXTURE_SOURCES.items()
    },
}

# SNOMED codes by role (strings, as in the headers)
IAVB, AF, AFL, BRADY = "270492004", "164889003", "164890007", "426627000"
CRBBB, IRBBB, LANFB, LAD = "713427006", "713426002", "445118002", "39732003"
LBBB, LQRSV, NSIVCB, PACED = "164909002", "251146004", "698252002", "10370003"
PAC, PVC, LPR, LQT = "284470004", "427172004", "164947007", "111975006"
QAB, RAD, SA, SB = "164917005", "47665007", "427393009", "426177001"
NSR, STACH, TAB, TINV = "426783006", "427084000", "164934002", "59931005"
RBBB, SVPB, VPB = "59118001", "63593006", "17338001"  # removed by the official merges

RHYTHMS = (NSR, SB, STACH, SA, AF, AFL, PACED, BRADY)
SINUS = (NSR, SB, STACH, SA)
# precedence when synth_ecg is given several rhythm codes
_RHYTHM_PRECEDENCE = (PACED, AF, AFL, BRADY, STACH, SB, SA, NSR)
_RHYTHM_WEIGHTS = {NSR: 0.58, SB: 0.1, STACH: 0.1, SA: 0.05, AF: 0.1, AFL: 0.04, BRADY: 0.03}
_GROUPS = ({CRBBB, IRBBB, LBBB, NSIVCB}, {LAD, RAD}, {TAB, TINV}, {IAVB, LPR})
_NEEDS_SINUS = {IAVB, LPR, PAC}
_FORBIDDEN_PAIRS = {
    frozenset(p)
    for p in [(LANFB, RAD), (LANFB, LBBB), (QAB, LBBB), (LQRSV, LBBB)]
    + [(PACED, c) for c in (CRBBB, IRBBB, LBBB, NSIVCB, LANFB, LAD, RAD, QAB, TAB, TINV, IAVB, LPR, PAC)]
}
# unscored codes seen beside scored ones in the real headers, and alone (PTB, many Georgia)
UNSCORED_EXTRAS = ("428750005", "164873001", "164865005", "67741000119109", "164867002", "253352002")
UNSCORED_ONLY = ("164865005", "164867002", "428750005", "164873001", "164861001", "55930002")


@dataclass(frozen=True)
class FixtureRecord:
    """The plan of one synthetic record (everything but the signal)."""

    index: int  # position in the plan; seeds the record's own random stream
    name: str
    source: str
    fs: int  # Hz
    n_samples: int
    dx: tuple  # SNOMED codes as written in `#Dx:` (order kept, a duplicate possible)
    age: float | None  # years; None is written as NaN
    sex: str
    time: str  # "HH:MM:SS" on the header's first line

    @property
    def path(self) -> str:
        """Header path relative to OUT, '/'-separated."""
        return f"{FIXTURE_SOURCES[self.source].folder}/{self.name}.hea"


# --- labels ---------------------------------------------------------------------------------------


def _compatible(chosen: Sequence[str], new: str) -> bool:
    if new in chosen:
        return False
    if any(new in group and group & set(chosen) for group in _GROUPS):  # one of each group
        return False
    if any(frozenset((new, c)) in _FORBIDDEN_PAIRS for c in chosen):
        return False
    rhythm = next((c for c in chosen if c in RHYTHMS), None)
    if new in _NEEDS_SINUS and rhythm is not None and rhythm not in SINUS:
        return False
    return not (new in RHYTHMS and (rhythm is not None or (new not in SINUS and _NEEDS_SINUS & set(chosen))))


def _draw_labels(primary: str, rng: np.random.Generator) -> list[str]:
    """A plausible scored label set (merged codes) around one primary class."""
    chosen = [primary]
    if primary not in RHYTHMS:
        options = [r for r in _RHYTHM_WEIGHTS if _compatible(chosen, r)]
        w = np.array([_RHYTHM_WEIGHTS[r] for r in options])
        chosen.append(options[rng.choice(len(options), p=w / w.sum())])
    if primary == LANFB and rng.random() < 0.5 and _compatible(chosen, LAD):
        chosen.append(LAD)
    for _ in range(rng.choice(3, p=[0.55, 0.35, 0.10])):
        options = [c for c in labels.CLASSES if c not in RHYTHMS and _compatible(chosen, c)]
        if options:
            chosen.append(options[rng.integers(len(options))])
    return chosen


def _written_codes(classes: list[str], rng: np.random.Generator) -> list[str]:
    """Header codes of a label set: some merged classes under their removed code, an unscored one, shuffled."""
    removed = {CRBBB: (RBBB, 0.4), PAC: (SVPB, 0.35), PVC: (VPB, 0.4)}
    codes = [removed[c][0] if c in removed and rng.random() < removed[c][1] else c for c in classes]
    if rng.random() < 0.15:
        codes.append(UNSCORED_EXTRAS[rng.integers(len(UNSCORED_EXTRAS))])
    return [codes[i] for i in rng.permutation(len(codes))]


def _allocate(n: int, shares: np.ndarray) -> np.ndarray:
    """Largest-remainder split of n into len(shares) counts, every count >= 1 when n allows."""
    raw = shares / shares.sum() * n
    counts = np.floor(raw).astype(int)
    if n >= len(shares):
        counts = np.maximum(counts, 1)
    while counts.sum() > n:
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    i = 0
    while counts.sum() < n:
        counts[order[i % len(order)]] += 1
        i += 1
    return counts


def plan_fixture(n_records: int = 400, seed: int = 0, shape: str = "tiny") -> list[FixtureRecord]:
    """The records `make_fixture` writes (names, sources, rates, lengths, codes), cheaply, in
    order of source then number. Every class is a primary label floor(n_scored / 24) times.
    shape: "tiny" (default) or "physionet2020" (the real source shares and record lengths)."""
    n, seed = check_int("records", n_records, 1), check_seed("seed", seed)
    if shape not in SHAPES:
        raise UserError(f"--shape {shape!r} is not a fixture shape; choose one of {', '.join(SHAPES)}")
    rng = np.random.default_rng([seed, 20200])
    sources = list(SHAPES[shape].values())
    counts = _allocate(n, np.array([s.share for s in sources]))
    source_of = np.repeat(np.arange(len(sources)), counts)[rng.permutation(n)]
    special = rng.permutation(n)
    n_unscored = n // 64
    unscored_only = set(special[:n_unscored].tolist())
    scored_rows = [i for i in range(n) if i not in unscored_only]
    duplicate_row = scored_rows[0] if n >= 2 else None
    no_age = set(special[n_unscored : n_unscored + n // 150].tolist())
    primaries = {}
    for start in range(0, len(scored_rows), len(labels.CLASSES)):
        perm = rng.permutation(len(labels.CLASSES))
        for row, k in zip(scored_rows[start : start + len(labels.CLASSES)], perm):
            primaries[row] = labels.CLASSES[k]
    numbers = np.zeros(len(sources), dtype=int)
    plan = []
    for i in range(n):
        src = sources[source_of[i]]
        numbers[source_of[i]] += 1
        if i in unscored_only:
            k = rng.choice(len(UNSCORED_ONLY), size=rng.integers(1, 3), replace=False)
            dx = [UNSCORED_ONLY[j] for j in k]
        else:
            dx = _written_codes(_draw_labels(primaries[i], rng), rng)
            if i == duplicate_row:
                dx.append(dx[-1])  # a real quirk: "#Dx: 251146004,284470004,284470004"
        lo, hi = src.seconds
        if src.name in ("CPSC", "CPSC-Extra"):
            # mostly short, a few long, as in CPSC (real: 6-60 s, mean about 16 s)
            seconds = min(hi, lo + rng.exponential(4.0 if shape == "tiny" else 10.0))
        else:
            seconds = rng.uniform(lo, hi)
        age = None if i in no_age else float(int(np.clip(rng.normal(60, 16), 18, 95)))
        sex = "Male" if rng.random() < 0.52 else "Female"
        hms = rng.integers(0, 86400)
        time = f"{hms // 3600:02d}:{hms // 60 % 60:02d}:{hms % 60:02d}"
        name = f"{src.prefix}{numbers[source_of[i]]:0{src.digits}d}"
        plan.append(FixtureRecord(i, name, src.name, src.fs, int(round(seconds * src.fs)), tuple(dx), age, sex, time))
    order = {s.name: k for k, s in enumerate(sources)}
    return sorted(plan, key=lambda r: (order[r.source], r.name))


# --- waveforms ------------------------------------------------------------------------------------


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _frontal(theta_deg: float, z: float) -> np.ndarray:
    """Unit heart vector at frontal angle theta (0 left, +90 inferior), anterior part z (x left, y down, z front)."""
    t = np.deg2rad(theta_deg)
    return _unit([np.cos(t), np.sin(t), z])


# precordial electrode angles in the horizontal plane (0 = left, 90 = anterior) and gains
_V_ANGLE = np.deg2rad([115.0, 95.0, 75.0, 55.0, 30.0, 5.0])
_V_GAIN = np.array([1.2, 1.7, 1.8, 1.7, 1.4, 1.1])


def _lead_matrix(rng: np.random.Generator) -> np.ndarray:
    """(8, 3) projection of the heart vector onto the recorded leads I, II, V1..V6."""
    ang = _V_ANGLE + np.deg2rad(rng.normal(0, 5, 6))
    gain = _V_GAIN * rng.uniform(0.85, 1.15, 6)
    v = np.stack([np.cos(ang), np.full(6, 0.15), np.sin(ang)], axis=1) * gain[:, None]
    limb = np.array([[1.0, 0.0, 0.0], [0.5, np.sqrt(3) / 2, 0.0]])
    return np.concatenate([limb, v])


def _twelve_leads(rec8: np.ndarray) -> np.ndarray:
    """(8, N) leads I, II, V1..V6 -> (12, N) standard order, III, aVR, aVL, aVF derived (Einthoven, Goldberger)."""
    i, ii = rec8[0], rec8[1]
    return np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2, *rec8[2:]])


def _render(waves: np.ndarray, fs: float, n: int) -> np.ndarray:
    """Gaussian waves (K >= 1, 5) of (centre s, sigma s, vx, vy, vz), each within 4 sigma -> (3, n) mV."""
    out = np.zeros((3, n))
    centre, sigma, vec = waves[:, 0], waves[:, 1], waves[:, 2:5]
    half = int(np.ceil(4 * sigma.max() * fs)) + 1
    idx = np.rint(centre * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)  # (K, W)
    g = np.exp(-0.5 * ((idx / fs - centre[:, None]) / sigma[:, None]) ** 2)
    keep = (idx >= 0) & (idx < n)
    flat = idx[keep]
    for a in range(3):
        out[a] = np.bincount(flat, weights=(g * vec[:, a, None])[keep], minlength=n)
    return out


def _wave(centre, sigma, vec) -> list[float]:
    return [float(centre), float(sigma), *map(float, vec)]


@dataclass
class _Heart:
    """One patient's morphology: QRS/T/P templates (offsets relative to the R peak, s)."""

    qrs: list  # rows (offset, sigma, vx, vy, vz)
    t: np.ndarray  # T heart vector (mV)
    t_sigma: float
    t_biphasic: bool
    p: np.ndarray
    pr: float  # P centre to R peak (s)
    qtc: float  # Bazett-corrected QT (s)
    pvc: list
    pvc_t: np.ndarray
    paced: list


def _heart(flags: set, rng: np.random.Generator) -> _Heart:
    u = rng.uniform
    theta = (
        u(-75, -45) if LANFB in flags else u(-80, -35) if LAD in flags else u(100, 150) if RAD in flags else u(10, 80)
    )
    amp = u(1.0, 1.8) * (u(0.25, 0.4) if LQRSV in flags else 1.0)
    main = _frontal(theta, -u(0.3, 0.6)) * amp
    septal = _unit([-0.5, 0.2, 0.8]) * u(0.12, 0.25) * amp / 1.4
    if LANFB in flags:  # small initial inferior-rightward force: rS in II, III, aVF; qR in aVL
        septal = _unit([-0.3, 0.8, 0.3]) * u(0.2, 0.3) * amp / 1.4
    terminal = _unit([-0.4, -0.6, -0.5]) * u(0.2, 0.45) * amp / 1.4
    s_main = u(0.011, 0.015)
    qrs = [_wave(-0.022, 0.008, septal), _wave(0.0, s_main, main), _wave(0.024, 0.010, terminal)]
    t_vec = _frontal(theta + rng.normal(0, 15), u(0.2, 0.5)) * u(0.2, 0.45)
    if LBBB in flags:  # septum activated right-to-left, broad notched R leftward-posterior
        lb = _frontal(u(-20, 40), -u(0.7, 1.0)) * u(1.3, 2.0) * (amp / 1.4)
        qrs = [
            _wave(-0.03, 0.020, lb * 0.8),
            _wave(0.025, 0.022, lb),
            _wave(-0.055, 0.010, _unit([0.4, 0.0, -0.4]) * 0.15),
        ]
        t_vec = -_unit(lb) * u(0.3, 0.5)  # secondary, discordant T
    elif NSIVCB in flags:  # everything slower
        k = u(1.5, 1.8)
        qrs = [[o * k, s * k, *v] for o, s, *v in qrs]
    if CRBBB in flags or RBBB in flags:  # late rightward-anterior force: rsR' in V1, wide S in I, V6
        qrs.append(_wave(0.06, 0.018, _unit([-0.55, 0.0, 0.85]) * u(0.5, 0.9)))
        qrs[2][1] *= 1.6
        t_vec = t_vec - np.array([0.0, 0.0, 0.35])
    elif IRBBB in flags:
        qrs.append(_wave(0.042, 0.010, _unit([-0.55, 0.0, 0.85]) * u(0.25, 0.45)))
    if QAB in flags:  # pathological Q: inferior, anterior or lateral
        direction = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]][rng.integers(3)]
        qrs[0] = _wave(-0.03, u(0.012, 0.016), _unit(direction) * u(0.35, 0.6))
    biphasic = False
    if TINV in flags:
        t_vec = -t_vec * u(1.0, 1.5)
    elif TAB in flags:
        biphasic = rng.random() < 0.5
        t_vec = t_vec * (u(0.5, 0.8) if biphasic else u(0.05, 0.2))
    if LQRSV in flags:  # low voltage is rarely the QRS alone
        t_vec = t_vec * u(0.4, 0.7)
    p = _frontal(u(40, 70), u(0.0, 0.3)) * u(0.08, 0.16)
    pr = u(0.26, 0.36) if IAVB in flags else u(0.21, 0.25) if LPR in flags else u(0.12, 0.17)
    qtc = u(0.50, 0.58) if LQT in flags else u(0.37, 0.42)
    pvc_vec = _unit(rng.normal(size=3)) * u(1.5, 2.5)
    pvc = [_wave(-0.02, u(0.025, 0.035), pvc_vec), _wave(0.03, 0.03, pvc_vec * 0.5)]
    paced_vec = _frontal(u(-80, -50), -u(0.5, 0.9)) * u(1.2, 2.0)
    paced = [_wave(-0.01, 0.024, paced_vec), _wave(0.04, 0.024, paced_vec * 0.7)]
    return _Heart(qrs, t_vec, u(0.035, 0.05), biphasic, p, pr, qtc, pvc, -pvc_vec * 0.3, paced)


def _beats(rhythm: str, flags: set, seconds: float, rng: np.random.Generator) -> tuple[list[tuple], float]:
    """Ventricular beats (time s, kind, preceding RR s) covering [-1, seconds + 1] s, and the
    flutter period (s; 0 unless AFL). kinds: 'sinus' (P + QRS), 'pac', 'pvc', 'paced', 'nop'
    (QRS without P: AF, AFL, junctional). In AFL every QRS falls on the flutter cycle."""
    u = rng.uniform
    hr = {NSR: (60, 95), SA: (58, 88), SB: (40, 56), STACH: (105, 150), BRADY: (35, 52), AF: (75, 130), PACED: (60, 80)}
    rr0 = 0.0 if rhythm == AFL else 60.0 / u(*hr[rhythm])
    sa_depth, sa_period, sa_phase = (u(0.12, 0.22), u(3, 6), u(0, 2 * np.pi)) if rhythm == SA else (0, 1, 0)
    f_period = 60.0 / u(250, 320) if rhythm == AFL else 0.0
    ratio = [2, 4, 0][rng.integers(3)] if rhythm == AFL else 0  # 0: variable 2:1 / 3:1 / 4:1 block

    def next_rr(t: float) -> float:
        if rhythm == AF:
            return float(np.clip(rr0 * np.exp(rng.normal(0, 0.22)), 0.3, 2.0))
        if rhythm == AFL:
            return f_period * (ratio or (2, 3, 4)[rng.integers(3)])
        if rhythm == PACED:
            return rr0
        return rr0 * (1 + sa_depth * np.sin(2 * np.pi * t / sa_period + sa_phase)) * (1 + rng.normal(0, 0.012))

    base = "sinus" if rhythm in SINUS else "paced" if rhythm == PACED else "nop"
    ectopics = [k for k, flag in (("pac", PAC in flags and rhythm in SINUS), ("pvc", PVC in flags)) if flag]
    p_ectopic = u(0.08, 0.2)
    forced = {k: u(0.25, 0.75) * seconds for k in ectopics}  # at least one of each in view
    beats = []
    nxt = -1.0 - u(0, 1) * (rr0 or f_period)
    last = None
    while nxt < seconds + 1.0:
        kind = None
        if last is not None and ectopics:
            due = [k for k in ectopics if forced[k] is not None and nxt >= forced[k]]
            if due:
                kind = due[0]
                forced[kind] = None
            elif rng.random() < p_ectopic:
                kind = ectopics[rng.integers(len(ectopics))]
        if kind in ("pac", "pvc"):  # early; after a PVC the scheduled beat is lost (compensatory pause)
            te = last + (u(0.6, 0.75) if kind == "pac" else u(0.5, 0.65)) * (nxt - last)
            beats.append((te, kind, te - last))
            last, nxt = te, te + next_rr(te) if kind == "pac" else nxt + next_rr(nxt)
        else:
            beats.append((nxt, base, (nxt - last) if last is not None else next_rr(nxt)))
            last, nxt = nxt, nxt + next_rr(nxt)
    return beats, f_period


def _waves_for(beats: list[tuple], heart: _Heart, rhythm: str, rng: np.random.Generator) -> list[list[float]]:
    """All Gaussian waves of a record: rows of (centre s, sigma s, vx, vy, vz mV)."""
    rows = []
    qrs, pvc, paced = (np.array(w) for w in (heart.qrs, heart.pvc, heart.paced))  # (K, 5) templates
    retro_p = rhythm == BRADY and rng.random() < 0.5
    for t, kind, rr in beats:
        jitter = 1 + rng.normal(0, 0.03)
        if kind == "pvc":
            block = pvc.copy()
            t_centre, t_sigma, t_vec = t + 0.30, 0.07, heart.pvc_t
        else:
            block = paced.copy() if kind == "paced" else qrs.copy()
            qt = heart.qtc * np.sqrt(np.clip(rr, 0.3, 2.0))
            t_centre, t_sigma, t_vec = t + qt - 2.2 * heart.t_sigma, heart.t_sigma, heart.t
            if kind == "paced":
                t_vec = -_unit(paced[0, 2:]) * np.linalg.norm(heart.t)
        block[:, 0] += t
        block[:, 2:] *= jitter
        rows.extend(block.tolist())
        if heart.t_biphasic:
            rows += [_wave(t_centre - t_sigma, t_sigma * 0.8, t_vec), _wave(t_centre + t_sigma, t_sigma * 0.8, -t_vec)]
        else:
            rows.append(_wave(t_centre - 0.5 * t_sigma, t_sigma * 1.25, t_vec * 0.55))
            rows.append(_wave(t_centre, t_sigma, t_vec * 0.7))
        if kind == "sinus":
            rows.append(_wave(t - heart.pr, rng.uniform(0.018, 0.024), heart.p * jitter))
        elif kind == "pac":  # ectopic atrial focus: different, often inverted P, shorter PR
            rows.append(_wave(t - 0.13, 0.02, _unit([0.3, -0.8, 0.3]) * np.linalg.norm(heart.p)))
        elif kind == "nop" and retro_p:
            rows.append(_wave(t + 0.09, 0.018, _unit([0.0, -1.0, 0.2]) * 0.07))
    return rows


def _atrial_activity(
    rhythm: str, beats: list, f_period: float, fs: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(3, n) fibrillatory (AF) or flutter (AFL, period f_period s, locked to the QRS) waves, else 0."""
    out = np.zeros((3, n))
    t = np.arange(n) / fs
    if rhythm == AF:
        for _ in range(3):
            f0 = rng.uniform(4.5, 8.0)
            freq = f0 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
            phase = 2 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 6.3)
            vec = _unit([0.2, 0.55, 0.8] + rng.normal(0, 0.2, 3)) * rng.uniform(0.02, 0.06)
            out += vec[:, None] * np.sin(phase)
    elif rhythm == AFL:
        saw = sawtooth(2 * np.pi * (t - beats[0][0]) / f_period + rng.uniform(0, 6.3), width=0.85)
        vec = _unit([0.05, -0.9, 0.4]) * rng.uniform(0.1, 0.2)
        out += vec[:, None] * saw
    return out


def _synth(codes: Iterable[str], fs: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """(12, n) float64 mV for the given header codes (merged and unscored handled)."""
    flags = set(labels.merge_codes(codes))
    rhythm = next((r for r in _RHYTHM_PRECEDENCE if r in flags), NSR)
    seconds = n / fs
    heart = _heart(flags, rng)
    beats, f_period = _beats(rhythm, flags, seconds, rng)
    rows = _waves_for(beats, heart, rhythm, rng)
    spikes = [b[0] - 0.045 for b in beats if b[1] == "paced"]  # just before the paced QRS
    waves = np.array(rows, dtype=np.float64).reshape(-1, 5)
    if spikes:  # pacemaker artefact: a spike centred on a sample (never missed) and an overshoot
        vec = _unit(rng.normal(size=3)) * rng.uniform(2.0, 4.0)
        c = np.rint(np.array(spikes) * fs)[:, None] / fs  # (S, 1) s
        spike = np.hstack([c, np.full_like(c, 0.45 / fs), np.tile(vec, (len(c), 1))])
        overshoot = np.hstack([c + 0.004, np.full_like(c, 0.003), np.tile(-0.15 * vec, (len(c), 1))])
        waves = np.concatenate([waves, spike, overshoot])
    heart_vector = _render(waves, fs, n) + _atrial_activity(rhythm, beats, f_period, fs, n, rng)
    rec8 = _lead_matrix(rng) @ heart_vector  # I, II, V1..V6
    t = np.arange(n) / fs
    for _ in range(2):  # baseline wander, per electrode
        f = rng.uniform(0.05, 0.5, (8, 1))
        rec8 += rng.uniform(0.0, 0.1, (8, 1)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, (8, 1)))
    rec8 += rng.normal(0.0, rng.uniform(0.005, 0.02), rec8.shape)
    return _twelve_leads(rec8)


def synth_ecg(codes: Iterable[str], fs: float, seconds: float, rng: np.random.Generator | int) -> np.ndarray:
    """A synthetic 12-lead ECG for the SNOMED `codes`: float32 (12, round(fs * seconds)) in mV,
    leads I, II, III, aVR, aVL, aVF, V1..V6, sampled at `fs` Hz. Unscored codes do not change the
    morphology; several rhythm codes resolve as PR > AF > AFL > Brady > STach > SB > SA > NSR."""
    codes = [codes] if isinstance(codes, str) else [str(c).strip() for c in codes]
    known = set(labels.SCORED_CODES) | set(labels.UNSCORED_CODES)
    bad = [c for c in codes if c not in known]
    if bad:
        raise UserError(f"codes: {', '.join(bad)} not a Challenge 2020 SNOMED code (see labels.SCORED_CODES)")
    if not np.isfinite(fs) or fs < 50:
        raise UserError(f"fs must be a sampling rate >= 50 Hz, got {fs!r}")
    if not np.isfinite(seconds) or seconds <= 0:
        raise UserError(f"seconds must be > 0, got {seconds!r}")
    n = int(round(fs * seconds))
    if n < 1:
        raise UserError(f"seconds * fs must give at least one sample, got {seconds!r} s at {fs!r} Hz")
    if not isinstance(rng, np.random.Generator):
        if not is_int(rng, 0):
            raise UserError(f"rng must be a numpy Generator or a seed >= 0, got {rng!r}")
        rng = np.random.default_rng(int(rng))
    return _synth(codes, float(fs), n, rng).astype(np.float32)


# --- files ----------------------------------------------------------------------------------------


def wfdb_checksum(digital: np.ndarray) -> np.ndarray:
    """WFDB checksum of each row of (channels, N) integer samples: the sum mod 65536, signed 16-bit."""
    s = np.asarray(digital, dtype=np.int64).sum(axis=1) % 65536
    return np.where(s >= 32768, s - 65536, s)


def header_text(rec: FixtureRecord, digital: np.ndarray) -> str:
    """The `.hea` text of a record whose int16 samples (12, N) are `digital`."""
    day = FIXTURE_SOURCES[rec.source].date
    lines = [f"{rec.name} 12 {rec.fs} {digital.shape[1]} {day} {rec.time}"]
    for lead, first, check in zip(LEADS, digital[:, 0], wfdb_checksum(digital)):
        lines.append(f"{rec.name}.mat 16+24 {GAIN}/mV 16 0 {int(first)} {int(check)} 0 {lead}")
    age = "NaN" if rec.age is None else str(int(rec.age))
    lines += [f"#Age: {age}", f"#Sex: {rec.sex}", f"#Dx: {','.join(rec.dx)}"]
    lines += ["#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    return "\n".join(lines) + "\n"


def record_signal(rec: FixtureRecord, seed: int) -> np.ndarray:
    """The int16 (12, N) samples (1000 per mV) of one planned record; the same for the same seed."""
    rng = np.random.default_rng([seed, 7919, rec.index])
    mv = _synth(rec.dx, rec.fs, rec.n_samples, rng)
    return np.clip(np.rint(mv * GAIN), -32768, 32767).astype(np.int16)


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(f"--out {out}: folder is not empty and holds no {MARKER}; choose an empty or new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--out {out}: not writable ({exc.strerror or exc})") from None
    if (out / MARKER).is_file():  # an older fixture here: remove only the files it wrote
        for src in FIXTURE_SOURCES.values():
            for f in [*(out / src.folder).glob(f"{src.prefix}*.hea"), *(out / src.folder).glob(f"{src.prefix}*.mat")]:
                f.unlink()


def _write_record(rec: FixtureRecord, out: Path, seed: int) -> list:
    """Write one record's .mat and .hea under out; its row of the manifest."""
    digital = record_signal(rec, seed)
    hea = out / rec.path
    scipy.io.savemat(hea.with_suffix(".mat"), {"val": digital}, format="4")
    hea.write_text(header_text(rec, digital))
    return [rec.name, rec.source, rec.path, rec.fs, rec.n_samples, ",".join(rec.dx)]


def make_fixture(
    out: str | os.PathLike,
    n_records: int = 400,
    seed: int = 0,
    shape: str = "tiny",
    progress: bool = False,
    workers: int = 1,
) -> Path:
    """Write the synthetic corpus (the module docstring) into `out`: new, empty or an earlier
    fixture. Same seed, size and shape -> the same bytes. shape "physionet2020": the real data
    set's shares and lengths (`SHAPES`). Records are written by `workers` processes. Returns out."""
    plan = plan_fixture(n_records, seed, shape)  # records, seed and shape checked there
    n, seed = len(plan), int(seed)
    check_int("--workers", workers, 1)
    out = Path(out)
    _prepare_out(out)
    meta = dict(what="ecgssl_nb synthetic fixture (not real ECGs)", version=FIXTURE_VERSION, n_records=n, seed=seed)
    sources = {s.name: {"folder": s.folder, "prefix": s.prefix, "fs": s.fs} for s in FIXTURE_SOURCES.values()}
    meta |= dict(complete=False, sources=sources)
    if shape != "tiny":  # the tiny fixture's marker stays byte-identical
        meta["shape"] = shape
    write_json(out / MARKER, meta, indent=1)
    for src in FIXTURE_SOURCES.values():
        (out / src.folder).mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm  # only to write a corpus

    write = partial(_write_record, out=out, seed=seed)
    bar = dict(total=len(plan), desc="fixture", unit="record", disable=not progress, file=sys.stderr)
    if workers > 1:  # records are independent: the same bytes in any order, written in parallel
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            rows = list(tqdm(pool.imap(write, plan, chunksize=16), **bar))
    else:
        rows = [write(rec) for rec in tqdm(plan, **bar)]
    with open(out / MANIFEST, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([["record", "source", "path", "fs", "n_samples", "dx"], *rows])
    write_json(out / MARKER, dict(meta, complete=True), indent=1)
    return out


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb fixture --out DIR [--records N] [--seed S]`."""
    parser = argparse.ArgumentParser(
        prog="python -m ecgssl_nb fixture",
        description="Write the synthetic tiny corpus in the PhysioNet/CinC 2020 on-disk format.",
    )
    parser.add_argument("--out", required=True, help="folder to write (new, empty, or an earlier fixture)")
    parser.add_argument("--records", type=int, default=400, help="number of records (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    shape = "tiny (default) or physionet2020: the real data set's source shares and record lengths (use --records "
    parser.add_argument("--shape", default="tiny", help=shape + "43101 for full size)")
    parser.add_argument("--progress", action="store_true", help="a progress bar")
    parser.add_argument("--workers", type=int, default=1, help="processes writing records (default 1)")
    args = parser.parse_args(argv)
    out = make_fixture(args.out, args.records, args.seed, args.shape, args.progress, args.workers)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {args.records} synthetic records ({size / 1e6:.1f} MB) to {out}")
    return 0
