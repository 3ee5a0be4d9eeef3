"""What the book's chapters compute about the results, beyond the tables: the measurements behind
the "odd numbers" (exact-match accuracy, the rising pre-training loss, the saturated gate) and
the pooled out-of-fold view of a small study. The notebooks only call these; tests call them too.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from . import paths
from .core import metrics
from .core.errors import UserError
from .core.labels import ABBREVIATIONS, CLASSES, MERGES, official_totals
from .core.settings import (
    MAIN_TRANSFORMS,
    N_FOLDS,
    PROTOCOLS,
    SAMPLES_SETUPS,
    SETUPS,
    TARGET_FS,
    WINDOW,
    AugmentConfig,
    Profile,
    check_modality,
    get_profile,
    is_ssl,
    setup_family,
)
from .results import run_file_fault

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .core.windows import Corpus
    from .prepare import Prepared


def _columns(pred: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N, 24) int, probabilities (N, 24) float) from predictions.csv rows."""
    y = pred[[f"y_{a}" for a in ABBREVIATIONS]].to_numpy().astype(int)
    p = pred[[f"p_{a}" for a in ABBREVIATIONS]].to_numpy().astype(float)
    return y, p


def exact_match(pred: pd.DataFrame, thresholds: ArrayLike, protocol: str = "paper", role: str = "outer") -> dict:
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


def run_metrics(res: dict) -> pd.DataFrame:
    """One fine-tuning run's seven metrics (×100, 2 decimals) and selected epoch, one row per
    protocol of its result.json `res`, each row saying where the epoch and thresholds were chosen
    (paper: the outer fold; honest: the inner fold) and that the outer fold is reported."""
    from .results import METRIC_LABELS  # pandas tables: ~10 ms at import

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
    """Per class (rows labels.ABBREVIATIONS): the positives of the run's outer fold (its
    predictions.csv rows `pred`), then the outer-fold AUROC under each protocol of result.json `res`."""
    out = pd.DataFrame({p: res["per_class"][p]["auroc"] for p in res["per_class"]}, index=list(ABBREVIATIONS))
    y, _ = _columns(pred[(pred["protocol"] == "paper") & (pred["role"] == "outer")])
    out.insert(0, f"positives in fold {res['fold']}", y.sum(axis=0).astype(int))
    return out.astype({p: float for p in res["per_class"]})


def dino_loss_parts(log: pd.DataFrame) -> pd.DataFrame:
    """Split the self-distillation loss of each epoch into the teacher's entropy and the rest.

    The loss is the cross-entropy H(P_t, P_s) averaged over (teacher view, student view) pairs,
    and each teacher row enters the same number of pairs, so exactly
    loss = mean H(P_t) + mean KL(P_t || P_s): `teacher_entropy` is logged, and
    `kl` = loss - teacher_entropy >= 0 is the part the student can reduce."""
    out = log[["epoch", "loss", "teacher_entropy"]].copy()
    out["kl"] = out["loss"] - out["teacher_entropy"]
    return out


def stft_settings() -> pd.DataFrame:
    """The spectrogram's STFT settings (transforms' constants, settings.TARGET_FS) as the Transforms
    chapter lists them, one row each."""
    from .core import transforms as T  # ~6 ms at import: only for the transforms chapter

    frames = T.stft_magnitude(torch.zeros(1, 1, WINDOW)).shape[-1]
    top = (T.SPEC_N_FREQ - 1) * T.SPEC_FREQ_STEP_HZ
    rows = {
        "sampling rate": f"{TARGET_FS} Hz",
        "window": f"Hann, {T.SPEC_NPERSEG} samples ({T.SPEC_NPERSEG / TARGET_FS:.2f} s)",
        "overlap / hop": f"{T.SPEC_NOVERLAP} / {T.SPEC_HOP} samples ({T.SPEC_HOP_S:.2f} s)",
        "boundary": f"{T.SPEC_NPERSEG // 2} zeros padded at each end; zeros appended to fill the last segment",
        "frequency rows": f"{T.SPEC_N_FREQ}: 0, {T.SPEC_FREQ_STEP_HZ:g}, ..., {top:g} Hz",
        f"frames for {WINDOW} samples": str(frames),
        "scaling": "'spectrum' (divided by the window's sum), then magnitude",
        "normalisation": f"(|Z| - mean[lead]) / {T.SPEC_STD}",
    }
    return pd.Series(rows, name="STFT").to_frame()


