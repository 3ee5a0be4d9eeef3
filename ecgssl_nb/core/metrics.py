"""The PhysioNet/CinC Challenge 2020 scores (paper Sec. III-A, III-B), the paper's threshold search
and the Challenge's output files; our own numpy code, read off the final `evaluate_12ECG_score.py`
of physionetchallenges/evaluation-2020 (the copy the authors ship).

Arrays in, numbers out (scikit-learn style): `labels` (N, K) {0, 1} or bool, `scores` (N, K)
real, `outputs` (N, K) binary; column k is `classes[k]`, by default `labels.CLASSES` (K = 24).
Every score is a fraction in 0..1; a macro score is the `nanmean` over classes.

* AUROC_k, AUPRC_k: the Challenge's sweep over every distinct score (`score >= t`, ties one
  threshold), equal to `sklearn.metrics.roc_auc_score` and `average_precision_score`
  (tests/test_metrics.py checks both and the Challenge's own sweep). No positives: NaN for both;
  no negatives: NaN for AUROC, 1 for AUPRC.
* Accuracy: the fraction of records whose whole output vector equals the labels.
* F1_k = 2TP / (2TP + FP + FN); F_beta_k = (1+β²)TP / ((1+β²)TP + FP + β²FN) and
  G_beta_k = TP / (TP + FP + β FN) with record i counting 1/max(n_i, 1), n_i its true labels;
  NaN when a denominator is 0.
* Challenge metric: A_jk = Σ_i l_ij o_ik / max(|l_i ∪ o_i|, 1), s(o) = Σ_jk W_jk A_jk,
  ChM = (s(o) - s(NSR only)) / (s(labels) - s(NSR only)), 0.0 when the denominator is 0 (as the
  final 2020 code); labels and outputs are used as given (NSR never forced on or off).

Binarisation is `scores >= threshold` per class (B15). Bad input raises `MetricInputError`, a
`UserError` and a `ValueError` (what scikit-learn raises) naming the argument. The output files
(`challenge_outputs`) are the official 2020 format, which the official scorer reads
(`python evaluate_12ECG_score.py LABELS_DIR OUTPUTS_DIR scores.csv`; numpy < 1.24, B23).
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


# --- input checks --------------------------------------------------------------------------------


def _matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D array (records, classes); got shape {a.shape}")
    return a


def _binary(x, name: str) -> np.ndarray:
    """(N, K) bool from bool or numeric {0, 1}; raises MetricInputError naming `name`."""
    a = _matrix(x, name)
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


def _real(x, name: str, shape: tuple | None = None) -> np.ndarray:
    """(N, K) float64 of finite values with the given shape (any, when None)."""
    a = _matrix(x, name)
    if shape is not None and a.shape != shape:
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


def _label_space(k: int, weights, classes, normal_class: str) -> tuple[np.ndarray, int]:
    """The weight matrix (K, K) and the normal class's index for K = k classes."""
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
    return w, classes.index(normal_class)


def _nanmean(x: np.ndarray) -> float:
    """Mean over the non-NaN entries of a float64 array; NaN (without a warning) when all are NaN."""
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


# --- threshold-free metrics ----------------------------------------------------------------------


def _sweep(lab: np.ndarray, sco: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) at each distinct threshold of one class, highest first:
    tied scores form one threshold (the Challenge's sweep, and scikit-learn's)."""
    order = np.argsort(-sco, kind="mergesort")
    s, y = sco[order], lab[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last record of each tie group
    tps = np.cumsum(y)[last]
    return tps, (last + 1) - tps


def _per_class(labels: ArrayLike, scores: ArrayLike, area, both: bool) -> tuple[float, np.ndarray]:
    """(macro, per class (K,)) of `area(tps, fps)` over each class's sweep; NaN for a class with
    no positives (or, when `both`, no negatives)."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    per = np.full(lab.shape[1], np.nan)
    for k in range(lab.shape[1]):
        n_pos = int(lab[:, k].sum())
        if 0 < n_pos and (n_pos < lab.shape[0] or not both):
            per[k] = area(*_sweep(lab[:, k], sco[:, k]))
    return _nanmean(per), per


def auroc(labels: ArrayLike, scores: ArrayLike) -> tuple[float, np.ndarray]:
    """Challenge AUROC (macro, per class (K,)): the trapezoid area under (FPR, TPR) of each class,
    equal to `sklearn.metrics.roc_auc_score`; NaN for a class without positives or without
    negatives (the Challenge's 0/0), skipped by the macro mean."""

    def area(tps: np.ndarray, fps: np.ndarray) -> float:
        tpr, fpr = np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))

    return _per_class(labels, scores, area, both=True)


def auprc(labels: ArrayLike, scores: ArrayLike) -> tuple[float, np.ndarray]:
    """Challenge AUPRC (macro, per class (K,)): Σ (TPR_{j+1} - TPR_j) PPV_{j+1} of each class, equal
    to `sklearn.metrics.average_precision_score`; NaN for a class without positives, skipped by the
    macro mean."""

    def area(tps: np.ndarray, fps: np.ndarray) -> float:
        return float(np.sum(np.diff(np.r_[0.0, tps / tps[-1]]) * (tps / (tps + fps))))

    return _per_class(labels, scores, area, both=False)


def macro_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Macro Challenge AUROC only (see `auroc`)."""
    return auroc(labels, scores)[0]


def macro_auprc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Macro Challenge AUPRC only (see `auprc`)."""
    return auprc(labels, scores)[0]


# --- binary metrics ------------------------------------------------------------------------------


