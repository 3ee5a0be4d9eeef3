"""One fine-tuning (paper Sec. II-C; book: Fine-tuning, Deviations B14, B15): `finetune` resolves
a frozen `Run`, claims OUT (`stage.claim`, under its lock), resumes its checkpoint, then per epoch
calls the method (`core.classify`: `train_one_epoch`, `evaluate_epoch`, `select`), checkpointing
on the cadence (never after the last epoch). Then OUT gets predictions.csv ((paper, outer),
(honest, inner), (honest, outer)), challenge_outputs/ (outer fold, paper protocol), result.json
(schema in `results`), digests.json of `OUTPUTS` (the completion mark), and loses its checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import checkpoint, provenance
from ..atomic import write_csv_atomic, write_json_atomic, write_text_atomic
from ..config import apply_settings, as_dict, check_items, matched_settings, read_config, recorded_settings
from ..core import classify
from ..core.classify import Data, Split, Trainer, evaluate_epoch, select, steps_per_epoch, train_one_epoch
from ..core.errors import UserError, check_seed
from ..core.labels import ABBREVIATIONS, CLASSES
from ..core.metrics import METRIC_KEYS, binarize, challenge_outputs
from ..core.models import use_fast_cuda_math
from ..core.settings import PROTOCOL_MODES, SETUPS, FinetuneConfig, Profile, check_setup, get_profile, is_ssl
from ..core.settings import resolve_device, setup_family, setup_modalities
from . import stage

if TYPE_CHECKING:  # annotations only
    from ..data.prepare import Prepared

__all__ = ["OUTPUTS", "RESULT_SCHEMA", "LOG_COLUMNS", "finetune", "cli", "resolve_pretrained", "infer_data_kind",
           "finetune_request", "write_challenge_outputs"]  # fmt: skip

OUTPUTS = ("result.json", "predictions.csv")  # what the tables and the book read: in digests.json
RESULT_SCHEMA = "ecgssl_nb.finetune/1"
DATA_KINDS = ("fixture", "samples", "physionet2020")
LOG_COLUMNS = ("epoch", "lr", "train_loss", "inner_auroc", "inner_auprc", "outer_auroc", "outer_auprc", "seconds")


# --- seeds, inputs, models ---------------------------------------------------------------------


def resolve_pretrained(setup: str, pretrained: str | os.PathLike | Mapping | None) -> dict[str, Path]:
    """Backbone files an ssl- setup loads: {modality: path}. `pretrained` is a folder PRE holding
    PRE/time/backbone.pt and/or PRE/spec/backbone.pt, or a mapping {modality: file or folder}
    (a folder means folder/backbone.pt). Scratch setups take none. UserError naming what is missing."""
    setup = check_setup(setup)
    needed = setup_modalities(setup)
    if not is_ssl(setup):
        if pretrained:
            raise UserError(f"--pretrained is only for ssl- setups; setup {setup!r} trains from scratch")
        return {}
    if not pretrained:
        raise UserError(
            f"--pretrained is required for setup {setup!r}: a folder with "
            f"{' and '.join(f'{m}/backbone.pt' for m in needed)} (from `python -m ecgssl_nb pretrain`)"
        )
    if not isinstance(pretrained, Mapping):  # the folder PRE
        root = Path(pretrained)
        if not root.is_dir():
            raise UserError(
                f"--pretrained {root} is not a folder (expected PRE/time/backbone.pt, PRE/spec/backbone.pt)"
            )
        pretrained = {m: root / m / "backbone.pt" for m in needed}
    unknown = sorted(set(pretrained) - {"time", "spec"})
    if unknown:
        raise UserError(f"pretrained: keys must be 'time' and/or 'spec', got {unknown}")
    missing = [m for m in needed if pretrained.get(m) is None]
    if missing:
        raise UserError(f"--pretrained-{missing[0]} is required for setup {setup!r}")
    found = {m: Path(pretrained[m]) for m in needed}
    found = {m: p / "backbone.pt" if p.is_dir() else p for m, p in found.items()}  # a folder: its backbone.pt
    for m, p in found.items():
        if not p.is_file():
            raise UserError(
                f"--pretrained: {p} does not exist (the {m} backbone of setup {setup!r}; "
                f"run `python -m ecgssl_nb pretrain --modality {m}` first)"
            )
        fault = provenance.digest_fault(p.parent, (p.name,)) if (p.parent / provenance.PROVENANCE).is_file() else None
        if fault:  # a file of a pre-training folder is what that pre-training wrote, or it is refused
            raise UserError(
                f"--pretrained: {fault}, so it is not the {m} backbone its pre-training wrote; run that "
                f"pre-training again (with --resume, or --force to move it aside)"
            )
    return found


def infer_data_kind(prepared: Prepared) -> str:
    """'fixture', 'samples' or 'physionet2020' for a prepared corpus: 'fixture' when its data folder
    holds the fixture's marker, else by size (>= 1,000 records: physionet2020; fewer: samples)."""
    try:
        done = json.loads((Path(prepared.path) / ".complete.json").read_text())
        if (Path(done["data_dir"]) / "fixture.json").is_file():
            return "fixture"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "physionet2020" if prepared.stats["n_records"] >= 1000 else "samples"  # an int (`load_prepared`)


