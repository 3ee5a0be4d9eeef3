"""Claims against fold noise: paired differences on a hand-made 3-fold table, the bootstrap
interval against a direct computation with the same seed, the paired t test against
scipy.stats.ttest_rel and the t interval by hand, the paper's margins
read off Table II by hand, and pooled out-of-fold metrics against scoring the concatenation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from ecgssl_nb.analysis import claims
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.labels import ABBREVIATIONS
from ecgssl_nb.core.metrics import evaluate_outputs


def _results(values: dict, protocol: str = "honest") -> pd.DataFrame:
    """{setup: [metric per fold]} -> a load_results-like frame (auroc only varies)."""
    rows = [
        {"setup": s, "run": s, "fold": k, "protocol": protocol, "auroc": v, "auprc": v / 2, "challenge": v / 3}
        for s, vs in values.items()
        for k, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def test_paired_differences_on_a_three_fold_toy():
    df = _results({"t": [0.80, 0.70, 0.90], "ssl-t": [0.82, 0.69, 0.95]})
    d = claims.paired_differences(df, "t", "ssl-t", "auroc", "honest")
    assert list(d["fold"]) == [0, 1, 2]
    np.testing.assert_allclose(d["diff"], [0.02, -0.01, 0.05])
    # only the folds both settings ran are paired
    d2 = claims.paired_differences(df[~((df["setup"] == "t") & (df["fold"] == 1))], "t", "ssl-t", "auroc", "honest")
    assert list(d2["fold"]) == [0, 2]
    with pytest.raises(UserError, match="two results for one fold"):
        claims.paired_differences(pd.concat([df, df]), "t", "ssl-t", "auroc", "honest")


def test_bootstrap_interval_equals_a_direct_computation_with_the_same_seed():
    d = np.array([0.02, -0.01, 0.05, 0.03])
    lo, hi = claims.bootstrap_ci(d, level=0.9, n_boot=500, seed=3)
    idx = np.random.default_rng(3).integers(0, 4, size=(500, 4))
    means = np.array([d[row].mean() for row in idx])
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))
    assert d.min() <= lo <= d.mean() <= hi <= d.max()
    assert np.isnan(claims.bootstrap_ci([0.1])[0])  # one fold: no interval


def test_paired_t_agrees_with_scipy():
    a = np.array([0.951, 0.948, 0.960, 0.955, 0.949])
    b = np.array([0.954, 0.951, 0.959, 0.960, 0.952])
    s = claims.paired_t(b - a, level=0.95)
    ref = scipy.stats.ttest_rel(b, a)
    assert s["t"] == pytest.approx(ref.statistic) and s["p"] == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (s["lo"], s["hi"]) == pytest.approx((ci.low, ci.high))
    full = claims.paired_stats(b - a, n_boot=200)
    assert full["p_wilcoxon"] == pytest.approx(scipy.stats.wilcoxon(b - a).pvalue)
    d = b - a  # the t interval by hand: mean +- t_{n-1, 0.975} sd / sqrt(n)
    half = scipy.stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert (s["lo"], s["hi"]) == pytest.approx((d.mean() - half, d.mean() + half))
    const = claims.paired_t([0.01, 0.01, 0.01])  # zero variance: no scipy call, a point interval
    assert const["p"] == 0.0 and const["t"] == np.inf and const["lo"] == const["hi"] == pytest.approx(0.01)
    zero = claims.paired_t([0.0, 0.0])
    assert zero["t"] == 0.0 and zero["p"] == 1.0


def test_claims_table_says_beyond_noise_only_when_both_intervals_exclude_zero():
    df = _results(
        {
            "t": [0.80, 0.70, 0.90, 0.85],
            "ssl-t": [0.85, 0.75, 0.96, 0.90],  # +5 every fold
            "tsc": [0.80, 0.70, 0.90, 0.85],
            "tsg": [0.82, 0.69, 0.93, 0.84],
        }
    )  # mixed signs
    table = claims.claims_table(df, metrics=("auroc",), n_boot=500)
    assert set(table["claim"]) == {"SSL helps T", "gate beats concatenation", "fusion beats time only"}
    row = table.set_index("claim").loc["SSL helps T"]
    assert row["mean B - A"] == pytest.approx(5.25) and row["n_folds"] == 4
    assert row["verdict"] == "B better, beyond fold noise"
    assert table.set_index("claim").loc["gate beats concatenation", "verdict"] == "within fold noise"


def test_transform_claims_use_the_main_run_as_the_full_view_set():
    main = _results({"ssl-t": [0.9, 0.8]})
    abl = _results({"ssl-t-tc": [0.85, 0.79]}).assign(setup="ssl-t")
    both = claims.with_ablation_runs(main, abl)
    table = claims.claims_table(both, metrics=("auroc",), n_boot=100)
    row = table.set_index("claim").loc["T1 beats tc"]
    assert (row["A"], row["B"]) == ("ssl-t-tc", "ssl-t-t1") and row["mean B - A"] == pytest.approx(3.0)


def test_paper_margins_are_table_ii_differences_by_hand():
    pm = claims.paper_margins(("auroc", "challenge")).set_index(["claim", "metric"])["paper margin"]
    assert pm["SSL helps T", "auroc"] == pytest.approx(95.70 - 95.34)
    assert pm["gate beats concatenation (SSL)", "challenge"] == pytest.approx(65.39 - 64.37)
    assert pm["fusion beats spectrogram only", "auroc"] == pytest.approx(95.57 - 93.47)
    assert pm["SSL helps TSC", "auroc"] == pytest.approx(95.65 - 95.41)


def test_margins_vs_noise_compares_the_claimed_margin_with_our_fold_std():
    df = _results({"t": [0.950, 0.960, 0.940], "ssl-t": [0.953, 0.962, 0.944]})
    out = claims.margins_vs_noise(df, metrics=("auroc",)).set_index("claim").loc["SSL helps T"]
    assert out["our fold std A"] == pytest.approx(1.0) and out["our fold std B"] == pytest.approx(
        np.std([95.3, 96.2, 94.4], ddof=1)
    )
    assert not out["margin > fold std"]  # the claimed +0.36 is below our fold std of ~1


def _write_run(folder, fold, probs, labels, thresholds, protocol="honest"):
    folder.mkdir(parents=True)
    n = len(probs)
    df = pd.DataFrame(
        {"record": [f"r{fold}_{i}" for i in range(n)], "fold": fold, "role": "outer", "protocol": protocol, "epoch": 1}
    )
    df = pd.concat(
        [
            df,
            pd.DataFrame(probs, columns=[f"p_{a}" for a in ABBREVIATIONS]),
            pd.DataFrame(labels, columns=[f"y_{a}" for a in ABBREVIATIONS]),
        ],
        axis=1,
    )
    inner = df.assign(role="inner", record=df["record"] + "i")  # inner rows must be ignored
    pd.concat([df, inner]).to_csv(folder / "predictions.csv", index=False)
    (folder / "result.json").write_text(json.dumps({"thresholds": {protocol: list(thresholds)}}))


def test_pooled_oof_scores_the_concatenated_outer_folds_with_each_folds_thresholds(tmp_path):
    rng = np.random.default_rng(0)
    y = [(rng.random((30, 24)) < 0.3).astype(np.int8) for _ in range(2)]
    p = [np.clip(0.5 * yk + 0.6 * rng.random((30, 24)), 0, 1) for yk in y]
    th = [np.full(24, 0.3), np.full(24, 0.5)]
    for k in range(2):
        _write_run(tmp_path / "tsg" / f"fold{k}", k, p[k], y[k], th[k])
    out = claims.pooled_oof(tmp_path, "honest")
    assert list(out["setup"]) == ["tsg"] and out.loc[0, "n_records"] == 60 and out.loc[0, "folds"] == "0,1"
    ref = evaluate_outputs(
        np.concatenate(y), np.concatenate(p), np.concatenate([(p[k] >= th[k]).astype(np.int8) for k in range(2)])
    )
    for m in ("auroc", "auprc", "challenge", "f1"):
        assert out.loc[0, m] == pytest.approx(ref[m])
    assert claims.pooled_oof(tmp_path, "paper").empty  # no rows of that protocol
