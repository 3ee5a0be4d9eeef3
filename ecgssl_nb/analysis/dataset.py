"""The data and transforms chapters' tables: classes and folds of a prepared corpus, records per
source, the STFT settings and the views' settings (paper Sec. II-B, III-A)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..core.labels import ABBREVIATIONS, CLASSES, MERGES, official_totals
from ..core.settings import N_FOLDS, TARGET_FS, WINDOW, AugmentConfig

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def class_counts(label_matrix: np.ndarray, name: str = "this corpus") -> pd.DataFrame:
    """Per class: the positives of `label_matrix` (N, 24) (column `name`) and the official
    Challenge 2020 total with the codes merged into the class (labels.MERGES) added."""
    totals = official_totals()
    official = [totals[c]["Total"] + sum(totals[r]["Total"] for r, k in MERGES.items() if k == c) for c in CLASSES]
    ours = np.asarray(label_matrix).sum(axis=0).astype(int)
    return pd.DataFrame({name: ours, "official total (6 sources)": official}, index=list(ABBREVIATIONS))


def fold_counts(label_matrix: np.ndarray, folds: ArrayLike, n_folds: int | None = None) -> pd.DataFrame:
    """Per fold 0..n_folds-1 (default settings.N_FOLDS; `folds` (N,) gives each row's): its
    records, then its positives of each class."""
    n_folds = N_FOLDS if n_folds is None else n_folds
    y, f = np.asarray(label_matrix), np.asarray(folds)
    counts = pd.DataFrame([y[f == k].sum(axis=0) for k in range(n_folds)], columns=list(ABBREVIATIONS)).astype(int)
    counts.insert(0, "records", [int((f == k).sum()) for k in range(n_folds)])
    counts.index.name = "fold"
    return counts


def fold_balance(counts: pd.DataFrame) -> pd.DataFrame:
    """Per class of `fold_counts`: its records, the ideal count per fold and a fold's largest
    distance from it (1 decimal)."""
    per_class = counts.drop(columns="records")
    ideal = per_class.sum(axis=0) / len(per_class)
    return pd.DataFrame(
        {
            "records": per_class.sum(axis=0),
            "ideal per fold": ideal.round(1),
            "largest deviation": (per_class - ideal).abs().max(axis=0).round(1),
        }
    )


def records_per_source(index: pd.DataFrame) -> pd.DataFrame:
    """Records kept per source (a prepared `index.csv`) and their share of all (3 decimals)."""
    out = index.groupby("source").size().rename("records kept").to_frame()
    out["share"] = (out["records kept"] / out["records kept"].sum()).round(3)
    return out


def stft_settings() -> pd.DataFrame:
    """The spectrogram's STFT settings (transforms' constants), one row each."""
    import torch  # ~1.3 s at import: only for the transforms chapter

    from ..core import transforms as T  # the STFT constants (imports torch too)

    frames = T.stft_magnitude(torch.zeros(1, 1, WINDOW)).shape[-1]
    top = (T.SPEC_N_FREQ - 1) * T.SPEC_FREQ_STEP_HZ
    rows = {
        "sampling rate": f"{TARGET_FS} Hz",
        "window": f"Hann, {T.SPEC_NPERSEG} samples ({T.SPEC_NPERSEG / TARGET_FS:.2f} s)",
        "overlap / hop": f"{T.SPEC_NOVERLAP} / {T.SPEC_HOP} samples ({T.SPEC_HOP_S:.2f} s)",
        "boundary": f"{T.SPEC_NPERSEG // 2} zeros padded at each end; zeros appended to fill the last segment",
        "frequency rows": f"{T.SPEC_N_FREQ}: 0, {T.SPEC_FREQ_STEP_HZ:g}, ..., {top:g} Hz",
        f"frames for {WINDOW} samples": str(frames),
        "scaling": "'spectrum' (divided by the window's sum), then magnitude",
        "normalisation": f"(|Z| - mean[lead]) / {T.SPEC_STD}",
    }
    return pd.Series(rows, name="STFT").to_frame()


def augment_settings(augment: AugmentConfig | None = None) -> pd.DataFrame:
    """The view settings (`settings.AugmentConfig`, default its defaults), a row per field as
    `--set augment.KEY=VALUE` names it: its value, range and what it sets (the field's metadata)."""
    augment = AugmentConfig() if augment is None else augment
    fields = dataclasses.fields(augment)
    return pd.DataFrame(
        {
            "value": [str(getattr(augment, f.name)) for f in fields],
            "range": [f.metadata["range"].text for f in fields],
            "what": [f.metadata["what"] for f in fields],
        },
        index=pd.Index([f"augment.{f.name}" for f in fields], name="setting"),
    )
