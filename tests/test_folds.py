"""folds: iterative multilabel stratification (paper Sec. III-A) and the per-source, order-free,
duplicate-aware fold assignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgssl_nb.core.errors import UserError
from ecgssl_nb.data.folds import assign_folds


def stratify(label_sets, n_folds=10, seed=0):
    """Iterative stratification of records 0..n-1 (label_sets[i]: the labels of record i) through
    the public `assign_folds`: one source, record names sorted as the indices."""
    df = pd.DataFrame(
        {
            "record": [f"r{i:07d}" for i in range(len(label_sets))],
            "source": "S",
            "codes": [list(s) for s in label_sets],
        }
    )
    return assign_folds(df, n_folds, seed)


def literal_sechidis(label_sets, n_folds, seed):
    """Independent, deliberately plain reading of folds.py's algorithm with float needs (ratio 1/K), used
    as the oracle for the optimised integer implementation."""
    rng = np.random.default_rng(seed)
    n = len(label_sets)
    r = 1.0 / n_folds
    labels = sorted({lab for s in label_sets for lab in s})
    need_all = [r * n for _ in range(n_folds)]
    need = {lab: [r * sum(lab in s for s in label_sets) for _ in range(n_folds)] for lab in labels}
    fold = [-1] * n
    while True:
        left = {lab: sum(1 for i in range(n) if fold[i] < 0 and lab in label_sets[i]) for lab in labels}
        left = {lab: c for lab, c in left.items() if c > 0}
        if not left:
            break
        label = min(sorted(left), key=lambda lab: left[lab])
        for i in range(n - 1, -1, -1):
            if fold[i] >= 0 or label not in label_sets[i]:
                continue
            top = max(need[label])
            tied = [j for j in range(n_folds) if need[label][j] == top]
            if len(tied) > 1:
                top_all = max(need_all[j] for j in tied)
                tied = [j for j in tied if need_all[j] == top_all]
                if len(tied) > 1:
                    tied = [tied[int(rng.integers(len(tied)))]]
            j = tied[0]
            fold[i] = j
            need_all[j] -= 1
            for lab in label_sets[i]:
                need[lab][j] -= 1
    for i in range(n):
        if fold[i] < 0:
            top_all = max(need_all)
            tied = [j for j in range(n_folds) if need_all[j] == top_all]
            j = tied[int(rng.integers(len(tied)))] if len(tied) > 1 else tied[0]
            fold[i] = j
            need_all[j] -= 1
    return np.array(fold)


def random_label_sets(n, n_labels=12, max_labels=3, seed=0, p_empty=0.0):
    rng = np.random.default_rng(seed)
    p = np.geomspace(0.3, 0.005, n_labels)
    p /= p.sum()
    out = []
    for _ in range(n):
        if rng.random() < p_empty:
            out.append([])
            continue
        k = int(rng.integers(1, max_labels + 1))
        out.append([f"L{j:02d}" for j in rng.choice(n_labels, size=k, replace=False, p=p)])
    return out


def per_label_deviation(label_sets, folds, n_folds, min_count=10):
    """Largest |count in fold - count / K| over labels with >= min_count records."""
    worst = 0.0
    for lab in sorted({lab for s in label_sets for lab in s}):
        mask = np.array([lab in s for s in label_sets])
        if mask.sum() < min_count:
            continue
        worst = max(worst, np.abs(np.bincount(folds[mask], minlength=n_folds) - mask.sum() / n_folds).max())
    return worst


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("n,n_folds,p_empty", [(60, 10, 0.0), (250, 5, 0.1), (400, 10, 0.05)])
def test_stratify_matches_a_literal_float_implementation(n, n_folds, p_empty, seed):
    sets = random_label_sets(n, seed=n + seed, p_empty=p_empty)
    np.testing.assert_array_equal(stratify(sets, n_folds, seed), literal_sechidis(sets, n_folds, seed))


def test_hand_computed_two_folds():
    # a (2 records) is rarest: record 1 goes to a random fold, record 0 to the other (label need).
    # then b in reverse order 5, 4, 3, 2: each pair splits across the two folds.
    sets = [["a"], ["a"], ["b"], ["b"], ["b"], ["b"]]
    f = stratify(sets, n_folds=2, seed=0)
    assert f[0] != f[1] and f[5] != f[4] and f[3] != f[2]
    assert np.bincount(f).tolist() == [3, 3]


def test_single_label_sets_are_within_one_of_the_ideal_share_for_every_label_and_fold():
    rng = np.random.default_rng(5)
    sets = [
        [f"L{int(k)}"] for k in rng.choice(8, size=1234, p=np.geomspace(1, 0.02, 8) / np.geomspace(1, 0.02, 8).sum())
    ]
    f = stratify(sets, 10, 0)
    assert per_label_deviation(sets, f, 10) < 1.0
    assert np.abs(np.bincount(f, minlength=10) - 123.4).max() < 1.0


def test_multilabel_sets_are_within_one_per_label_on_a_2000_record_set():
    # Within one is not guaranteed for multi-label records (a label's records can be placed while
    # rarer labels are processed); on this realistic 1-3 labels/record set it holds (0.9 worst),
    # while for a 300-record set the worst label is 2.2 off. The rarest label is always exact.
    sets = random_label_sets(2000, seed=11)
    f = stratify(sets, 10, 0)
    assert per_label_deviation(sets, f, 10) < 1.0
    small = random_label_sets(300, seed=1)
    fs = stratify(small, 10, 0)
    counts = {lab: sum(lab in s for s in small) for lab in {x for s in small for x in s}}
    rarest = min(sorted(counts), key=counts.get)
    mask = np.array([rarest in s for s in small])
    assert np.abs(np.bincount(fs[mask], minlength=10) - mask.sum() / 10).max() < 1.0


def test_stratify_is_far_better_than_random_assignment():
    sets = random_label_sets(2000, seed=2)
    rnd = np.random.default_rng(0).integers(0, 10, size=2000)
    assert per_label_deviation(sets, stratify(sets), 10) < 0.25 * per_label_deviation(sets, rnd, 10)


def test_seed_changes_tie_breaks_only():
    sets = random_label_sets(500, seed=4)
    a, b = stratify(sets, 10, 0), stratify(sets, 10, 1)
    assert not np.array_equal(a, b)
    assert per_label_deviation(sets, a, 10) < 1.5 and per_label_deviation(sets, b, 10) < 1.5
    np.testing.assert_array_equal(a, stratify(sets, 10, 0))


def test_unlabelled_records_still_get_a_fold():
    f = stratify([[], [], ["a"], []], n_folds=2, seed=0)
    assert set(f.tolist()) <= {0, 1} and np.bincount(f).tolist() == [2, 2]


def make_index(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for source, prefix, n in [("CPSC", "A", 400), ("Georgia", "E", 300), ("INCART", "I", 30)]:
        sets = random_label_sets(n, max_labels=2, seed=seed + n)
        for i, s in enumerate(sets):
            rows.append(
                {
                    "record": f"{prefix}{i:05d}",
                    "source": source,
                    "path": f"{source}/{prefix}{i:05d}.hea",
                    "codes": " ".join(s),
                }
            )
    df = pd.DataFrame(rows)
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def test_assign_folds_partitions_and_balances_each_source():
    df = make_index()
    f = assign_folds(df, 10, 0)
    assert f.shape == (len(df),) and set(f.tolist()) <= set(range(10)) and (f >= 0).all()
    # records here carry 1-2 labels, as most Challenge records do: every label with >= 10 records
    # is within one of its ideal share in every source (with up to 3 labels per record on 300
    # records one label ends 3.3 off: the algorithm cannot promise this for multi-label data)
    for source, part in df.groupby("source"):
        sets = [c.split() for c in part["codes"]]
        assert per_label_deviation(sets, f[part.index.to_numpy()], 10) <= 1.0 + 1e-9
    # each source alone equals stratify() on its records sorted by name
    cpsc = df[df.source == "CPSC"].sort_values("record")
    np.testing.assert_array_equal(f[cpsc.index.to_numpy()], stratify([c.split() for c in cpsc["codes"]], 10, 0))


def test_assign_folds_ignores_input_order():
    df = make_index(seed=0)
    f = pd.Series(assign_folds(df), index=df["record"])
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    g = pd.Series(assign_folds(shuffled), index=shuffled["record"])
    pd.testing.assert_series_equal(f.sort_index(), g.sort_index())


def test_duplicate_groups_share_a_fold_and_are_counted_as_units():
    df = make_index()
    df["group"] = df["record"]
    # make 40 pairs of duplicates inside CPSC and one pair across sources
    cpsc = sorted(df.loc[df.source == "CPSC", "record"])
    for a, b in zip(cpsc[0:80:2], cpsc[1:80:2]):
        df.loc[df.record == b, "group"] = a
    df.loc[df.record == "E00007", "group"] = "A00399"
    f = pd.Series(assign_folds(df, group_col="group"), index=df.index)
    assert (df.assign(fold=f).groupby("group")["fold"].nunique() == 1).all()
    assert f[df.record == "E00007"].item() == f[df.record == "A00399"].item()


def test_assign_folds_accepts_list_labels_and_reports_missing_columns():
    df = pd.DataFrame({"record": ["a", "b"], "source": ["CPSC", "CPSC"], "codes": [["1"], ["1"]]})
    assert sorted(assign_folds(df, n_folds=2).tolist()) == [0, 1]
    with pytest.raises(UserError, match="codes"):
        assign_folds(df.drop(columns="codes"))
    with pytest.raises(UserError, match="n_folds"):
        assign_folds(df, n_folds=1)