# --- the run, resolved -------------------------------------------------------------------------


def _load_prepared(prepared):
    from ..data.prepare import Prepared, load_prepared  # scipy.signal: ~1.1 s at import, only when a run reads its data

    if isinstance(prepared, Prepared):
        return prepared
    if prepared is None:
        raise UserError("--prepared is required: a folder written by `python -m ecgssl_nb prepare`")
    return load_prepared(prepared)


@dataclass(frozen=True)
class Run:
    """One fine-tuning as `finetune` resolved and checked it."""

    setup: str
    prep: Prepared
    split: Split
    out: Path
    prof: Profile
    cfg: FinetuneConfig  # with the protocol and max_steps that run
    files: dict[str, Path]  # {modality: backbone file} of an ssl- setup
    n_epochs: int
    seed: int
    device: torch.device
    kind: str  # 'fixture', 'samples' or 'physionet2020'
    resume: bool
    progress: bool
    started: float  # time.perf_counter() when `finetune` was called
    family: str  # the setup's family (`setup_family`)
    batch_records: int  # records per step (the family's)
    amp: bool  # bf16 autocast: cfg.amp on CUDA
    request: dict  # `finetune_request`: what OUT and its checkpoint must have been made for


def _resolve(setup, fold, prepared, out, pretrained, profile, config, settings, device, seed, resume, progress,
             data_kind) -> Run:  # fmt: skip
    """`finetune`'s arguments (but `force`), checked and resolved; UserError naming the first bad one."""
    started = time.perf_counter()
    family = setup_family(setup)  # UserError naming --setup
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise UserError(f"--profile must be a profile name, got {type(profile).__name__}")
    cfg = prof.finetune if config is None else config
    if not isinstance(cfg, FinetuneConfig):
        raise UserError(f"config must be a FinetuneConfig, got {type(cfg).__name__}")
    cfg = apply_settings(cfg, check_items(settings))  # every range checked, once; the protocol that runs (B14)
    n_epochs = cfg.epochs[family]
    seed = check_seed("--seed", seed)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    prep = _load_prepared(prepared)
    split = classify.split_folds(prep, fold, cfg.protocol)
    files = resolve_pretrained(setup, pretrained)  # fail early, before any work
    dev = torch.device(resolve_device(device))
    if n_epochs > 0 and cfg.batch_records[family] * cfg.crops < 2 and "spec" in setup_modalities(setup):
        raise UserError("batch_records * crops must be >= 2 (BatchNorm of the spectrogram backbone)")
    kind = data_kind or infer_data_kind(prep)
    amp = bool(cfg.amp) and dev.type == "cuda"
    req = finetune_request(cfg, setup, split.fold, split.inner, n_epochs, cfg.protocol, seed, prep.digest, files)
    return Run(setup, prep, split, out, prof, cfg, files, n_epochs, seed, dev, kind, resume, progress, started, family,
               cfg.batch_records[family], amp, req)  # fmt: skip


