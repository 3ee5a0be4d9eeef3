"""The 10 folds: iterative multilabel stratification (Sechidis, Tsoumakas and Vlahavas 2011).

Paper Sec. III-A; book: The data. Each fold should get 1/K of the records and of every label's
occurrences. Until every labelled record is placed: take the label with the fewest unplaced
records (ties: the first in sorted order); put its unplaced records, in reverse index order (the
authors' stable argsort), each into the fold with the largest remaining need for it (ties: the
largest overall need among the tied folds, as Sechidis et al. do, where the authors' copy compares
all folds; then a seeded choice); lower that fold's needs. Unlabelled records go last. Needs are
integers scaled by K, so ties are exact. `assign_folds` runs this per source on records sorted by
(record, path), a fresh seed per source (B3 fixed: input order never matters); a duplicate group
is placed as one unit.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from ..core.errors import UserError, check_int


def _stratify_units(unit_labels: list[Counter], unit_sizes: list[int], K: int, rng: np.random.Generator) -> np.ndarray:
    """Core loop, into K folds. unit_labels[u] = {label index 0..: records of unit u with that label};
    unit_sizes[u] = records in unit u. Returns the fold of each unit."""
    n_labels = 1 + max((lab for labels in unit_labels for lab in labels), default=-1)
    fold = [-1] * len(unit_sizes)  # -1: not placed yet
    need_all = [int(sum(unit_sizes))] * K  # K * (remaining overall need) of each fold
    count = [0] * n_labels
    members: list[list[int]] = [[] for _ in range(n_labels)]
    for u, labels in enumerate(unit_labels):
        for lab, c in labels.items():
            count[lab] += c
            members[lab].append(u)
    need = [[count[lab]] * K for lab in range(n_labels)]  # K * (remaining need) per label and fold
    remaining = list(count)  # records not yet placed, per label

    def pick(row: list[int]) -> int:
        best = max(row)
        cands = [j for j in range(K) if row[j] == best]
        best_all = max(need_all[j] for j in cands)
        cands = [j for j in cands if need_all[j] == best_all]
        return cands[int(rng.integers(len(cands)))] if len(cands) > 1 else cands[0]

    def place(u: int, j: int) -> None:
        fold[u] = j
        need_all[j] -= K * unit_sizes[u]
        for lab, c in unit_labels[u].items():
            need[lab][j] -= K * c
            remaining[lab] -= c

    while live := [lab for lab in range(n_labels) if remaining[lab] > 0]:
        label = min(live, key=lambda lab: (remaining[lab], lab))
        for u in reversed(members[label]):
            if fold[u] < 0:
                place(u, pick(need[label]))
    for u in range(len(fold)):  # records without labels
        if fold[u] < 0:
            place(u, pick(need_all))
    return np.asarray(fold, dtype=np.int64)


def _labels_of(v: object) -> list[str]:
    """The codes of one row: space-separated text or a list; NaN / None: no label."""
    if isinstance(v, str):
        return v.split()
    return [str(x) for x in v] if isinstance(v, (list, tuple, set, np.ndarray)) else []


def assign_folds(
    index_df: pd.DataFrame,
    n_folds: int = 10,
    seed: int = 0,
    group_col: str | None = None,
    label_col: str = "codes",
    source_col: str = "source",
    record_col: str = "record",
) -> np.ndarray:
    """Fold of each row of `index_df` (in row order), stratified per source on `label_col`
    (space-separated codes or lists; the authors use the pre-merge scored codes), whatever the
    input order. Rows sharing a `group_col` value share a fold, in the source of its first row."""
    n_folds = check_int("n_folds", n_folds, 2)
    for col in (label_col, source_col, record_col) + ((group_col,) if group_col else ()):
        if col not in index_df.columns:
            raise UserError(f"index has no column {col!r} (columns: {', '.join(map(str, index_df.columns))})")
    result = np.full(len(index_df), -1, dtype=np.int64)
    sort_cols = [source_col, record_col] + (["path"] if "path" in index_df.columns else [])
    frame = index_df[sort_cols].astype(str).reset_index(drop=True)
    order = np.lexsort([frame[c].to_numpy() for c in reversed(sort_cols)])  # sorted row positions
    labels_all = [_labels_of(v) for v in index_df[label_col].tolist()]
    groups = index_df[group_col].astype(str).to_numpy() if group_col else np.arange(len(index_df)).astype(str)
    unit_rows, unit_source = _units(order, groups, frame[source_col].to_numpy())
    for source in sorted(set(unit_source)):
        rows = [r for r, s in zip(unit_rows, unit_source) if s == source]  # already sorted
        labels = sorted({lab for r in rows for pos in r for lab in labels_all[pos]})
        index = {lab: i for i, lab in enumerate(labels)}
        # per unit, {label index: records of the unit carrying it}
        unit_labels = [Counter(index[lab] for pos in r for lab in dict.fromkeys(labels_all[pos])) for r in rows]
        rng = np.random.default_rng(seed)  # a fresh seed per source, as the authors' per-call seed
        unit_fold = _stratify_units(unit_labels, [len(r) for r in rows], n_folds, rng)
        for r, f in zip(rows, unit_fold):
            result[r] = f
    return result


def _units(order: np.ndarray, groups: np.ndarray, sources: np.ndarray) -> tuple[list[list[int]], list[str]]:
    """(row positions, source) of each unit: one per group, in `order`, owned by its first row's source."""
    unit_of_group: dict[str, int] = {}
    unit_rows: list[list[int]] = []
    unit_source: list[str] = []
    for pos in order:
        u = unit_of_group.setdefault(groups[pos], len(unit_rows))
        if u == len(unit_rows):  # the group's first row
            unit_rows.append([])
            unit_source.append(sources[pos])
        unit_rows[u].append(int(pos))
    return unit_rows, unit_source
