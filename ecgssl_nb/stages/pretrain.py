"""One DINO pre-training (paper Sec. II-A, II-B; book: Self-distillation): `pretrain` resolves a
frozen `Run`, claims OUT (`stage.claim`; under torchrun rank 0 for every rank), resumes its
checkpoint, trains (`train_one_epoch`: `batch_views`, `core.dino.train_step`) and writes
backbone.pt and summary.json. Data: every kept record of every fold (B13), one random 250-sample
window per record per epoch, augmented on the device; the final student is kept (B12 fixed). The
GPU path (issue 15, tests/test_gpu_path_pretrain.py): no host read in a steady-state step, static
shapes, fused AdamW, torch.compile / CUDA graphs, bf16 on CUDA; under torchrun the student is in
DistributedDataParallel, each rank trains on its share of the global batch, rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .. import checkpoint, provenance
from ..config import apply_settings, check_items, matched_settings, read_config
from ..config import recorded_settings as config_recorded
from ..core.dino import CompiledForward, DINOLoss, MultiCropModel, Schedules, build_student, check_transforms
from ..core.dino import dist_on, forward_loss, make_optimizer, make_schedules, make_views, train_step
from ..core.errors import UserError, check_int, check_seed
from ..core.models import use_fast_cuda_math
from ..core.settings import MODALITIES, WINDOW, PretrainConfig, check_modality, get_profile
from ..core.settings import resolve_device
from ..core.transforms import check_lead_stats
from ..core.windows import Corpus
from ..data.prepare import Prepared, load_prepared
from ..atomic import write_json_atomic
from . import stage

OUTPUTS = ("backbone.pt", "summary.json")  # what later stages read: recorded in digests.json, written last

__all__ = ["pretrain", "cli", "LOG_COLUMNS", "OUTPUTS", "pretrain_request"]

# OUT/log.csv, one row per epoch: loss and teacher_entropy in nats (means over the epoch's steps and
# the processes; the entropy at most log(out_dim)); lr, wd, teacher_momentum: means of the
# per-step schedules; embedding_std of the teacher's global views (~0: collapse); times in seconds.
LOG_COLUMNS = tuple(
    "epoch loss lr wd teacher_temp teacher_momentum teacher_entropy embedding_std time_s views_time_s "
    "model_time_s".split()
)


def _select_rows(n_available: int, records: int | Sequence[int] | None) -> np.ndarray | None:
    if records is None:
        return None
    if isinstance(records, (int, np.integer)) and not isinstance(records, bool):
        if not 1 <= records <= n_available:
            raise UserError(f"records must be in 1..{n_available} (the prepared records), got {records}")
        return np.arange(int(records))
    rows = np.asarray(list(records))
    if rows.ndim != 1 or rows.size == 0 or rows.dtype.kind not in "iu" or rows.min() < 0 or rows.max() >= n_available:
        raise UserError(f"records must be a count or a list of row numbers in 0..{n_available - 1}")
    if len(np.unique(rows)) != len(rows):
        raise UserError("records lists a row more than once")
    return rows


# --- processes (torchrun) ------------------------------------------------------------------------


def _dist_setup(device: str) -> tuple[int, int, str, bool]:
    """(rank, world size, device, whether we initialised the process group) from torchrun's
    environment; a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device, False
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, started


@torch.no_grad()
def _average_buffers(*modules: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics: each rank's come from its
    own records) over the processes, so every rank holds, and rank 0 saves, the same model."""
    if not dist_on():
        return
    bufs = [b for module in modules for b in module.buffers() if b.is_floating_point()]
    for b in bufs:
        dist.all_reduce(b)
    torch._foreach_div_(bufs, float(dist.get_world_size()))


def _gather(obj) -> list:
    if not dist_on():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _from_rank0(value):
    """Rank 0's `value` on every rank; `value` itself for one process."""
    box = [value]
    if dist_on():
        dist.broadcast_object_list(box, src=0)
    return box[0]