def finetune(
    setup: str,
    fold: int,
    prepared: Prepared | str | os.PathLike,
    out: str | os.PathLike,
    pretrained: str | os.PathLike | Mapping | None = None,
    profile: str | Profile = "tiny",
    config: FinetuneConfig | None = None,
    settings: Sequence[str] = (),
    device: str = "cpu",
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    data_kind: str | None = None,
    force: bool = False,
) -> dict:
    """Fine-tune `setup` with outer fold `fold` held out; returns the result dict (result.json).

    prepared: a prepared folder or `prepare.Prepared`. pretrained: for ssl- setups, the folder
    holding time/backbone.pt and spec/backbone.pt, or {modality: file}. config: the
    FinetuneConfig (None: the profile's); `settings`: `--set KEY=VALUE` items checked once
    (`config.apply_settings`), e.g. ["epochs.t=2", "protocol=paper-exact", "max_steps=3"]: the
    setup family's epochs (0: the initial network, selected epoch 0), protocol "both" (paper and
    honest, 8 training folds) or "paper-exact" (9 training folds, paper only), max_steps (a smoke
    run, marked `"smoke": true`). OUT is returned finished or resumed only for an equal request
    (`finetune_request`), another's is refused unless `force` moves it aside, and a checkpoint is
    continued only with `resume`.
    """
    args = (setup, fold, prepared, out, pretrained, profile, config, settings, device, seed, resume, progress)
    run = _resolve(*args, data_kind)
    if stage.finished(run.out, run.request, OUTPUTS):
        return _finished_result(run.out, progress)  # read as it is, no lock, no write access needed
    with provenance.lock(run.out):  # then claimed under the lock, checked again: another may have finished it
        if stage.claim(run.out, run.request, OUTPUTS, force, recorded_settings(run.cfg), "fine-tuning"):
            return _finished_result(run.out, progress)
        return _train(run)


finished_fault = partial(stage.finished_fault, outputs=OUTPUTS)  # (out, req): `reproduce`'s check of a finished run


def _finished_result(out: Path, progress: bool) -> dict:
    if progress:
        print(f"finetune: {out} already finished with this request; returning its result.json", file=sys.stderr)
    return json.loads((out / "result.json").read_text())


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
    family = setup_family(setup)
    cfg = replace(cfg, epochs={**cfg.epochs, family: int(epochs)})
    config = matched_settings(cfg)  # compile, checkpoint cadence, log_every: recorded only (settings.RECORDED_ONLY)
    settings = {"setup": setup, "fold": int(fold), "inner_fold": inner, "protocol": protocol, "config": config}
    inputs = {
        "prepared": prepared_digest,
        **{f"backbone.{m}": provenance.sha256_file(p) for m, p in sorted((backbones or {}).items())},
    }
    return provenance.request("finetune", settings, inputs, seed)


# --- the state of a run: built fresh, or from its checkpoint -----------------------------------


@dataclass
class Progress:
    """What the checkpoint carries besides the Trainer: epochs done, their log rows, the best so far."""

    start_epoch: int = 1
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"paper": None, "honest": None})
    elapsed_s: float = 0.0  # seconds spent before this process started


def build_trainer(run: Run) -> Trainer:
    """Seed everything from (seed, fold) (B26), then the network, fused Adam (no host read per step)
    and the cosine schedule; the step compiled as `cfg.compile` says (`make_step_loss`)."""
    rs = classify.run_seed(run.seed, run.split.fold)
    classify.seed_everything(rs)
    use_fast_cuda_math(run.device)
    model = classify.build_finetune_model(run.setup, run.files, seed=rs, fusion_ssl=run.cfg.fusion_ssl).to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.cfg.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(run.n_epochs, 1), eta_min=run.cfg.min_lr[run.family]
    )
    generator = torch.Generator(device=run.device).manual_seed(rs)
    return Trainer(model, optimizer, scheduler, generator, classify.make_step_loss(run.cfg.compile))


_MODULES = ("model", "optimizer", "scheduler")  # the Trainer's parts a checkpoint holds, under their names


