"""Atomic result files, aggregation over folds, and the paper's tables beside ours."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from ecgssl_nb import atomic
from ecgssl_nb.analysis import results, tables
from ecgssl_nb.core import metrics
from ecgssl_nb.core.errors import UserError


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- atomic files


def test_json_round_trip_turns_numpy_into_numbers_and_nan_into_null(tmp_path):
    obj = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": np.array([1.0, np.nan, np.inf]),
        "d": np.bool_(True),
        "e": [float("nan"), 2],
        "f": tmp_path / "x",
        7: "int key",
    }
    path = atomic.write_json_atomic(tmp_path / "r.json", obj)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    back = results.read_json(path)
    assert back == {
        "a": 0.5,
        "b": 3,
        "c": [1.0, None, None],
        "d": True,
        "e": [None, 2],
        "f": str(tmp_path / "x"),
        "7": "int key",
    }
    assert leftovers(tmp_path) == []


def test_unserialisable_value_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "result.json"
    atomic.write_json_atomic(path, {"ok": 1})
    before = path.read_text()
    with pytest.raises(TypeError, match=r"\$\.metrics\.paper\[1\]: a object"):
        atomic.write_json_atomic(path, {"metrics": {"paper": [1.0, object()]}})
    assert path.read_text() == before
    assert leftovers(tmp_path) == []


def test_failure_while_replacing_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    atomic.write_json_atomic(path, {"ok": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_json_atomic(path, {"ok": 2})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert leftovers(tmp_path) == []


def test_csv_round_trip_keeps_values_and_nan(tmp_path):
    df = pd.DataFrame({"setup": ["t", "s"], "auroc": [0.123456789012345, np.nan]})
    path = atomic.write_csv_atomic(tmp_path / "sub" / "t.csv", df)
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, df)
    assert leftovers(path.parent) == []


def test_read_json_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(UserError, match="nope.json: no such file"):
        results.read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json: not valid JSON"):
        results.read_json(tmp_path / "bad.json")


# ---------------------------------------------------------------- result files -> table


def result(setup, fold, auroc, profile="tiny", kind="fixture", honest=True, **metric):
    m = {k: 0.5 for k in results.METRIC_KEYS}
    m.update(auroc=auroc, epoch=2, **metric)
    out = {
        "setup": setup,
        "fold": fold,
        "profile": profile,
        "data": {"kind": kind, "n_records": 100, "n_train": 80, "n_val": 20},
        "seed": 0,
        "epochs": 3,
        "metrics": {"paper": m},
        "per_class": {"paper": {"auroc": np.full(24, 0.5), "auprc": np.full(24, 0.5), "f1": np.full(24, np.nan)}},
        "thresholds": {"paper": np.full(24, 0.1)},
        "gate_weights": None,
        "wall_time_s": 1.5,
        "device": "cpu",
        "created": "2026-11-25T13:00:00+00:00",
    }
    if honest:
        out["metrics"]["honest"] = dict(m, auroc=auroc - 0.1)
    return out


def write_study(root, entries):
    for setup, fold, auroc in entries:
        atomic.write_json_atomic(root / setup / f"fold{fold}" / "result.json", result(setup, fold, auroc))


def test_aggregate_gives_hand_computed_mean_and_sample_std(tmp_path):
    # ssl-tsg: 0.90, 0.92, 0.94 -> mean 0.92, std sqrt((0.02² + 0 + 0.02²)/2) = 0.02
    # t:       0.50, 0.70       -> mean 0.60, std sqrt((0.1² + 0.1²)/1) = 0.1414...
    runs = [("ssl-tsg", 0, 0.90), ("ssl-tsg", 1, 0.92), ("ssl-tsg", 2, 0.94), ("t", 0, 0.5), ("t", 1, 0.7)]
    write_study(tmp_path, runs)
    df = results.load_results(tmp_path)
    assert len(df) == 10  # 5 runs x 2 protocols
    agg = results.aggregate(df, "paper")
    assert list(agg.index) == ["t", "ssl-tsg"]  # the paper's row order, not the file order
    assert list(results.aggregate(df.iloc[::-1]).index) == ["t", "ssl-tsg"]  # nor the row order
    assert agg.at["ssl-tsg", "auroc_mean"] == pytest.approx(0.92)
    assert agg.at["ssl-tsg", "auroc_std"] == pytest.approx(0.02)
    assert agg.at["t", "auroc_mean"] == pytest.approx(0.6)
    assert agg.at["t", "auroc_std"] == pytest.approx(math.sqrt(0.02))
    assert agg.at["t", "n_folds"] == 2 and agg.at["t", "folds"] == "0,1"
    assert agg.at["t", "challenge_std"] == 0.0
    assert (agg["profile"] == "tiny").all() and (agg["data"] == "fixture").all()
    honest = results.aggregate(df, "honest")
    assert honest.at["ssl-tsg", "auroc_mean"] == pytest.approx(0.82)


def test_load_results_reads_the_schema_into_columns(tmp_path):
    write_study(tmp_path, [("tsg", 3, 0.8)])
    row = results.load_results(tmp_path).query("protocol == 'paper'").iloc[0]
    assert (row["setup"], row["fold"], row["profile"], row["data"]) == ("tsg", 3, "tiny", "fixture")
    assert (row["n_records"], row["n_train"], row["n_val"], row["epoch"]) == (100, 80, 20, 2)
    assert row["auroc"] == 0.8 and row["run"] == "tsg" and row["path"].endswith("result.json")


def test_unreadable_and_off_schema_files_are_skipped_with_a_warning_naming_them(tmp_path):
    write_study(tmp_path, [("t", 0, 0.9)])
    (tmp_path / "s" / "fold0").mkdir(parents=True)
    (tmp_path / "s" / "fold0" / "result.json").write_text("{truncated")
    bad = result("s", 1, 0.9)
    del bad["metrics"]["paper"]["challenge"]
    atomic.write_json_atomic(tmp_path / "s" / "fold1" / "result.json", bad)
    with pytest.warns(results.ResultFileWarning) as caught:
        df = results.load_results(tmp_path)
    text = " ".join(str(w.message) for w in caught)
    assert "s/fold0/result.json" in text and "not valid JSON" in text
    assert "s/fold1/result.json" in text and "missing challenge" in text
    assert set(df["setup"]) == {"t"}


def test_null_metrics_are_nan_and_the_fold_mean_skips_them(tmp_path):
    for fold, value in enumerate([0.4, None, 0.6]):
        atomic.write_json_atomic(tmp_path / f"fold{fold}" / "result.json", result("s", fold, 0.9, f1=value))
    df = results.load_results(tmp_path)
    assert df["f1"].isna().sum() == 2  # one per protocol
    agg = results.aggregate(df)
    assert agg.at["s", "f1_mean"] == pytest.approx(0.5) and agg.at["s", "n_folds"] == 3


def test_aggregate_refuses_two_results_for_one_fold(tmp_path):
    write_study(tmp_path / "finetune", [("ssl-t", 0, 0.9)])
    write_study(tmp_path / "ablation", [("ssl-t", 0, 0.8)])  # same setup and fold, another study
    df = results.load_results(tmp_path)
    with pytest.raises(UserError, match="share a"):
        results.aggregate(df)


def test_aggregate_by_run_separates_ablation_variants(tmp_path):
    for run, auroc in (("ssl-t-tc", 0.7), ("ssl-t-gn", 0.8)):
        atomic.write_json_atomic(tmp_path / run / "fold0" / "result.json", result("ssl-t", 0, auroc))
    agg = results.aggregate(results.load_results(tmp_path), by="run")
    assert agg.at["ssl-t-tc", "auroc_mean"] == 0.7 and agg.at["ssl-t-gn", "auroc_mean"] == 0.8


def test_aggregate_refuses_mixed_profiles_and_unknown_protocols(tmp_path):
    atomic.write_json_atomic(tmp_path / "a" / "result.json", result("t", 0, 0.9, profile="tiny"))
    atomic.write_json_atomic(tmp_path / "b" / "result.json", result("t", 1, 0.9, profile="paper"))
    df = results.load_results(tmp_path)
    with pytest.raises(UserError, match="mix profiles"):
        results.aggregate(df)
    with pytest.raises(UserError, match="protocol 'best'"):
        results.aggregate(df, protocol="best")


def test_metric_keys_agree_with_the_metrics_module():
    assert results.METRIC_KEYS == metrics.METRIC_KEYS
    assert results.SETUP_LABELS["t"] == "T" and results.SETUP_LABELS["ssl-tsg"] == "SSL-TSG"


# ---------------------------------------------------------------- the paper's tables


def test_paper_table_ii_holds_the_spec_values_in_the_paper_order():
    t2 = results.PAPER_TABLE_II
    assert list(t2.index) == ["T", "S", "TSC", "TSG", "SSL-T", "SSL-S", "SSL-TSC", "SSL-TSG"]
    assert t2.at["SSL-TSG", "auroc"] == 95.99 and t2.at["SSL-TSG", "challenge"] == 65.39
    assert t2.at["T", "auprc"] == 62.93 and t2.at["S", "g2"] == 32.85 and t2.at["TSC", "accuracy"] == 47.13
    assert t2.notna().all().all()


def test_paper_table_i_marks_other_works_and_missing_values():
    t1 = results.PAPER_TABLE_I
    assert list(t1.index[:2]) == ["[30]", "[31]"] and list(t1.index[-3:]) == ["SSL-T", "SSL-S", "SSL-TSG"]
    assert (t1.loc["[30]":"[38]", "source"] == "other work").all()
    assert (t1.loc["SSL-T":, "source"] == "this paper").all()
    assert np.isnan(t1.at["[30]", "f2"]) and np.isnan(t1.at["[31]", "auroc"])
    assert t1.at["[35]", "auroc"] == 55.1 and t1.at["SSL-S", "challenge"] == 58.0


def test_compare_with_paper_aligns_our_setups_with_the_paper_rows(tmp_path):
    write_study(tmp_path, [("ssl-tsg", 0, 0.90), ("ssl-tsg", 1, 0.94), ("t", 0, 0.5), ("t", 1, 0.7)])
    agg = results.aggregate(results.load_results(tmp_path))
    cmp2 = results.compare_with_paper(agg, "II")
    row = cmp2.loc[("SSL-TSG", "auroc")]
    assert row["ours mean"] == pytest.approx(92.0) and row["paper"] == 95.99
    assert row["ours - paper"] == pytest.approx(92.0 - 95.99)
    assert row["ours std"] == pytest.approx(100 * math.sqrt(0.0008))
    assert cmp2.loc[("T", "challenge"), "paper"] == 63.25
    assert (row["n_folds"], row["profile"], row["data"], row["protocol"]) == (2, "tiny", "fixture", "paper")
    cmp1 = results.compare_with_paper(agg, "I")
    assert cmp1.loc[("SSL-TSG", "auroc"), "paper"] == 96.0
    assert np.isnan(cmp1.loc[("T", "auroc"), "paper"])  # T is not in Table I


def test_tables_are_shown_as_percent_mean_plus_minus_std(tmp_path):
    write_study(tmp_path, [("t", 0, 0.9234), ("t", 1, 0.9434), ("s", 0, 0.5)])
    agg = results.aggregate(results.load_results(tmp_path))
    shown = tables.results_table({"paper": agg}, metrics_shown=["auroc", "auprc"], paper=results.PAPER_TABLE_II)
    # t: mean 0.9334, std sqrt(2 * 0.01²) = 0.014142 -> "93.34 ± 1.41"; s has one fold: no std
    ours = ("AUROC", f"ours, {results.PROTOCOL_LABELS['paper']}")
    assert shown.at["T", ours] == "93.34 ± 1.41" and shown.at["S", ours] == "50.00"
    assert [shown.at["T", (m, "paper (as printed)")] for m in ("AUROC", "AUPRC")] == ["95.34", "62.93"]
    assert list(results.display_frame(results.PAPER_TABLE_I).loc["[31]"].iloc[:2]) == ["–", "–"]
    assert results.display_frame(results.PAPER_TABLE_I).at["SSL-T", "AUROC"] == "95.7"  # as printed: 1 decimal
    with pytest.raises(UserError, match="paper table"):
        results.display_frame(agg)


def test_an_oserror_that_names_no_file_is_raised_again_naming_the_target_and_keeping_its_text(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "result.json"

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "replace", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic.write_json_atomic(path, {"ok": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