def augment_settings(augment: AugmentConfig | None = None) -> pd.DataFrame:
    """The view settings (`settings.AugmentConfig`, default: its defaults), one row per field as
    `--set augment.KEY=VALUE` names it: its value, the values it takes and what it sets (the
    field's metadata, the same facts that check it and that --help lists)."""
    import dataclasses

    augment = AugmentConfig() if augment is None else augment
    fields = dataclasses.fields(augment)
    return pd.DataFrame(
        {
            "value": [str(getattr(augment, f.name)) for f in fields],
            "range": [f.metadata["range"].text for f in fields],
            "what": [f.metadata["what"] for f in fields],
        },
        index=pd.Index([f"augment.{f.name}" for f in fields], name="setting"),
    )


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
    """The gate of a TSG network before any fine-tuning, on real windows of `prepared`.

    Builds the network exactly as fine-tuning does (`classify.build_finetune_model`: the
    pre-trained backbones loaded, the gate and head at PyTorch's default init for ssl-tsg), takes
    up to `n_windows` evaluation windows of the records `rows` (default: all), and returns the
    mean L2 norms of the time and spectrogram features (512 each), the gate's logit gap
    z2 - z1 split into the parts contributed by the time features, the spectrogram features and
    the bias, the mean spectrogram weight w2 = softmax(z)_2, the share of windows with w2 > 0.99,
    and the mean of w1 * w2 (the factor by which the softmax scales every gradient reaching
    the gate's logits: 0 when saturated), and the mean L1 norm of [f1; f2]. With `lr`, also
    `gap_step_bound` = lr * mean ||[f1; f2]||_1: Adam moves each gate weight by at most about
    lr per step whatever the gradient's size, so this bounds how far one step can move z2 - z1."""
    from .core import windows  # ~3 ms at import: only when a figure needs windows
    from .core.classify import build_finetune_model, model_inputs  # ~25 ms at import: only when a figure needs a model
    from .stages.finetune import resolve_pretrained  # ~25 ms at import: only when a figure needs a model

    model = build_finetune_model(setup, resolve_pretrained(setup, pretrained), seed=seed).eval()
    rows = np.arange(len(prepared.index)) if rows is None else np.asarray(rows)
    corpus = windows.Corpus.from_prepared(prepared, rows=rows, device="cpu")
    mean = torch.as_tensor(prepared.mean, dtype=torch.float32)
    std = torch.as_tensor(prepared.std, dtype=torch.float32)
    x = torch.cat([w for w, _ in corpus.iter_sliding_windows(n_windows)])[:n_windows]  # (W, 12, 250) mV
    x_time, x_spec = model_inputs(model, x, mean, std)
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
        "feature_l1": float(torch.cat([f1, f2], dim=1).abs().sum(dim=1).mean()),
        **({"gap_step_bound": float(lr * torch.cat([f1, f2], dim=1).abs().sum(dim=1).mean())} if lr else {}),
    }


def pooled_auroc(
    runs: str | Path, profile: str, setup: str, folds: Sequence[int], protocol: str = "honest"
) -> pd.DataFrame:
    """Per-class AUROC of the out-of-fold predictions of `folds` pooled into one set (each
    record is predicted once, by the run in which its fold was the outer fold), with the number
    of positive and negative records behind each value; AUROC is NaN for a class without both.
    Rows: the 24 classes and 'macro (classes with >= 1 positive)'."""
    frames = []
    for fold in folds:
        run = paths.finetune_dir(runs, profile, setup, fold)
        fault = run_file_fault(run, ("predictions.csv",))
        if fault:
            raise UserError(f"{fault}: run the fine-tuning again (`reproduce` does)")
        pred = pd.read_csv(run / "predictions.csv")
        frames.append(pred[(pred["protocol"] == protocol) & (pred["role"] == "outer")])
    pred = pd.concat(frames, ignore_index=True)
    y, p = _columns(pred)
    _, per_class = metrics.auroc(y, p)
    pos = y.sum(axis=0)
    table = pd.DataFrame(
        {
            "positives": pos,
            "negatives": len(y) - pos,
            "AUROC": per_class,
            "± (95%)": [auroc_halfwidth(a, n, len(y) - n) for a, n in zip(per_class, pos)],
        },
        index=list(ABBREVIATIONS),
    )
    table.loc["macro (classes with >= 1 positive)"] = [int(y.sum()), int(len(y)), float(np.nanmean(per_class)), np.nan]
    return table


def auroc_halfwidth(auc: float, n_pos: int, n_neg: int, z: float = 1.96) -> float:
    """Half-width of the normal-approximation 95% interval of an AUROC from `n_pos` positives
    and `n_neg` negatives, with Hanley and McNeil's (1982) standard error:
    SE^2 = [A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)] / (n_pos n_neg),
    Q1 = A/(2-A), Q2 = 2A^2/(1+A). NaN when A is NaN or a count is 0."""
    if not np.isfinite(auc) or n_pos < 1 or n_neg < 1:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(z * np.sqrt(max(var, 0.0)))


# ----------------------------------------------------------------------------------------------
# the studies the book runs, and its tables

CLAIM_METRICS = ("auroc", "challenge")  # the two metrics the table chapters show beside the paper and test claims on
PROTOCOL_LABELS = {  # protocol names as the book prints them: never confusable with "the paper's numbers"
    "paper": "optimistic protocol (authors')",
    "honest": "honest protocol (held-out)",
}
DATA_LABELS = {  # a run's `data` (result.json, Profile.data) as table captions name it
    "fixture": "synthetic fixture",
    "samples": "real sample records",
    "physionet2020": "PhysioNet/CinC 2020",
}


