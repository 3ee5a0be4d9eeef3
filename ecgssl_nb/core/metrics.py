"""The PhysioNet/CinC Challenge 2020 scores, the paper's threshold search, and Challenge files.

Arrays in, numbers out (scikit-learn style). `labels` is an (N, K) array of {0, 1} (or bool),
`scores` an (N, K) array of real scores (probabilities here), `outputs` an (N, K) binary array;
column k is class `classes[k]`, by default `labels.CLASSES` (K = 24). Other K work with explicit
`classes` and `weights` (the Challenge metric needs them). Every result is a fraction in 0..1.

Definitions (the paper's metrics, paper Sec. III-A, read off the final `evaluate_12ECG_score.py` of
physionetchallenges/evaluation-2020, the copy the authors ship; our own code):

* AUROC_k, AUPRC_k. The Challenge sweeps every distinct score as a threshold
  (`score >= t`), highest first, and sums ½ (TPR_{j+1} - TPR_j)(TNR_{j+1} + TNR_j) and
  (TPR_{j+1} - TPR_j) PPV_{j+1}. The first is the trapezoidal area under the ROC curve, because
  ∫ TNR dTPR = 1 - ∫ FPR dTPR, i.e. `sklearn.metrics.roc_auc_score`. The second is exactly
  `sklearn.metrics.average_precision_score`: sklearn also groups tied scores into one threshold
  (`_binary_clf_curve` keeps the last index of each distinct score) and sums
  (R_n - R_{n-1}) P_n over them; thresholds that add no recall add nothing to either sum. Both
  are computed here over that one sweep (`_sweep`, numpy: the core imports no scikit-learn), and
  `tests/test_metrics.py` checks them against scikit-learn and a transcription of the
  Challenge's sweep on tied and untied data. The Challenge's undefined cases are kept: a class
  with no positives gives NaN for both; a class with no negatives gives NaN for AUROC (TNR is
  0/0) and 1 for AUPRC (every PPV is 1). Macro = `nanmean` over classes (NaN classes skipped).
* Accuracy: the fraction of records whose whole K-vector of outputs equals the labels
  (scikit-learn's subset accuracy).
* F1_k = 2TP / (2TP + FP + FN) on plain counts; NaN when 2TP + FP + FN = 0 (a class with no
  positives and no positive outputs), skipped by the macro `nanmean`, as the Challenge does.
* F_beta_k = (1+β²)TP / ((1+β²)TP + FP + β²FN), G_beta_k = TP / (TP + FP + β FN), counts where
  record i adds 1/max(n_i, 1), n_i its number of true labels; NaN when the denominator is 0.
* Challenge metric: A_jk = Σ_i l_ij o_ik / max(|l_i ∪ o_i|, 1), s(o) = Σ_jk W_jk A_jk,
  ChM = (s(o) - s(NSR only)) / (s(labels) - s(NSR only)); 0.0 when the denominator is 0 (the
  final 2020 code and the authors' copy return 0.0; some earlier revisions returned NaN). Unlike
  an early revision of the scorer, labels and outputs are used as given: NSR is neither forced
  on for empty rows nor switched off beside other classes.

Binarisation is `scores >= threshold`, per class, as in the released threshold search (book: Deviations, B15).

Bad input raises `MetricInputError`, which is both an `errors.UserError` (the CLI prints it on
one line) and a `ValueError` (what scikit-learn raises), with the argument named.

Challenge output files (the official 2020 format, `python-classifier-2020` driver), one per
record, `<record>.csv`::

    #<record>
    270492004,164889003,...      class codes (merged classes: the representative code)
    0,1,...                      binary outputs
    0.0123,0.8765,...            scores

The official scorer checks a run end to end, with the run's labelled `.hea` records as LABELS_DIR::

    python evaluate_12ECG_score.py LABELS_DIR OUTPUTS_DIR scores.csv

(`evaluate_12ECG_score.py` and `weights.csv` from physionetchallenges/evaluation-2020, run in a
folder that holds weights.csv; it uses `np.bool`, so it needs numpy < 1.24, book: Deviations, B23.)
`tests/test_metrics.py` reads written files back as that scorer does and checks the scores agree.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .errors import UserError
from .labels import CLASSES, MERGES, NORMAL_CLASS, weight_matrix

METRIC_KEYS = ("auroc", "auprc", "accuracy", "f1", "f2", "g2", "challenge")
HEADLINE_METRICS = ("auroc", "auprc", "challenge")  # the two threshold-free scores and the Challenge metric
DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5)  # the threshold search's grid (FinetuneConfig.threshold_grid)
DEFAULT_THRESHOLD = 0.1  # every other class's threshold while one class is searched (FinetuneConfig.threshold_default)
# The released code builds its grid with np.linspace(0.1, 0.5, 5, dtype=float16) (B15): 0.0999755859375, ...,
# 0.5; its binarisation differs from DEFAULT_GRID only for scores in the gaps (at most 1e-4 wide).


class MetricInputError(UserError, ValueError):
    """An argument of a metric has the wrong shape, type or values (the message names it)."""


# ------------------------------------------------------------------------------------------
# input checks


def _binary(x, name: str) -> np.ndarray:
    """(N, K) bool from bool or numeric {0, 1}; raises MetricInputError naming `name`."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D array (records, classes); got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise MetricInputError(f"{name} is empty (shape {a.shape}); need at least one record and one class")
    if a.dtype == bool:
        return a
    if not (np.issubdtype(a.dtype, np.number)):
        raise MetricInputError(f"{name} must be numeric or bool; got dtype {a.dtype}")
    bad = ~((a == 0) | (a == 1))  # NaN is caught here too
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise MetricInputError(
            f"{name} must be binary (0 or 1); found {a[i, k]!r} at record {i}, class {k} ({int(bad.sum())} such values)"
        )
    return a.astype(bool)


