"""Fine-tuning and evaluation of one setup on one outer fold K under two protocols (paper Sec. II-C,
III-B; book: Fine-tuning), in the paper's order: the seeds and network of a setup (B6, B26), one
step, one epoch (B22), prediction over sliding windows, the folds (B14), the selection after every
epoch ("paper": best on K, as the authors did; "honest": best on the inner fold J) and the two
protocols' thresholds and scores (B15). The run around it is `ecgssl_nb.stages.finetune`'s. A step
and an evaluation pass never synchronise host and device (the losses are read once per epoch, or
every `log_every` steps); on CUDA the network runs in bf16 autocast (inputs, STFT, loss in fp32).
"""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .errors import UserError, check_choice
from .metrics import auprc, auroc, threshold_search
from .models import build_model, init_xavier, load_backbone
from .settings import COMPILE_MODES, FUSION_SSL, FinetuneConfig, check_fold, is_ssl, setup_modalities
from .transforms import spec_lead_mean, spectrogram, zscore
from .windows import Corpus, PreparedLike

# --- seeds and the network (Sec. II-C; B6, B26) ---------------------------------------------------


def run_seed(seed: int, fold: int) -> int:
    """One 32-bit seed per (seed, fold) run (B26); different folds get unrelated streams."""
    return int(np.random.SeedSequence([int(seed), int(fold)]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_finetune_model(
    setup: str,
    backbones: Mapping[str, str | os.PathLike | Mapping] | None = None,
    seed: int = 0,
    fusion_ssl: str = "loaded",
) -> torch.nn.Module:
    """The network of `setup` ready to fine-tune, on the CPU: scratch setups re-initialised with
    `init_xavier` (as released), ssl- setups with their backbones loaded all-or-nothing from
    `backbones` ({modality: file or state_dict}, B6), heads at PyTorch's default init.
    fusion_ssl="ignored" (released, B6): ssl-tsc and ssl-tsg load nothing and skip xavier."""
    check_choice("fusion_ssl", fusion_ssl, FUSION_SSL)
    files = dict(backbones or {})
    missing = [m for m in setup_modalities(setup) if is_ssl(setup) and m not in files]
    if missing or (files and not is_ssl(setup)):
        wanted = "no backbones" if not is_ssl(setup) else f"backbones {', '.join(setup_modalities(setup))}"
        raise UserError(f"setup {setup!r} takes {wanted}, got {', '.join(sorted(files)) or 'none'}")
    torch.manual_seed(seed)  # default init of every layer (the heads of ssl- setups keep it)
    model = build_model(setup)
    if fusion_ssl == "ignored" and is_ssl(setup) and len(setup_modalities(setup)) == 2:
        return model  # released: the checkpoints match 0 keys and xavier is skipped
    if not files:
        init_xavier(model, generator=torch.Generator().manual_seed(seed))
    for modality, path in files.items():  # all or nothing, B6
        load_backbone(model.time_backbone if modality == "time" else model.spec_backbone, path)
    return model


# --- inputs, one step, prediction over sliding windows (Sec. II-C) --------------------------------


def model_inputs(
    model: torch.nn.Module,
    x_raw: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    spec_mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Raw mV windows (W, 12, 250) -> (x_time (W, 12, 250) z-scored or None, x_spec (W, 12, 13, 21)
    `transforms.spectrogram` or None); `spec_mean` is `spec_lead_mean` on the device."""
    spec_mean = spec_lead_mean(x_raw.device) if spec_mean is None else spec_mean
    x_time = zscore(x_raw, mean, std) if model.uses_time else None
    x_spec = spectrogram(x_raw, spec_mean) if model.uses_spec else None  # of the RAW crop, as released, fp32
    return x_time, x_spec


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def step_loss(
    model: torch.nn.Module,
    x_raw: torch.Tensor,
    y: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    spec_mean: torch.Tensor,
    amp: bool = False,
) -> torch.Tensor:
    """The forward half of a training step, the part that `torch.compile(fullgraph=True)` takes
    whole: z-score and spectrogram of raw crops (W, 12, 250) mV (fp32), the network (bf16 autocast
    on CUDA when `amp`), then the BCE-with-logits loss in fp32 against labels (W, 24)."""
    x_time, x_spec = model_inputs(model, x_raw, mean, std, spec_mean)
    with _autocast(x_raw.device, amp):
        logits = model(x_time, x_spec)  # (W, 24)
    return F.binary_cross_entropy_with_logits(logits.float(), y)


def make_step_loss(mode: str = "off", backend: str = "inductor") -> Callable[..., torch.Tensor]:
    """`step_loss` as a training step runs it: eager for mode "off"; else compiled, fullgraph (a
    graph break is an error), static shapes, its backward with it. "reduce-overhead" replays CUDA
    graphs on CUDA, each call marking a new step. `backend` is torch.compile's (tests: "aot_eager")."""
    check_choice("compile", mode, COMPILE_MODES)
    if mode == "off":
        return step_loss
    compiled = torch.compile(
        step_loss, fullgraph=True, dynamic=False, backend=backend, mode=None if mode == "default" else mode
    )
    if mode == "default":
        return compiled

    def graphed(*args, **kwargs) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs)

    return graphed


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_raw: torch.Tensor,
    y: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    amp: bool = False,
    spec_mean: torch.Tensor | None = None,
    loss_fn: Callable[..., torch.Tensor] = step_loss,
) -> torch.Tensor:
    """One Adam step on raw crops (W, 12, 250) mV with labels (W, 24); returns the mean
    BCE-with-logits loss, detached, on the device. `loss_fn` is `step_loss` or `make_step_loss`'s."""
    spec_mean = spec_lead_mean(x_raw.device) if spec_mean is None else spec_mean
    loss = loss_fn(model, x_raw, y, mean, std, spec_mean, amp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    corpus: Corpus,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_windows: int = 2048,
    stride: int = 125,
    amp: bool = False,
    spec_mean: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Record probabilities (N, 24) float64, the mean sigmoid output over each record's windows (250
    samples every `stride`, a shorter tail dropped), and the mean gate weights (N, 2) = (time, spec)
    of a gated model, else None. The model is left in eval mode; only the result is read back."""
    model.eval()
    spec_mean = spec_lead_mean(corpus.device) if spec_mean is None else spec_mean

    def probs_and_gate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x_time, x_spec = model_inputs(model, x, mean, std, spec_mean)  # x: (w, 12, 250) raw mV
        with _autocast(corpus.device, amp):
            logits, gate = model(x_time, x_spec, return_gate=True)  # (w, 24), (w, 2) or None
        return torch.sigmoid(logits.float()), None if gate is None else gate.float()

    return corpus.mean_over_windows(probs_and_gate, batch_windows, stride)


# --- the folds of the two protocols (Sec. III-A; B14) ---------------------------------------------


@dataclass(frozen=True)
class Split:
    """The prepared rows of one run: training rows, outer fold K (reported), inner fold J."""

    fold: int
    inner: int | None  # J, None under paper-exact
    n_folds: int
    folds: np.ndarray  # (N,) the fold of every prepared record
    train: np.ndarray  # row numbers into the prepared index
    outer: np.ndarray
    inner_rows: np.ndarray  # empty under paper-exact


def inner_fold(fold: int, n_folds: int, protocol: str) -> int | None:
    """The inner fold held out for the honest protocol's choices: the next fold; None under
    paper-exact (nine training folds, choices on the reported fold, as the authors trained)."""
    return None if protocol == "paper-exact" else (int(fold) + 1) % int(n_folds)


def split_folds(prep: PreparedLike, fold: int, protocol: str) -> Split:
    """Train on every fold but K and J; UserError naming the fold when a set is empty."""
    folds = prep.index["fold"].to_numpy()
    n_folds = int(prep.stats.get("n_folds", int(prep.index["fold"].max()) + 1))
    fold = check_fold(fold, n_folds)
    inner = inner_fold(fold, n_folds, protocol)
    j = -1 if inner is None else inner  # -1: no fold, so no inner rows under paper-exact
    train = np.flatnonzero((folds != fold) & (folds != j))
    outer, inner_rows = np.flatnonzero(folds == fold), np.flatnonzero(folds == j)
    sets = [("training", train), (f"outer fold {fold}", outer), (f"inner fold {inner}", inner_rows)]
    for what, rows in sets[: 2 if inner is None else 3]:
        if len(rows) == 0:
            raise UserError(f"--fold {fold}: the {what} set of {prep.path} is empty")
    return Split(fold, inner, n_folds, folds, train, outer, inner_rows)


# --- one epoch of training (Sec. II-C; B22) -------------------------------------------------------


@dataclass
class Trainer:
    """What training changes: the network, its optimiser and scheduler, the record/crop stream."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator  # record order and crop starts, on the run's device (no copies per step)
    loss_fn: Callable[..., torch.Tensor] = step_loss  # `make_step_loss(cfg.compile)`


@dataclass(frozen=True)
class Data:
    """The run's records on the device, and the labels of the evaluated folds."""

    train: Corpus
    outer: Corpus
    inner: Corpus | None
    mean: torch.Tensor  # (12,) mV, per lead
    std: torch.Tensor  # (12,) mV
    spec_mean: torch.Tensor  # (12,) `spec_lead_mean`, on the device
    y_outer: np.ndarray  # (N_outer, 24)
    y_inner: np.ndarray | None  # (N_inner, 24)


def load_data(prep: PreparedLike, split: Split, dev: torch.device) -> Data:
    """The records of `split` on the device `dev`, with the per-lead statistics of `prep`."""
    outer = Corpus.from_prepared(prep, rows=split.outer, device=dev)
    inner = Corpus.from_prepared(prep, rows=split.inner_rows, device=dev) if split.inner is not None else None
    return Data(
        train=Corpus.from_prepared(prep, rows=split.train, device=dev),
        outer=outer,
        inner=inner,
        mean=torch.as_tensor(np.asarray(prep.mean, dtype=np.float32), device=dev),
        std=torch.as_tensor(np.asarray(prep.std, dtype=np.float32), device=dev),
        spec_mean=spec_lead_mean(dev),
        y_outer=outer.labels.cpu().numpy(),
        y_inner=inner.labels.cpu().numpy() if inner is not None else None,
    )


def steps_per_epoch(n_train: int, batch_records: int) -> int:
    """Optimisation steps in an epoch: ceil(n_train / batch), batch = min(batch_records, n_train)."""
    return -(-n_train // max(1, min(batch_records, n_train)))


def epoch_plan(n_train: int, batch_records: int, generator: torch.Generator) -> torch.Tensor:
    """The shuffled records of one epoch's steps, (steps, batch) on the generator's device, batch =
    min(batch_records, n_train); a short last step is topped up from the shuffle's start (one shape)."""
    batch = max(1, min(batch_records, n_train))
    steps = steps_per_epoch(n_train, batch)
    order = torch.randperm(n_train, generator=generator, device=generator.device)  # (n_train,)
    return torch.cat([order, order[: steps * batch - n_train]]).view(steps, batch)


def train_one_epoch(
    tr: Trainer,
    data: Data,
    cfg: FinetuneConfig,
    batch_records: int,
    epoch: int,
    amp: bool = False,
    log: Callable[[int, float], None] | None = None,
) -> float:
    """Step the learning rate (at the START of the epoch, as released: B22), then one pass over the
    shuffled records (`epoch_plan`), `crops` random windows each, to cfg.max_steps of the whole run
    if set; returns the mean loss, read once (and every cfg.log_every steps, to `log`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        tr.scheduler.step()
    tr.model.train()
    plan = epoch_plan(len(data.train), batch_records, tr.generator)  # (steps, batch) on the device
    loss_sum, n_steps = torch.zeros((), device=data.mean.device), 0
    for j, rec in enumerate(plan):
        step = (epoch - 1) * len(plan) + j
        if cfg.max_steps and step >= cfg.max_steps:
            break
        x = data.train.random_windows(rec, cfg.crops, tr.generator)  # (batch*crops, 12, 250) raw mV
        y = data.train.window_labels(rec, cfg.crops)  # (batch*crops, 24)
        loss = train_step(tr.model, tr.optimizer, x, y, data.mean, data.std, amp, data.spec_mean, tr.loss_fn)
        loss_sum += loss
        n_steps += 1
        if log is not None and cfg.log_every and n_steps % cfg.log_every == 0:
            log(step + 1, float(loss_sum.item() / n_steps))  # a host read every log_every steps
    return float(loss_sum.item() / max(n_steps, 1))


# --- evaluation, selection and thresholds of the two protocols (Sec. III-B; B15) ------------------


@dataclass(frozen=True)
class Evaluation:
    """The record probabilities of one epoch and their macro AUROC/AUPRC (log.csv's columns)."""

    outer: np.ndarray  # (N_outer, 24)
    gate: np.ndarray | None  # (N_outer, 2) mean (time, spec) gate weights, tsg only
    inner: np.ndarray | None  # (N_inner, 24)
    metrics: dict  # outer_auroc, outer_auprc[, inner_auroc, inner_auprc]


def evaluate_epoch(model: torch.nn.Module, data: Data, cfg: FinetuneConfig, amp: bool = False) -> Evaluation:
    """Record probabilities on the outer (and inner) fold, and their macro AUROC and AUPRC."""
    kw = dict(batch_windows=cfg.eval_batch_windows, stride=cfg.val_stride, amp=amp, spec_mean=data.spec_mean)
    p_out, g_out = predict(model, data.outer, data.mean, data.std, **kw)
    metrics = dict(zip(("outer_auroc", "outer_auprc"), _macro(data.y_outer, p_out)))
    p_in = None
    if data.inner is not None:
        p_in, _ = predict(model, data.inner, data.mean, data.std, **kw)
        metrics.update(zip(("inner_auroc", "inner_auprc"), _macro(data.y_inner, p_in)))
    return Evaluation(p_out, g_out, p_in, metrics)


def select(best: dict, epoch: int, ev: Evaluation, metric: str) -> dict:
    """The best epochs so far: "paper" by `metric` (macro auprc or auroc) on the outer fold, "honest"
    on the inner one; a later epoch wins only by strict improvement (as released), NaN never."""
    best = dict(best)
    score = _score(ev.metrics[f"outer_{metric}"])
    if best["paper"] is None or score > best["paper"]["score"]:
        best["paper"] = {"epoch": epoch, "score": score, "outer": ev.outer, "gate": ev.gate}
    if ev.inner is not None:
        score = _score(ev.metrics[f"inner_{metric}"])
        if best["honest"] is None or score > best["honest"]["score"]:
            best["honest"] = {"epoch": epoch, "score": score, "inner": ev.inner, "outer": ev.outer}
    return best


def _macro(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    return auroc(labels, probs)[0], auprc(labels, probs)[0]  # NaN (no warning) for a fold without positives


def _score(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def gate_by_class(gate: np.ndarray, labels: np.ndarray) -> dict:
    """Mean (time, spec) gate weight over the records positive for each class (NaN if none)."""
    pos = labels > 0.5  # (N, 24)
    n_pos = pos.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (pos.T.astype(np.float64) @ gate) / n_pos[:, None]  # (24, 2)
    return {"time": mean[:, 0], "spec": mean[:, 1], "n_positive": n_pos, "overall": gate.mean(axis=0)}


def protocols(data: Data, best: dict, cfg: FinetuneConfig) -> dict:
    """{"paper": ..., "honest": ...}: each protocol's selected epoch, thresholds tuned on the fold it
    was selected on (paper: outer K; honest: inner J, if any) and its metrics on the outer fold."""
    tune_labels = {"outer": data.y_outer, "inner": data.y_inner}
    out = {}
    for name, on in [("paper", "outer")] + ([("honest", "inner")] if data.inner is not None else []):
        chosen = best[name]
        thresholds = threshold_search(
            tune_labels[on], chosen[on], grid=cfg.threshold_grid, default=cfg.threshold_default
        )
        m = metrics.evaluate(data.y_outer, chosen["outer"], thresholds)
        per_class = m.pop("per_class")
        out[name] = {
            "metrics": {**m, "epoch": chosen["epoch"]},
            "per_class": per_class,
            "thresholds": thresholds,
            "selection": {
                "epoch": chosen["epoch"],
                "metric": cfg.select_metric,
                "score": chosen["score"],
                "selected_on": on,
                "thresholds_on": on,
                "reported_on": "outer",
            },
        }
    return out
