"""Fine-tune one setup on one outer fold and evaluate it under two protocols (paper Sec. II-C;
book: Deviations, B14, B15).

One function, `finetune(setup, fold, ...)`, serves all eight setups (t, s, tsc, tsg and their
ssl- variants): the setup only decides which backbones the network has, what they are fed, how
they are initialised and which cosine floor the learning rate has.

Protocol (one training run per (setup, outer fold K)):

* Folds. Outer fold K is held out. The inner fold is J = (K + 1) % n_folds. The network trains on
  the other n_folds - 2 folds (8 of 10). After every epoch it predicts J and K.
* Prediction (book: Fine-tuning). Windows of 250 samples at stride 125 (a shorter tail is dropped). The
  record's probability is the mean of its windows' sigmoid outputs.
* Protocol "paper" (optimistic, as the authors did). The epoch with the best macro AUPRC on K
  (first epoch on ties: strict improvement, as released) is selected. The per-class thresholds are
  tuned on K's predictions at that epoch (grid {0.1..0.5}, others at 0.1, book: Deviations, B15). Metrics are
  reported on K.
* Protocol "honest" (nested). The epoch is selected by macro AUPRC on J. The thresholds are tuned
  on J's predictions at that epoch. Metrics are reported on K at that epoch. K is never used to
  choose anything.
* `protocol="paper-exact"` trains on all nine folds other than K (the authors' exact split) and
  reports only the paper protocol.

Training (paper Sec. II-C; book: Fine-tuning). Every step takes `batch_records` records,
shuffled each epoch with a seeded generator. From each record it cuts 5 random 250-sample crops (`Corpus.random_windows`,
on the device). Time inputs are normalised with the prepared mean/std. The spectrogram is taken
from the raw crop (`transforms.spectrogram`). The optimiser is Adam(lr) with
CosineAnnealingLR(T_max=epochs, eta_min per family), stepped at the START of every epoch, as
released (B22): epoch 1 already runs below the peak rate. The loss is BCE-with-logits, mean over
windows and classes. Scratch setups are re-initialised with `models.init_xavier` (as released). ssl-
setups load PRE/time/backbone.pt and/or PRE/spec/backbone.pt with `models.load_backbone`, which
refuses a partial load (B6); their heads keep PyTorch's default initialisation. Python, NumPy and
torch are seeded from (seed, fold) (B26). On CUDA the forward pass runs under bf16 autocast
(`FinetuneConfig.amp`).

Files in OUT:

* checkpoint.pt: written atomically after every epoch but the last. It holds the model,
  optimiser, scheduler and generator states and the best-so-far predictions of both protocols, so
  `resume=True` ends with the same result as an uninterrupted run. It is removed once
  result.json is written.
* log.csv: one row per epoch with epoch, lr, train_loss, inner/outer macro AUROC and AUPRC, and
  seconds. It is rewritten atomically from the checkpointed history.
* provenance.json: the request that made the folder (`finetune_request`: resolved settings,
  prepared and backbone digests, seed). A result is reused, a checkpoint resumed, only for an
  equal request; another request is refused unless `force` moves the folder aside. OUT is
  locked while a process writes it. Checkpoints hold tensors and plain values only and are read
  with `weights_only=True` (`provenance.load_checkpoint`): a planted pickle never runs.
* result.json: written atomically, last (schema in `results`), with the provenance record. When
  it exists for an equal request, `finetune` returns it without training again.
* predictions.csv: the record probabilities and labels at the selected epochs. The rows are
  (paper, outer), (honest, inner) and (honest, outer).
* challenge_outputs/: official Challenge files for the outer fold under the paper protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import provenance
from .atomic import atomic_write
from .config import (
    SETUPS,
    WINDOW,
    FinetuneConfig,
    Profile,
    add_settings_arguments,
    apply_settings,
    as_dict,
    check_fold,
    check_setup,
    get_profile,
    read_config,
    resolve_device,
)
from .errors import UserError
from .labels import ABBREVIATIONS, CLASSES
from .results import METRIC_KEYS, write_csv_atomic, write_json_atomic

__all__ = [
    "PROTOCOL_MODES",
    "RESULT_SCHEMA",
    "LOG_COLUMNS",
    "finetune",
    "cli",
    "build_finetune_model",
    "resolve_pretrained",
    "predict",
    "run_seed",
    "seed_everything",
    "infer_data_kind",
    "train_step",
    "finetune_request",
]

PROTOCOL_MODES = ("both", "paper-exact")
FUSION_SSL = ("loaded", "ignored")  # B6: the fusion models' SSL backbones
RESULT_SCHEMA = "ecgssl_nb.finetune/1"
LOG_COLUMNS = ("epoch", "lr", "train_loss", "inner_auroc", "inner_auprc", "outer_auroc", "outer_auprc", "seconds")
MODALITY_OF = {"time": "uses_time", "spec": "uses_spec"}


# --- seeds, inputs, models ---------------------------------------------------------------------


def package_version() -> str:
    """The installed ecgssl_nb version ("unknown" when it is not installed)."""
    try:
        from importlib.metadata import version

        return version("ecgssl_nb")
    except Exception:
        return "unknown"


def run_seed(seed: int, fold: int) -> int:
    """One 32-bit seed per (seed, fold) run (B26); different folds get unrelated streams."""
    return int(np.random.SeedSequence([int(seed), int(fold)]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _model_setup(setup: str):
    from .models import build_model

    return build_model(setup)


def resolve_pretrained(setup: str, pretrained) -> dict[str, Path]:
    """Backbone files an ssl- setup loads: {modality: path}. `pretrained` is a folder PRE holding
    PRE/time/backbone.pt and/or PRE/spec/backbone.pt, or a mapping {modality: file or folder}
    (a folder means folder/backbone.pt). Scratch setups take none. UserError naming what is missing."""
    setup = check_setup(setup)
    family = setup.removeprefix("ssl-")
    needed = [m for m, fams in (("time", ("t", "tsc", "tsg")), ("spec", ("s", "tsc", "tsg"))) if family in fams]
    if not setup.startswith("ssl-"):
        if pretrained:
            raise UserError(f"--pretrained is only for ssl- setups; setup {setup!r} trains from scratch")
        return {}
    if not pretrained:
        raise UserError(
            f"--pretrained is required for setup {setup!r}: a folder with "
            f"{' and '.join(f'{m}/backbone.pt' for m in needed)} (from `python -m ecgssl_nb pretrain`)"
        )
    if isinstance(pretrained, Mapping):
        unknown = sorted(set(pretrained) - {"time", "spec"})
        if unknown:
            raise UserError(f"pretrained: keys must be 'time' and/or 'spec', got {unknown}")
        found = {}
        for m in needed:
            if m not in pretrained or pretrained[m] is None:
                raise UserError(f"--pretrained-{m} is required for setup {setup!r}")
            p = Path(pretrained[m])
            found[m] = p / "backbone.pt" if p.is_dir() else p
    else:
        root = Path(pretrained)
        if not root.is_dir():
            raise UserError(
                f"--pretrained {root} is not a folder (expected PRE/time/backbone.pt, PRE/spec/backbone.pt)"
            )
        found = {m: root / m / "backbone.pt" for m in needed}
    for m, p in found.items():
        if not p.is_file():
            raise UserError(
                f"--pretrained: {p} does not exist (the {m} backbone of setup {setup!r}; "
                f"run `python -m ecgssl_nb pretrain --modality {m}` first)"
            )
    return found


def build_finetune_model(setup: str, pretrained=None, seed: int = 0, fusion_ssl: str = "loaded") -> torch.nn.Module:
    """The network of `setup` ready to fine-tune, on the CPU: scratch setups re-initialised with
    `init_xavier` (as released), ssl- setups with their backbones loaded all-or-nothing from
    `pretrained` (see `resolve_pretrained`; B6) and heads at PyTorch's default init.
    fusion_ssl="ignored" reproduces the released fusion models (book: Deviations, B6): ssl-tsc and
    ssl-tsg load nothing and skip xavier, so the whole network keeps PyTorch's default init."""
    from .models import init_xavier, load_backbone

    if fusion_ssl not in FUSION_SSL:
        raise UserError(f"fusion_ssl {fusion_ssl!r} must be one of {', '.join(FUSION_SSL)}")
    files = resolve_pretrained(setup, pretrained)
    torch.manual_seed(seed)  # default init of every layer (the heads of ssl- setups keep it)
    model = _model_setup(setup)
    if fusion_ssl == "ignored" and setup in ("ssl-tsc", "ssl-tsg"):
        return model  # released: the checkpoints match 0 keys and xavier is skipped
    if not files:
        init_xavier(model, generator=torch.Generator().manual_seed(seed))
    for modality, path in files.items():
        backbone = model.time_backbone if modality == "time" else model.spec_backbone
        load_backbone(backbone, path)  # UserError on a missing file or any missing/unexpected key
    return model