def binarize(scores: ArrayLike, thresholds: ArrayLike) -> np.ndarray:
    """(N, K) bool outputs `scores >= thresholds` (a scalar or one threshold per class)."""
    sco = _real(scores, "scores")
    thr = np.asarray(thresholds, dtype=np.float64)
    thr = np.full(sco.shape[1], float(thr)) if thr.ndim == 0 else thr
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
    return w @ (lab & out), w @ (~lab & out), w @ (lab & ~out)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)  # NaN where den == 0


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
    """The Challenge 2020 metric (1: the labels, 0: NSR only); `weights` (K, K) default `labels.weight_matrix()`."""
    lab, out = _pair(labels, outputs)
    lw, s_true, s_inact = _scale(lab, *_label_space(lab.shape[1], weights, classes, normal_class))
    return float(_normalised(_reward(lab, out, lw), s_true, s_inact))


def _scale(lab: np.ndarray, w: np.ndarray, normal: int) -> tuple[np.ndarray, float, float]:
    """lw = L @ W (N, K) (row i is Σ_j l_ij W_j.), and the two ends of the Challenge metric's
    scale: s(labels) (scores 1) and s(NSR only) (scores 0)."""
    lw = lab.astype(np.float64) @ w
    inactive = np.zeros_like(lab)
    inactive[:, normal] = True
    return lw, _reward(lab, lab, lw), _reward(lab, inactive, lw)


def _normalised(s, s_true: float, s_inact: float):
    """(s - s(NSR only)) / (s(labels) - s(NSR only)); 0 when the two ends are equal."""
    return np.zeros_like(s) if s_true == s_inact else (s - s_inact) / (s_true - s_inact)


def evaluate_outputs(
    labels: ArrayLike,
    scores: ArrayLike,
    outputs: ArrayLike,
    weights: ArrayLike | None = None,
    classes: Sequence[str] | None = None,
    normal_class: str = NORMAL_CLASS,
) -> dict:
    """{auroc, auprc (of `scores`), accuracy, f1, f2, g2, challenge (of the binary `outputs`)}
    as floats in 0..1, and `per_class` = {auroc, auprc, f1} arrays (K,)."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    lab, out = _pair(lab, outputs)
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
        "challenge": challenge_metric(lab, out, weights, classes, normal_class),
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


# --- threshold search (book: Deviations, B15) ----------------------------------------------------


def threshold_search(
    labels: ArrayLike,
    scores: ArrayLike,
    grid: Sequence[float] = DEFAULT_GRID,
    default: float = DEFAULT_THRESHOLD,
    weights: ArrayLike | None = None,
    classes: Sequence[str] | None = None,
    normal_class: str = NORMAL_CLASS,
) -> np.ndarray:
    """Per-class thresholds (K,) as in the released code (book: Deviations, B15 "faithful"): for each
    class k independently, every other class binarised at `default`, k tries each `grid` value in
    order and keeps the one with the highest Challenge metric (the first on ties). Not a joint search."""
    lab = _binary(labels, "labels")
    sco = _real(scores, "scores", lab.shape)
    grid_a = np.asarray(grid, dtype=np.float64).reshape(-1)
    if grid_a.size == 0 or not np.isfinite(grid_a).all():
        raise MetricInputError(f"grid must be a non-empty sequence of finite numbers; got {grid!r}")
    default = float(default)
    if not np.isfinite(default):
        raise MetricInputError(f"default must be a finite number; got {default}")
    lw, s_true, s_inact = _scale(lab, *_label_space(lab.shape[1], weights, classes, normal_class))
    base = sco >= default  # (N, K)
    num_base = (lw * base).sum(axis=1)  # (N,)
    cand = sco[None, :, :] >= grid_a[:, None, None]  # (G, N, K)
    out = np.empty(lab.shape[1])
    for k in range(lab.shape[1]):
        # Everything but column k is the default binarisation; column k varies over the grid.
        num_rest = num_base - lw[:, k] * base[:, k]  # (N,)
        union_rest = (lab | base).sum(axis=1) - (lab[:, k] | base[:, k])  # (N,)
        ok = cand[:, :, k]  # (G, N)
        num = num_rest[None, :] + lw[None, :, k] * ok
        union = np.maximum(union_rest[None, :] + (lab[None, :, k] | ok), 1)
        chm = _normalised(np.sum(num / union, axis=1), s_true, s_inact)  # (G,)
        out[k] = grid_a[int(np.argmax(chm))]  # argmax: first maximum
    return out


# --- Challenge files -----------------------------------------------------------------------------


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


def challenge_outputs(
    records: Sequence[str], scores: ArrayLike, binary: ArrayLike, classes: Sequence[str] = CLASSES
) -> dict[str, str]:
    """The official 2020 output file of each record, {record: text}: `#record`, the class codes
    (a merged class as its representative, labels.MERGES), the binary outputs, the scores."""
    sco = _real(scores, "scores")
    out = _binary(binary, "binary")
    if out.shape != sco.shape:
        raise MetricInputError(f"binary has shape {out.shape} but scores have shape {sco.shape}")
    codes = [MERGES.get(str(c), str(c)) for c in classes]
    if len(codes) != sco.shape[1]:
        raise MetricInputError(f"classes has {len(codes)} codes but scores have {sco.shape[1]} classes")
    if len(set(codes)) != len(codes):
        raise MetricInputError("classes contains duplicate codes (after merging equivalent classes)")
    header = ",".join(codes)
    # each score as repr(float): the shortest text that reads back to the same float64
    return {
        rec: "\n".join([f"#{rec}", header, ",".join("1" if b else "0" for b in out[i]),
                        ",".join(repr(float(x)) for x in sco[i])]) + "\n"
        for i, rec in enumerate(_check_records(records, sco.shape[0]))
    }  # fmt: skip