def restore_checkpoint(run: Run, tr: Trainer) -> Progress:
    """Load OUT/checkpoint.pt into `tr` when resuming (the rule of `checkpoint.load`: written for
    this request)."""
    ck = checkpoint.load(run.out / checkpoint.NAME, run.resume, run.request)
    if ck is None:
        return Progress()
    for key in _MODULES:
        getattr(tr, key).load_state_dict(ck[key])
    checkpoint.set_rng_state(ck["rng"], tr.generator)
    if run.progress:
        print(f"finetune: resuming {run.out} after epoch {ck['epoch']}", file=sys.stderr)
    return Progress(ck["epoch"] + 1, ck["history"], checkpoint.to_arrays(ck["best"]), ck["elapsed_s"])


def checkpoint_state(run: Run, tr: Trainer, done: Progress, epoch: int) -> dict:
    """OUT/checkpoint.pt after `epoch`: everything a resume needs to repeat the run (live tensors)."""
    return {
        "run": run.request,
        "epoch": epoch,
        **{key: getattr(tr, key).state_dict() for key in _MODULES},
        "rng": checkpoint.rng_state(tr.generator),
        "history": done.history,
        "best": checkpoint.to_tensors(done.best),
        "elapsed_s": done.elapsed_s + time.perf_counter() - run.started,
    }


def log_columns(protocol: str) -> list[str]:
    """The columns of log.csv: LOG_COLUMNS, without the inner fold's under paper-exact (there is none)."""
    return [c for c in LOG_COLUMNS if protocol != "paper-exact" or not c.startswith("inner_")]


# --- the loop ----------------------------------------------------------------------------------


