"""The book's measurements (ecgssl_nb.report): each checked by hand or against an independent
computation (the DINO loss module, the network's own gate, scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ecgssl_nb import models, paths, prepare, report
from ecgssl_nb.labels import ABBREVIATIONS

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
    got = report.exact_match(pred, [0.5] * 24, protocol="paper")
    assert got["records"] == 3 and got["exact"] == 1
    assert got["accuracy"] == pytest.approx(1 / 3)
    assert got["true_labels_per_record"] == pytest.approx(4 / 3)
    assert got["predicted_labels_per_record"] == pytest.approx(4 / 3)
    assert got["wrong_outputs_per_record"] == pytest.approx(2 / 3)
    assert report.exact_match(pred, [0.5] * 24, protocol="honest")["exact"] == 0  # every label on


def test_dino_loss_minus_teacher_entropy_is_the_mean_kl_between_teacher_and_student():
    from ecgssl_nb.selfkd import DINOLoss

    torch.manual_seed(0)
    fn = DINOLoss(out_dim=16, n_global=2)
    s, t = torch.randn(4, 8, 16), torch.randn(2, 8, 16)
    loss = fn(s, t, update_center=False)
    log = pd.DataFrame({"epoch": [1], "loss": [float(loss)], "teacher_entropy": [float(fn.last_teacher_entropy)]})
    kl = report.dino_loss_parts(log)["kl"].iloc[0]
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
    got = report.gate_at_init(small_prepared, tmp_path, n_windows=8, seed=0)
    assert got["windows"] == 8
    assert 0 <= got["w2_mean"] <= 1 and 0 <= got["softmax_gradient_factor"] <= 0.25
    assert report.gate_at_init(small_prepared, tmp_path, n_windows=8, seed=0, lr=1e-3)["gap_step_bound"] == pytest.approx(
        1e-3 * got["feature_l1"], rel=1e-5)
    # independent: the network's own forward pass returns the same gate weights
    from ecgssl_nb import windows
    from ecgssl_nb.finetune import _inputs, build_finetune_model

    model = build_finetune_model("ssl-tsg", tmp_path, seed=0).eval()
    corpus = windows.Corpus.from_prepared(small_prepared)
    x = torch.cat([w for w, _ in corpus.iter_sliding_windows(8)])[:8]
    xt, xs = _inputs(model, x, torch.as_tensor(small_prepared.mean), torch.as_tensor(small_prepared.std))
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
            d / "predictions.csv", index=False)
    table = report.pooled_auroc(tmp_path, "samples", "t", folds=(0, 1), protocol="honest")
    y, p = np.vstack(ys), np.vstack(ps)
    assert table.loc["AF", "positives"] == y[:, 1].sum() and table.loc["AF", "negatives"] == 20 - y[:, 1].sum()
    assert table.loc["AF", "AUROC"] == pytest.approx(roc_auc_score(y[:, 1], p[:, 1]))
    assert np.isnan(table.iloc[5]["AUROC"]) and table.iloc[5]["positives"] == 0


def test_auroc_halfwidth_is_hanley_mcneil_by_hand_and_shrinks_with_more_positives():
    # A = 0.8, 10 positives, 90 negatives: Q1 = 0.8/1.2, Q2 = 1.28/1.8
    a, q1, q2 = 0.8, 0.8 / 1.2, 1.28 / 1.8
    se = np.sqrt((a * 0.2 + 9 * (q1 - 0.64) + 89 * (q2 - 0.64)) / 900)
    assert report.auroc_halfwidth(0.8, 10, 90) == pytest.approx(1.96 * se)
    assert report.auroc_halfwidth(0.8, 40, 90) < report.auroc_halfwidth(0.8, 10, 90)
    assert np.isnan(report.auroc_halfwidth(0.8, 0, 90)) and np.isnan(report.auroc_halfwidth(float("nan"), 5, 5))