def data_kind(data: str) -> str:
    """A run's `data` as a chapter's sentence names it: 'fixture' -> 'the synthetic fixture (not
    real ECGs)', 'samples' -> 'the real sample records', 'physionet2020' -> 'the PhysioNet/CinC 2020
    training data'."""
    if data not in DATA_LABELS:
        raise UserError(f"data {data!r} is not a kind of data; choose one of {', '.join(DATA_LABELS)}")
    return {
        "fixture": "the synthetic fixture (not real ECGs)",
        "physionet2020": "the PhysioNet/CinC 2020 training data",
    }.get(data, f"the {DATA_LABELS[data]}")


def book_devices(device: str = "cpu", cpus: int | None = None) -> str:
    """The `devices` the book's studies run on: "cpu,cpu" (two CPU workers, one subprocess each,
    so two runs at a time) when `device` is "cpu" and the machine has at least two cores
    (`cpus`, default os.cpu_count()); `device` unchanged otherwise."""
    import os

    cpus = os.cpu_count() if cpus is None else cpus
    return "cpu,cpu" if device == "cpu" and (cpus or 1) >= 2 else device


@contextmanager
def one_thread_per_worker(devices: str) -> Iterator[None]:
    """With several CPU workers, make each worker subprocess use one torch thread (sets
    OMP_NUM_THREADS / MKL_NUM_THREADS to 1 where they are unset, which the subprocesses inherit;
    restored on exit), so two workers never oversubscribe two cores."""
    import os

    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    before = {n: os.environ.get(n) for n in names}
    if str(devices).split(",").count("cpu") > 1:
        for n in names:
            os.environ.setdefault(n, "1")
    try:
        yield
    finally:
        for n, v in before.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def run_study(device: str = "cpu", **kwargs: Any) -> Path:
    """`reproduce.reproduce(**kwargs)` as the book starts it: on `book_devices(device)` with one
    thread per CPU worker, progress bars off. Finished work is skipped. Returns its folder."""
    from .reproduce import reproduce  # the whole study (~60 ms at import): only when one runs

    devices = book_devices(device)
    with one_thread_per_worker(devices):
        return reproduce(devices=devices, progress=False, **kwargs)


def run_samples_study(runs: str | Path, samples: str | Path, device: str = "cpu") -> Path:
    """The book's study on the real sample records: profile `samples`, setups
    `settings.SAMPLES_SETUPS`, folds `settings.SAMPLES_FOLDS`, no ablation, on `book_devices(device)`;
    finished work is skipped. Returns RUNS/samples/."""
    return run_study(
        device, profile="samples", data_dir=samples, out=runs, setups=",".join(SAMPLES_SETUPS), ablation=False
    )


def _fmt(x: float, decimals: int) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{decimals}f}"


def results_table(
    aggs: dict[str, pd.DataFrame],
    metrics_shown: Sequence[str] = CLAIM_METRICS,
    paper: pd.DataFrame | None = None,
    decimals: int = 2,
) -> pd.DataFrame:
    """One row per setup; for each metric, the paper's value as printed (only when `paper` is
    given: a paper table of `results`, shown with its own `attrs['decimals']`) and ours under
    each protocol of `aggs` ({protocol: results.aggregate(...)}), ×100, "mean ± std" when more
    than one fold was averaged and the mean alone otherwise. Column labels say whose number it
    is: "paper (as printed)" or "ours, <protocol label>"."""
    from .results import METRIC_LABELS, SETUP_LABELS, SMOKE_LABEL  # pandas tables: ~10 ms at import

    first = next(iter(aggs.values()))
    columns, data = [], []
    for m in metrics_shown:
        if paper is not None:
            d = int(paper.attrs.get("decimals", 2))
            columns.append((METRIC_LABELS[m], "paper (as printed)"))
            data.append(
                [_fmt(paper.at[SETUP_LABELS[s], m], d) if SETUP_LABELS[s] in paper.index else "–" for s in first.index]
            )
        for protocol, agg in aggs.items():
            smoke = f" ({SMOKE_LABEL})" if is_smoke(agg) else ""
            columns.append((METRIC_LABELS[m], f"ours{smoke}, {PROTOCOL_LABELS[protocol]}"))
            cells = []
            for s in first.index:
                mean, std = 100 * agg.at[s, f"{m}_mean"], 100 * agg.at[s, f"{m}_std"]
                one = int(agg.at[s, "n_folds"]) < 2 or not np.isfinite(std)
                cells.append(_fmt(mean, decimals) if one else f"{_fmt(mean, decimals)} ± {_fmt(std, decimals)}")
            data.append(cells)
    out = pd.DataFrame(dict(zip(columns, data)), index=[SETUP_LABELS[s] for s in first.index])
    out.columns = pd.MultiIndex.from_tuples(columns, names=["metric", "whose number"])
    out.index.name = "setup"
    return out


