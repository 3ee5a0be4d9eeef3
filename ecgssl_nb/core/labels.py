"""The Challenge 2020 label space: 27 scored SNOMED codes, 3 official merges, 24 classes.

The official tables (weights.csv, dx_mapping_scored.csv, dx_mapping_unscored.csv; BSD-2-Clause,
PhysioNet/Computing in Cardiology Challenges) ship in `ecgssl_nb/data/`. Class order is weights.csv's
with the merged duplicates dropped (book: Deviations, B24): class k of every array here is `CLASSES[k]`.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

# removed code -> kept (representative) code, the Challenge's equivalence classes
MERGES = {
    "59118001": "713427006",  # RBBB -> CRBBB
    "63593006": "284470004",  # SVPB -> PAC
    "17338001": "427172004",  # VPB -> PVC
}
NORMAL_CLASS = "426783006"  # sinus rhythm (NSR)
# the twelve standard leads, in the order of the Challenge headers and of every array here
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def data_file(name: str) -> Path:
    """Path of one packaged official table, e.g. data_file('weights.csv')."""
    # beside core/: importlib.resources breaks when an editable install is seen as a namespace package
    return Path(__file__).resolve().parent.parent / "data" / name


def _read_mapping(name: str) -> list[dict]:
    with open(data_file(name), newline="") as fh:
        return list(csv.DictReader(fh))


@lru_cache(maxsize=None)
def _weights_table() -> tuple[tuple[str, ...], np.ndarray]:
    with open(data_file("weights.csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    codes = tuple(c.strip() for c in rows[0][1:])
    matrix = np.array([[float(v) for v in row[1:]] for row in rows[1:]], dtype=np.float64)
    return codes, matrix


_SCORED_ROWS = _read_mapping("dx_mapping_scored.csv")
SCORED_CODES: tuple[str, ...] = tuple(r["SNOMED CT Code"] for r in _SCORED_ROWS)
_ABBREV = {r["SNOMED CT Code"]: r["Abbreviation"] for r in _SCORED_ROWS}
_NAMES = {r["SNOMED CT Code"]: r["Dx"] for r in _SCORED_ROWS}
UNSCORED_CODES: tuple[str, ...] = tuple(r["SNOMED CT Code"] for r in _read_mapping("dx_mapping_unscored.csv"))

CLASSES: tuple[str, ...] = tuple(c for c in _weights_table()[0] if c not in MERGES)
ABBREVIATIONS: tuple[str, ...] = tuple(
    _ABBREV[c] + ("+" + _ABBREV[r] if (r := next((k for k, v in MERGES.items() if v == c), None)) else "")
    for c in CLASSES
)
NAMES: tuple[str, ...] = tuple(_NAMES[c] for c in CLASSES)
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
N_CLASSES = len(CLASSES)  # 24


def weight_matrix() -> np.ndarray:
    """The (24, 24) Challenge reward matrix in CLASSES order (merged codes' rows dropped)."""
    codes, matrix = _weights_table()
    keep = [codes.index(c) for c in CLASSES]
    return matrix[np.ix_(keep, keep)].copy()


def merge_codes(codes: Iterable[str]) -> list[str]:
    """Scored codes of a record after the official merges, unique, in CLASSES order (unscored codes dropped)."""
    kept = {MERGES.get(str(c).strip(), str(c).strip()) for c in codes}
    return [c for c in CLASSES if c in kept]


def encode(codes: Iterable[str]) -> np.ndarray:
    """Multi-hot (24,) float32 vector of a record's codes (merged; unscored ignored)."""
    out = np.zeros(N_CLASSES, dtype=np.float32)
    out[[CLASS_INDEX[c] for c in merge_codes(codes)]] = 1.0
    return out


def encode_many(label_strings: Iterable[str]) -> np.ndarray:
    """(N, 24) float32 from index.csv's `labels` column (codes separated by spaces)."""
    rows = [encode(str(s).split()) if isinstance(s, str) else encode([]) for s in label_strings]
    return np.stack(rows) if rows else np.zeros((0, N_CLASSES), dtype=np.float32)


def abbreviation(code: str) -> str:
    """'426783006' -> 'NSR' (merged classes show both, e.g. 'CRBBB+RBBB')."""
    code = MERGES.get(code, code)
    return ABBREVIATIONS[CLASS_INDEX[code]] if code in CLASS_INDEX else _ABBREV.get(code, code)


def official_totals() -> dict[str, dict[str, int]]:
    """Per-source record counts of each scored code from dx_mapping_scored.csv (before merging)."""
    sources = ("CPSC", "CPSC-Extra", "StPetersburg", "PTB", "PTB-XL", "Georgia", "Total")
    return {r["SNOMED CT Code"]: {k: int(r[k]) for k in sources} for r in _SCORED_ROWS}