def infer_data_kind(prepared) -> str:
    """'fixture', 'samples' or 'physionet2020' for a prepared corpus: the stats' `data_kind` when
    present, else 'fixture' when its data folder holds the fixture's marker, else by size
    (>= 1,000 records: physionet2020; fewer: the sample records)."""
    stats = prepared.stats
    if stats.get("data_kind"):
        return str(stats["data_kind"])
    try:
        done = json.loads((Path(prepared.path) / ".complete.json").read_text())
        if (Path(done["data_dir"]) / "fixture.json").is_file():
            return "fixture"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "physionet2020" if int(stats.get("n_records", len(prepared.index))) >= 1000 else "samples"


# --- one step, one evaluation pass -------------------------------------------------------------


def _inputs(model, x_raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """Raw mV windows (W, 12, 250) -> (x_time (W, 12, 250) normalised or None, x_spec (W, 12, 13, 21) or None)."""
    from .transforms import spectrogram

    x_time = (x_raw - mean[:, None]) / (std[:, None] + 1e-8) if model.uses_time else None  # per-lead z-score
    x_spec = spectrogram(x_raw) if model.uses_spec else None  # STFT of the RAW crop, as released
    return x_time, x_spec


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model, optimizer, x_raw: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, amp: bool = False
) -> torch.Tensor:
    """One Adam step on a batch of raw crops (W, 12, 250) mV with labels (W, 24); returns the
    mean BCE-with-logits loss as a detached 0-d tensor (no device sync)."""
    x_time, x_spec = _inputs(model, x_raw, mean, std)
    with _autocast(x_raw.device, amp):
        logits = model(x_time, x_spec)  # (W, 24)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict(
    model,
    corpus,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_windows: int = 2048,
    stride: int = 125,
    amp: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Record probabilities (N, 24) float64: the mean over each record's windows (250 samples at
    `stride`) of the sigmoid outputs (book: Fine-tuning); and for gated models the mean gate weights
    (N, 2) = (time, spec) per record, else None. The model is left in eval mode."""
    model.eval()
    n = len(corpus)
    dev = corpus.device
    sums = torch.zeros((n, len(CLASSES)), dtype=torch.float64, device=dev)
    gates = torch.zeros((n, 2), dtype=torch.float64, device=dev)
    counts = torch.zeros(n, dtype=torch.float64, device=dev)
    has_gate = False
    for x, owner in corpus.iter_sliding_windows(batch_windows, length=WINDOW, stride=stride):
        x_time, x_spec = _inputs(model, x, mean, std)
        with _autocast(dev, amp):
            logits, gate = model(x_time, x_spec, return_gate=True)
        sums.index_add_(0, owner, torch.sigmoid(logits.float()).double())
        counts.index_add_(0, owner, torch.ones_like(owner, dtype=torch.float64))
        if gate is not None:
            has_gate = True
            gates.index_add_(0, owner, gate.float().double())
    counts_h = counts.cpu().numpy()
    if (counts_h == 0).any():
        raise UserError(f"{int((counts_h == 0).sum())} records are shorter than {WINDOW} samples and have no window")
    probs = sums.cpu().numpy() / counts_h[:, None]
    return probs, (gates.cpu().numpy() / counts_h[:, None] if has_gate else None)


# --- files -------------------------------------------------------------------------------------


_atomic = atomic_write  # one implementation, in atomic.py


def _write_log(path: Path, history: list[dict], protocol: str) -> None:
    df = pd.DataFrame(history, columns=list(LOG_COLUMNS))
    if protocol == "paper-exact":
        df = df.drop(columns=["inner_auroc", "inner_auprc"])
    write_csv_atomic(path, df)


# --- checkpoints of plain values (loaded with weights_only=True) --------------------------------


def _tensors(obj):
    """numpy arrays -> tensors, recursively (a checkpoint holds tensors and plain values only)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _tensors(v) for k, v in obj.items()}
    return obj