SPLIT_LABELS = {  # which folds trained the network: the tables always say which they show
    "eight": "eight training folds (one outer fold reported, one inner fold held out for the honest protocol)",
    "nine": "nine training folds, as the authors trained (paper-exact protocol, departure B14)",
}


def describe_runs(agg: pd.DataFrame, split: str | None = None) -> str:
    """'synthetic fixture, profile tiny, outer folds 0,1 (2 folds)': what produced an aggregate,
    prefixed with results.SMOKE_LABEL when it was made from smoke runs; with `split` ("eight" or
    "nine"), also the training split (SPLIT_LABELS)."""
    from .results import SMOKE_LABEL  # pandas tables: ~10 ms at import

    first = agg.iloc[0]
    text = (
        f"{DATA_LABELS.get(first['data'], first['data'])}, profile `{first['profile']}`, "
        f"outer folds {first['folds']} ({int(first['n_folds'])} fold{'s' if int(first['n_folds']) > 1 else ''})"
    )
    if split is not None:
        text += f", {SPLIT_LABELS[split]}"
    return f"{SMOKE_LABEL}: {text}" if bool(first.get("smoke", False)) else text


def is_smoke(agg: pd.DataFrame) -> bool:
    """True when any row of an aggregate was made from smoke runs (`reproduce --max-steps`)."""
    return "smoke" in agg.columns and bool(agg["smoke"].astype(bool).any())


def runs_warning(agg: pd.DataFrame) -> str | None:
    """The warning box (MyST markdown) a results chapter shows above its tables, or None for full
    runs on the paper's data: smoke runs say they are not results (whatever their profile);
    runs on the fixture or the sample records say they are not a reproduction of the paper."""
    from .results import SMOKE_LABEL  # pandas tables: ~10 ms at import

    first = agg.iloc[0]
    profile, data = first["profile"], DATA_LABELS.get(first["data"], first["data"])
    n = int(first["n_folds"])
    if is_smoke(agg):
        body = (
            f"**{SMOKE_LABEL}.** These runs of the `{profile}` profile (data: {data}) were stopped after a few "
            "optimisation steps per stage (`reproduce --max-steps`): they check that every stage of this profile "
            "runs at its exact settings. Every number below is untrained noise, labelled "
            f'"{SMOKE_LABEL}", and means **nothing** about the paper or the method.'
        )
    elif first["data"] == "physionet2020":
        return None
    else:
        body = (
            f"These are numbers from the `{profile}` profile (data: {data}): a few epochs, {n} fold{'s' if n > 1 else ''}. "
            "They show that the pipeline runs and learns. They are **not** a reproduction of the paper, and their "
            "distance from the paper's values means nothing. Run the `paper` profile on the real data to compare "
            "(see the Reproduce chapter)."
        )
    return "```{warning}\n" + body + "\n```"


def status_table() -> pd.DataFrame:
    """What the book reproduces and on what data, read off the profiles (one row per part of the
    study; columns: the paper's setting, and what the tiny, samples and paper profiles run)."""
    tiny, samples, paper = get_profile("tiny"), get_profile("samples"), get_profile("paper")

    def folds(p: Profile) -> str:
        return f"{len(p.folds)} of {N_FOLDS} folds" if len(p.folds) < N_FOLDS else f"{N_FOLDS} folds"

    def pre(p: Profile) -> str:
        c = p.pretrain["time"]
        return f"{c.epochs} epochs, {c.n_global} global + {c.n_local} local views, head {c.out_dim}"

    def fine(p: Profile, setups: Sequence[str]) -> str:
        f = p.finetune
        e = sorted(set(f.epochs[setup_family(s)] for s in setups))
        return f"{len(setups)} setup{'s' if len(setups) > 1 else ''}, {folds(p)}, {'/'.join(map(str, e))} epochs"

    rows = {
        "data": (
            "PhysioNet/CinC 2020, 43,101 records",
            f"synthetic fixture, {tiny.fixture_records} records",
            "208 real Challenge records (tests/data/ecg-samples)",
            "PhysioNet/CinC 2020 (download)",
        ),
        "pre-training (DINO, both backbones)": (
            "300 epochs, 2 + 8 views, head 65536",
            pre(tiny),
            "none (T from scratch)" if not any(is_ssl(s) for s in SAMPLES_SETUPS) else pre(samples),
            pre(paper),
        ),
        "fine-tuning (Table II)": (
            "8 setups, 10 folds, 100-200 epochs",
            fine(tiny, SETUPS),
            fine(samples, SAMPLES_SETUPS),
            fine(paper, SETUPS),
        ),
        "Fig. 3 ablation": (
            "10 folds",
            f"fold {', '.join(map(str, tiny.finetune.ablation_folds or tiny.folds))} only",
            "not run",
            "10 folds",
        ),
        "hardware, time": ("GPU", "CPU, minutes", "CPU, minutes", "GPU, days (not run for this build)"),
    }
    return pd.DataFrame(rows, index=["the paper", "tiny (this build)", "samples (this build)", "paper profile"]).T