# --- one run, resolved -------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One pre-training as `pretrain` resolved it; `rank`, `world` and `device` are this process's."""

    cfg: PretrainConfig
    prepared: Prepared
    out: Path
    modality: str
    transforms: str
    seed: int
    rows: np.ndarray | None  # prepared rows used; None = all (B13)
    records: int | list[int] | None  # what the request records of `rows`
    profile: str
    device: str
    resume: bool
    progress: bool
    stop_after: int | None  # train at most this many epochs in this call
    amp: bool
    started_at: float  # time.perf_counter() when `pretrain` was called
    rank: int = 0
    world: int = 1

    def settings(self) -> dict:
        """The first keys of summary.json, and the "run" of its checkpoints."""
        return {
            "modality": self.modality,
            "profile": self.profile,
            "config": matched_settings(self.cfg),
            "transforms": self.transforms,
            "seed": self.seed,
            "records": self.records,
            "world_size": self.world,
            "execution": config_recorded(self.cfg),  # not matched on resume
        }


def pretrain(
    prepared_dir: str | Path,
    out: str | Path,
    modality: str,
    profile: str = "tiny",
    config: PretrainConfig | None = None,
    settings: Sequence[str] = (),
    device: str | None = None,
    transforms: str | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    records: int | Sequence[int] | None = None,
    stop_after: int | None = None,
    force: bool = False,
) -> Path:
    """DINO pre-training of the `modality` ("time" or "spec") backbone on a prepared corpus; returns OUT.

    config: the PretrainConfig (None: the profile's); `settings`: `--set KEY=VALUE` items checked
    once (`config.apply_settings`), e.g. ["epochs=2", "batch_size=8", "max_steps=3"] (batch_size:
    records per step over all processes; max_steps: a smoke run, marked `"smoke": true`).
    transforms: default "t1" (time) or "t2" (spec). records: a count (the first N rows) or row
    numbers; None = all (B13). stop_after: train at most this many epochs now. device: cpu, cuda,
    cuda:1 or auto; None = the profile's (under torchrun cuda:LOCAL_RANK). OUT is resumed or
    reported finished only for an equal request (`pretrain_request`), another's is refused unless
    `force` moves it aside, a checkpoint is continued only with `resume`. Writes checkpoint.pt and
    log.csv on the cadence, then backbone.pt (the kept student backbone) and summary.json.
    """
    started_at = time.perf_counter()
    modality = check_modality(modality)
    prof = get_profile(profile)
    base = prof.pretrain[modality] if config is None else config
    if not isinstance(base, PretrainConfig):
        raise UserError(f"config must be a PretrainConfig, got {type(base).__name__}")
    cfg = apply_settings(base, check_items(settings))  # every range checked, once
    transforms = check_transforms(modality, transforms)
    seed = check_seed("--seed", seed)
    stop_after = None if stop_after is None else check_int("--stop-after", stop_after, 1)
    device = resolve_device(prof.device if device is None else device)
    amp = cfg.amp and device.startswith("cuda")  # bf16 autocast is for CUDA only (ignored on the CPU)
    prepared = load_prepared(prepared_dir)  # the one check: exists, finished, consistent
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    rows = _select_rows(len(prepared.index), records)
    records_key = None if rows is None else (len(rows) if isinstance(records, (int, np.integer)) else rows.tolist())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    _check_batch(cfg.batch_size, world, len(prepared.index) if rows is None else len(rows))
    run = Run(cfg, prepared, out, modality, transforms, seed, rows, records_key, prof.name, device, resume,
              progress, stop_after, amp, started_at)  # fmt: skip
    req = pretrain_request(cfg, modality, transforms, seed, prepared.digest, records_key)
    if stage.finished(out, req, OUTPUTS):  # read as it is, by every rank alike: no lock, no write access
        _keep_finished(run)
        return out
    with _processes(run, req, force) as run:  # None: rank 0 found this run finished
        return _train(run) if run is not None else out


