"""Challenge 2020 metrics, the released threshold search, and Challenge output files (paper Sec. III-A)."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, fbeta_score

from ecgssl_nb.core import metrics
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.labels import CLASSES, MERGES, NORMAL_CLASS, weight_matrix
from ecgssl_nb.stages import finetune as ft

NSR = CLASSES.index(NORMAL_CLASS)


# The official scorer (evaluate_12ECG_score.py) reads '1', 'True', 'true', 'T', 't' as positive and
# anything else as 0; this reader calls anything that is neither a known true nor a known false an
# error, and so are scores that are not numbers (the official reads them as 0).
_BITS = {
    **dict.fromkeys(("1", "True", "true", "T", "t"), True),
    **dict.fromkeys(("0", "False", "false", "F", "f"), False),
}


def read_outputs_as_official_scorer(out_dir):
    """Every `*.csv` output file of a folder, sorted by file name, read as the official scorer does:
    (records, classes, binary (N, K) bool, scores (N, K) float64). A record is named by its file
    name; lines starting with '#' are skipped; codes are mapped to their representative (merged
    columns: binary = any, score = mean) in the column order of the first file."""
    files = sorted(p for p in Path(out_dir).iterdir() if p.suffix.lower() == ".csv" and not p.name.startswith("."))
    records, rows_b, rows_s, classes = [], [], [], None
    for path in files:
        lines = [line.strip() for line in path.read_text().splitlines()]
        cells = [[c.strip() for c in line.split(",")] for line in lines if line and not line.startswith("#")]
        if len(cells) < 3 or len({len(c) for c in cells[:3]}) != 1:
            raise UserError(f"{path}: expected 3 lines (classes, binary outputs, scores) of equal length")
        codes = [MERGES.get(c, c) for c in cells[0]]
        try:
            bits = np.array([_BITS[c] for c in cells[1]])
        except KeyError:
            raise UserError(f"{path}: binary outputs must be 0/1 (or true/false); got {cells[1]}") from None
        vals = np.array([float(c) for c in cells[2]])
        classes = classes or list(dict.fromkeys(codes))
        records.append(path.stem)
        rows_b.append([bits[[j for j, c in enumerate(codes) if c == x]].any() for x in classes])
        rows_s.append([vals[[j for j, c in enumerate(codes) if c == x]].mean() for x in classes])
    return records, classes, np.array(rows_b), np.array(rows_s)


def col(*values):
    """A one-class (N, 1) array."""
    return np.array(values, dtype=float)[:, None]


def random_case(n=80, k=24, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    lab = rng.random((n, k)) < rng.uniform(0.05, 0.4, size=k)
    sco = np.clip(lab * 0.3 + rng.random((n, k)) * 0.7, 0, 1)
    if ties:
        sco = np.round(sco, 1)  # about 11 distinct values per class: many ties
    return lab, sco


def challenge_sweep(lab, sco):
    """The Challenge's sweep read literally: thresholds = distinct scores plus one above the maximum, highest
    first; outputs are `score >= t`; step sums of TPR/TNR/PPV. Our transcription, used as the
    reference that scikit-learn must match."""
    thresholds = np.append(np.unique(sco), sco.max() + 1)[::-1]
    pred = sco[None, :] >= thresholds[:, None]  # (T, N)
    tp = (pred & lab).sum(1)
    fp = (pred & ~lab).sum(1)
    fn = lab.sum() - tp
    tn = (~lab).sum() - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr, tnr, ppv = tp / (tp + fn), tn / (tn + fp), tp / (tp + fp)
    roc = np.sum(0.5 * np.diff(tpr) * (tnr[1:] + tnr[:-1]))
    prc = np.sum(np.diff(tpr) * ppv[1:])
    return roc, prc


def challenge_loop(lab, out, w, normal):
    """The Challenge metric written as its double sum, record by record."""

    def score(o):
        a = np.zeros(w.shape)
        for i in range(lab.shape[0]):
            union = max(int(np.sum(lab[i] | o[i])), 1)
            for j in np.flatnonzero(lab[i]):
                for k in np.flatnonzero(o[i]):
                    a[j, k] += 1.0 / union
        return np.sum(w * a)

    inactive = np.zeros_like(lab)
    inactive[:, normal] = True
    den = score(lab) - score(inactive)
    return 0.0 if den == 0 else (score(out) - score(inactive)) / den


# ---------------------------------------------------------------- AUROC / AUPRC


def test_auroc_and_auprc_hand_computed_without_ties():
    # sorted: 0.9 P, 0.8 N, 0.4 P, 0.1 N
    # AUROC = pairs (pos > neg) / (2 * 2) = (2 + 1) / 4
    # AUPRC = 0.5 * P(t=0.9)=1 + 0 * P(0.8) + 0.5 * P(t=0.4)=2/3 = 5/6
    lab, sco = col(1, 0, 1, 0), col(0.9, 0.8, 0.4, 0.1)
    assert metrics.auroc(lab, sco)[0] == pytest.approx(3 / 4)
    assert metrics.auprc(lab, sco)[0] == pytest.approx(5 / 6)


def test_tied_scores_form_one_threshold():
    # All three records tie at 0.7: one threshold, recall 0 -> 1 at precision 2/3, so AUPRC = 2/3
    # (positives first would give 1, negatives first 0.583); AUROC = 0.5 (one diagonal segment).
    lab, sco = col(1, 1, 0), col(0.7, 0.7, 0.7)
    assert metrics.auprc(lab, sco)[0] == pytest.approx(2 / 3)
    assert metrics.auroc(lab, sco)[0] == pytest.approx(0.5)
    # A tie between one positive and one negative counts half a pair: (2 + 0.5 + 1) / 4.
    lab, sco = col(1, 0, 1, 0), col(0.9, 0.5, 0.5, 0.1)
    assert metrics.auroc(lab, sco)[0] == pytest.approx(3.5 / 4)
    # t=0.9: R 1/2, P 1; t=0.5: R 1, P 2/3 -> 1/2 + 1/2 * 2/3
    assert metrics.auprc(lab, sco)[0] == pytest.approx(5 / 6)


@pytest.mark.parametrize("ties", [False, True])
def test_per_class_areas_equal_sklearns(ties):
    from sklearn.metrics import average_precision_score, roc_auc_score

    lab, sco = random_case(n=60, k=24, seed=5, ties=ties)
    _, roc = metrics.auroc(lab, sco)
    _, prc = metrics.auprc(lab, sco)
    for k in range(24):
        if 0 < lab[:, k].sum() < len(lab):
            assert roc[k] == pytest.approx(roc_auc_score(lab[:, k], sco[:, k]), rel=1e-12)
        if lab[:, k].any():
            assert prc[k] == pytest.approx(average_precision_score(lab[:, k], sco[:, k]), rel=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_per_class_areas_equal_the_challenge_sweep(ties):
    lab, sco = random_case(n=60, k=24, seed=3, ties=ties)
    _, roc = metrics.auroc(lab, sco)
    _, prc = metrics.auprc(lab, sco)
    for k in range(24):
        ref_roc, ref_prc = challenge_sweep(lab[:, k], sco[:, k])
        assert roc[k] == pytest.approx(ref_roc, rel=1e-12, abs=1e-15)
        assert prc[k] == pytest.approx(ref_prc, rel=1e-12, abs=1e-15)


def test_class_without_positives_is_nan_and_skipped_in_the_macro_mean():
    lab = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    sco = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.8], [0.7, 0.1, 0.2], [0.3, 0.4, 0.9]])
    roc_macro, roc = metrics.auroc(lab, sco)
    prc_macro, prc = metrics.auprc(lab, sco)
    assert np.isnan(roc[1]) and np.isnan(prc[1])
    # class 0 separates perfectly (1.0); class 2: positives 0.6, 0.8, 0.9 vs negative 0.2 -> 1.0
    assert roc_macro == pytest.approx(np.mean([roc[0], roc[2]])) == pytest.approx(1.0)
    assert prc_macro == pytest.approx(np.mean([prc[0], prc[2]]))


def test_class_without_negatives_has_nan_auroc_and_unit_auprc():
    # TNR is 0/0 at every threshold; PPV is 1 at every threshold (the Challenge's arithmetic).
    import warnings

    lab, sco = col(1, 1, 1), col(0.2, 0.5, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # handled as the Challenge does, not via sklearn's warning
        assert np.isnan(metrics.auroc(lab, sco)[1][0])
        assert metrics.auprc(lab, sco)[1][0] == 1.0
    ref_roc, ref_prc = challenge_sweep(lab[:, 0].astype(bool), sco[:, 0])
    assert np.isnan(ref_roc) and ref_prc == 1.0


def test_macro_is_nan_without_warning_when_no_class_has_positives():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        macro, per = metrics.auprc(np.zeros((3, 2)), np.ones((3, 2)) * 0.5)
    assert np.isnan(macro) and np.isnan(per).all()


def test_macro_helpers_return_the_macro_of_the_tuple():
    lab, sco = random_case(n=40, seed=1)
    assert metrics.macro_auroc(lab, sco) == metrics.auroc(lab, sco)[0]
    assert metrics.macro_auprc(lab, sco) == metrics.auprc(lab, sco)[0]


# ---------------------------------------------------------------- binary metrics

LAB3 = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
OUT3 = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0]])


def test_accuracy_counts_records_whose_whole_vector_matches():
    lab = np.array([[1, 0], [0, 1], [1, 1]])
    out = np.array([[1, 0], [0, 0], [1, 1]])
    assert metrics.accuracy(lab, out) == pytest.approx(2 / 3)
    lab, sco = random_case(n=50, seed=2)
    out = sco >= 0.5
    assert metrics.accuracy(lab, out) == pytest.approx(accuracy_score(lab, out))


def test_f_measure_hand_computed_with_an_undefined_class():
    # class 0: TP 1 (r0), FN 1 (r1), FP 0 -> 2/3; class 1: TP 2, FP 1 (r0) -> 4/5;
    # class 2: no positives, no outputs -> NaN, skipped: macro = (2/3 + 4/5) / 2 = 11/15
    macro, per = metrics.f_measure(LAB3, OUT3)
    np.testing.assert_allclose(per[:2], [2 / 3, 4 / 5])
    assert np.isnan(per[2])
    assert macro == pytest.approx(11 / 15)


def test_f_measure_equals_sklearn_f1_with_nan_for_empty_classes():
    lab, sco = random_case(n=50, seed=4)
    lab[:, 5] = False
    out = sco >= 0.45
    out[:, 5] = False
    _, per = metrics.f_measure(lab, out)
    ref = f1_score(lab, out, average=None, zero_division=np.nan)
    np.testing.assert_allclose(per, ref, rtol=1e-12)
    assert np.isnan(per[5])


def test_fbeta_gbeta_hand_computed_with_per_record_weights():
    # weights 1/max(n_i, 1): r0 1, r1 1/2 (two labels), r2 1, r3 1 (no label: max(0, 1))
    lab = np.vstack([LAB3, [0, 0, 0]])
    out = np.vstack([OUT3, [0, 0, 1]])
    # class 0: TP 1, FN 1/2, FP 0 -> F2 = 5/(5 + 4 * 1/2) = 5/7, G2 = 1/(1 + 2 * 1/2) = 1/2
    # class 1: TP 1/2 + 1, FP 1 -> F2 = 7.5/(7.5 + 1) = 15/17, G2 = 1.5/2.5 = 3/5
    # class 2: FP 1 (r3) -> F2 = 0, G2 = 0
    f2, g2 = metrics.fbeta_gbeta(lab, out, beta=2)
    assert f2 == pytest.approx((5 / 7 + 15 / 17 + 0) / 3)
    assert g2 == pytest.approx((1 / 2 + 3 / 5 + 0) / 3)


def test_fbeta_equals_sklearn_fbeta_with_record_weights():
    lab, sco = random_case(n=60, seed=5)
    out = sco >= 0.4
    w = 1 / np.maximum(lab.sum(1), 1)
    ref = fbeta_score(lab, out, beta=2, average=None, sample_weight=w, zero_division=np.nan)
    f2, _ = metrics.fbeta_gbeta(lab, out)
    assert f2 == pytest.approx(np.nanmean(ref), rel=1e-12)


def test_challenge_metric_hand_computed_on_three_classes():
    # classes a, n (normal), b; W = [[1, .5, 0], [.5, 1, .25], [0, .25, 1]]
    # s(o):      r0 {a}|{a,n}: (1 + .5)/2 = .75; r1 {a,b}|{b}: (0 + 1)/2 = .5; r2 {n}|{n}: 1 -> 2.25
    # s(labels): 1 + (1 + 0 + 0 + 1)/2 + 1 = 3
    # s(NSR):    r0 .5/2 = .25; r1 (.5 + .25)/3 = .25; r2 1 -> 1.5
    # ChM = (2.25 - 1.5)/(3 - 1.5) = 0.5
    w = np.array([[1, 0.5, 0], [0.5, 1, 0.25], [0, 0.25, 1]])
    lab = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 0]])
    out = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0]])
    chm = metrics.challenge_metric(lab, out, weights=w, classes=["a", "n", "b"], normal_class="n")
    assert chm == pytest.approx(0.5)
    assert challenge_loop(lab.astype(bool), out.astype(bool), w, 1) == pytest.approx(0.5)


def test_challenge_metric_is_one_for_perfect_and_zero_for_nsr_only_outputs():
    lab, _ = random_case(n=60, seed=6)
    nsr_only = np.zeros_like(lab)
    nsr_only[:, NSR] = True
    assert metrics.challenge_metric(lab, lab) == pytest.approx(1.0)
    assert metrics.challenge_metric(lab, nsr_only) == pytest.approx(0.0, abs=1e-12)


def test_challenge_metric_matches_the_double_sum_on_random_outputs():
    lab, sco = random_case(n=40, seed=7)
    out = sco >= 0.35
    out[3] = False  # a record with no output at all
    ref = challenge_loop(lab, out, weight_matrix(), NSR)
    assert metrics.challenge_metric(lab, out) == pytest.approx(ref, rel=1e-12)


def test_challenge_metric_is_zero_when_labels_score_like_nsr_only():
    # Every record is NSR only: s(labels) == s(NSR only), so the official code returns 0.0.
    lab = np.zeros((4, 24), dtype=bool)
    lab[:, NSR] = True
    out = np.ones_like(lab)
    assert metrics.challenge_metric(lab, out) == 0.0


def test_every_metric_is_invariant_to_record_order():
    lab, sco = random_case(n=70, seed=8)
    perm = np.random.default_rng(0).permutation(70)
    thr = np.full(24, 0.3)
    a, b = metrics.evaluate(lab, sco, thr), metrics.evaluate(lab[perm], sco[perm], thr)
    for key in metrics.METRIC_KEYS:
        assert a[key] == pytest.approx(b[key], rel=1e-12)
    for key in ("auroc", "auprc", "f1"):
        np.testing.assert_allclose(a["per_class"][key], b["per_class"][key], rtol=1e-12)
    np.testing.assert_array_equal(metrics.threshold_search(lab, sco), metrics.threshold_search(lab[perm], sco[perm]))


# ---------------------------------------------------------------- evaluate, thresholds


def test_evaluate_binarises_with_greater_or_equal_and_returns_all_keys():
    lab, sco = random_case(n=50, seed=9)
    sco[0, 0] = 0.3  # exactly at the threshold: counts as positive
    res = metrics.evaluate(lab, sco, 0.3)
    out = sco >= 0.3
    assert out[0, 0]
    assert set(res) == set(metrics.METRIC_KEYS) | {"per_class"}
    assert res["accuracy"] == metrics.accuracy(lab, out)
    assert res["f1"] == metrics.f_measure(lab, out)[0]
    assert (res["f2"], res["g2"]) == metrics.fbeta_gbeta(lab, out)
    assert res["challenge"] == metrics.challenge_metric(lab, out)
    assert res["auroc"] == metrics.auroc(lab, sco)[0]
    assert all(res["per_class"][k].shape == (24,) for k in ("auroc", "auprc", "f1"))
    assert all(0 <= res[k] <= 1 for k in metrics.METRIC_KEYS)


def two_class_case(neg_score):
    """Classes x and n (normal), identity weights. n is perfectly separated at any grid value;
    x positives score 0.35 and x negatives `neg_score`."""
    lab = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    sco = np.array([[0.35, 0.05], [0.35, 0.05], [neg_score, 0.9], [neg_score, 0.9], [0.05, 0.9]])
    return lab, sco, dict(weights=np.eye(2), classes=["x", "n"], normal_class="n")


def test_threshold_search_finds_the_separating_threshold():
    # x: 0.1 and 0.2 also output x for the negatives at 0.25; 0.4 and 0.5 miss the positives;
    # only 0.3 is perfect. n: every grid value gives the same outputs -> the first, 0.1.
    lab, sco, space = two_class_case(0.25)
    np.testing.assert_array_equal(metrics.threshold_search(lab, sco, **space), [0.3, 0.1])


def test_threshold_search_keeps_the_first_grid_value_on_ties():
    # negatives at 0.15: 0.2 and 0.3 are both perfect for x (0.1 is not) -> 0.2.
    lab, sco, space = two_class_case(0.15)
    np.testing.assert_array_equal(metrics.threshold_search(lab, sco, **space), [0.2, 0.1])
    out = metrics.binarize(sco, [0.2, 0.1])
    assert metrics.challenge_metric(lab, out, **space) == 1.0


def test_threshold_search_equals_a_brute_force_over_classes_and_grid():
    lab, sco = random_case(n=50, seed=10)
    grid = (0.1, 0.2, 0.3, 0.4, 0.5)
    expected = []
    for k in range(24):
        values = []
        for g in grid:
            thr = np.full(24, 0.1)
            thr[k] = g
            values.append(metrics.challenge_metric(lab, sco >= thr))
        expected.append(grid[int(np.argmax(values))])
    np.testing.assert_array_equal(metrics.threshold_search(lab, sco, grid=grid, default=0.1), expected)


def test_the_released_float16_grid_is_within_1e_4_of_the_default_grid():
    released = np.linspace(0.1, 0.5, 5, dtype=np.float16).astype(np.float64)  # B15
    assert released[0] != 0.1 and np.abs(released - metrics.DEFAULT_GRID).max() <= 1e-4


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: metrics.auroc(np.zeros((3, 2)), np.zeros((3, 3))), "scores has shape"),
        (lambda: metrics.auroc(np.full((3, 2), 0.5), np.zeros((3, 2))), "labels must be binary"),
        (lambda: metrics.auprc(np.zeros((3, 2)), np.full((3, 2), np.nan)), "scores must be finite"),
        (lambda: metrics.accuracy(np.zeros(3), np.zeros(3)), "labels must be a 2-D array"),
        (lambda: metrics.f_measure(np.zeros((3, 2)), np.full((3, 2), 2)), "outputs must be binary"),
        (lambda: metrics.f_measure(np.zeros((3, 2)), np.zeros((2, 2))), "outputs has shape"),
        (lambda: metrics.accuracy(np.zeros((0, 2)), np.zeros((0, 2))), "labels is empty"),
        (lambda: metrics.challenge_metric(np.zeros((3, 2)), np.zeros((3, 2))), "classes must be given"),
        (
            lambda: metrics.challenge_metric(np.zeros((3, 2)), np.zeros((3, 2)), np.eye(2), ["a", "b"]),
            "normal_class",
        ),
        (lambda: metrics.challenge_metric(np.zeros((3, 24)), np.zeros((3, 24)), np.eye(3)), "weights must have shape"),
        (lambda: metrics.evaluate(np.zeros((3, 24)), np.zeros((3, 24)), [0.1, 0.2]), "thresholds must be"),
        (lambda: metrics.fbeta_gbeta(np.zeros((3, 2)), np.zeros((3, 2)), beta=0), "beta must be"),
        (lambda: metrics.threshold_search(np.zeros((3, 24)), np.zeros((3, 24)), grid=()), "grid must be"),
    ],
)
def test_bad_inputs_raise_an_error_that_names_the_argument(call, words):
    with pytest.raises(metrics.MetricInputError, match=words):
        call()


def test_input_error_is_both_a_user_error_and_a_value_error():
    assert issubclass(metrics.MetricInputError, UserError)
    assert issubclass(metrics.MetricInputError, ValueError)


def test_bool_and_float_labels_give_the_same_results():
    lab, sco = random_case(n=30, seed=11)
    a = metrics.evaluate(lab, sco, 0.3)
    b = metrics.evaluate(lab.astype(np.float32), sco.astype(np.float32).astype(np.float64), 0.3)
    assert all(a[k] == b[k] for k in metrics.METRIC_KEYS)


# ---------------------------------------------------------------- Challenge files


def test_output_files_have_the_official_four_line_layout(tmp_path):
    sco = np.array([[0.25, 0.5], [0.125, 1.0]])
    out = sco >= 0.5
    paths = ft.write_challenge_outputs(tmp_path, ["A1", "A2"], sco, out, classes=["59118001", "426783006"])
    assert [p.name for p in paths] == ["A1.csv", "A2.csv"]
    # the merged code 59118001 (RBBB) is written as its representative 713427006 (CRBBB)
    assert paths[0].read_text() == "#A1\n713427006,426783006\n0,1\n0.25,0.5\n"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_output_files_round_trip_exactly(tmp_path):
    lab, sco = random_case(n=25, seed=12)
    sco = sco.astype(np.float32)  # what a model gives; must survive the text round trip
    out = metrics.binarize(sco, 0.3)
    names = [f"R{i:03d}" for i in range(25)]
    ft.write_challenge_outputs(tmp_path, names, sco, out)
    records, classes, binary, scores = read_outputs_as_official_scorer(tmp_path)
    assert records == names and classes == list(CLASSES)
    np.testing.assert_array_equal(binary, out)
    np.testing.assert_array_equal(scores, sco.astype(np.float64))


def test_written_output_files_read_as_the_official_scorer_give_the_array_results(tmp_path):
    lab, sco = random_case(n=40, seed=13)
    lab[0] = False  # a record with no scored label
    thr = metrics.threshold_search(lab, sco)
    names = [f"Q{i:04d}" for i in range(40)]
    ft.write_challenge_outputs(tmp_path, names, sco, metrics.binarize(sco, thr))
    records, classes, binary, scores = read_outputs_as_official_scorer(tmp_path)
    assert records == names and classes == list(CLASSES)
    from_files = metrics.evaluate_outputs(lab, scores, binary)
    from_arrays = metrics.evaluate(lab, sco, thr)
    for key in metrics.METRIC_KEYS:
        assert from_files[key] == from_arrays[key]


def test_reading_merges_equivalent_columns_like_the_official_scorer(tmp_path):
    # 713427006 and 59118001 are one class: binary = any, score = mean
    (tmp_path / "X.csv").write_text("#X\n713427006,59118001,426783006\n0,1,0\n0.2,0.6,0.1\n")
    records, classes, binary, scores = read_outputs_as_official_scorer(tmp_path)
    assert records == ["X"] and classes == ["713427006", "426783006"]
    np.testing.assert_array_equal(binary, [[True, False]])
    np.testing.assert_allclose(scores, [[0.4, 0.1]])


def test_reading_accepts_the_official_true_false_spellings(tmp_path):
    (tmp_path / "Y.csv").write_text("#Y\n713427006,426783006\nTrue,f\n0.5,0.25\n")
    _, _, binary, _ = read_outputs_as_official_scorer(tmp_path)
    np.testing.assert_array_equal(binary, [[True, False]])
    (tmp_path / "Z.csv").write_text("#Z\n713427006,426783006\nyes,0\n0.5,0.25\n")
    with pytest.raises(UserError, match="Z.csv: binary outputs"):
        read_outputs_as_official_scorer(tmp_path)


def test_unreadable_output_files_raise_a_user_error_naming_the_file(tmp_path):
    (tmp_path / "bad.csv").write_text("#bad\n713427006,426783006\n0,1\n")
    with pytest.raises(UserError, match="bad.csv"):
        read_outputs_as_official_scorer(tmp_path)


def test_record_names_must_be_unique_file_names(tmp_path):
    sco = np.zeros((2, 24))
    with pytest.raises(metrics.MetricInputError, match="duplicate"):
        ft.write_challenge_outputs(tmp_path, ["A", "A"], sco, sco.astype(bool))
    with pytest.raises(metrics.MetricInputError, match="file name"):
        ft.write_challenge_outputs(tmp_path, ["A", "x/y"], sco, sco.astype(bool))