def samples_control_profile() -> Profile:
    """The `samples` profile with the tiny profile's fine-tuning settings (3 epochs of 16 records
    x 2 crops, lr 1e-3): the control that shows those settings learn nothing on real signals."""
    from dataclasses import replace

    return replace(get_profile("samples"), finetune=replace(get_profile("tiny").finetune, ablation_folds=None))


def run_samples_control(runs: str | Path, samples: str | Path, device: str = "cpu") -> Path:
    """`samples_control_profile` on the same records, setups and folds as `run_samples_study`,
    into RUNS/samples-control/samples/. Returns that folder."""
    return run_study(
        device,
        profile=samples_control_profile(),
        data_dir=samples,
        out=Path(runs) / "samples-control",
        setups=",".join(SAMPLES_SETUPS),
        ablation=False,
    )


# ----------------------------------------------------------------------------------------------
# the paper's claims, as the table chapters show them (statistics: ecgssl_nb.claims)


def _interval(lo: float, hi: float) -> str:
    return "–" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.2f}, {hi:+.2f}]"


def claims_display(claim_table: pd.DataFrame, noise: pd.DataFrame | None = None) -> pd.DataFrame:
    """`claims.claims_table` rows as the book prints them: one row per (claim, metric), readable
    labels ("T → SSL-T"), the number of paired folds, the mean paired difference B − A (×100), its
    95 % percentile-bootstrap interval over folds and its 95 % paired-t interval, the paired t
    test's p-value and the verdict. With `noise` (`claims.margins_vs_noise`), also the paper's
    claimed margin, the larger fold std of A and B in our runs (×100) and whether the margin
    exceeds it."""
    from .results import METRIC_LABELS, SETUP_LABELS  # pandas tables: ~10 ms at import

    def name(run: str) -> str:  # "ssl-t" -> "SSL-T"; "ssl-t-tc" (a Fig. 3 setting) -> "SSL-T (TC)"
        if run in SETUP_LABELS:
            return SETUP_LABELS[run]
        base, _, tr = run.rpartition("-")
        return f"{SETUP_LABELS.get(base, base)} ({tr.upper()})"

    rows, index = [], []
    for _, r in claim_table.iterrows():
        row = {
            "A → B": f"{name(r['A'])} → {name(r['B'])}",
            "folds": int(r["n_folds"]),
            "B − A (×100)": f"{r['mean B - A']:+.2f}",
            "95 % bootstrap over folds": _interval(r["bootstrap lo"], r["bootstrap hi"]),
            "95 % paired t": _interval(r["t lo"], r["t hi"]),
            "p (paired t)": "–" if not np.isfinite(r["p (paired t)"]) else f"{r['p (paired t)']:.2f}",
            "verdict": r["verdict"],
        }
        if noise is not None:
            n = noise[(noise["claim"] == r["claim"]) & (noise["metric"] == r["metric"])]
            if len(n):
                n = n.iloc[0]
                std = (
                    np.nanmax([n["our fold std A"], n["our fold std B"]])
                    if np.isfinite([n["our fold std A"], n["our fold std B"]]).any()
                    else float("nan")
                )
                row["paper's margin (×100)"] = f"{n['paper margin']:+.2f}"
                row["our larger fold std (×100)"] = _fmt(std, 2)
                row["margin > fold std?"] = {True: "yes", False: "no"}.get(n["margin > fold std"], "– (one fold)")
        rows.append(row)
        claim = re.sub(
            r"beats (none|tc|gn|fc)$",
            lambda m: "beats " + ("no transform" if m[1] == "none" else m[1].upper()),
            r["claim"],
        )  # Fig. 3 claims: "T1 beats tc" -> "T1 beats TC"
        index.append((claim, METRIC_LABELS[r["metric"]]))
    out = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["claim", "metric"]))
    return out


