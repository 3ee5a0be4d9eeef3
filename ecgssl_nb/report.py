"""What the book's chapters compute about the results, beyond the tables: the measurements behind
the "odd numbers" (exact-match accuracy, the rising pre-training loss, the saturated gate) and
the pooled out-of-fold view of a small study. The notebooks only call these; tests call them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import metrics, paths
from .labels import ABBREVIATIONS


def _columns(pred: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N, 24) int, probabilities (N, 24) float) from predictions.csv rows."""
    y = pred[[f"y_{a}" for a in ABBREVIATIONS]].to_numpy().astype(int)
    p = pred[[f"p_{a}" for a in ABBREVIATIONS]].to_numpy().astype(float)
    return y, p


def exact_match(pred: pd.DataFrame, thresholds, protocol: str = "paper", role: str = "outer") -> dict:
    """Why exact-match accuracy is what it is: one run's `predictions.csv` rows of `protocol` and
    `role`, binarised with that protocol's 24 `thresholds`. Returns records, records whose 24
    outputs all equal their labels (exact), the accuracy (exact / records, as the Challenge
    code computes it), the mean numbers of true and of predicted labels per record, and the mean
    number of wrong outputs (of 24) per record."""
    rows = pred[(pred["protocol"] == protocol) & (pred["role"] == role)]
    y, p = _columns(rows)
    out = metrics.binarize(p, np.asarray(thresholds, dtype=float))
    wrong = (out != y).sum(axis=1)
    return {
        "records": int(len(y)),
        "exact": int((wrong == 0).sum()),
        "accuracy": float(metrics.accuracy(y, out)) if len(y) else float("nan"),
        "true_labels_per_record": float(y.sum(axis=1).mean()) if len(y) else float("nan"),
        "predicted_labels_per_record": float(out.sum(axis=1).mean()) if len(y) else float("nan"),
        "wrong_outputs_per_record": float(wrong.mean()) if len(y) else float("nan"),
    }


def dino_loss_parts(log: pd.DataFrame) -> pd.DataFrame:
    """Split the self-distillation loss of each epoch into the teacher's entropy and the rest.

    The loss is the cross-entropy H(P_t, P_s) averaged over (teacher view, student view) pairs,
    and each teacher row enters the same number of pairs, so exactly
    loss = mean H(P_t) + mean KL(P_t || P_s): `teacher_entropy` is logged, and
    `kl` = loss - teacher_entropy >= 0 is the part the student can reduce."""
    out = log[["epoch", "loss", "teacher_entropy"]].copy()
    out["kl"] = out["loss"] - out["teacher_entropy"]
    return out


@torch.no_grad()
def gate_at_init(prepared, pretrained, rows=None, seed: int = 0, n_windows: int = 256,
                 setup: str = "ssl-tsg") -> dict:
    """The gate of a TSG network before any fine-tuning, on real windows of `prepared`.

    Builds the network exactly as fine-tuning does (`finetune.build_finetune_model`: the
    pre-trained backbones loaded, the gate and head at PyTorch's default init for ssl-tsg), takes
    up to `n_windows` evaluation windows of the records `rows` (default: all), and returns the
    mean L2 norms of the time and spectrogram features (512 each), the gate's logit gap
    z2 - z1 split into the parts contributed by the time features, the spectrogram features and
    the bias, the mean spectrogram weight w2 = softmax(z)_2, the share of windows with w2 > 0.99,
    and the mean of w1 * w2 (the factor by which the softmax scales every gradient reaching
    the gate's logits: 0 when saturated)."""
    from . import windows
    from .finetune import _inputs, build_finetune_model

    model = build_finetune_model(setup, pretrained, seed=seed).eval()
    rows = np.arange(len(prepared.index)) if rows is None else np.asarray(rows)
    corpus = windows.Corpus.from_prepared(prepared, rows=rows, device="cpu")
    mean = torch.as_tensor(prepared.mean, dtype=torch.float32)
    std = torch.as_tensor(prepared.std, dtype=torch.float32)
    x = torch.cat([w for w, _ in corpus.iter_sliding_windows(n_windows)])[:n_windows]  # (W, 12, 250) mV
    x_time, x_spec = _inputs(model, x, mean, std)
    f1 = model.time_backbone(x_time)  # (W, 512)
    f2 = model.spec_backbone(x_spec)  # (W, 512)
    weight, bias = model.gate.weight, model.gate.bias  # (2, 1024), (2,)
    d = weight[1] - weight[0]  # (1024,): z2 - z1 = d . [f1, f2] + (b2 - b1)
    from_time, from_spec = f1 @ d[:512], f2 @ d[512:]  # (W,)
    gap = from_time + from_spec + (bias[1] - bias[0])
    w2 = torch.sigmoid(gap)  # softmax over two logits: w2 = sigmoid(z2 - z1)
    return {
        "windows": int(len(x)),
        "norm_time": float(f1.norm(dim=1).mean()),
        "norm_spec": float(f2.norm(dim=1).mean()),
        "gap_mean": float(gap.mean()),
        "gap_from_time_absmean": float(from_time.abs().mean()),
        "gap_from_spec_absmean": float(from_spec.abs().mean()),
        "gap_from_bias": float(bias[1] - bias[0]),
        "w2_mean": float(w2.mean()),
        "w2_over_099": float((w2 > 0.99).float().mean()),
        "softmax_gradient_factor": float((w2 * (1 - w2)).mean()),
    }


def pooled_auroc(runs: str | Path, profile: str, setup: str, folds, protocol: str = "honest") -> pd.DataFrame:
    """Per-class AUROC of the out-of-fold predictions of `folds` pooled into one set (each
    record is predicted once, by the run in which its fold was the outer fold), with the number
    of positive and negative records behind each value; AUROC is NaN for a class without both.
    Rows: the 24 classes and 'macro (classes with >= 1 positive)'."""
    frames = []
    for fold in folds:
        pred = pd.read_csv(paths.finetune_dir(runs, profile, setup, fold) / "predictions.csv")
        frames.append(pred[(pred["protocol"] == protocol) & (pred["role"] == "outer")])
    pred = pd.concat(frames, ignore_index=True)
    y, p = _columns(pred)
    _, per_class = metrics.auroc(y, p)
    table = pd.DataFrame({"positives": y.sum(axis=0), "negatives": len(y) - y.sum(axis=0),
                          "AUROC": per_class}, index=list(ABBREVIATIONS))
    table.loc["macro (classes with >= 1 positive)"] = [int(y.sum()), int(len(y)), float(np.nanmean(per_class))]
    return table
