"""The training chapters' measurements (self-distillation, fine-tuning, the sample records):
one run's metrics and predictions, exact-match accuracy, the DINO loss split, the gate at
initialisation, the backbones' features, per-class AUROC of pooled out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

from ..study import paths
from ..core import metrics
from ..core.errors import UserError
from ..core.labels import ABBREVIATIONS
from ..core.settings import Profile, check_modality, setup_family
from .results import METRIC_LABELS, PROTOCOL_LABELS, predictions, run_file_fault

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..core.windows import Corpus
    from ..data.prepare import Prepared


def exact_match(pred: pd.DataFrame, thresholds: ArrayLike, protocol: str = "paper", role: str = "outer") -> dict:
    """Why exact-match accuracy is what it is, from one run's `predictions.csv` rows binarised with
    the protocol's 24 `thresholds`: records, exact (all 24 outputs right), accuracy (exact /
    records), the mean true and predicted labels and the mean wrong outputs per record."""
    y, p = predictions(pred, protocol, role)
    out = metrics.binarize(p, np.asarray(thresholds, dtype=float))
    wrong = (out != y).sum(axis=1)
    per_record = {"true_labels": y.sum(axis=1), "predicted_labels": out.sum(axis=1), "wrong_outputs": wrong}
    means = {f"{k}_per_record": float(v.mean()) if len(y) else float("nan") for k, v in per_record.items()}
    accuracy = float(metrics.accuracy(y, out)) if len(y) else float("nan")
    return {"records": int(len(y)), "exact": int((wrong == 0).sum()), "accuracy": accuracy, **means}


def run_metrics(res: dict) -> pd.DataFrame:
    """One run's seven metrics (×100, 2 decimals) and selected epoch, a row per protocol of its
    result.json `res`, named by the fold that chose the epoch and thresholds and the one reported."""
    fold, inner = res["fold"], res.get("inner_fold", res["data"].get("inner_fold"))
    m = pd.DataFrame(res["metrics"]).T
    shown = m[list(metrics.METRIC_KEYS)].astype(float).mul(100).round(2)
    shown.columns = [METRIC_LABELS[k] for k in metrics.METRIC_KEYS]
    shown["selected epoch"] = m["epoch"].astype(int)
    shown.index = [
        f"{PROTOCOL_LABELS[p]}: chosen on fold {fold if p == 'paper' else inner}, reported on fold {fold}"
        for p in shown.index
    ]
    return shown


def per_class_auroc(res: dict, pred: pd.DataFrame) -> pd.DataFrame:
    """Per class: the positives of the run's outer fold (its predictions.csv `pred`), then the
    outer-fold AUROC under each protocol of its result.json `res`."""
    out = pd.DataFrame({p: res["per_class"][p]["auroc"] for p in res["per_class"]}, index=list(ABBREVIATIONS))
    y, _ = predictions(pred, "paper")
    out.insert(0, f"positives in fold {res['fold']}", y.sum(axis=0).astype(int))
    return out.astype({p: float for p in res["per_class"]})


def pooled_auroc(
    runs: str | Path, profile: str, setup: str, folds: Sequence[int], protocol: str = "honest"
) -> pd.DataFrame:
    """Per class, then 'macro (classes with >= 1 positive)': the AUROC of `folds`' outer-fold
    predictions pooled (NaN without both kinds), its positives, negatives and 95 % half-width."""
    frames = []
    for fold in folds:
        run = paths.finetune_dir(runs, profile, setup, fold)
        fault = run_file_fault(run, ("predictions.csv",))
        if fault:
            raise UserError(f"{fault}: run the fine-tuning again (`reproduce` does)")
        frames.append(predictions(pd.read_csv(run / "predictions.csv"), protocol))
    y, p = (np.concatenate(part) for part in zip(*frames))  # (N, 24) each
    _, per_class = metrics.auroc(y, p)
    pos = y.sum(axis=0)
    half = [auroc_halfwidth(a, n, len(y) - n) for a, n in zip(per_class, pos)]
    table = pd.DataFrame({"positives": pos, "negatives": len(y) - pos, "AUROC": per_class, "± (95%)": half})
    table.index = list(ABBREVIATIONS)
    table.loc["macro (classes with >= 1 positive)"] = [int(y.sum()), int(len(y)), float(np.nanmean(per_class)), np.nan]
    return table


def auroc_halfwidth(auc: float, n_pos: int, n_neg: int, z: float = 1.96) -> float:
    """z times Hanley and McNeil's (1982) standard error of an AUROC A from `n_pos` positives and
    `n_neg` negatives (the 95 % normal interval's half-width); NaN when A is NaN or a count 0."""
    if not np.isfinite(auc) or n_pos < 1 or n_neg < 1:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(z * np.sqrt(max(var, 0.0)))


def dino_loss_parts(log: pd.DataFrame) -> pd.DataFrame:
    """Each epoch's self-distillation loss split exactly: the loss, the cross-entropy H(P_t, P_s)
    over view pairs each teacher row enters equally often, is mean H(P_t) (`teacher_entropy`,
    logged) + `kl` = mean KL(P_t || P_s) >= 0, the part the student can reduce."""
    out = log[["epoch", "loss", "teacher_entropy"]].copy()
    out["kl"] = out["loss"] - out["teacher_entropy"]
    return out


@torch.no_grad()
def gate_at_init(
    prepared: Prepared,
    pretrained: str | Path | None,
    rows: ArrayLike | None = None,
    seed: int = 0,
    n_windows: int = 256,
    setup: str = "ssl-tsg",
    lr: float | None = None,
) -> dict:
    """The gate of a TSG network as fine-tuning builds it, before any step, on up to `n_windows`
    evaluation windows of the records `rows`: the mean L2 norms of the time and spectrogram
    features, the logit gap z2 - z1 split into its time, spectrogram and bias parts, the mean
    w2 = softmax(z)_2, the share with w2 > 0.99, the mean w1 * w2 (the softmax's factor on every
    gradient reaching the logits) and ||[f1; f2]||_1; with `lr`, `gap_step_bound` = lr * that
    norm (Adam moves each weight by about lr at most per step)."""
    from ..core import windows  # ~3 ms at import: only when a figure needs windows
    from ..core.classify import build_finetune_model, model_inputs  # ~25 ms at import: only when a figure needs a model
    from ..stages.finetune import resolve_pretrained  # ~25 ms at import: only when a figure needs a model

    model = build_finetune_model(setup, resolve_pretrained(setup, pretrained), seed=seed).eval()
    rows = np.arange(len(prepared.index)) if rows is None else np.asarray(rows)
    corpus = windows.Corpus.from_prepared(prepared, rows=rows, device="cpu")
    mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in (prepared.mean, prepared.std))  # (12,) mV
    x = torch.cat([w for w, _ in corpus.iter_sliding_windows(n_windows)])[:n_windows]  # (W, 12, 250) mV
    x_time, x_spec = model_inputs(model, x, mean, std)
    f1 = model.time_backbone(x_time)  # (W, 512)
    f2 = model.spec_backbone(x_spec)  # (W, 512)
    weight, bias = model.gate.weight, model.gate.bias  # (2, 1024), (2,)
    d = weight[1] - weight[0]  # (1024,): z2 - z1 = d . [f1, f2] + (b2 - b1)
    from_time, from_spec = f1 @ d[:512], f2 @ d[512:]  # (W,)
    gap = from_time + from_spec + (bias[1] - bias[0])
    w2 = torch.sigmoid(gap)  # softmax over two logits: w2 = sigmoid(z2 - z1)
    l1 = torch.cat([f1, f2], dim=1).abs().sum(dim=1).mean()
    out = {"norm_time": f1.norm(dim=1).mean(), "norm_spec": f2.norm(dim=1).mean(), "gap_mean": gap.mean()}
    out.update(gap_from_time_absmean=from_time.abs().mean(), gap_from_spec_absmean=from_spec.abs().mean())
    out.update(gap_from_bias=bias[1] - bias[0], w2_mean=w2.mean(), w2_over_099=(w2 > 0.99).float().mean())
    out.update(
        softmax_gradient_factor=(w2 * (1 - w2)).mean(), feature_l1=l1, **({"gap_step_bound": lr * l1} if lr else {})
    )
    return {"windows": int(len(x)), **{k: float(v) for k, v in out.items()}}