def pooled_beside_means(
    pooled: pd.DataFrame,
    agg_honest: pd.DataFrame,
    names: Sequence[str] | None = None,
    metrics_shown: Sequence[str] = metrics.HEADLINE_METRICS,
) -> pd.DataFrame:
    """Per setting of `agg_honest` (`results.aggregate(..., protocol="honest")`, optionally only
    the rows `names`): the pooled out-of-fold metric (rows of `claims.pooled_oof`, honest
    protocol, its `setup` column naming the setting) beside the mean over folds, ×100, and the
    folds behind each. Settings without predictions get "–"."""
    from .results import METRIC_LABELS, SETUP_LABELS  # pandas tables: ~10 ms at import

    pooled = pooled.set_index("setup") if len(pooled) else pd.DataFrame()
    names = list(agg_honest.index) if names is None else list(names)
    data = {}
    for m in metrics_shown:
        data[(METRIC_LABELS[m], "pooled out-of-fold")] = [
            _fmt(100 * pooled.at[n, m], 2) if n in pooled.index else "–" for n in names
        ]
        data[(METRIC_LABELS[m], "mean over folds")] = [_fmt(100 * agg_honest.at[n, f"{m}_mean"], 2) for n in names]
    data[("folds", "pooled")] = [pooled.at[n, "folds"] if n in pooled.index else "–" for n in names]
    data[("folds", "mean")] = [agg_honest.at[n, "folds"] for n in names]
    label = {
        n: SETUP_LABELS.get(n, f"{SETUP_LABELS.get(n.rpartition('-')[0], n)} ({n.rpartition('-')[2].upper()})")
        for n in names
    }
    out = pd.DataFrame(data, index=pd.Index([label[n] for n in names], name="setting"))
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["metric", "how"])
    return out


# ----------------------------------------------------------------------------------------------
# the data chapter: classes and folds


def class_counts(label_matrix: np.ndarray, name: str = "this corpus") -> pd.DataFrame:
    """Records per class (24 rows, labels.ABBREVIATIONS): column `name` counts the positives of
    `label_matrix` (N, 24), column "official total (6 sources)" the official Challenge 2020 total
    (labels.official_totals), the codes merged into a class (labels.MERGES) added to it."""
    totals = official_totals()
    official = [totals[c]["Total"] + sum(totals[r]["Total"] for r, k in MERGES.items() if k == c) for c in CLASSES]
    ours = np.asarray(label_matrix).sum(axis=0).astype(int)
    return pd.DataFrame({name: ours, "official total (6 sources)": official}, index=list(ABBREVIATIONS))


def fold_counts(label_matrix: np.ndarray, folds: ArrayLike, n_folds: int | None = None) -> pd.DataFrame:
    """Per fold 0..n_folds-1 (default settings.N_FOLDS): its records, then its positives of each of the
    24 classes (columns labels.ABBREVIATIONS). `folds` (N,) gives each row's fold."""
    n_folds = N_FOLDS if n_folds is None else n_folds
    y, f = np.asarray(label_matrix), np.asarray(folds)
    counts = pd.DataFrame([y[f == k].sum(axis=0) for k in range(n_folds)], columns=list(ABBREVIATIONS)).astype(int)
    counts.insert(0, "records", [int((f == k).sum()) for k in range(n_folds)])
    counts.index.name = "fold"
    return counts


def fold_balance(counts: pd.DataFrame) -> pd.DataFrame:
    """Per class, from `fold_counts`: its records, the ideal count per fold (records / folds) and
    the largest distance of a fold's count from that ideal (1 decimal)."""
    per_class = counts.drop(columns="records")
    ideal = per_class.sum(axis=0) / len(per_class)
    return pd.DataFrame(
        {
            "records": per_class.sum(axis=0),
            "ideal per fold": ideal.round(1),
            "largest deviation": (per_class - ideal).abs().max(axis=0).round(1),
        }
    )


def records_per_source(index: pd.DataFrame) -> pd.DataFrame:
    """Records kept per source (a prepared `index.csv`) and their share of all (3 decimals)."""
    out = index.groupby("source").size().rename("records kept").to_frame()
    out["share"] = (out["records kept"] / out["records kept"].sum()).round(3)
    return out


# ----------------------------------------------------------------------------------------------
# the self-distillation chapter: what the backbones' features separate


PRETRAIN_SUMMARY_KEYS = (  # what the self-distillation chapter shows of each run's summary.json
    "epochs",
    "batch_size_per_process",
    "steps_per_epoch",
    "peak_lr",
    "out_dim",
    "optimizer",
    "teacher_temp",
    "student_temp",
    "teacher_momentum",
    "center_momentum",
    "transforms",
    "kept",
    "final_loss",
    "final_teacher_entropy",
    "final_embedding_std",
    "wall_time_s",
    "device",
)


def pretrain_settings(summaries: dict[str, dict]) -> pd.DataFrame:
    """The settings and final state of pre-trainings, one column per run ({name: summary.json}),
    one row per PRETRAIN_SUMMARY_KEYS: the summary's value, else its `config` entry's, else "–"."""
    return pd.DataFrame(
        {m: {k: s.get(k, s.get("config", {}).get(k, "–")) for k in PRETRAIN_SUMMARY_KEYS} for m, s in summaries.items()}
    )