def _arrays(obj):
    """The inverse of `_tensors`: tensors -> numpy arrays, recursively."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    return obj


def _plain_numpy_state(state: tuple) -> list:
    """np.random.get_state() with its key array as a tensor."""
    name, keys, pos, has_gauss, cached = state
    return [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]


def _numpy_state(state: list) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def _python_state(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


# --- the run -----------------------------------------------------------------------------------


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise UserError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _load_prepared(prepared):
    from .prepare import Prepared, load_prepared

    if isinstance(prepared, Prepared):
        return prepared
    if prepared is None:
        raise UserError("--prepared is required: a folder written by `python -m ecgssl_nb prepare`")
    return load_prepared(prepared)


def _macro(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    from .metrics import auprc, auroc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of a fold with no positives at all
        return float(auroc(labels, probs)[0]), float(auprc(labels, probs)[0])


def _score(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _gate_by_class(gate: np.ndarray, labels: np.ndarray) -> dict:
    """Mean (time, spec) gate weight over the records positive for each class (NaN if none)."""
    pos = labels > 0.5  # (N, 24)
    n_pos = pos.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (pos.T.astype(np.float64) @ gate) / n_pos[:, None]  # (24, 2)
    return {"time": mean[:, 0], "spec": mean[:, 1], "n_positive": n_pos, "overall": gate.mean(axis=0)}


def _protocol_result(name: str, best: dict, tune_labels, tune_probs, report_labels, report_probs, cfg) -> dict:
    """Thresholds tuned on (tune_labels, tune_probs); metrics of (report_labels, report_probs)."""
    from .metrics import evaluate, threshold_search

    thresholds = threshold_search(tune_labels, tune_probs, grid=cfg.threshold_grid, default=cfg.threshold_default)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = evaluate(report_labels, report_probs, thresholds)
    per_class = m.pop("per_class")
    on = "outer" if name == "paper" else "inner"
    return {
        "metrics": {**m, "epoch": best["epoch"]},
        "per_class": per_class,
        "thresholds": thresholds,
        "selection": {
            "epoch": best["epoch"],
            "metric": cfg.select_metric,
            "score": best["score"],
            "selected_on": on,
            "thresholds_on": on,
            "reported_on": "outer",
        },
    }


def finetune(
    setup: str,
    fold: int,
    prepared,
    out: str | os.PathLike,
    pretrained=None,
    profile: str | Profile = "tiny",
    epochs: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    resume: bool = False,
    protocol: str | None = None,
    progress: bool = True,
    data_kind: str | None = None,
    config: FinetuneConfig | None = None,
    force: bool = False,
    max_steps: int | None = None,
) -> dict:
    """Fine-tune `setup` with outer fold `fold` held out; returns the result dict (result.json).

    prepared: a prepared folder (or a `prepare.Prepared`). pretrained: for ssl- setups, the
    folder holding time/backbone.pt and spec/backbone.pt, or {modality: file}. epochs: default
    the profile's for the setup's family; 0 evaluates the initial network (selected epoch 0).
    protocol: "both" (paper and honest, 8 training folds) or "paper-exact" (9 training folds,
    paper protocol only); default the profile's `FinetuneConfig.protocol`, and the one used is
    recorded there. resume: go on from OUT/checkpoint.pt when there is one (same run
    settings). data_kind: 'fixture', 'samples' or 'physionet2020' (default: inferred).
    max_steps: a smoke run (default the profile's `max_steps`, 0 = none): stop after that many
    optimisation steps, evaluate, write every output as usual with `"smoke": true`.
    See the module docstring for the protocol and the files written.
    """
    started = time.perf_counter()
    setup = check_setup(setup)
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise UserError(f"--profile must be a profile name, got {type(profile).__name__}")
    family = setup.removeprefix("ssl-")
    cfg: FinetuneConfig = prof.finetune if config is None else config
    if not isinstance(cfg, FinetuneConfig):
        raise UserError(f"config must be a FinetuneConfig, got {type(cfg).__name__}")
    protocol = cfg.protocol if protocol is None else protocol
    cfg = replace(cfg, protocol=protocol)  # the config records the protocol that ran (B14)
    if max_steps is not None:
        cfg = replace(cfg, max_steps=_check_int("--max-steps", max_steps, 0))
    n_epochs = cfg.epochs[family] if epochs is None else _check_int("--epochs", epochs, 0)
    seed = _check_int("--seed", seed, 0)
    if protocol not in PROTOCOL_MODES:
        raise UserError(f"--protocol {protocol!r} is not a protocol; choose one of {', '.join(PROTOCOL_MODES)}")
    if cfg.select_metric not in ("auprc", "auroc"):
        raise UserError(f"select_metric {cfg.select_metric!r} must be 'auprc' or 'auroc'")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    prep = _load_prepared(prepared)
    n_folds = int(prep.stats.get("n_folds", int(prep.index["fold"].max()) + 1))
    fold = check_fold(fold, n_folds)
    files = resolve_pretrained(setup, pretrained)  # fail early, before any work
    dev = torch.device(resolve_device(device))
    kind = data_kind or infer_data_kind(prep)

    folds_col = prep.index["fold"].to_numpy()
    inner = inner_fold(fold, n_folds, protocol)
    train_rows = np.flatnonzero((folds_col != fold) & (folds_col != (inner if inner is not None else -1)))
    outer_rows = np.flatnonzero(folds_col == fold)
    inner_rows = np.flatnonzero(folds_col == inner) if inner is not None else np.array([], dtype=np.int64)
    for what, rows in (("training", train_rows), (f"outer fold {fold}", outer_rows)) + (
        ((f"inner fold {inner}", inner_rows),) if inner is not None else ()
    ):
        if len(rows) == 0:
            raise UserError(f"--fold {fold}: the {what} set of {prep.path} is empty")
    batch_records = cfg.batch_records[family]
    if n_epochs > 0 and batch_records * cfg.crops < 2 and family != "t":
        raise UserError("batch_records * crops must be >= 2 (BatchNorm of the spectrogram backbone)")

    req = finetune_request(cfg, setup, fold, inner, n_epochs, protocol, seed, prep.digest, files)
    with provenance.lock(out):
        status = provenance.claim(out, req, force=force)
        if status == "same" and (out / "result.json").is_file():
            if progress:
                print(f"finetune: {out} already finished with this request; returning its result.json", file=sys.stderr)
            return json.loads((out / "result.json").read_text())
        return _finetune_claimed(
            setup,
            family,
            fold,
            inner,
            prep,
            out,
            prof,
            cfg,
            files,
            n_epochs,
            seed,
            dev,
            kind,
            resume,
            protocol,
            progress,
            train_rows,
            outer_rows,
            inner_rows,
            n_folds,
            folds_col,
            batch_records,
            started,
        )


def inner_fold(fold: int, n_folds: int, protocol: str) -> int | None:
    """The inner fold held out for the honest protocol's choices: the next fold; None under
    paper-exact (nine training folds, choices on the reported fold, as the authors trained)."""
    return None if protocol == "paper-exact" else (int(fold) + 1) % int(n_folds)


def finetune_request(
    cfg: FinetuneConfig,
    setup: str,
    fold: int,
    inner: int | None,
    epochs: int,
    protocol: str,
    seed: int,
    prepared_digest: str,
    backbones: Mapping[str, Path] | None = None,
) -> dict:
    """The provenance request of a fine-tuning: the resolved FinetuneConfig (with this setup's
    epochs), setup, folds and protocol; inputs = the prepared corpus's digest and, for ssl-
    setups, the SHA-256 of each backbone file loaded; the seed."""
    family = setup.removeprefix("ssl-")
    cfg = replace(cfg, epochs={**cfg.epochs, family: int(epochs)})
    settings = {"setup": setup, "fold": int(fold), "inner_fold": inner, "protocol": protocol, "config": as_dict(cfg)}
    inputs = {
        "prepared": prepared_digest,
        **{f"backbone.{m}": provenance.sha256_file(p) for m, p in sorted((backbones or {}).items())},
    }
    return provenance.request("finetune", settings, inputs, seed)


def _finetune_claimed(
    setup,
    family,
    fold,
    inner,
    prep,
    out: Path,
    prof,
    cfg: FinetuneConfig,
    files,
    n_epochs: int,
    seed: int,
    dev,
    kind: str,
    resume: bool,
    protocol: str,
    progress: bool,
    train_rows,
    outer_rows,
    inner_rows,
    n_folds: int,
    folds_col,
    batch_records: int,
    started: float,
) -> dict:
    """`finetune` once OUT is claimed and locked: train (or resume), evaluate, write the files."""
    result_path, ckpt_path, log_path = out / "result.json", out / "checkpoint.pt", out / "log.csv"
    signature = {
        "setup": setup,
        "fold": fold,
        "inner_fold": inner,
        "seed": seed,
        "epochs": n_epochs,
        "protocol": protocol,
        "config": as_dict(cfg),
        "data": {"n_records": int(len(prep.index)), "total_samples": prep.stats.get("total_samples")},
    }

    # --- state: fresh or from the checkpoint ---
    rs = run_seed(seed, fold)
    seed_everything(rs)
    model = build_finetune_model(setup, files, seed=rs, fusion_ssl=cfg.fusion_ssl).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(n_epochs, 1), eta_min=cfg.min_lr[family]
    )
    gen = torch.Generator().manual_seed(rs)  # record order and crop starts (CPU stream, any device)
    history: list[dict] = []
    best = {"paper": None, "honest": None}
    start_epoch = 1
    elapsed_before = 0.0
    if ckpt_path.is_file():
        if not resume:
            if progress:
                print(f"finetune: {ckpt_path} exists; starting over (pass --resume to continue it)", file=sys.stderr)
        else:
            ck = provenance.load_checkpoint(ckpt_path)  # tensors and plain values only, never code
            if ck.get("signature") != signature:
                raise UserError(
                    f"--resume: {ckpt_path} was written for other run settings; remove it or use "
                    f"another --out (saved {ck.get('signature')})"
                )
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            gen.set_state(ck["generator"])
            torch.set_rng_state(ck["torch_rng"])
            np.random.set_state(_numpy_state(ck["numpy_rng"]))
            random.setstate(_python_state(ck["python_rng"]))
            history, best = ck["history"], _arrays(ck["best"])
            start_epoch = ck["epoch"] + 1
            elapsed_before = ck["elapsed_s"]
            if progress:
                print(f"finetune: resuming {out} after epoch {ck['epoch']}", file=sys.stderr)

    from .windows import Corpus

    train = Corpus.from_prepared(prep, rows=train_rows, device=dev)
    outer_c = Corpus.from_prepared(prep, rows=outer_rows, device=dev)
    inner_c = Corpus.from_prepared(prep, rows=inner_rows, device=dev) if inner is not None else None
    mean = torch.as_tensor(np.asarray(prep.mean, dtype=np.float32), device=dev)
    std = torch.as_tensor(np.asarray(prep.std, dtype=np.float32), device=dev)
    y_outer = outer_c.labels.cpu().numpy()
    y_inner = inner_c.labels.cpu().numpy() if inner_c is not None else None
    amp = bool(cfg.amp) and dev.type == "cuda"
    pred_kw = dict(batch_windows=cfg.eval_batch_windows, stride=cfg.val_stride, amp=amp)
    pick = 1 if cfg.select_metric == "auprc" else 0  # index into (auroc, auprc)

    def evaluate_epoch(epoch: int, row: dict) -> None:
        p_out, g_out = predict(model, outer_c, mean, std, **pred_kw)
        m_out = _macro(y_outer, p_out)
        row.update(outer_auroc=m_out[0], outer_auprc=m_out[1])
        if best["paper"] is None or _score(m_out[pick]) > best["paper"]["score"]:  # strict improvement
            best["paper"] = {"epoch": epoch, "score": _score(m_out[pick]), "outer": p_out, "gate": g_out}
        if inner_c is not None:
            p_in, _ = predict(model, inner_c, mean, std, **pred_kw)
            m_in = _macro(y_inner, p_in)
            row.update(inner_auroc=m_in[0], inner_auprc=m_in[1])
            if best["honest"] is None or _score(m_in[pick]) > best["honest"]["score"]:
                best["honest"] = {"epoch": epoch, "score": _score(m_in[pick]), "inner": p_in, "outer": p_out}

    from tqdm.auto import tqdm

    n_train = len(train)
    # Steps of batch_records records (the last one shorter, as with drop_last=False); a last step
    # of a single window is merged into the one before (BatchNorm needs two values per channel).
    bounds = list(range(0, n_train, batch_records)) + [n_train]
    if len(bounds) > 2 and (bounds[-1] - bounds[-2]) * cfg.crops < 2:
        bounds.pop(-2)
    batches = list(zip(bounds[:-1], bounds[1:]))
    # a smoke run (cfg.max_steps > 0) stops after max_steps optimisation steps, at last_epoch
    last_epoch = min(n_epochs, -(-cfg.max_steps // len(batches))) if cfg.max_steps else n_epochs
    bar = tqdm(
        range(start_epoch, last_epoch + 1),
        desc=f"finetune {setup} fold {fold}",
        unit="epoch",
        disable=not progress,
        initial=start_epoch - 1,
        total=last_epoch,
        file=sys.stderr,
    )
    if n_epochs == 0 and best["paper"] is None:
        row = {"epoch": 0, "lr": cfg.lr, "train_loss": float("nan"), "seconds": 0.0}
        evaluate_epoch(0, row)
        history.append(row)
    for epoch in bar:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            scheduler.step()  # at the START of the epoch, as released (B22)
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        order = torch.randperm(n_train, generator=gen)
        loss_sum = torch.zeros((), device=dev)
        n_windows = 0
        for j, (a, b) in enumerate(batches):
            if cfg.max_steps and (epoch - 1) * len(batches) + j >= cfg.max_steps:
                break
            rec = order[a:b].to(dev)
            x = train.random_windows(rec, cfg.crops, gen)  # (B*crops, 12, 250) raw mV
            y = train.window_labels(rec, cfg.crops)  # (B*crops, 24)
            loss = train_step(model, optimizer, x, y, mean, std, amp=amp)
            loss_sum += loss * len(x)
            n_windows += len(x)
        row = {"epoch": epoch, "lr": lr, "train_loss": float(loss_sum.item() / max(n_windows, 1))}
        evaluate_epoch(epoch, row)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        bar.set_postfix(
            loss=f"{row['train_loss']:.4f}",
            outer_prc=f"{row['outer_auprc']:.3f}",
            **({"inner_prc": f"{row['inner_auprc']:.3f}"} if inner_c is not None else {}),
        )
        if epoch < last_epoch:  # the last epoch goes straight to result.json
            state = {
                "signature": signature,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": _plain_numpy_state(np.random.get_state()),
                "python_rng": list(random.getstate()),
                "history": history,
                "best": _tensors(best),
                "elapsed_s": elapsed_before + time.perf_counter() - started,
            }
            _atomic(ckpt_path, lambda tmp: torch.save(state, tmp))
        # after the checkpoint: the log never shows an epoch that a resume would run again
        _write_log(log_path, history, protocol)
    bar.close()
    if n_epochs == 0:
        _write_log(log_path, history, protocol)

    # --- results ---
    from .metrics import binarize, write_challenge_outputs

    protocols = {
        "paper": _protocol_result(
            "paper", best["paper"], y_outer, best["paper"]["outer"], y_outer, best["paper"]["outer"], cfg
        )
    }
    if inner_c is not None:
        protocols["honest"] = _protocol_result(
            "honest", best["honest"], y_inner, best["honest"]["inner"], y_outer, best["honest"]["outer"], cfg
        )
    gate = None
    if best["paper"]["gate"] is not None:
        gate = {
            "classes": list(CLASSES),
            **_gate_by_class(best["paper"]["gate"], y_outer),
            "epoch": best["paper"]["epoch"],
            "protocol": "paper",
            "records": "outer fold, positive for the class",
        }

    records = prep.index["record"].to_numpy()
    pred_frames = []
    for proto, role, rows, labels_, probs, ep in [
        ("paper", "outer", outer_rows, y_outer, best["paper"]["outer"], best["paper"]["epoch"])
    ] + (
        [
            ("honest", "inner", inner_rows, y_inner, best["honest"]["inner"], best["honest"]["epoch"]),
            ("honest", "outer", outer_rows, y_outer, best["honest"]["outer"], best["honest"]["epoch"]),
        ]
        if inner_c is not None
        else []
    ):
        df = pd.DataFrame(
            {"record": records[rows], "fold": folds_col[rows], "role": role, "protocol": proto, "epoch": ep}
        )
        df = pd.concat(
            [
                df,
                pd.DataFrame(probs, columns=[f"p_{a}" for a in ABBREVIATIONS]),
                pd.DataFrame(labels_.astype(np.int8), columns=[f"y_{a}" for a in ABBREVIATIONS]),
            ],
            axis=1,
        )
        pred_frames.append(df)
    write_csv_atomic(out / "predictions.csv", pd.concat(pred_frames, ignore_index=True))
    write_challenge_outputs(
        out / "challenge_outputs",
        records[outer_rows],
        best["paper"]["outer"],
        binarize(best["paper"]["outer"], np.asarray(protocols["paper"]["thresholds"])),
    )

    result = {
        # the schema of results.py
        "setup": setup,
        "fold": fold,
        "profile": prof.name,
        "data": {
            "kind": kind,
            "n_records": int(len(prep.index)),
            "n_train": int(len(train_rows)),
            "n_val": int(len(outer_rows)),
            "n_inner": int(len(inner_rows)),
            "n_folds": n_folds,
            "train_folds": sorted(set(int(f) for f in folds_col[train_rows])),
            "inner_fold": inner,
            "prepared": str(prep.path),
        },
        "seed": seed,
        "epochs": n_epochs,
        "smoke": bool(cfg.max_steps),  # stopped after max_steps optimisation steps: never a result
        "metrics": {k: v["metrics"] for k, v in protocols.items()},
        "per_class": {k: v["per_class"] for k, v in protocols.items()},
        "thresholds": {k: v["thresholds"] for k, v in protocols.items()},
        "gate_weights": gate,
        "wall_time_s": elapsed_before + time.perf_counter() - started,
        "device": str(dev),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # more about the run
        "schema": RESULT_SCHEMA,
        "family": family,
        "ssl": setup.startswith("ssl-"),
        "inner_fold": inner,
        "protocol_mode": protocol,
        "selection": {k: v["selection"] for k, v in protocols.items()},
        "run_seed": rs,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu"),
        "versions": {
            "ecgssl_nb": package_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "pretrained": {m: str(p) for m, p in files.items()} or None,
        "recipe": {"name": prof.recipe, "departures": list(prof.departures)},
        "config": {**as_dict(cfg), "epochs": n_epochs, "batch_records": batch_records, "min_lr": cfg.min_lr[family]},
        "provenance": provenance.read(out),
        "classes": list(CLASSES),
        "abbreviations": list(ABBREVIATIONS),
        "history": history,
    }
    write_json_atomic(result_path, result)
    with contextlib.suppress(FileNotFoundError):
        ckpt_path.unlink()
    return json.loads(result_path.read_text())


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb finetune --setup SETUP --fold K --prepared DIR --out OUT ...`."""
    p = argparse.ArgumentParser(
        prog="python -m ecgssl_nb finetune",
        description="Fine-tune one setup with one outer fold held out; evaluate it under "
        "the paper (optimistic) and honest (nested) protocols.",
    )
    p.add_argument("--setup", required=True, help=f"one of {', '.join(SETUPS)}")
    p.add_argument("--fold", required=True, type=int, help="outer (held-out) fold, 0..n_folds-1")
    p.add_argument("--prepared", required=True, help="a folder written by `python -m ecgssl_nb prepare`")
    p.add_argument("--out", required=True, help="run folder (result.json, predictions.csv, log.csv, ...)")
    p.add_argument("--pretrained", default=None, help="ssl- setups: folder with time/backbone.pt, spec/backbone.pt")
    p.add_argument("--pretrained-time", default=None, help="ssl- setups: time backbone file (overrides --pretrained)")
    p.add_argument("--pretrained-spec", default=None, help="ssl- setups: spec backbone file (overrides --pretrained)")
    p.add_argument("--profile", default="tiny", help="tiny (default) or paper")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the profile's for the setup)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed; python/numpy/torch are seeded per (seed, fold)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--protocol",
        default=None,
        choices=PROTOCOL_MODES,
        help="both: 8 training folds, paper + honest protocols (default, unless the recipe says "
        "otherwise); paper-exact: 9 training folds, paper protocol only",
    )
    p.add_argument(
        "--recipe",
        default="corrected",
        help="corrected (default), released, or released departures like B6,B14 (see `recipes`)",
    )
    p.add_argument(
        "--data-kind",
        default=None,
        choices=("fixture", "samples", "physionet2020"),
        help="what the prepared data is (default: inferred)",
    )
    add_settings_arguments(p, FinetuneConfig, "--set lr=1e-3 --set epochs.tsg=5")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="smoke run: stop after N optimisation steps, write every output marked smoke",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    from .recipes import apply_recipe, parse_recipe

    recipe = parse_recipe(a.recipe)
    if a.protocol == "paper-exact":  # the authors' nine training folds: the recipe's B14, recorded as such
        recipe = tuple(sorted(set(recipe) | {"B14"}))
    prof = apply_recipe(get_profile(a.profile), recipe)
    cfg = apply_settings(read_config(FinetuneConfig, a.config) if a.config else prof.finetune, a.set)
    pretrained = a.pretrained
    if a.pretrained_time or a.pretrained_spec:
        base = Path(a.pretrained) if a.pretrained else None
        pretrained = {m: (getattr(a, f"pretrained_{m}") or (base / m if base else None)) for m in ("time", "spec")}
        pretrained = {m: v for m, v in pretrained.items() if v is not None}
    res = finetune(
        a.setup,
        a.fold,
        a.prepared,
        a.out,
        pretrained=pretrained,
        profile=prof,
        epochs=a.epochs,
        device=a.device,
        seed=a.seed,
        resume=a.resume,
        protocol=a.protocol,
        progress=not a.no_progress,
        data_kind=a.data_kind,
        config=cfg,
        force=a.force,
        max_steps=a.max_steps,
    )
    for name, m in res["metrics"].items():
        print(
            f"{res['setup']} fold {res['fold']} {name:6s} epoch {m['epoch']}: "
            + " ".join(f"{k}={m[k]:.4f}" if m[k] is not None else f"{k}=nan" for k in METRIC_KEYS)
        )
    return 0