def _check_batch(batch_size: int, world: int, n_records: int) -> None:
    """batch_size is the global batch: a multiple of the process count, at most the records."""
    if batch_size % world:
        raise UserError(
            f"--batch-size {batch_size} (records per step over all processes) is not a multiple of the "
            f"{world} processes; use a multiple of {world}"
        )
    if n_records // batch_size < 1:  # drop_last over the global batch
        raise UserError(f"--batch-size {batch_size} is larger than the {n_records} records; use at most {n_records}")


def pretrain_request(
    cfg: PretrainConfig,
    modality: str,
    transforms: str,
    seed: int,
    prepared_digest: str,
    records: int | list[int] | None = None,
) -> dict:
    """The provenance request of a pre-training (never a profile name): equal requests give equal
    runs. Matched: the data (digest, records), the seed, the views and every PretrainConfig field
    of the arithmetic (`batch_size`, the global batch, and `amp` included). Recorded only (issue
    15): the process count (only the views' random streams are split per rank) and how the run is
    executed (`compile`, the checkpoint cadence, `log_every`); a resume matches the process count."""
    settings = {"modality": modality, "transforms": transforms, "config": matched_settings(cfg), "records": records}
    return provenance.request("pretrain", settings, {"prepared": prepared_digest}, seed)


def _keep_finished(run: Run) -> None:
    """OUT holds this finished pre-training: kept with --resume, else a UserError saying so."""
    if not run.resume:
        raise UserError(
            f"--out {run.out} already holds this finished pre-training (summary.json); pass --resume "
            f"to keep it, or choose another --out"
        )
    if run.progress:
        print(f"pretrain: {run.out} already finished ({run.cfg.epochs} epochs); nothing to do")


