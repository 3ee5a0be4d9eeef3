"""The book's measurements (ecgssl_nb.analysis: dataset, training, tables, study): each checked by hand or against an independent
computation (the DINO loss module, the network's own gate, scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ecgssl_nb import atomic
from ecgssl_nb.study import book, paths
from ecgssl_nb.data import prepare
from ecgssl_nb.analysis import claims, dataset, results, tables, training
from ecgssl_nb.core import labels, models
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.labels import ABBREVIATIONS

SAMPLES = Path(__file__).parent / "data" / "ecg-samples" / "cinc2020"


def _pred_frame(y: np.ndarray, p: np.ndarray, protocol="paper", role="outer") -> pd.DataFrame:
    df = pd.DataFrame(p, columns=[f"p_{a}" for a in ABBREVIATIONS])
    df[[f"y_{a}" for a in ABBREVIATIONS]] = y
    df.insert(0, "role", role)
    df.insert(0, "protocol", protocol)
    return df


def test_exact_match_counts_records_whose_24_outputs_all_equal_their_labels():
    y = np.zeros((3, 24), dtype=int)
    y[0, 0] = 1
    y[1, [1, 2]] = 1
    y[2, 3] = 1
    p = np.full((3, 24), 0.05)
    p[0, 0] = 0.9  # record 0: exactly right
    p[1, 1] = 0.9  # record 1: misses class 2 -> 1 wrong
    p[2, 3] = 0.9
    p[2, 10] = 0.6  # record 2: one extra label -> 1 wrong
    pred = pd.concat([_pred_frame(y, p), _pred_frame(y, np.ones((3, 24)), protocol="honest")])
    got = training.exact_match(pred, [0.5] * 24, protocol="paper")
    assert got["records"] == 3 and got["exact"] == 1
    assert got["accuracy"] == pytest.approx(1 / 3)
    assert got["true_labels_per_record"] == pytest.approx(4 / 3)
    assert got["predicted_labels_per_record"] == pytest.approx(4 / 3)
    assert got["wrong_outputs_per_record"] == pytest.approx(2 / 3)
    assert training.exact_match(pred, [0.5] * 24, protocol="honest")["exact"] == 0  # every label on


def test_dino_loss_minus_teacher_entropy_is_the_mean_kl_between_teacher_and_student():
    from ecgssl_nb.core.dino import DINOLoss

    torch.manual_seed(0)
    fn = DINOLoss(out_dim=16, n_global=2)
    s, t = torch.randn(4, 8, 16), torch.randn(2, 8, 16)
    loss = fn(s, t, update_center=False)
    log = pd.DataFrame({"epoch": [1], "loss": [float(loss)], "teacher_entropy": [float(fn.last_teacher_entropy)]})
    kl = training.dino_loss_parts(log)["kl"].iloc[0]
    # independent: KL(P_t[q] || P_s[v]) over the 6 pairs q != v, with the same temperatures
    p_t = torch.softmax((t - fn.center) / fn.temperature(0), dim=-1)
    log_s = torch.log_softmax(s / fn.student_temp, dim=-1)
    pairs = [(q, v) for q in range(2) for v in range(4) if q != v]
    want = np.mean([float((torch.special.xlogy(p_t[q], p_t[q]) - p_t[q] * log_s[v]).sum(-1).mean()) for q, v in pairs])
    assert kl == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert kl >= 0


@pytest.fixture(scope="module")
def small_prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep")
    prepare.prepare(SAMPLES, out, workers=1, progress=False)
    return prepare.load_prepared(out)


def test_gate_at_init_splits_the_logit_gap_and_agrees_with_the_network_gate(small_prepared, tmp_path, one_thread):
    torch.manual_seed(1)
    for m in ("time", "spec"):
        (tmp_path / m).mkdir()
        torch.save(models.make_backbone(m).state_dict(), tmp_path / m / "backbone.pt")
    got = training.gate_at_init(small_prepared, tmp_path, n_windows=8, seed=0)
    assert got["windows"] == 8
    assert 0 <= got["w2_mean"] <= 1 and 0 <= got["softmax_gradient_factor"] <= 0.25
    assert training.gate_at_init(small_prepared, tmp_path, n_windows=8, seed=0, lr=1e-3)[
        "gap_step_bound"
    ] == pytest.approx(1e-3 * got["feature_l1"], rel=1e-5)
    # independent: the network's own forward pass returns the same gate weights
    from ecgssl_nb.core import windows
    from ecgssl_nb.core.classify import build_finetune_model, model_inputs
    from ecgssl_nb.stages.finetune import resolve_pretrained

    model = build_finetune_model("ssl-tsg", resolve_pretrained("ssl-tsg", tmp_path), seed=0).eval()
    corpus = windows.Corpus.from_prepared(small_prepared)
    x = torch.cat([w for w, _ in corpus.iter_sliding_windows(8)])[:8]
    xt, xs = model_inputs(model, x, torch.as_tensor(small_prepared.mean), torch.as_tensor(small_prepared.std))
    with torch.no_grad():
        _, gate = model(xt, xs, return_gate=True)
        f1 = model.time_backbone(xt)
    assert got["w2_mean"] == pytest.approx(float(gate[:, 1].mean()), rel=1e-4, abs=1e-6)
    assert got["norm_time"] == pytest.approx(float(f1.norm(dim=1).mean()), rel=1e-5)


def test_pooled_auroc_pools_the_outer_predictions_of_every_fold_and_counts_positives(tmp_path):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    ys, ps = [], []
    for fold in (0, 1):
        y = (rng.random((10, 24)) < 0.3).astype(int)
        y[:, 5] = 0  # a class with no positive anywhere
        p = rng.random((10, 24))
        ys.append(y)
        ps.append(p)
        d = paths.finetune_dir(tmp_path, "samples", "t", fold)
        d.mkdir(parents=True)
        pd.concat([_pred_frame(y, p, "honest"), _pred_frame(1 - y, p, "honest", role="inner")]).to_csv(
            d / "predictions.csv", index=False
        )
    table = training.pooled_auroc(tmp_path, "samples", "t", folds=(0, 1), protocol="honest")
    y, p = np.vstack(ys), np.vstack(ps)
    assert table.loc["AF", "positives"] == y[:, 1].sum() and table.loc["AF", "negatives"] == 20 - y[:, 1].sum()
    assert table.loc["AF", "AUROC"] == pytest.approx(roc_auc_score(y[:, 1], p[:, 1]))
    assert np.isnan(table.iloc[5]["AUROC"]) and table.iloc[5]["positives"] == 0


def test_auroc_halfwidth_is_hanley_mcneil_by_hand_and_shrinks_with_more_positives():
    # A = 0.8, 10 positives, 90 negatives: Q1 = 0.8/1.2, Q2 = 1.28/1.8
    a, q1, q2 = 0.8, 0.8 / 1.2, 1.28 / 1.8
    se = np.sqrt((a * 0.2 + 9 * (q1 - 0.64) + 89 * (q2 - 0.64)) / 900)
    assert training.auroc_halfwidth(0.8, 10, 90) == pytest.approx(1.96 * se)
    assert training.auroc_halfwidth(0.8, 40, 90) < training.auroc_halfwidth(0.8, 10, 90)
    assert np.isnan(training.auroc_halfwidth(0.8, 0, 90)) and np.isnan(training.auroc_halfwidth(float("nan"), 5, 5))


# ----------------------------------------------------------------------------------------------
# how the book starts its studies, and how its tables label runs


def test_book_devices_uses_two_cpu_workers_only_on_a_cpu_with_two_cores():
    assert book.book_devices("cpu", cpus=2) == "cpu,cpu"
    assert book.book_devices("cpu", cpus=16) == "cpu,cpu"
    assert book.book_devices("cpu", cpus=1) == "cpu"
    assert book.book_devices("cuda:0", cpus=16) == "cuda:0"


def test_run_study_gives_each_cpu_worker_one_thread_and_restores_the_environment(monkeypatch):
    import ecgssl_nb.study.reproduce as rp

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "4")  # a value already set is kept
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    seen = {}

    def fake(**kw):
        import os

        seen.update(kw, omp=os.environ.get("OMP_NUM_THREADS"), mkl=os.environ.get("MKL_NUM_THREADS"))
        return Path("x")

    monkeypatch.setattr(rp, "reproduce", fake)
    assert book.run_study("cpu", profile="tiny", out="runs") == Path("x")
    assert seen["devices"] == "cpu,cpu" and seen["omp"] == "1" and seen["mkl"] == "4"
    assert seen["progress"] is False and seen["profile"] == "tiny"
    import os

    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "4"


def _agg(profile="tiny", data="fixture", n=2, smoke=False):
    return pd.DataFrame(
        {"profile": [profile], "data": [data], "n_folds": [n], "folds": ["0,1"][:1], "smoke": [smoke]}, index=["t"]
    )


def test_runs_warning_names_smoke_runs_of_the_paper_profile_without_calling_them_tiny():
    from ecgssl_nb.analysis.results import SMOKE_LABEL

    text = tables.runs_warning(_agg("paper", "fixture", 1, smoke=True))
    assert text.startswith("```{warning}") and text.endswith("```")
    assert SMOKE_LABEL in text and "`paper`" in text and "tiny" not in text
    assert "`tiny`" in tables.runs_warning(_agg()) and SMOKE_LABEL not in tables.runs_warning(_agg())
    assert tables.runs_warning(_agg("paper", "physionet2020", 10)) is None  # full runs on the paper's data
    assert SMOKE_LABEL in tables.runs_warning(_agg("paper", "physionet2020", 1, smoke=True))


def test_describe_runs_prefixes_smoke_and_names_the_training_split():
    from ecgssl_nb.analysis.results import SMOKE_LABEL

    assert tables.describe_runs(_agg(smoke=True)).startswith(f"{SMOKE_LABEL}: synthetic fixture")
    assert not tables.describe_runs(_agg()).startswith(SMOKE_LABEL)
    assert tables.describe_runs(_agg(), split="nine").endswith(tables.SPLIT_LABELS["nine"])


def test_claims_display_prints_one_row_per_claim_and_metric_with_both_intervals_and_the_margin_check():

    # two folds, differences computed by hand: ssl-t - t = +2 and +4 points (AUROC), -1 and +1 (ChM)
    rows = []
    for fold, (t, st, tc, stc) in enumerate([(0.80, 0.82, 0.50, 0.49), (0.70, 0.74, 0.40, 0.41)]):
        for setup, a, c in (("t", t, tc), ("ssl-t", st, stc)):
            rows.append({"setup": setup, "fold": fold, "protocol": "honest", "auroc": a, "challenge": c})
    df = pd.DataFrame(rows)
    ct = claims.claims_table(df, metrics=("auroc", "challenge"), claims=[("SSL helps T", "t", "ssl-t")], n_boot=200)
    noise = claims.margins_vs_noise(df, metrics=("auroc", "challenge"))
    shown = tables.claims_display(ct, noise)
    assert list(shown.index) == [("SSL helps T", "AUROC"), ("SSL helps T", "ChM")]
    auroc = shown.iloc[0]
    assert auroc["A → B"] == "T → SSL-T" and auroc["folds"] == 2 and auroc["B − A (×100)"] == "+3.00"
    assert auroc["95 % bootstrap over folds"] == "[+2.00, +4.00]"  # two values: the bootstrap range is their range
    from scipy import stats

    half = stats.t.ppf(0.975, 1) * np.sqrt(2) / np.sqrt(2)  # sd of (2, 4) = sqrt(2), n = 2
    lo, hi = 3 - half, 3 + half
    assert auroc["95 % paired t"] == f"[{lo:+.2f}, {hi:+.2f}]"
    # the paper's SSL-T - T margin on AUROC against our larger fold std (T: 7.07, SSL-T: 5.66)
    margin = float(auroc["paper's margin (×100)"])
    assert auroc["our larger fold std (×100)"] == f"{100 * np.std([0.80, 0.70], ddof=1):.2f}"
    assert auroc["margin > fold std?"] == ("yes" if margin > 100 * np.std([0.80, 0.70], ddof=1) else "no")


def test_pooled_beside_means_puts_the_pooled_metric_beside_the_fold_mean_and_marks_missing_ones():
    pooled = pd.DataFrame({"setup": ["t"], "auroc": [0.9], "challenge": [0.5], "folds": ["0,1"]})
    agg = pd.DataFrame(
        {"auroc_mean": [0.8, 0.7], "challenge_mean": [0.4, 0.3], "folds": ["0,1", "0,1"]}, index=["t", "ssl-t-tc"]
    )
    side = tables.pooled_beside_means(pooled, agg, metrics_shown=("auroc", "challenge"))
    assert list(side.index) == ["T", "SSL-T (TC)"]
    assert (
        side.loc["T", ("AUROC", "pooled out-of-fold")] == "90.00"
        and side.loc["T", ("AUROC", "mean over folds")] == "80.00"
    )
    assert side.loc["SSL-T (TC)", ("AUROC", "pooled out-of-fold")] == "–"
    assert side.loc["SSL-T (TC)", ("folds", "mean")] == "0,1"


# ------------------------------------------------------------------ what the chapters show


def test_data_kind_names_each_kind_of_data_in_one_phrase():
    assert results.data_kind("fixture") == "the synthetic fixture (not real ECGs)"
    assert results.data_kind("samples") == "the real sample records"
    assert results.data_kind("physionet2020") == "the PhysioNet/CinC 2020 training data"
    with pytest.raises(UserError, match="data 'x' is not a kind of data"):
        results.data_kind("x")


def test_class_counts_add_the_merged_codes_to_the_official_totals():
    y = np.zeros((5, 24), dtype=np.float32)
    y[:3, 0] = 1
    y[4, [0, 23]] = 1
    counts = dataset.class_counts(y, name="ours")
    assert list(counts.index) == list(ABBREVIATIONS) and list(counts.columns) == ["ours", "official total (6 sources)"]
    assert counts["ours"].tolist() == [4] + [0] * 22 + [1]
    totals = labels.official_totals()
    for removed, kept in labels.MERGES.items():  # e.g. RBBB's records count for CRBBB
        k = labels.CLASSES.index(kept)
        assert counts.iloc[k, 1] == totals[kept]["Total"] + totals[removed]["Total"]
    nsr = labels.CLASSES.index(labels.NORMAL_CLASS)
    assert counts.iloc[nsr, 1] == totals[labels.NORMAL_CLASS]["Total"]


def test_fold_counts_and_balance_by_hand():
    y = np.zeros((6, 24), dtype=np.float32)
    y[[0, 1, 2, 3], 0] = 1  # class 0: folds 0, 0, 0, 1
    y[5, 1] = 1  # class 1: fold 2
    counts = dataset.fold_counts(y, [0, 0, 0, 1, 2, 2], n_folds=3)
    assert counts["records"].tolist() == [3, 1, 2] and counts.index.name == "fold"
    assert counts[ABBREVIATIONS[0]].tolist() == [3, 1, 0] and counts[ABBREVIATIONS[1]].tolist() == [0, 0, 1]
    balance = dataset.fold_balance(counts)
    assert balance.loc[ABBREVIATIONS[0]].tolist() == [4, 1.3, 1.7]  # ideal 4/3; fold 0 has 3
    assert balance.loc[ABBREVIATIONS[1]].tolist() == [1, 0.3, 0.7]
    assert dataset.fold_counts(y, np.zeros(6)).shape == (10, 25)  # settings.N_FOLDS folds by default


def test_records_per_source_counts_and_shares():
    index = pd.DataFrame({"source": ["PTB", "PTB", "PTB", "CPSC"]})
    got = dataset.records_per_source(index)
    assert got.to_dict("index") == {
        "CPSC": {"records kept": 1, "share": 0.25},
        "PTB": {"records kept": 3, "share": 0.75},
    }


def test_record_features_average_each_records_window_features(small_prepared, one_thread):
    from ecgssl_nb.core import transforms, windows

    corpus = windows.Corpus.from_prepared(small_prepared, rows=[0, 1, 2])
    torch.manual_seed(0)
    for modality in ("time", "spec"):
        backbone = models.make_backbone(modality)
        feats = training.record_features(backbone, corpus, small_prepared.mean, small_prepared.std, modality, 7)
        assert feats.shape == (3, 512) and feats.dtype == np.float64 and not backbone.training
        # independent: every window of record 1 through the backbone, then the mean
        owner, start = corpus.sliding_windows()
        x = torch.stack([corpus.signal[:, int(corpus.offsets[1]) + s : int(corpus.offsets[1]) + s + 250]
                         for s in start[owner == 1].tolist()])  # fmt: skip
        x = (
            transforms.normalize(x, small_prepared.mean, small_prepared.std)
            if modality == "time"
            else transforms.spectrogram(x)
        )
        with torch.no_grad():
            want = backbone(x).double().mean(0).numpy()
        np.testing.assert_allclose(feats[1], want, rtol=1e-4, atol=1e-6)


def test_pca2_finds_the_direction_of_a_line_and_its_variance_share():
    t = np.linspace(-1, 1, 50)
    f = np.stack([t, 2 * t, -t], axis=1)  # every standardised column is +-t: one component
    pts, share = training.pca2(f)
    assert pts.shape == (50, 2) and share[0] == pytest.approx(1.0) and share[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(np.abs(pts[:, 0]), np.sqrt(3) * np.abs(t / t.std()), rtol=1e-6)


def test_rarest_class_is_the_least_frequent_label_of_each_record():
    y = np.zeros((4, 24))
    y[:3, 0] = 1
    y[2, 5] = 1
    assert training.rarest_class(y) == [ABBREVIATIONS[0], ABBREVIATIONS[0], ABBREVIATIONS[5], "none"]


def _setup_means(values: dict) -> pd.DataFrame:
    return pd.DataFrame({"auroc_mean": values, "challenge_mean": values, "smoke": False})


def test_paper_patterns_check_each_ordering_under_each_protocol():
    paper_like = {"t": 0.92, "s": 0.90, "tsc": 0.93, "tsg": 0.94, "ssl-t": 0.95, "ssl-s": 0.91, "ssl-tsc": 0.955}
    paper_like["ssl-tsg"] = 0.96
    flat = dict.fromkeys(paper_like, 0.5)
    got = tables.paper_patterns({"paper": _setup_means(paper_like), "honest": _setup_means(flat)})
    assert list(got.columns) == [results.PROTOCOL_LABELS["paper"], results.PROTOCOL_LABELS["honest"]]
    assert list(got.index) == list(tables.PAPER_PATTERNS) and got.index.name == "ordering"
    assert (got.iloc[:, 0] == "yes").all() and (got.iloc[:4, 1] == "no").all()
    swapped = dict(paper_like, tsc=0.95)  # TSC above TSG: the first and the gate orderings fail
    assert tables.paper_patterns({"paper": _setup_means(swapped)}).iloc[:, 0].tolist() == [
        "no",
        "yes",
        "yes",
        "no",
        "yes",
    ]


def test_fig3_table_reads_the_table_reproduce_wrote(tmp_path):
    from test_results import result

    from ecgssl_nb.study import reproduce

    prof = paths.profile_root(tmp_path, "tiny")
    for fold, (t1, tc) in enumerate([(0.8, 0.7), (0.9, 0.6)]):
        atomic.write_json_atomic(prof / "finetune" / "ssl-t" / f"fold{fold}" / "result.json", result("ssl-t", fold, t1))
        ab = prof / "ablation" / "finetune" / "ssl-t-tc" / f"fold{fold}" / "result.json"
        atomic.write_json_atomic(ab, result("ssl-t", fold, tc))
    with pytest.raises(UserError, match="fig3.csv does not exist"):
        tables.read_fig3(tmp_path, "tiny")
    reproduce.write_tables(tmp_path, "tiny")
    fig3 = tables.read_fig3(tmp_path, "tiny")
    assert list(fig3) == ["paper", "honest"] and list(fig3["paper"].index) == ["ssl-t-tc", "ssl-t-t1"]
    assert (
        fig3["paper"].at["ssl-t-t1", "auroc_mean"] == pytest.approx(0.85)
        and fig3["paper"].at["ssl-t-t1", "folds"] == "0,1"
    )
    table = tables.fig3_table(fig3)
    assert list(table.index) == ["SSL-T (TC)", "SSL-T (T1)"] and table["transforms"].tolist() == ["TC", "T1"]
    # paper protocol: tc 0.7, 0.6 -> 65.00 ± 7.07; honest (result() gives auroc - 0.1): 55.00 ± 7.07
    assert table.at["SSL-T (TC)", f"AUROC, {results.PROTOCOL_LABELS['paper']}"] == "65.00 ± 7.07"
    assert table.at["SSL-T (TC)", f"AUROC, {results.PROTOCOL_LABELS['honest']}"] == "55.00 ± 7.07"
    assert table["folds"].tolist() == ["0,1", "0,1"]
    best = tables.full_set_best(fig3)
    assert best["best by AUROC"].tolist() == ["ssl-t-t1"] * 2 and (best["full set best?"] == "yes").all()
    bars = tables.fig3_bars(fig3["paper"], "auroc")
    assert bars[["transforms", "mean"]].values.tolist() == [["tc", pytest.approx(65.0)], ["t1", pytest.approx(85.0)]]


def test_pretrain_settings_read_the_summary_then_its_config():
    got = training.pretrain_settings({"time": {"epochs": 2, "config": {"out_dim": 4096, "epochs": 9}}, "spec": {}})
    assert list(got.index) == list(training.PRETRAIN_SUMMARY_KEYS) and list(got.columns) == ["time", "spec"]
    assert got.at["epochs", "time"] == 2 and got.at["out_dim", "time"] == 4096 and got.at["epochs", "spec"] == "–"


def _run_result() -> dict:
    m = {k: 0.5 for k in ("auroc", "auprc", "accuracy", "f1", "f2", "g2", "challenge")}
    return {
        "fold": 3,
        "inner_fold": 4,
        "data": {},
        "metrics": {"paper": dict(m, auroc=0.91234, epoch=2), "honest": dict(m, epoch=1)},
        "per_class": {"paper": {"auroc": np.linspace(0, 1, 24)}, "honest": {"auroc": np.full(24, np.nan)}},
    }


def test_run_metrics_show_each_protocol_x100_with_where_it_chose():
    got = training.run_metrics(_run_result())
    paper, honest = results.PROTOCOL_LABELS["paper"], results.PROTOCOL_LABELS["honest"]
    assert list(got.index) == [
        f"{paper}: chosen on fold 3, reported on fold 3",
        f"{honest}: chosen on fold 4, reported on fold 3",
    ]
    assert list(got.columns) == ["AUROC", "AUPRC", "Acc", "F1", "F2", "G2", "ChM", "selected epoch"]
    assert got.iloc[0]["AUROC"] == 91.23 and got.iloc[1]["AUROC"] == 50.0 and got["selected epoch"].tolist() == [2, 1]


def test_per_class_auroc_counts_the_outer_folds_positives():
    y = np.zeros((3, 24), dtype=int)
    y[:, 0] = 1
    y[1, 5] = 1
    pred = pd.concat([_pred_frame(y, np.zeros((3, 24))), _pred_frame(1 - y, np.zeros((3, 24)), role="inner")])
    got = training.per_class_auroc(_run_result(), pred)
    assert list(got.columns) == ["positives in fold 3", "paper", "honest"] and list(got.index) == list(ABBREVIATIONS)
    assert got.iloc[0, 0] == 3 and got.iloc[5, 0] == 1 and got.iloc[:, 0].sum() == 4
    assert got["paper"].iloc[-1] == 1.0 and got["honest"].isna().all()


def test_protocol_gap_is_optimistic_minus_honest_x100():
    cols = {f"{m}_mean": 0.5 for m in ("auroc", "auprc", "accuracy", "f1", "f2", "g2", "challenge")}
    paper = pd.DataFrame([dict(cols, auroc_mean=0.9), cols], index=["t", "ssl-tsg"])
    honest = pd.DataFrame([dict(cols, auroc_mean=0.85), cols], index=["t", "ssl-tsg"])
    gap = tables.protocol_gap({"paper": paper, "honest": honest})
    assert list(gap.index) == ["T", "SSL-TSG"] and gap.index.name == "setup"
    assert gap.at["T", "AUROC"] == 5.0 and gap.at["SSL-TSG", "AUROC"] == 0.0 and gap.at["T", "ChM"] == 0.0


def test_stft_settings_list_the_transforms_constants():
    got = dataset.stft_settings()["STFT"]
    assert got["sampling rate"] == "100 Hz" and got["window"] == "Hann, 25 samples (0.25 s)"
    assert got["overlap / hop"] == "12 / 13 samples (0.13 s)" and got["frequency rows"] == "13: 0, 4, ..., 48 Hz"
    assert got["frames for 250 samples"] == "21" and got["normalisation"] == "(|Z| - mean[lead]) / 0.05418394"


def test_augment_settings_show_every_field_with_its_value_and_meaning():
    from ecgssl_nb.core.settings import AugmentConfig

    got = dataset.augment_settings(AugmentConfig(noise_sigma=(0.01, 0.02)))
    assert len(got) == 9 and got.at["augment.noise_sigma", "value"] == "(0.01, 0.02)"
    assert got.at["augment.time_cutout", "value"] == "(0.2, 0.4)" and (got["what"].str.len() > 10).all()


def test_finetune_budget_counts_the_steps_of_each_profile():
    from ecgssl_nb.core.settings import get_profile

    got = training.finetune_budget({"tiny": get_profile("tiny"), "samples": get_profile("samples")}, n_train=100)
    assert got.loc["tiny"].tolist() == [3, 16, 2, 1e-3, 7, 21]  # ceil(100 / 16) = 7 steps per epoch
    assert got.loc["samples"].tolist() == [8, 8, 4, 1e-3, 13, 104]


def test_recipe_differences_put_both_means_and_the_interval_side_by_side():
    rows = pd.DataFrame(
        {
            "setup": ["t", "t"],
            "metric": ["auroc", "challenge"],
            "recipe mean": [80.0, 40.0],
            "corrected mean": [82.5, 41.0],
            "difference": [-2.5, -1.0],
            "bootstrap lo": [-4.0, np.nan],
            "bootstrap hi": [-1.0, np.nan],
            "n_folds": [2, 2],
        }
    )
    got = tables.recipe_differences(rows)
    assert list(got.index) == ["T"] and got.index.name == "setup"
    assert got.loc["T", ("AUROC", "released")] == "80.00" and got.loc["T", ("AUROC", "corrected")] == "82.50"
    assert got.loc["T", ("AUROC", "released − corrected [95 % bootstrap]")] == "-2.50 [-4.00, -1.00]"
    assert (
        got.loc["T", ("ChM", "released − corrected [95 % bootstrap]")] == "-1.00 [–]"
        and got.loc["T", ("", "folds")] == 2
    )