def _train(run: Run) -> dict:
    """`finetune` once OUT is claimed and locked: train (or resume), evaluate every epoch, select,
    write the files."""
    tr = build_trainer(run)
    done = restore_checkpoint(run, tr)
    data = classify.load_data(run.prep, run.split, run.device)
    n_steps = steps_per_epoch(len(data.train), run.batch_records)
    # a smoke run (cfg.max_steps > 0) stops after max_steps optimisation steps, at last_epoch
    last_epoch = min(run.n_epochs, -(-run.cfg.max_steps // n_steps)) if run.cfg.max_steps else run.n_epochs
    log_path, columns = run.out / "log.csv", log_columns(run.cfg.protocol)
    if run.n_epochs == 0 and done.best["paper"] is None:  # the initial network, "epoch 0"
        ev = evaluate_epoch(tr.model, data, run.cfg, run.amp)
        done.history.append({"epoch": 0, "lr": run.cfg.lr, "train_loss": math.nan, "seconds": 0.0, **ev.metrics})
        done.best = select(done.best, 0, ev, run.cfg.select_metric)
    desc = f"finetune {run.setup} fold {run.split.fold}"
    epochs = range(done.start_epoch, last_epoch + 1)
    bar = tqdm(
        epochs, desc=desc, unit="epoch", disable=not run.progress, initial=done.start_epoch - 1, total=last_epoch
    )
    with stage.Checkpoints(run.cfg) as ck:  # checkpoints (then the log) are written beside the next epoch's steps
        for epoch in bar:
            _epoch(run, tr, data, done, bar, epoch)
            if epoch < last_epoch and ck.due(epoch):  # never after the last: it goes straight to result.json
                ck.after(stage.checkpoint_job(run.out, checkpoint_state(run, tr, done, epoch), done.history, columns))
    bar.close()
    stage.write_log(log_path, done.history, columns)  # every epoch, the last one included
    return write_outputs(run, data, done)


def _epoch(run: Run, tr: Trainer, data: Data, done: Progress, bar: tqdm, epoch: int) -> None:
    """Train and evaluate `epoch`, select, log its row."""
    t0 = time.perf_counter()
    loss = train_one_epoch(tr, data, run.cfg, run.batch_records, epoch, run.amp,
                           log=lambda step, x: bar.set_postfix(step=step, loss=f"{x:.4f}"))  # fmt: skip
    ev = evaluate_epoch(tr.model, data, run.cfg, run.amp)
    done.best = select(done.best, epoch, ev, run.cfg.select_metric)
    lr = tr.optimizer.param_groups[0]["lr"]
    row = {"epoch": epoch, "lr": lr, "train_loss": loss, **ev.metrics, "seconds": time.perf_counter() - t0}
    done.history.append(row)
    shown = {"loss": f"{loss:.4f}", "outer_prc": f"{row['outer_auprc']:.3f}"}
    bar.set_postfix(shown | ({"inner_prc": f"{row['inner_auprc']:.3f}"} if data.inner is not None else {}))


# --- the files of a finished run ---------------------------------------------------------------


def _gate_weights(data: Data, best: dict) -> dict | None:
    paper = best["paper"]
    if paper["gate"] is None:
        return None
    return {
        "classes": list(CLASSES),
        **classify.gate_by_class(paper["gate"], data.y_outer),
        "epoch": paper["epoch"],
        "protocol": "paper",
        "records": "outer fold, positive for the class",
    }


def _predictions(run: Run, data: Data, best: dict) -> pd.DataFrame:
    """predictions.csv: one row per (protocol, role, record) with its probabilities and labels."""
    split, records = run.split, run.prep.index["record"].to_numpy()
    parts = [("paper", "outer", split.outer, data.y_outer, best["paper"]["outer"], best["paper"]["epoch"])]
    if data.inner is not None:
        honest = best["honest"]
        parts += [
            ("honest", "inner", split.inner_rows, data.y_inner, honest["inner"], honest["epoch"]),
            ("honest", "outer", split.outer, data.y_outer, honest["outer"], honest["epoch"]),
        ]
    frames = []
    for proto, role, rows, labels, probs, epoch in parts:
        columns = {"record": records[rows], "fold": split.folds[rows], "role": role, "protocol": proto, "epoch": epoch}
        columns |= {f"p_{a}": probs[:, j] for j, a in enumerate(ABBREVIATIONS)}
        columns |= {f"y_{a}": labels[:, j].astype(np.int8) for j, a in enumerate(ABBREVIATIONS)}
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)


def _result(run: Run, protocols: dict, gate: dict | None, done: Progress) -> dict:
    """result.json (the schema of `results`, then more about the run)."""
    cfg, split, dev = run.cfg, run.split, run.device
    return {
        "setup": run.setup,
        "fold": split.fold,
        "profile": run.prof.name,
        "data": {
            "kind": run.kind,
            "n_records": int(len(run.prep.index)),
            "n_train": int(len(split.train)),
            "n_val": int(len(split.outer)),
            "n_inner": int(len(split.inner_rows)),
            "n_folds": split.n_folds,
            "train_folds": sorted(set(int(f) for f in split.folds[split.train])),
            "inner_fold": split.inner,
            "prepared": str(run.prep.path),
        },
        "seed": run.seed,
        "epochs": run.n_epochs,
        "smoke": bool(cfg.max_steps),  # stopped after max_steps optimisation steps: never a result
        **{part: {k: v[part] for k, v in protocols.items()} for part in ("metrics", "per_class", "thresholds")},
        "gate_weights": gate,
        "wall_time_s": done.elapsed_s + time.perf_counter() - run.started,
        "device": str(dev),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "schema": RESULT_SCHEMA,
        "family": run.family,
        "ssl": is_ssl(run.setup),
        "inner_fold": split.inner,
        "protocol_mode": cfg.protocol,
        "selection": {k: v["selection"] for k, v in protocols.items()},
        "run_seed": classify.run_seed(run.seed, split.fold),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu"),
        "versions": {
            "ecgssl_nb": provenance.package_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "pretrained": {m: str(p) for m, p in run.files.items()} or None,
        "recipe": {"name": run.prof.recipe, "departures": list(run.prof.departures)},
        "config": {
            **as_dict(cfg),
            "epochs": run.n_epochs,
            "batch_records": run.batch_records,
            "min_lr": cfg.min_lr[run.family],
        },
        "provenance": provenance.read(run.out),
        "classes": list(CLASSES),
        "abbreviations": list(ABBREVIATIONS),
        "history": done.history,
    }


def write_outputs(run: Run, data: Data, done: Progress) -> dict:
    """predictions.csv, challenge_outputs/, result.json, then digests.json (the digests of
    OUTPUTS, the completion mark); removes the checkpoint."""
    protocols = classify.protocols(data, done.best, run.cfg)
    write_csv_atomic(run.out / "predictions.csv", _predictions(run, data, done.best))
    outer = done.best["paper"]["outer"]
    records = run.prep.index["record"].to_numpy()[run.split.outer]
    thresholds = np.asarray(protocols["paper"]["thresholds"])
    write_challenge_outputs(run.out / "challenge_outputs", records, outer, binarize(outer, thresholds))
    write_json_atomic(run.out / "result.json", _result(run, protocols, _gate_weights(data, done.best), done))
    provenance.write_digests(run.out, OUTPUTS)  # last but the checkpoint's removal: the completion mark
    with contextlib.suppress(FileNotFoundError):
        (run.out / checkpoint.NAME).unlink()
    return json.loads((run.out / "result.json").read_text())


# --- the official Challenge output files (one per record) --------------------------------------


def write_challenge_outputs(
    out_dir: str | Path,
    records: Sequence[str],
    scores: np.ndarray,
    binary: np.ndarray,
    classes: Sequence[str] = CLASSES,
) -> list[Path]:
    """Write one official-format output file `<record>.csv` per record (`metrics.challenge_outputs`),
    each atomically. Returns the paths."""
    files = challenge_outputs(records, scores, binary, classes)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for rec, text in files.items():
        write_text_atomic(folder / f"{rec}.csv", text)
    return [folder / f"{rec}.csv" for rec in files]


def _parser() -> argparse.ArgumentParser:
    p = stage.parser("finetune", "Fine-tune one setup with one outer fold held out; evaluate it under the paper "
                     "(optimistic) and honest (nested) protocols.", "run folder (result.json, predictions.csv, "
                     "log.csv, ...)", ("cpu", "cpu, cuda, cuda:1 or auto (default cpu)"))  # fmt: skip
    p.add_argument("--setup", required=True, help=f"one of {', '.join(SETUPS)}")
    p.add_argument("--fold", required=True, type=int, help="outer (held-out) fold, 0..n_folds-1")
    p.add_argument("--pretrained", help="ssl- setups: folder with time/backbone.pt, spec/backbone.pt")
    for m in ("time", "spec"):
        p.add_argument(f"--pretrained-{m}", help=f"ssl- setups: {m} backbone file (overrides --pretrained)")
    p.add_argument(
        "--protocol",
        choices=PROTOCOL_MODES,
        help="both: 8 training folds, paper + honest protocols (default, unless the recipe says "
        "otherwise); paper-exact: 9 training folds, paper protocol only",
    )
    p.add_argument("--data-kind", choices=DATA_KINDS, help="what the prepared data is (default: inferred)")
    stage.settings(p, FinetuneConfig, "--set lr=1e-3 --set epochs.tsg=5", "B6,B14", "--set wins")
    return p


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb finetune --setup SETUP --fold K --prepared DIR --out OUT ...`."""
    from ..study.recipes import apply_recipe, parse_recipe  # recipes: ~6 ms at import, only for --recipe

    a = _parser().parse_args(argv)
    recipe = parse_recipe(a.recipe)
    if a.protocol == "paper-exact":  # the authors' nine training folds: the recipe's B14, recorded as such
        recipe = tuple(sorted(set(recipe) | {"B14"}))
    prof = apply_recipe(get_profile(a.profile), recipe)
    cfg = read_config(FinetuneConfig, a.config) if a.config else prof.finetune
    pretrained = a.pretrained
    if a.pretrained_time or a.pretrained_spec:
        base = Path(a.pretrained) if a.pretrained else None
        pretrained = {m: (getattr(a, f"pretrained_{m}") or (base / m if base else None)) for m in ("time", "spec")}
        pretrained = {m: v for m, v in pretrained.items() if v is not None}
    flags = {f"epochs.{setup_family(a.setup)}": a.epochs, "protocol": a.protocol, "max_steps": a.max_steps}
    res = finetune(a.setup, a.fold, a.prepared, a.out, pretrained=pretrained, profile=prof, data_kind=a.data_kind,
                   **stage.run_options(a, cfg, flags))  # fmt: skip
    for name, m in res["metrics"].items():
        print(
            f"{res['setup']} fold {res['fold']} {name:6s} epoch {m['epoch']}: "
            + " ".join(f"{k}={m[k]:.4f}" if m[k] is not None else f"{k}=nan" for k in METRIC_KEYS)
        )
    return 0