@torch.no_grad()
def record_features(
    backbone: torch.nn.Module, corpus: Corpus, mean: ArrayLike, std: ArrayLike, modality: str, batch_windows: int = 512
) -> np.ndarray:
    """(records, feature_dim) float64: each record's backbone features averaged over its evaluation
    windows (`corpus.iter_sliding_windows`, 250 samples every 125), each window given to the
    backbone as fine-tuning gives it: normalised per lead with `mean`, `std` (12,) mV ("time") or
    as its normalised spectrogram ("spec"). The backbone is left in eval mode, on the corpus device."""
    from .core.transforms import normalize, spectrogram  # ~6 ms at import: only for the transforms chapter

    check_modality(modality)
    backbone.eval().to(corpus.device)

    def features(x: torch.Tensor) -> tuple[torch.Tensor]:  # x: (w, 12, 250) raw mV -> (w, D)
        return (backbone(normalize(x, mean, std) if modality == "time" else spectrogram(x)),)

    return corpus.mean_over_windows(features, batch_windows)[0]


def pca2(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of the standardised features (N, D): (points (N, 2),
    their shares of the total variance (2,))."""
    f = np.asarray(features, dtype=np.float64)
    z = (f - f.mean(axis=0)) / (f.std(axis=0) + 1e-8)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    return u[:, :2] * s[:2], (s[:2] ** 2) / (s**2).sum()


def rarest_class(label_matrix: np.ndarray) -> list[str]:
    """Per record (rows of `label_matrix` (N, 24)), the abbreviation of its class with the fewest
    records among these rows (usually its most specific one), or "none" for a record without any."""
    y = np.asarray(label_matrix)
    freq = y.sum(axis=0)
    return [ABBREVIATIONS[min(np.flatnonzero(r), key=lambda k: freq[k])] if r.any() else "none" for r in y]


# ----------------------------------------------------------------------------------------------
# the Table II and Fig. 3 chapters: the paper's orderings in our means


def protocol_gap(aggs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Optimistic minus honest mean of each metric (×100, 2 decimals) per setup (index
    results.SETUP_LABELS, named "setup"), from {protocol: results.aggregate(...)}."""
    from .results import METRIC_LABELS, SETUP_LABELS  # pandas tables: ~10 ms at import

    paper, honest = aggs["paper"], aggs["honest"]
    gap = pd.DataFrame(
        {METRIC_LABELS[m]: (100 * (paper[f"{m}_mean"] - honest[f"{m}_mean"])).to_numpy() for m in metrics.METRIC_KEYS},
        index=pd.Index([SETUP_LABELS[s] for s in paper.index], name="setup"),
    )
    return gap.round(2)


def _descending(a: pd.DataFrame, metric: str, order: list[str]) -> bool:
    v = [a.at[s, f"{metric}_mean"] for s in order]
    return all(x > y for x, y in zip(v, v[1:]))


# (ordering the paper reads off Table II, test on an aggregate of the eight setups)
PAPER_PATTERNS = {
    "no SSL: TSG > TSC > T > S (AUROC)": lambda a: _descending(a, "auroc", ["tsg", "tsc", "t", "s"]),
    "SSL: TSG > T > S (AUROC)": lambda a: _descending(a, "auroc", ["ssl-tsg", "ssl-t", "ssl-s"]),
    "SSL beats scratch for every architecture (AUROC)": lambda a: all(
        a.at[f"ssl-{f}", "auroc_mean"] > a.at[f, "auroc_mean"] for f in ("t", "s", "tsc", "tsg")
    ),
    "gate beats concatenation, with and without SSL (AUROC)": lambda a: all(
        a.at[f"{p}tsg", "auroc_mean"] > a.at[f"{p}tsc", "auroc_mean"] for p in ("", "ssl-")
    ),
    "SSL-TSG is the best setup (ChM)": lambda a: a["challenge_mean"].idxmax() == "ssl-tsg",
}


def paper_patterns(aggs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Does each ordering of PAPER_PATTERNS hold in our means? "yes"/"no" per ordering (rows) and
    protocol (columns, PROTOCOL_LABELS), from {protocol: results.aggregate(...)} of the eight setups."""
    from .results import SMOKE_LABEL  # pandas tables: ~10 ms at import

    out = pd.DataFrame(
        {
            PROTOCOL_LABELS[p]: {name: "yes" if f(a) else "no" for name, f in PAPER_PATTERNS.items()}
            for p, a in aggs.items()
        }
    )
    out.index.name = "ordering" + (f" ({SMOKE_LABEL})" if any(is_smoke(a) for a in aggs.values()) else "")
    return out


def read_fig3(runs: str | Path, profile: str) -> dict[str, pd.DataFrame]:
    """The Fig. 3 table `reproduce` wrote (RUNS/<profile>/tables/fig3.csv) as {protocol: frame}, each
    frame indexed by run ("ssl-t-tc", ..., "ssl-t-t1", "ssl-s-none", ...) in the figure's order,
    with the columns of a `results.aggregate` (modality, transforms, n_folds, folds, <metric>_mean,
    <metric>_std, ...). UserError when the table is missing."""
    path = paths.table_path(runs, profile, "fig3")
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `reproduce --profile {profile}` with the ablation first")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"folds": str})
    df.index = pd.Index(df["setup"] + "-" + df["transforms"], name="run")
    return {p: df[df["protocol"] == p] for p in PROTOCOLS if (df["protocol"] == p).any()}


def fig3_table(fig3: dict[str, pd.DataFrame], metrics_shown: Sequence[str] = CLAIM_METRICS) -> pd.DataFrame:
    """The Fig. 3 table as the chapter prints it: per setting (index "SSL-T (TC)", ...) its modality,
    transforms, mean ± std ×100 of each metric under each protocol of `fig3` (from `read_fig3`), and
    the folds behind it."""
    from .plots import mean_std  # matplotlib
    from .results import METRIC_LABELS, SETUP_LABELS, SMOKE_LABEL  # pandas tables: ~10 ms at import

    first = next(iter(fig3.values()))
    data = {"modality": list(first["modality"]), "transforms": [t.upper() for t in first["transforms"]]}
    for p, a in fig3.items():
        for k in metrics_shown:
            data[f"{METRIC_LABELS[k]}, {PROTOCOL_LABELS[p]}"] = [
                mean_std(a.at[n, f"{k}_mean"], a.at[n, f"{k}_std"]) for n in first.index
            ]
    data["folds"] = list(first["folds"])
    smoke = any(is_smoke(a) for a in fig3.values())
    index = [f"{SETUP_LABELS[s]} ({t.upper()})" for s, t in zip(first["setup"], first["transforms"])]
    return pd.DataFrame(data, index=pd.Index(index, name="setting" + (f" ({SMOKE_LABEL})" if smoke else "")))


def fig3_bars(fig3: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The bars of one Fig. 3 panel pair from one protocol's frame of `read_fig3`: modality,
    transforms, mean and std of `metric` ×100, one row per setting."""
    return pd.DataFrame(
        {
            "modality": list(fig3["modality"]),
            "transforms": list(fig3["transforms"]),
            "mean": list(100 * fig3[f"{metric}_mean"]),
            "std": list(100 * fig3[f"{metric}_std"]),
        }
    )


def full_set_best(fig3: dict[str, pd.DataFrame], metric: str = "auroc") -> pd.DataFrame:
    """Per protocol and modality: the setting with the highest mean `metric` and whether it is the
    full view set (settings.MAIN_TRANSFORMS: T1 for time, T2 for spectrograms), "yes" or "no"."""
    rows = {}
    for p, a in fig3.items():
        for m, part in a.groupby("modality", sort=False):
            best = part[f"{metric}_mean"].idxmax()
            rows[(PROTOCOL_LABELS[p], m)] = {
                f"best by {metric.upper()}": best,
                "full set best?": "yes" if part.at[best, "transforms"] == MAIN_TRANSFORMS[m] else "no",
            }
    out = pd.DataFrame(rows).T
    out.index.names = ["protocol", "modality"]
    return out


# ----------------------------------------------------------------------------------------------
# the samples and released-code chapters


def finetune_budget(profiles: dict[str, Profile], n_train: int, setup: str = "t") -> pd.DataFrame:
    """How much one fine-tuning of `setup` trains under each profile ({name: Profile}, one row
    each) on `n_train` training records: epochs, records per step, crops per record, learning
    rate, and the (ceil) steps per epoch and in all."""
    family = setup_family(setup)
    rows = {}
    for name, p in profiles.items():
        f = p.finetune
        steps = -(-n_train // f.batch_records[family])
        rows[name] = {
            "epochs": f.epochs[family],
            "records per step": f.batch_records[family],
            "crops per record": f.crops,
            "learning rate": f.lr,
            "steps per epoch (about)": steps,
            "steps in all (about)": steps * f.epochs[family],
        }
    return pd.DataFrame(rows, dtype=object).T


def recipe_differences(rows: pd.DataFrame) -> pd.DataFrame:
    """`recipes.compare_recipes` rows of one recipe -> one row per setup (results.SETUP_LABELS):
    per metric of CLAIM_METRICS the recipe's and the corrected mean (×100, 2 decimals) and their
    paired difference with its 95 % bootstrap interval ("[–]" without one), then the folds."""
    from .results import METRIC_LABELS, SETUP_LABELS  # pandas tables: ~10 ms at import

    out = {}
    for m in CLAIM_METRICS:
        part = rows[rows["metric"] == m].set_index("setup")
        name = METRIC_LABELS[m]
        out[(name, "released")] = part["recipe mean"].map(lambda v: f"{v:.2f}")
        out[(name, "corrected")] = part["corrected mean"].map(lambda v: f"{v:.2f}")
        out[(name, "released − corrected [95 % bootstrap]")] = [
            f"{d:+.2f} " + ("[–]" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]")
            for d, lo, hi in zip(part["difference"], part["bootstrap lo"], part["bootstrap hi"])
        ]
    out[("", "folds")] = part["n_folds"]
    t = pd.DataFrame(out)
    t.columns = pd.MultiIndex.from_tuples(t.columns, names=["metric", "recipe"])
    t.index = pd.Index([SETUP_LABELS[s] for s in t.index], name="setup")
    return t