PRETRAIN_SUMMARY_KEYS = tuple(  # what the self-distillation chapter shows of each run's summary.json
    "epochs batch_size_per_process steps_per_epoch peak_lr out_dim optimizer teacher_temp student_temp "
    "teacher_momentum center_momentum transforms kept final_loss final_teacher_entropy final_embedding_std "
    "wall_time_s device".split()
)


def pretrain_settings(summaries: dict[str, dict]) -> pd.DataFrame:
    """Per PRETRAIN_SUMMARY_KEYS (rows) and run ({name: summary.json}, columns): the summary's
    value, else its `config` entry's, else "–"."""
    return pd.DataFrame(
        {m: {k: s.get(k, s.get("config", {}).get(k, "–")) for k in PRETRAIN_SUMMARY_KEYS} for m, s in summaries.items()}
    )


@torch.no_grad()
def record_features(
    backbone: torch.nn.Module, corpus: Corpus, mean: ArrayLike, std: ArrayLike, modality: str, batch_windows: int = 512
) -> np.ndarray:
    """(records, feature_dim) float64: each record's backbone features averaged over its
    evaluation windows, fed as fine-tuning feeds them (normalised with `mean`, `std` (12,) mV, or
    as spectrograms). Leaves the backbone in eval mode."""
    from ..core.transforms import normalize, spectrogram  # ~6 ms at import: only for the transforms chapter

    check_modality(modality)
    backbone.eval().to(corpus.device)

    def features(x: torch.Tensor) -> tuple[torch.Tensor]:  # x: (w, 12, 250) raw mV -> (w, D)
        return (backbone(normalize(x, mean, std) if modality == "time" else spectrogram(x)),)

    return corpus.mean_over_windows(features, batch_windows)[0]