def _real(x, name: str, shape: tuple) -> np.ndarray:
    """(N, K) float64 of finite values with the given shape."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D array (records, classes); got shape {a.shape}")
    if a.shape != shape:
        raise MetricInputError(f"{name} has shape {a.shape} but labels have shape {shape}")
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise MetricInputError(f"{name} must be real numbers; got dtype {a.dtype}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise MetricInputError(
            f"{name} must be finite; found {a[i, k]} at record {i}, class {k} ({int(bad.sum())} such values)"
        )
    return a


def _pair(labels, outputs, name: str = "outputs") -> tuple[np.ndarray, np.ndarray]:
    lab = _binary(labels, "labels")
    out = np.asarray(outputs)
    if out.ndim == 2 and out.shape != lab.shape:
        raise MetricInputError(f"{name} has shape {out.shape} but labels have shape {lab.shape}")
    return lab, _binary(out, name)


def _label_space(k: int, weights, classes, normal_class: str) -> tuple[np.ndarray, list[str], int]:
    """The weight matrix, class codes and normal-class index for K = k classes."""
    if classes is None:
        if k != len(CLASSES):
            raise MetricInputError(
                f"classes must be given for {k} classes (the default label space has {len(CLASSES)})"
            )
        classes = list(CLASSES)
    classes = [str(c) for c in classes]
    if len(classes) != k:
        raise MetricInputError(f"classes has {len(classes)} codes but the arrays have {k} classes")
    if len(set(classes)) != k:
        raise MetricInputError("classes contains duplicate codes")
    if weights is None:
        if classes != list(CLASSES):
            raise MetricInputError("weights must be given when classes differ from labels.CLASSES")
        weights = weight_matrix()
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k, k):
        raise MetricInputError(f"weights must have shape ({k}, {k}); got {w.shape}")
    if not np.isfinite(w).all():
        raise MetricInputError("weights contains NaN or infinite values")
    if normal_class not in classes:
        raise MetricInputError(f"normal_class {normal_class!r} is not one of classes")
    return w, classes, classes.index(normal_class)


def _nanmean(x: np.ndarray) -> float:
    """Mean over non-NaN entries; NaN (without a warning) when all are NaN."""
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


# ------------------------------------------------------------------------------------------
# threshold-free metrics


def _sweep(lab: np.ndarray, sco: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) at each distinct threshold of one class, highest first:
    tied scores form one threshold (the Challenge's sweep, and scikit-learn's)."""
    order = np.argsort(-sco, kind="mergesort")
    s, y = sco[order], lab[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last record of each tie group
    tps = np.cumsum(y)[last]
    return tps, (last + 1) - tps


def auroc(labels: ArrayLike, scores: ArrayLike) -> tuple[float, np.ndarray]:
    """Challenge AUROC: (macro over classes with positives and negatives, per class (K,)).

    Per class the trapezoid area under (FPR, TPR) over the distinct thresholds, equal to
    `sklearn.metrics.roc_auc_score`; NaN for a class with no positives or no negatives (the
    Challenge's 0/0), skipped by the macro mean."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    per = np.full(lab.shape[1], np.nan)
    for k in range(lab.shape[1]):
        n_pos = int(lab[:, k].sum())
        if 0 < n_pos < lab.shape[0]:
            tps, fps = _sweep(lab[:, k], sco[:, k])
            tpr, fpr = np.r_[0.0, tps / n_pos], np.r_[0.0, fps / (lab.shape[0] - n_pos)]
            per[k] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return _nanmean(per), per


def auprc(labels: ArrayLike, scores: ArrayLike) -> tuple[float, np.ndarray]:
    """Challenge AUPRC: (macro over classes with positives, per class (K,)).

    Per class the Challenge's step sum Σ (TPR_{j+1} - TPR_j) PPV_{j+1} over distinct thresholds,
    equal to `sklearn.metrics.average_precision_score`; NaN for a class with no positives."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    per = np.full(lab.shape[1], np.nan)
    for k in range(lab.shape[1]):
        if lab[:, k].any():
            tps, fps = _sweep(lab[:, k], sco[:, k])
            recall = np.r_[0.0, tps / tps[-1]]
            per[k] = float(np.sum(np.diff(recall) * (tps / (tps + fps))))
    return _nanmean(per), per


def macro_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Macro Challenge AUROC only (see `auroc`)."""
    return auroc(labels, scores)[0]


def macro_auprc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Macro Challenge AUPRC only (see `auprc`)."""
    return auprc(labels, scores)[0]


# ------------------------------------------------------------------------------------------
# binary metrics


def binarize(scores: ArrayLike, thresholds: ArrayLike) -> np.ndarray:
    """(N, K) bool outputs `scores >= thresholds` (a scalar or one threshold per class)."""
    sco = np.asarray(scores)
    if sco.ndim != 2:
        raise MetricInputError(f"scores must be a 2-D array (records, classes); got shape {sco.shape}")
    sco = _real(sco, "scores", sco.shape)
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim == 0:
        thr = np.full(sco.shape[1], float(thr))
    if thr.shape != (sco.shape[1],):
        raise MetricInputError(f"thresholds must be a scalar or have shape ({sco.shape[1]},); got {thr.shape}")
    if not np.isfinite(thr).all():
        raise MetricInputError("thresholds must be finite")
    return sco >= thr[None, :]


def accuracy(labels: ArrayLike, outputs: ArrayLike) -> float:
    """Fraction of records whose whole binary output vector equals the label vector."""
    lab, out = _pair(labels, outputs)
    return float(np.mean(np.all(lab == out, axis=1)))


def _counts(lab: np.ndarray, out: np.ndarray, w: np.ndarray | None = None):
    """Per-class TP, FP, FN, each record weighted by w (default 1)."""
    w = np.ones(lab.shape[0]) if w is None else w
    tp = w @ (lab & out)
    fp = w @ (~lab & out)
    fn = w @ (lab & ~out)
    return tp, fp, fn


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def f_measure(labels: ArrayLike, outputs: ArrayLike) -> tuple[float, np.ndarray]:
    """Challenge F1: (macro nanmean, per class 2TP/(2TP+FP+FN), NaN where that is 0/0)."""
    lab, out = _pair(labels, outputs)
    tp, fp, fn = _counts(lab, out)
    per = _ratio(2 * tp, 2 * tp + fp + fn)
    return _nanmean(per), per


def fbeta_gbeta(labels: ArrayLike, outputs: ArrayLike, beta: float = 2) -> tuple[float, float]:
    """Challenge (macro F_beta, macro G_beta); each record counts 1/max(n_i, 1), n_i = its true labels."""
    lab, out = _pair(labels, outputs)
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise MetricInputError(f"beta must be a positive number; got {beta}")
    w = 1.0 / np.maximum(lab.sum(axis=1), 1)
    tp, fp, fn = _counts(lab, out, w)
    f = _ratio((1 + beta**2) * tp, (1 + beta**2) * tp + fp + beta**2 * fn)
    g = _ratio(tp, tp + fp + beta * fn)
    return _nanmean(f), _nanmean(g)


def _reward(lab: np.ndarray, out: np.ndarray, lw: np.ndarray) -> float:
    """s(o) = Σ_i (l_i^T W o_i) / max(|l_i ∪ o_i|, 1), with lw = L @ W precomputed."""
    num = (lw * out).sum(axis=1)
    union = np.maximum((lab | out).sum(axis=1), 1)
    return float(np.sum(num / union))


def challenge_metric(
    labels: ArrayLike,
    outputs: ArrayLike,
    weights: ArrayLike | None = None,
    classes: Sequence[str] | None = None,
    normal_class: str = NORMAL_CLASS,
) -> float:
    """The Challenge 2020 metric: 1 for the labels themselves, 0 for NSR-only outputs
    (0.0 when those two score the same). `weights` (K, K) defaults to `labels.weight_matrix()`."""
    lab, out = _pair(labels, outputs)
    w, _, normal = _label_space(lab.shape[1], weights, classes, normal_class)
    return _challenge(lab, out, w, normal)


def _challenge(lab: np.ndarray, out: np.ndarray, w: np.ndarray, normal: int) -> float:
    lw = lab.astype(np.float64) @ w  # (N, K): row i is Σ_j l_ij W_j.
    inactive = np.zeros_like(lab)
    inactive[:, normal] = True
    s_obs, s_true, s_inact = _reward(lab, out, lw), _reward(lab, lab, lw), _reward(lab, inactive, lw)
    if s_true == s_inact:
        return 0.0
    return float((s_obs - s_inact) / (s_true - s_inact))


def evaluate_outputs(
    labels: ArrayLike,
    scores: ArrayLike,
    outputs: ArrayLike,
    weights: ArrayLike | None = None,
    classes: Sequence[str] | None = None,
    normal_class: str = NORMAL_CLASS,
) -> dict:
    """All seven scores from scores (threshold-free ones) and binary outputs (the others).

    Returns {auroc, auprc, accuracy, f1, f2, g2, challenge} as floats in 0..1 and
    `per_class` = {auroc, auprc, f1} arrays (K,)."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    lab, out = _pair(lab, outputs)
    w, _, normal = _label_space(lab.shape[1], weights, classes, normal_class)
    roc, roc_k = auroc(lab, sco)
    prc, prc_k = auprc(lab, sco)
    f1, f1_k = f_measure(lab, out)
    f2, g2 = fbeta_gbeta(lab, out, beta=2)
    return {
        "auroc": roc,
        "auprc": prc,
        "accuracy": accuracy(lab, out),
        "f1": f1,
        "f2": f2,
        "g2": g2,
        "challenge": _challenge(lab, out, w, normal),
        "per_class": {"auroc": roc_k, "auprc": prc_k, "f1": f1_k},
    }


def evaluate(
    labels: ArrayLike,
    scores: ArrayLike,
    thresholds: ArrayLike,
    weights: ArrayLike | None = None,
    classes: Sequence[str] | None = None,
    normal_class: str = NORMAL_CLASS,
) -> dict:
    """`evaluate_outputs` with outputs = scores >= thresholds (scalar or (K,))."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    return evaluate_outputs(lab, sco, binarize(sco, thresholds), weights, classes, normal_class)


# ------------------------------------------------------------------------------------------
# threshold search (book: Deviations, B15)


def threshold_search(
    labels: ArrayLike,
    scores: ArrayLike,
    grid: Sequence[float] = DEFAULT_GRID,
    default: float = DEFAULT_THRESHOLD,
    weights: ArrayLike | None = None,
    classes: Sequence[str] | None = None,
    normal_class: str = NORMAL_CLASS,
) -> np.ndarray:
    """Per-class thresholds (K,) as in the released code (book: Deviations, B15 "faithful").

    For each class k independently: every other class is binarised at `default`, class k tries
    each value of `grid` in order, and the value with the highest Challenge metric is kept (the
    first one on ties). Not a joint search: the chosen thresholds are only combined afterwards."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    grid_a = np.asarray(grid, dtype=np.float64).reshape(-1)
    if grid_a.size == 0 or not np.isfinite(grid_a).all():
        raise MetricInputError(f"grid must be a non-empty sequence of finite numbers; got {grid!r}")
    default = float(default)
    if not np.isfinite(default):
        raise MetricInputError(f"default must be a finite number; got {default}")
    w, _, normal = _label_space(lab.shape[1], weights, classes, normal_class)

    n, k_all = lab.shape
    lw = lab.astype(np.float64) @ w  # (N, K)
    inactive = np.zeros_like(lab)
    inactive[:, normal] = True
    s_true, s_inact = _reward(lab, lab, lw), _reward(lab, inactive, lw)
    base = sco >= default  # (N, K)
    num_base = (lw * base).sum(axis=1)  # (N,)
    cand = sco[None, :, :] >= grid_a[:, None, None]  # (G, N, K)
    out = np.empty(k_all)
    for k in range(k_all):
        # Everything but column k is the default binarisation; column k varies over the grid.
        num_rest = num_base - lw[:, k] * base[:, k]  # (N,)
        union_rest = (lab | base).sum(axis=1) - (lab[:, k] | base[:, k])  # (N,)
        ok = cand[:, :, k]  # (G, N)
        num = num_rest[None, :] + lw[None, :, k] * ok
        union = np.maximum(union_rest[None, :] + (lab[None, :, k] | ok), 1)
        s = np.sum(num / union, axis=1)  # (G,)
        chm = np.zeros_like(s) if s_true == s_inact else (s - s_inact) / (s_true - s_inact)
        out[k] = grid_a[int(np.argmax(chm))]  # argmax: first maximum
    return out


# ------------------------------------------------------------------------------------------
# Challenge files


def _check_records(records, n: int | None = None) -> list[str]:
    recs = [str(r) for r in records]
    if n is not None and len(recs) != n:
        raise MetricInputError(f"records has {len(recs)} names but the arrays have {n} records")
    for r in recs:
        if not r or r != r.strip() or any(c in r for c in "/\\,\n\r") or r.startswith("."):
            raise MetricInputError(f"records: {r!r} is not usable as a file name")
    if len(set(recs)) != len(recs):
        dup = sorted({r for r in recs if recs.count(r) > 1})
        raise MetricInputError(f"records contains duplicate names: {dup[:5]}")
    return recs


def _fmt_score(x: float) -> str:
    return repr(float(x))  # shortest text that reads back to the same float64


def challenge_outputs(
    records: Sequence[str], scores: ArrayLike, binary: ArrayLike, classes: Sequence[str] = CLASSES
) -> dict[str, str]:
    """The official output file of each record, {record: text}: `#record`, the class codes,
    the binary outputs, the scores (PhysioNet/CinC 2020's format). Merged classes are written as
    their representative code (labels.MERGES)."""
    sco = np.asarray(scores)
    if sco.ndim != 2:
        raise MetricInputError(f"scores must be a 2-D array (records, classes); got shape {sco.shape}")
    sco = _real(sco, "scores", sco.shape)
    out = _binary(binary, "binary")
    if out.shape != sco.shape:
        raise MetricInputError(f"binary has shape {out.shape} but scores have shape {sco.shape}")
    codes = [MERGES.get(str(c), str(c)) for c in classes]
    if len(codes) != sco.shape[1]:
        raise MetricInputError(f"classes has {len(codes)} codes but scores have {sco.shape[1]} classes")
    if len(set(codes)) != len(codes):
        raise MetricInputError("classes contains duplicate codes (after merging equivalent classes)")
    header = ",".join(codes)
    return {
        rec: "\n".join([f"#{rec}", header, ",".join("1" if b else "0" for b in out[i]),
                        ",".join(_fmt_score(x) for x in sco[i])]) + "\n"
        for i, rec in enumerate(_check_records(records, sco.shape[0]))
    }  # fmt: skip