@contextlib.contextmanager
def _processes(run: Run, req: dict, force: bool) -> Iterator[Run | None]:
    """Join the processes (torchrun), then rank 0 locks and claims OUT (holding the lock for the
    whole block) and tells every rank the outcome: this rank's run to train, None when OUT holds
    it finished, or rank 0's error, which ends every rank with the same one line."""
    rank, world, device, started_dist = _dist_setup(run.device)
    run = replace(run, rank=rank, world=world, device=device)
    recorded = {"world_size": world, **config_recorded(run.cfg)}  # recorded, not matched (`pretrain_request`)
    try:
        with contextlib.ExitStack() as held:
            verdict = ("train", "")
            if rank == 0:
                try:
                    held.enter_context(provenance.lock(run.out))
                    if stage.claim(run.out, req, OUTPUTS, force, recorded, "pre-training"):
                        _keep_finished(run)
                        verdict = ("done", "")
                except Exception as exc:  # told to every rank, then raised here as it was
                    _from_rank0(("error", str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"))
                    raise
            verdict = _from_rank0(verdict)
            if verdict[0] == "error":
                raise UserError(f"pretrain: rank 0 could not claim {run.out}: {verdict[1]}")
            yield None if verdict[0] == "done" else run
    finally:
        if started_dist:
            dist.destroy_process_group()


# --- the state of a run: built fresh, or from its checkpoint -----------------------------------


@dataclass
class State:
    """What training changes, all of it checkpointed."""

    student: MultiCropModel
    teacher: MultiCropModel
    model: nn.Module  # the student, in DistributedDataParallel across processes
    loss_fn: DINOLoss
    optimizer: torch.optim.Optimizer
    perm_gen: torch.Generator  # record order, the same on every rank (CPU)
    view_gen: torch.Generator  # windows and views, one stream per rank (on the device)
    forward: object = forward_loss  # the forward half of the step: forward_loss or a CompiledForward
    epoch: int = 0  # the next epoch to run (0-based)
    best_loss: float = math.inf
    best_epoch: int = -1
    best_backbone: dict | None = None  # the lowest-loss student backbone (keep="lowest-loss")


def build_state(run: Run, sched: Schedules) -> State:
    """The seeded student, its EMA teacher, the loss with its centre, the optimiser, the generators."""
    cfg, device = run.cfg, run.device
    student = build_student(run.modality, cfg.out_dim, run.seed)
    if run.world > 1 and device.startswith("cuda"):
        # As DINO for BatchNorm networks: batch statistics over the global batch of all GPUs, so
        # K GPUs compute what one GPU would with K times the batch. (gloo on the CPU cannot.)
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
    student = student.to(device)
    teacher = copy.deepcopy(student)  # the teacher starts as the initialised student
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.train()  # BatchNorm on batch statistics, as DINO
    loss_fn = DINOLoss(
        cfg.out_dim, cfg.n_global, sched.teacher_temp, cfg.student_temp, cfg.center_momentum, cfg.center_update
    ).to(device)
    optimizer = make_optimizer(student, cfg.optimizer)
    model = student
    if run.world > 1:
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        model = nn.parallel.DistributedDataParallel(student, device_ids=ids)
    view_seed = int(np.random.SeedSequence([run.seed, run.rank]).generate_state(1)[0])
    # Compiled: one graph (fullgraph) for one process; under DDP, Dynamo splits the graph at the
    # gradient buckets on purpose (its DDPOptimizer), so fullgraph is not asked for there.
    forward = forward_loss if cfg.compile == "off" else CompiledForward(cfg.compile, fullgraph=run.world == 1)
    perm_gen, view_gen = torch.Generator().manual_seed(run.seed), torch.Generator(device).manual_seed(view_seed)
    return State(student, teacher, model, loss_fn, optimizer, perm_gen, view_gen, forward)


_MODULES = {"student": "student", "teacher": "teacher", "optimizer": "optimizer", "loss": "loss_fn"}  # key: State field


def restore_checkpoint(run: Run, st: State) -> None:
    """Load OUT/checkpoint.pt into `st` when resuming (`checkpoint.load`): the same settings but the
    profile's name and how the run is executed; the process count counts here."""
    must_match = {k: v for k, v in run.settings().items() if k not in ("profile", "execution")}
    ck = checkpoint.load(run.out / checkpoint.NAME, run.resume, must_match)
    if ck is None:
        if run.resume and run.progress and run.rank == 0:
            print(f"pretrain: no checkpoint in {run.out}; starting from epoch 0")
        return
    for key, name in _MODULES.items():
        getattr(st, name).load_state_dict(ck[key])
    st.perm_gen.set_state(ck["perm_rng"])
    st.view_gen.set_state(ck["view_rng"][run.rank])
    st.epoch, st.best_loss, st.best_epoch = ck["epoch"], ck["best_loss"], ck["best_epoch"]
    st.best_backbone = ck.get("best_backbone")


def checkpoint_state(run: Run, st: State, view_states: list[torch.Tensor]) -> dict:
    """What OUT/checkpoint.pt holds after epoch st.epoch - 1 (`view_states`: every rank's), live
    tensors (`stage.checkpoint_job` copies them)."""
    return {
        "run": run.settings(),
        "epoch": st.epoch,
        **{key: getattr(st, name).state_dict() for key, name in _MODULES.items()},
        "perm_rng": st.perm_gen.get_state(),
        "view_rng": view_states,
        "best_loss": st.best_loss,
        "best_epoch": st.best_epoch,
        "best_backbone": st.best_backbone,
    }


# --- the loop ----------------------------------------------------------------------------------


def train_one_epoch(
    run: Run, st: State, sched: Schedules, corpus: Corpus, mean: torch.Tensor, std: torch.Tensor
) -> dict:
    """Epoch st.epoch, one `train_step` per global batch of shuffled records; returns its log row
    (averaged over the ranks). Sync-free (issue 15): the figures are summed on the device and read
    every `log_every` steps and at the epoch's end; the records past the last full global batch
    sit this epoch out (drop_last, as DINO)."""
    cfg, device, epoch, L = run.cfg, run.device, st.epoch, sched.steps
    t_epoch = time.perf_counter()
    perm = torch.randperm(len(corpus.lengths), generator=st.perm_gen).to(device)  # (n,) the same on every rank
    sums = torch.zeros(3, device=device)  # loss, teacher entropy, embedding std
    n_steps = min(L, sched.limit - epoch * L)  # L, but fewer in the last epoch of a smoke run
    shown = run.progress and run.rank == 0
    bar = tqdm(range(n_steps), desc=f"pretrain {run.modality} {epoch + 1}/{cfg.epochs}", disable=not shown, leave=False)
    every = cfg.log_every or n_steps
    timer = _Timer(device)
    for i in bar:
        it = epoch * L + i  # the schedules' index
        timer.mark()
        views = batch_views(run, st, corpus, mean, std, perm, i)  # (V, B, 12, 250) or (V, B, 12, 13, 21)
        timer.mark()
        stats = train_step(st.model, st.teacher, st.loss_fn, st.optimizer, views, epoch, float(sched.lr[it]),
                           float(sched.wd[it]), float(sched.momentum[it]), cfg.clip_grad,
                           cfg.freeze_last_layer_epochs, run.amp, forward=st.forward)  # fmt: skip
        sums += torch.stack([stats["loss"], stats["teacher_entropy"], stats["embedding_std"]])
        timer.mark()
        if (i + 1) % every == 0 and i + 1 < n_steps and (shown or run.world == 1):
            loss_so_far = sums[0].item() / (i + 1)  # one read every log_every steps
            if run.world == 1:  # (under DDP every rank checks the all-reduced sums below, together)
                _check_finite(loss_so_far, epoch, i + 1)
            bar.set_postfix(loss=f"{loss_so_far:.4f}")
    means = sums / n_steps
    if dist_on():  # the mean over the ranks
        dist.all_reduce(means)
        means /= dist.get_world_size()
    loss, entropy, emb_std = means.tolist()  # the epoch's one read
    _check_finite(loss, epoch, n_steps)
    views_time, model_time = timer.totals()
    sl = slice(epoch * L, epoch * L + n_steps)
    return {
        "epoch": epoch,
        "loss": loss,
        "lr": float(sched.lr[sl].mean()),
        "wd": float(sched.wd[sl].mean()),
        "teacher_temp": float(sched.teacher_temp[epoch]),
        "teacher_momentum": float(sched.momentum[sl].mean()),
        "teacher_entropy": entropy,
        "embedding_std": emb_std,
        "time_s": time.perf_counter() - t_epoch,
        "views_time_s": views_time,
        "model_time_s": model_time,
    }


def batch_views(
    run: Run, st: State, corpus: Corpus, mean: torch.Tensor, std: torch.Tensor, perm: torch.Tensor, i: int
) -> torch.Tensor:
    """The views of step i: this rank's share of the shuffled records `perm`, one random window
    each, its DINO views (`dino.make_views`); reads nothing back."""
    cfg = run.cfg
    b = cfg.batch_size // run.world  # records per step on this process
    first = i * cfg.batch_size + run.rank * b
    rec = perm[first : first + b]  # (B,) this rank's share of step i, on the device
    return make_views(corpus, rec, run.modality, mean, std, run.transforms, cfg.n_global, cfg.n_local,
                      st.view_gen, released_fc=cfg.freq_cutout == "discarded", augment=cfg.augment,
                      checked=True)  # fmt: skip


def _check_finite(mean_loss: float, epoch: int, steps: int) -> None:
    """Stop the run when the mean loss of the epoch's first `steps` steps is not finite."""
    if not math.isfinite(mean_loss):
        raise FloatingPointError(
            f"DINO loss is {mean_loss} at epoch {epoch} (within its first {steps} steps); lower the learning rate"
        )


class _Timer:
    """Seconds in the views and in the model step, marked three times per step (start, views
    done, step done): CUDA events read once per epoch on a GPU, the host clock on the CPU."""

    def __init__(self, device: str):
        self.cuda, self.marks = device.startswith("cuda"), []

    def mark(self) -> None:
        self.marks.append(torch.cuda.Event(enable_timing=True) if self.cuda else time.perf_counter())
        if self.cuda:
            self.marks[-1].record()

    def totals(self) -> tuple[float, float]:
        """(views, model) seconds over the marked steps."""
        if self.cuda:
            torch.cuda.synchronize()
        span = (lambda a, b: a.elapsed_time(b) / 1000.0) if self.cuda else (lambda a, b: b - a)
        m, steps = self.marks, range(0, len(self.marks) - 2, 3)
        return sum(span(m[j], m[j + 1]) for j in steps), sum(span(m[j + 1], m[j + 2]) for j in steps)


def _train(run: Run) -> Path:
    """The DINO loop of this process, resumed from its checkpoint; when the run is complete, its files."""
    use_fast_cuda_math(run.device)
    corpus = Corpus.from_prepared(run.prepared, rows=run.rows, device=run.device)
    sched = make_schedules(run.cfg, len(corpus.lengths), run.world)
    st = build_state(run, sched)
    restore_checkpoint(run, st)
    check_lead_stats(run.prepared.mean, run.prepared.std)  # once: the steps then never read them
    mean = torch.as_tensor(np.asarray(run.prepared.mean), dtype=torch.float32, device=run.device)
    std = torch.as_tensor(np.asarray(run.prepared.std), dtype=torch.float32, device=run.device)
    if run.rank == 0:
        run.out.mkdir(parents=True, exist_ok=True)
    log_rows = stage.read_log(run.out / "log.csv", st.epoch) if run.rank == 0 else []
    end_epoch = sched.last_epoch if run.stop_after is None else min(sched.last_epoch, st.epoch + run.stop_after)
    with stage.Checkpoints(run.cfg) as ck:
        while st.epoch < end_epoch:
            _end_epoch(run, st, train_one_epoch(run, st, sched, corpus, mean, std), log_rows)
            # as the cadence says, and always at the end of this call (a --stop-after run, a finished
            # one or one killed later resumes from there); rank 0's clock decides for every rank
            if _from_rank0(ck.due(st.epoch) or st.epoch >= end_epoch):
                view_states = _gather(st.view_gen.get_state())
                state = checkpoint_state(run, st, view_states) if run.rank == 0 else None
                ck.after(stage.checkpoint_job(run.out, state, log_rows, LOG_COLUMNS) if state else None)
    if run.world > 1:
        dist.barrier()  # the checkpoint is complete before any rank goes on
    if end_epoch < sched.last_epoch:
        return run.out
    if run.rank == 0:
        _write_final(run, st, sched, log_rows, len(corpus.lengths))
    if run.world > 1:
        dist.barrier()
    return run.out


def _end_epoch(run: Run, st: State, row: dict, log_rows: list[dict]) -> None:
    """After an epoch: buffers averaged over the ranks, the lowest loss kept, the row logged (rank
    0), the epoch counted."""
    _average_buffers(st.student, st.teacher)
    if row["loss"] < st.best_loss:
        st.best_loss, st.best_epoch = row["loss"], st.epoch
        if run.cfg.keep == "lowest-loss":
            st.best_backbone = {k: v.detach().cpu().clone() for k, v in st.student.backbone.state_dict().items()}
    st.epoch += 1
    if run.rank == 0:
        log_rows.append(row)
        if run.progress:
            print(
                f"pretrain {run.modality} epoch {row['epoch'] + 1}/{run.cfg.epochs}: loss {row['loss']:.4f}, "
                f"teacher entropy {row['teacher_entropy']:.3f}, embedding std {row['embedding_std']:.4f}, "
                f"{row['time_s']:.1f} s"
            )


def _write_final(run: Run, st: State, sched: Schedules, log_rows: list[dict], n: int) -> None:
    """OUT/backbone.pt (the kept student backbone), OUT/summary.json, then digests.json."""
    cfg, device = run.cfg, run.device
    if cfg.keep == "lowest-loss":
        kept = st.best_backbone
    else:  # the final student backbone, copied to the host only when it is the one kept
        kept = {k: v.detach().cpu() for k, v in st.student.backbone.state_dict().items()}
    checkpoint.save(run.out / "backbone.pt", kept)  # atomic
    last = log_rows[-1] if log_rows else {}
    summary = {
        **run.settings(),
        "epochs": cfg.epochs,
        "smoke": bool(cfg.max_steps),  # a smoke run is never a result
        "steps": sched.limit,
        "batch_size_per_process": cfg.batch_size // run.world,
        "steps_per_epoch": sched.steps,
        "peak_lr": sched.peak_lr,
        "data": {
            "prepared": str(run.prepared.path),
            "n_prepared": len(run.prepared.index),
            "n_records": n,
            "records_per_epoch": sched.steps * cfg.batch_size,
            "folds": "all (transductive, as the released code: book Deviations, B13)",
            "window_samples": WINDOW,
            "crops_per_record_per_epoch": 1,
        },
        "final_loss": float(last["loss"]) if last else math.nan,
        "best_loss": st.best_loss,
        "best_epoch": st.best_epoch,
        "kept": cfg.keep,
        "kept_epoch": st.best_epoch if cfg.keep == "lowest-loss" else sched.last_epoch - 1,
        "final_teacher_entropy": float(last["teacher_entropy"]) if last else math.nan,
        "final_embedding_std": float(last["embedding_std"]) if last else math.nan,
        "wall_time_s": time.perf_counter() - run.started_at,
        "device": device if not device.startswith("cuda") else f"{device} ({torch.cuda.get_device_name(device)})",
        "amp": run.amp,  # bf16 autocast in effect (cfg.amp on CUDA)
        "compile": cfg.compile,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "provenance": provenance.read(run.out),
    }
    write_json_atomic(run.out / "summary.json", summary)
    provenance.write_digests(run.out, OUTPUTS)  # last: what a fine-tuning or the book may trust


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    device_help = (
        "cpu, cuda, cuda:1 or auto (default: the profile's: tiny cpu, paper cuda; under torchrun cuda:LOCAL_RANK)"
    )
    p = stage.parser("pretrain", "DINO self-distillation pre-training of one backbone (paper Sec. II-B).",
                     "output folder (checkpoint.pt, log.csv, backbone.pt, summary.json)", (None, device_help))  # fmt: skip
    p.add_argument("--modality", required=True, help=f"which backbone: {' or '.join(MODALITIES)}")
    p.add_argument("--batch-size", type=int, help="records per step over all processes (default: the profile's)")
    p.add_argument(
        "--transforms", help="view transforms: time none|tc|gn|t1 (default t1), spec none|tc|fc|t2 (default t2)"
    )
    p.add_argument("--keep", help="backbone kept: final (default) or lowest-loss (released)")
    p.add_argument("--records", type=int, help="use only the first N prepared records (quick runs)")
    p.add_argument("--stop-after", type=int, help="train at most N epochs now; --resume goes on")
    stage.settings(p, PretrainConfig, "--set optimizer=adam-l2 --set clip_grad=3", "B7,B10", "--keep and --set win")
    return p


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb pretrain --modality {time,spec} --prepared DIR --out OUT ...`."""
    a = _parser().parse_args(argv)
    check_modality(a.modality)
    from ..study.recipes import parse_recipe, pretrain_overrides  # recipes: ~6 ms at import, only for --recipe

    base = read_config(PretrainConfig, a.config) if a.config else get_profile(a.profile).pretrain[a.modality]
    # the recipe first; --set, then the flags win over it
    base = replace(base, **pretrain_overrides(parse_recipe(a.recipe)))
    flags = {"batch_size": a.batch_size, "keep": a.keep, "epochs": a.epochs, "max_steps": a.max_steps}
    out = pretrain(a.prepared, a.out, a.modality, profile=a.profile, transforms=a.transforms, records=a.records,
                   stop_after=a.stop_after, **stage.run_options(a, base, flags))  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0 and not a.no_progress:
        print(f"pretrain: wrote {out}")
    return 0