def pca2(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 2), variance shares (2,)) of the first two principal components of the
    standardised features (N, D)."""
    f = np.asarray(features, dtype=np.float64)
    z = (f - f.mean(axis=0)) / (f.std(axis=0) + 1e-8)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    return u[:, :2] * s[:2], (s[:2] ** 2) / (s**2).sum()


def rarest_class(label_matrix: np.ndarray) -> list[str]:
    """Per record of `label_matrix` (N, 24): its class with the fewest records among these rows
    (usually its most specific one), or "none"."""
    y = np.asarray(label_matrix)
    freq = y.sum(axis=0)
    return [ABBREVIATIONS[min(np.flatnonzero(r), key=lambda k: freq[k])] if r.any() else "none" for r in y]


def finetune_budget(profiles: dict[str, Profile], n_train: int, setup: str = "t") -> pd.DataFrame:
    """How much one fine-tuning of `setup` on `n_train` records trains under each profile (rows):
    epochs, records per step, crops per record, learning rate, steps per epoch and in all."""
    family = setup_family(setup)
    rows = {}
    for name, p in profiles.items():
        f, batch, epochs = p.finetune, p.finetune.batch_records[family], p.finetune.epochs[family]
        steps = -(-n_train // batch)
        rows[name] = {"epochs": epochs, "records per step": batch, "crops per record": f.crops, "learning rate": f.lr}
        rows[name].update({"steps per epoch (about)": steps, "steps in all (about)": steps * epochs})
    return pd.DataFrame(rows, dtype=object).T
