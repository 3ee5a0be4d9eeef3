"""The paper's claims ("setting B beats setting A on a metric", paper Sec. III-B, Table II and
Fig. 3) tested against fold-to-fold noise, and pooled out-of-fold metrics.

Runs of one outer fold saw the same held-out records, so d_k = metric_k(B) - metric_k(A) is
paired. Its mean gets two 95 % intervals (percentile bootstrap over folds; paired t) and two
p-values (paired t, Wilcoxon signed-rank): rough with 10 folds, almost nothing with 2 (tiny).
The paper reports no fold std, so `margins_vs_noise` sets its margins against our runs' fold std.
Inputs are fractions (0..1); every difference in the tables is x100, as the paper prints them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import ArrayLike

from ..core.errors import UserError
from ..core.metrics import HEADLINE_METRICS, METRIC_KEYS, binarize, evaluate_outputs
from ..core.settings import ABLATION_SETUPS, ABLATION_TRANSFORMS, MAIN_TRANSFORMS, MODALITIES
from .results import PAPER_TABLE_II, ResultFileWarning, need_columns, predictions, read_json, run_file_fault

# (claim, worse setting A, better setting B): the paper says B beats A (paper Sec. III-B, Table II)
CLAIMS = (
    ("SSL helps T", "t", "ssl-t"),
    ("SSL helps S", "s", "ssl-s"),
    ("SSL helps TSC", "tsc", "ssl-tsc"),
    ("SSL helps TSG", "tsg", "ssl-tsg"),
    ("gate beats concatenation", "tsc", "tsg"),
    ("gate beats concatenation (SSL)", "ssl-tsc", "ssl-tsg"),
    ("fusion beats time only", "t", "tsg"),
    ("fusion beats spectrogram only", "s", "tsg"),
    ("fusion beats time only (SSL)", "ssl-t", "ssl-tsg"),
    ("fusion beats spectrogram only (SSL)", "ssl-s", "ssl-tsg"),
)
# Fig. 3: the full view sets (T1 = TC+GN, T2 = TC+FC) beat each ablation; runs as named by `results.load_results`
TRANSFORM_CLAIMS = tuple(
    (
        f"{MAIN_TRANSFORMS[m].upper()} beats {tr}",
        f"{ABLATION_SETUPS[m]}-{tr}",
        f"{ABLATION_SETUPS[m]}-{MAIN_TRANSFORMS[m]}",
    )
    for m in MODALITIES
    for tr in ABLATION_TRANSFORMS[m]
)
LEVEL = 0.95


def paired_differences(
    df: pd.DataFrame, worse: str, better: str, metric: str, protocol: str, by: str = "setup"
) -> pd.DataFrame:
    """Per outer fold of both settings (named in column `by` of a `results.load_results` or
    `with_ablation_runs` frame): columns fold, worse, better, diff = better - worse (fractions)."""
    need_columns(df, (by, "fold", "protocol", metric))
    sub = df[df["protocol"] == protocol]
    a = sub[sub[by] == worse].set_index("fold")[metric]
    b = sub[sub[by] == better].set_index("fold")[metric]
    for name, s in ((worse, a), (better, b)):
        if s.index.duplicated().any():
            raise UserError(f"{name}: two results for one fold under protocol {protocol!r}; load one study only")
    folds = sorted(set(a.index) & set(b.index))
    out = pd.DataFrame({"fold": folds, "worse": a.loc[folds].to_numpy(float), "better": b.loc[folds].to_numpy(float)})
    out["diff"] = out["better"] - out["worse"]
    return out


def _finite(diffs: ArrayLike) -> np.ndarray:
    d = np.asarray(diffs, dtype=np.float64)
    return d[np.isfinite(d)]


def bootstrap_ci(diffs: ArrayLike, level: float = LEVEL, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (`scipy.stats.bootstrap`, default_rng(seed)) of the mean of
    `diffs` (n,); NaN for fewer than 2 values."""
    d = _finite(diffs)
    if len(d) < 2:
        return float("nan"), float("nan")
    ci = scipy.stats.bootstrap(
        (d,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile", rng=np.random.default_rng(seed)
    ).confidence_interval
    return float(ci.low), float(ci.high)


def paired_t(diffs: ArrayLike, level: float = LEVEL) -> dict:
    """Two-sided paired t test of mean(diffs) = 0 with its interval: {n, mean, sd (ddof=1), t, p,
    lo, hi}; NaN where n < 2; for sd = 0, lo = hi = mean, t = +-inf, p = 0 (t = 0, p = 1 at 0)."""
    d = _finite(diffs)
    n, nan = len(d), float("nan")
    if n < 2:
        return {"n": n, "mean": float(d.mean()) if n else nan, "sd": nan, "t": nan, "p": nan, "lo": nan, "hi": nan}
    out = {"n": n, "mean": float(d.mean()), "sd": float(d.std(ddof=1))}
    if out["sd"] == 0:
        t = 0.0 if out["mean"] == 0 else float(np.sign(out["mean"]) * np.inf)
        return {**out, "t": t, "p": float(out["mean"] == 0), "lo": out["mean"], "hi": out["mean"]}
    res = scipy.stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(level)
    return {**out, "t": float(res.statistic), "p": float(res.pvalue), "lo": ci.low, "hi": ci.high}


def paired_stats(diffs: ArrayLike, level: float = LEVEL, n_boot: int = 10_000, seed: int = 0) -> dict:
    """`paired_t` plus the bootstrap interval (boot_lo, boot_hi) and the two-sided Wilcoxon
    signed-rank p-value (NaN below 2 non-zero differences)."""
    out = paired_t(diffs, level)
    out["boot_lo"], out["boot_hi"] = bootstrap_ci(diffs, level, n_boot, seed)
    d = _finite(diffs)
    out["p_wilcoxon"] = float(scipy.stats.wilcoxon(d).pvalue) if np.count_nonzero(d) >= 2 else float("nan")
    return out


def _verdict(s: dict) -> str:
    if s["n"] < 2:
        return "one fold: no test"
    if s["boot_lo"] > 0 and s["lo"] > 0:
        return "B better, beyond fold noise"
    if s["boot_hi"] < 0 and s["hi"] < 0:
        return "B worse, beyond fold noise"
    return "within fold noise"


def with_ablation_runs(main: pd.DataFrame, ablation: pd.DataFrame | None = None) -> pd.DataFrame:
    """Main and ablation runs in one frame, a `run` column naming each setting: the main runs by
    their setup, ssl-t / ssl-s also as ssl-t-t1 / ssl-s-t2 (Fig. 3's full view sets)."""
    parts = [main.assign(run=main["setup"])]
    for m in MODALITIES:
        setup = ABLATION_SETUPS[m]
        parts.append(main[main["setup"] == setup].assign(run=f"{setup}-{MAIN_TRANSFORMS[m]}"))
    if ablation is not None and len(ablation):
        parts.append(ablation)
    return pd.concat(parts, ignore_index=True)


# claims_table's columns of paired_stats' values, x100
_PERCENT_STATS = {"mean B - A": "mean", "sd of B - A": "sd", "bootstrap lo": "boot_lo", "bootstrap hi": "boot_hi"}
_PERCENT_STATS.update({"t lo": "lo", "t hi": "hi"})


def claims_table(
    results: pd.DataFrame,
    protocol: str = "honest",
    metrics: Sequence[str] = HEADLINE_METRICS,
    claims: Sequence[tuple[str, str, str]] | None = None,
    level: float = LEVEL,
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (claim, metric) with a common fold: n_folds, the mean paired difference B - A
    and its intervals (x100), the p-values and a verdict, from `with_ablation_runs` (claims
    default to CLAIMS + TRANSFORM_CLAIMS; on `load_results` the transform claims find no runs)."""
    by = "run" if "run" in results.columns and results["run"].notna().all() else "setup"
    rows = []
    for claim, worse, better in claims or CLAIMS + TRANSFORM_CLAIMS:
        for m in metrics:
            d = paired_differences(results, worse, better, m, protocol, by=by)
            if d.empty:
                continue
            s = paired_stats(d["diff"].to_numpy(), level, n_boot, seed)
            row = {"claim": claim, "A": worse, "B": better, "metric": m, "protocol": protocol, "n_folds": s["n"]}
            row.update({col: 100 * s[k] for col, k in _PERCENT_STATS.items()})
            rows.append({**row, "p (paired t)": s["p"], "p (Wilcoxon)": s["p_wilcoxon"], "verdict": _verdict(s)})
    return pd.DataFrame(rows)


def paper_margins(metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """Per claim of CLAIMS and metric, the paper's margin Table II(B) - Table II(A) (x100)."""
    rows = []
    for claim, worse, better in CLAIMS:
        for m in metrics:
            margin = PAPER_TABLE_II.loc[better.upper(), m] - PAPER_TABLE_II.loc[worse.upper(), m]
            rows.append({"claim": claim, "A": worse, "B": better, "metric": m, "paper margin": float(margin)})
    return pd.DataFrame(rows)


def margins_vs_noise(
    results: pd.DataFrame, protocol: str = "honest", metrics: Sequence[str] = HEADLINE_METRICS
) -> pd.DataFrame:
    """`paper_margins` beside our runs' fold noise (x100): the fold std (ddof=1) of A and of B, the
    std of the paired difference, and whether the margin exceeds the larger fold std."""
    pm = paper_margins(metrics)
    if "run" in results.columns:  # main runs only (not the ablation's ssl-t-tc, ...)
        results = results[results["run"] == results["setup"]]
    sub = results[results["protocol"] == protocol]
    rows = []
    for _, r in pm.iterrows():
        sd = {k: 100 * sub.loc[sub["setup"] == r[k], r["metric"]].std(ddof=1) for k in ("A", "B")}
        d = paired_differences(results, r["A"], r["B"], r["metric"], protocol)
        noise = max(sd["A"], sd["B"])  # NaN std (ddof=1) below two folds
        sds = {"our fold std A": sd["A"], "our fold std B": sd["B"], "our sd of B - A": 100 * d["diff"].std(ddof=1)}
        margin = bool(r["paper margin"] > noise) if np.isfinite(noise) else None
        rows.append({**r.to_dict(), **sds, "n_folds": len(d), "margin > fold std": margin})
    return pd.DataFrame(rows)


def _fold_outputs(run: Path, protocol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(labels, probabilities, outputs) (n, 24) of one fold's outer fold, binarised with its
    thresholds; None without predictions (with a ResultFileWarning when they are not its run's)."""
    if not ((run / "result.json").is_file() and (run / "predictions.csv").is_file()):
        return None
    fault = run_file_fault(run, ("result.json", "predictions.csv"))
    if fault:  # as load_results: left out, naming why
        warnings.warn(f"skipped {run}: {fault}", ResultFileWarning, stacklevel=3)
        return None
    y, p = predictions(pd.read_csv(run / "predictions.csv"), protocol)
    if not len(y):
        return None
    res = read_json(run / "result.json")
    if protocol not in res.get("thresholds", {}):
        raise UserError(f"{run}/result.json has no thresholds for protocol {protocol!r}")
    return y, p, binarize(p, np.asarray(res["thresholds"][protocol], dtype=np.float64))


def pooled_oof(finetune_root: str | os.PathLike, protocol: str = "honest") -> pd.DataFrame:
    """Per setup under RUNS/<profile>/finetune (or an ablation's): its folds' outer-fold outputs
    (`_fold_outputs`) scored at once: n_folds, folds, n_records and the seven metrics (fractions)."""
    root = Path(finetune_root)
    if not root.is_dir():
        raise UserError(f"finetune folder {root} does not exist")
    rows = []
    for setup_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        parts = {run.name: _fold_outputs(run, protocol) for run in sorted(setup_dir.glob("fold*"))}
        parts = {int(name[4:]): part for name, part in parts.items() if part is not None}
        if not parts:
            continue
        labels, scores, outputs = (np.concatenate(a) for a in zip(*parts.values()))  # (N, 24) each
        ev, folds, n = evaluate_outputs(labels, scores, outputs), list(parts), len(labels)
        row = {"setup": setup_dir.name, "protocol": protocol, "n_folds": len(folds), "folds": ",".join(map(str, folds))}
        rows.append({**row, "n_records": n, **{m: float(ev[m]) for m in METRIC_KEYS}})
    return pd.DataFrame(rows)
