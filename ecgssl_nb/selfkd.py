"""Self-knowledge-distillation (DINO-style) pre-training of one backbone (paper Sec. II-A,
II-B; book: Self-distillation).

The file reads as the method:

* `DINOHead`: 512 -> 512 -> 512 -> 128 MLP (GELU, no BN), L2-normalise, then a weight-normed
  Linear(128 -> out_dim) whose row norms g are frozen at 1.
* `MultiCropModel`: all V views of a batch go through backbone and head in ONE forward pass.
* `DINOLoss`: cross-entropy between the centred, sharpened teacher distribution of each global
  view and the student distribution of every other view; the centre is an EMA of the batch mean
  of the teacher outputs, divided once (B7 fixed), all-reduced across processes.
* `train_step`: student forward/backward, last layer frozen in epoch 0 (B9 fixed), AdamW with
  no decay on biases and norms (B10 fixed, "adam-l2" keeps the released coupled L2), EMA teacher.
* `pretrain`: the loop. Schedules are arrays indexed by `it = epoch * L + i`, epoch from 0 (B8
  fixed). Data: every kept record of every fold (transductive, as released: book: Deviations, B13), one random
  250-sample window per record per epoch, drawn and augmented on the device. Every epoch writes
  a resumable checkpoint and a row of collapse diagnostics; the student backbone of the final
  epoch is kept (B12 fixed; "lowest-loss" keeps the released choice).

Provenance: OUT/provenance.json holds the request (`pretrain_request`: every resolved setting,
the prepared corpus's digest, the seed); OUT is resumed or reused only for an equal request, and
one process writes it at a time. Checkpoints hold tensors and plain values only and are read
with `weights_only=True`, so nothing in a results folder can run code.

Multi-GPU: under `torchrun` (RANK / WORLD_SIZE in the environment) the student is wrapped in
DistributedDataParallel, every rank trains on its own share of each epoch's shuffled records,
the centre and logged figures are all-reduced, and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_write
from . import provenance
from .config import (
    MODALITIES,
    WINDOW,
    PretrainConfig,
    add_settings_arguments,
    apply_settings,
    as_dict,
    check_modality,
    get_profile,
    read_config,
    resolve_device,
)
from .errors import UserError
from .results import write_json_atomic  # strict JSON: a NaN loss is written as null
from .schedules import cosine_schedule, momentum_schedule, teacher_temp_schedule

__all__ = [
    "WeightNormLinear",
    "DINOHead",
    "MultiCropModel",
    "DINOLoss",
    "param_groups",
    "make_optimizer",
    "cancel_last_layer_grads",
    "ema_update",
    "embedding_std",
    "train_step",
    "make_views",
    "build_student",
    "pretrain",
    "cli",
    "DEFAULT_TRANSFORMS",
    "KEEP_CHOICES",
    "OPTIMIZERS",
    "LOG_COLUMNS",
    "pretrain_request",
]

DEFAULT_TRANSFORMS = {"time": "t1", "spec": "t2"}  # the paper's full view sets (Fig. 3)
KEEP_CHOICES = ("final", "lowest-loss")
OPTIMIZERS = ("adamw", "adam-l2")
# OUT/log.csv, one row per epoch: epoch (0-based); loss (nats, mean over the epoch's steps and the
# processes); lr, wd, teacher_momentum (means of the per-iteration schedules over the epoch);
# teacher_temp; teacher_entropy (nats, mean entropy of the centred, sharpened teacher distribution;
# at most log(out_dim)); embedding_std (`embedding_std` of the teacher's global views: ~0 means
# collapse); time_s, views_time_s (windows + views), model_time_s (train_step), in seconds.
LOG_COLUMNS = (
    "epoch",
    "loss",
    "lr",
    "wd",
    "teacher_temp",
    "teacher_momentum",
    "teacher_entropy",
    "embedding_std",
    "time_s",
    "views_time_s",
    "model_time_s",
)


# --- the DINO head and the multi-crop wrapper (paper Sec. II-A) ---------------------------------


class WeightNormLinear(nn.Module):
    """y = x W^T with W = g * V / ||V|| per output row (no bias). `weight_g` (out, 1) is a
    parameter frozen at 1 (norm_last_layer=True), so only the directions V are learned."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_g = nn.Parameter(torch.ones(out_features, 1), requires_grad=False)
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))  # nn.Linear's default init of V

    @property
    def weight(self) -> torch.Tensor:
        # g / ||v|| per row, then one broadcast multiply: cheaper to differentiate than a division
        # of the whole (out, in) matrix (F.normalize), which matters at out = 65,536.
        scale = (
            self.weight_g * torch.linalg.vector_norm(self.weight_v, dim=1, keepdim=True).clamp_min(1e-12).reciprocal()
        )
        return self.weight_v * scale  # (out, in), rows of norm g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)  # (N, in) -> (N, out)


class DINOHead(nn.Module):
    """Projection head: Linear(in->hidden) GELU Linear(hidden->hidden) GELU Linear(hidden->
    bottleneck), L2-normalise, weight-normed Linear(bottleneck->out_dim). MLP weights are
    truncated-normal(0.02) and biases 0 (before any `init_xavier`)."""

    def __init__(self, in_dim: int = 512, out_dim: int = 65536, hidden: int = 512, bottleneck: int = 128):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden), ("bottleneck", bottleneck)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f"DINOHead: {name} must be a positive integer, got {value!r}")
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )  # fmt: skip
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, return_embedding: bool = False):
        """(N, in_dim) -> logits (N, out_dim); with return_embedding, also the unit-norm
        bottleneck embedding (N, bottleneck)."""
        z = F.normalize(self.mlp(x), dim=-1)  # (N, bottleneck), ||z|| = 1
        out = self.last_layer(z)  # (N, out_dim)
        return (out, z) if return_embedding else out


class MultiCropModel(nn.Module):
    """Backbone + DINO head over a stack of views: (V, B, ...) -> (V, B, out_dim), all V*B
    views in one forward pass (batch statistics of BatchNorm are over all views)."""

    def __init__(self, backbone: nn.Module, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: torch.Tensor, return_embedding: bool = False):
        v, b = views.shape[:2]
        f = self.backbone(views.flatten(0, 1))  # (V*B, ...) -> (V*B, 512)
        out, z = self.head(f, return_embedding=True)  # (V*B, K), (V*B, bottleneck)
        out, z = out.unflatten(0, (v, b)), z.unflatten(0, (v, b))  # (V, B, K), (V, B, bottleneck)
        return (out, z) if return_embedding else out


# --- the loss and the centre (paper Sec. II-A; B7) ----------------------------------------------


CENTER_UPDATES = ("once", "twice")  # B7: official DINO / released code
FREQ_CUTOUT = ("applied", "discarded")  # B16: FC chained before TC / released code (TC only)


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class DINOLoss(nn.Module):
    """Self-distillation cross-entropy.

    For each teacher (global) view q and each student view v != q:
    CE(q, v) = mean_b sum_k -softmax((t_qb - c) / tau_t)_k * log_softmax(s_vb / tau_s)_k,
    averaged over all such pairs (18 for 2 global + 8 local views). `teacher_temp` is a float
    or a per-epoch array (index = 0-based epoch). The centre c (1, out_dim) is updated after the
    loss by `update_center` (forward does it unless update_center=False).
    """

    def __init__(
        self,
        out_dim: int,
        n_global: int = 2,
        teacher_temp: float | Sequence[float] | np.ndarray = 0.04,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        center_update: str = "once",
    ):
        super().__init__()
        if center_update not in CENTER_UPDATES:
            raise UserError(f"center_update {center_update!r} must be one of {', '.join(CENTER_UPDATES)}")
        self.center_update = center_update
        if not isinstance(n_global, int) or n_global < 1:
            raise UserError(f"n_global must be an integer >= 1, got {n_global!r}")
        temps = np.atleast_1d(np.asarray(teacher_temp, dtype=np.float64))
        if temps.ndim != 1 or not (temps > 0).all():
            raise UserError(f"teacher_temp must be > 0 (a number or a per-epoch array), got {teacher_temp!r}")
        if not student_temp > 0:
            raise UserError(f"student_temp must be > 0, got {student_temp!r}")
        if not 0.0 <= center_momentum <= 1.0:
            raise UserError(f"center_momentum must be in [0, 1], got {center_momentum!r}")
        self.n_global = n_global
        self.teacher_temp = temps
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.last_teacher_entropy = torch.zeros(())  # nats, mean over teacher rows of the last call

    def temperature(self, epoch: int) -> float:
        """Teacher temperature of a 0-based epoch (a constant schedule serves every epoch)."""
        if len(self.teacher_temp) == 1:
            return float(self.teacher_temp[0])
        if not 0 <= epoch < len(self.teacher_temp):
            raise ValueError(
                f"epoch {epoch} is outside the teacher-temperature schedule (0..{len(self.teacher_temp) - 1})"
            )
        return float(self.teacher_temp[epoch])

    def forward(
        self, student_out: torch.Tensor, teacher_out: torch.Tensor, epoch: int = 0, update_center: bool = True
    ) -> torch.Tensor:
        """student_out (V, B, K) over all views, teacher_out (G, B, K) over the global views ->
        scalar loss. Teacher outputs carry no gradient."""
        v, b, k = student_out.shape
        g = teacher_out.shape[0]
        if g != self.n_global or teacher_out.shape[1:] != (b, k) or v < g:
            raise ValueError(
                f"DINOLoss: student_out (V, B, K) = {tuple(student_out.shape)} and teacher_out "
                f"(G={self.n_global}, B, K) = {tuple(teacher_out.shape)} do not fit"
            )
        teacher_out = teacher_out.detach().float()
        log_s = F.log_softmax(student_out.float() / self.student_temp, dim=-1)  # (V, B, K)
        p_t = F.softmax((teacher_out - self.center) / self.temperature(epoch), dim=-1)  # (G, B, K)
        # ce[q, v] = -(1/B) sum_b sum_k p_t[q, b, k] log_s[v, b, k]: one (G, B*K) @ (B*K, V) product
        ce = -(p_t.reshape(g, b * k) @ log_s.reshape(v, b * k).T) / b  # (G, V)
        keep = torch.ones(g, v, dtype=torch.bool, device=ce.device)
        keep[torch.arange(g), torch.arange(g)] = False  # a global view is not its own target
        if not keep.any():
            raise ValueError("DINOLoss: one view only; there is no (teacher, other student view) pair")
        loss = ce[keep].mean()
        with torch.no_grad():
            self.last_teacher_entropy = torch.special.entr(p_t).sum(-1).mean()
        if update_center:
            self.update_center(teacher_out)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """center <- m * center + (1 - m) * mean of the teacher outputs (G, B, K) over all rows
        of all processes: the sum and the row count are all-reduced, then divided ONCE (B7).
        center_update="twice" reproduces the released code (book: Deviations, B7): that mean is
        divided again by this process's row count G*B, so the centre moves towards mean/(G*B)."""
        t = teacher_out.detach().float().reshape(-1, teacher_out.shape[-1])  # (G*B, K)
        total = t.sum(0, keepdim=True)  # (1, K)
        count = torch.tensor([float(t.shape[0])], device=t.device)
        if _dist_on():
            dist.all_reduce(total)
            dist.all_reduce(count)
        mean = total / count
        if self.center_update == "twice":
            mean = mean / t.shape[0]  # the released double division
        self.center.mul_(self.center_momentum).add_(mean, alpha=1.0 - self.center_momentum)


# --- optimisation pieces -----------------------------------------------------------------------


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups of trainable parameters: [decayed (weights of Linear/Conv, >= 2-D),
    not decayed (biases and every 1-D parameter: BatchNorm gamma/beta)] (book: Deviations, B10)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "name": "decay"}, {"params": no_decay, "name": "no_decay", "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, kind: str = "adamw") -> torch.optim.Optimizer:
    """ "adamw": AdamW, decoupled decay on the first group only (DINO). "adam-l2": Adam with
    coupled L2 on every trainable parameter, one group (the released code). The learning rate
    and the first group's weight decay are set every iteration from the schedules."""
    if kind == "adamw":
        return torch.optim.AdamW(param_groups(model), lr=0.0, weight_decay=0.0)
    if kind == "adam-l2":
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam([{"params": params, "name": "all"}], lr=0.0, weight_decay=0.0)
    raise UserError(f"optimizer {kind!r} is not an optimiser; choose one of {', '.join(OPTIMIZERS)}")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def cancel_last_layer_grads(model: nn.Module, epoch: int, freeze_epochs: int) -> bool:
    """Drop the gradients of the head's last layer while epoch < freeze_epochs (0-based, B9), so
    the optimiser skips it entirely (no update, no decay, no moment). True when it did."""
    if epoch >= freeze_epochs:
        return False
    for p in _unwrap(model).head.last_layer.parameters():
        p.grad = None
    return True


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter.
    Buffers (BatchNorm running statistics) are the teacher's own."""
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in _unwrap(student).parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions (and views) of the per-dimension std over the batch of unit-norm
    embeddings z (V, B, D). Near 0 = every record maps to one point (collapse); for embeddings
    spread uniformly on the sphere it is about 1/sqrt(D) (0.088 for D = 128)."""
    return z.detach().float().std(dim=1).mean()


def train_step(
    student: nn.Module,
    teacher: nn.Module,
    loss_fn: DINOLoss,
    optimizer: torch.optim.Optimizer,
    views: torch.Tensor,
    epoch: int,
    lr: float,
    weight_decay: float,
    momentum: float,
    clip_grad: float = 0.0,
    freeze_last_layer_epochs: int = 1,
    amp: bool = False,
) -> dict[str, torch.Tensor]:
    """One DINO iteration on views (V, B, ...) (global views first). Sets the learning rate of
    every group and the weight decay of the first group, steps the student, then the EMA
    teacher. Returns detached scalar tensors: loss, teacher_entropy, embedding_std (teacher)."""
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = lr
        if i == 0:
            group["weight_decay"] = weight_decay
    g = loss_fn.n_global
    device_type = views.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp and device_type == "cuda"):
        with torch.no_grad():
            t_out, t_z = teacher(views[:g], return_embedding=True)  # (G, B, K), (G, B, D)
        s_out = student(views)  # (V, B, K)
    loss = loss_fn(s_out.float(), t_out.float(), epoch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"DINO loss is {loss.item()} at epoch {epoch}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad > 0:
        nn.utils.clip_grad_norm_([p for p in student.parameters() if p.grad is not None], clip_grad)
    cancel_last_layer_grads(student, epoch, freeze_last_layer_epochs)
    optimizer.step()
    ema_update(teacher, student, momentum)
    return {"loss": loss.detach(), "teacher_entropy": loss_fn.last_teacher_entropy, "embedding_std": embedding_std(t_z)}


# --- data and models ---------------------------------------------------------------------------


def make_views(
    corpus,
    rec: torch.Tensor,
    modality: str,
    mean,
    std,
    transforms: str,
    n_global: int,
    n_local: int,
    generator: torch.Generator,
    released_fc: bool = False,
) -> torch.Tensor:
    """One random 250-sample window of each record rec (B,), then its DINO views, on the corpus
    device: (V, B, 12, 250) normalised time series or (V, B, 12, 13, 21) spectrograms.
    released_fc=True drops the spectrogram frequency cutout as the released code does (B16)."""
    from .transforms import spec_views, time_views

    raw = corpus.random_windows(rec, 1, generator, length=WINDOW)  # (B, 12, 250) mV
    if modality == "time":
        return time_views(
            raw, mean, std, transforms=transforms, n_global=n_global, n_local=n_local, generator=generator
        )
    return spec_views(
        raw, transforms=transforms, n_global=n_global, n_local=n_local, released_fc=released_fc, generator=generator
    )


def build_student(modality: str, out_dim: int, seed: int = 0) -> MultiCropModel:
    """Backbone + DINOHead(512 -> out_dim), initialised as the released DINO student
    (`init_xavier` over backbone and head MLP; the weight-normed last layer keeps its own init),
    reproducibly from `seed` without touching the global RNG."""
    from .models import init_xavier, make_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = make_backbone(modality)
        model = MultiCropModel(backbone, DINOHead(backbone.feature_dim, out_dim))
        init_xavier(model, generator=torch.Generator().manual_seed(seed))
    return model


def _check_config(cfg: PretrainConfig) -> None:
    """UserError naming the first PretrainConfig field out of range."""
    if cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer {cfg.optimizer!r} is not an optimiser; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.teacher_momentum_schedule not in ("fixed", "cosine"):
        raise UserError(f"teacher_momentum_schedule {cfg.teacher_momentum_schedule!r}: choose 'fixed' or 'cosine'")
    ints = {
        "n_global": 1,
        "n_local": 0,
        "out_dim": 1,
        "warmup_epochs": 0,
        "warmup_teacher_temp_epochs": 0,
        "freeze_last_layer_epochs": 0,
        "max_steps": 0,
    }
    for name, low in ints.items():
        v = getattr(cfg, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            raise UserError(f"{name} must be an integer >= {low}, got {v!r}")
    if cfg.center_update not in CENTER_UPDATES:
        raise UserError(f"center_update {cfg.center_update!r} must be one of {', '.join(CENTER_UPDATES)}")
    if cfg.freq_cutout not in FREQ_CUTOUT:
        raise UserError(f"freq_cutout {cfg.freq_cutout!r} must be one of {', '.join(FREQ_CUTOUT)}")
    if cfg.n_global + cfg.n_local < 2:
        raise UserError("n_global + n_local must be at least 2 (a teacher view and another student view)")
    for name in ("base_lr", "teacher_temp", "warmup_teacher_temp", "student_temp"):
        if not getattr(cfg, name) > 0:
            raise UserError(f"{name} must be > 0, got {getattr(cfg, name)!r}")
    for name in ("min_lr", "weight_decay", "weight_decay_end", "clip_grad"):
        if not getattr(cfg, name) >= 0:
            raise UserError(f"{name} must be >= 0, got {getattr(cfg, name)!r}")
    for name in ("center_momentum", "teacher_momentum"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"{name} must be in [0, 1], got {getattr(cfg, name)!r}")


def _check_transforms(modality: str, transforms: str | None) -> str:
    from .transforms import SPEC_TRANSFORMS, TIME_TRANSFORMS

    table = TIME_TRANSFORMS if modality == "time" else SPEC_TRANSFORMS
    transforms = DEFAULT_TRANSFORMS[modality] if transforms is None else transforms
    if transforms not in table:
        raise UserError(
            f"--transforms {transforms!r} is not a {modality} transform set; choose one of {', '.join(table)}"
        )
    return transforms


def _check_prepared(prepared_dir: str | Path) -> Path:
    path = Path(prepared_dir)
    if not path.is_dir():
        raise UserError(
            f"--prepared {path} does not exist or is not a folder (run `python -m ecgssl_nb prepare` first)"
        )
    missing = [n for n in ("index.csv", "signals.npy", "stats.json") if not (path / n).is_file()]
    if missing:
        raise UserError(
            f"--prepared {path} is not a prepared folder: {', '.join(missing)} missing "
            f"(run `python -m ecgssl_nb prepare --data-dir D --out {path}`)"
        )
    return path


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


# --- files -------------------------------------------------------------------------------------


_atomic = atomic_write  # one implementation, in atomic.py


def _write_log(path: Path, rows: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            w.writeheader()
            w.writerows(rows)

    _atomic(path, write)


def _read_log(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) < before_epoch]


# --- the loop ----------------------------------------------------------------------------------


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
    started = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        started = True
    return dist.get_rank(), dist.get_world_size(), device, started


def _mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    if _dist_on():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


@torch.no_grad()
def _average_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over the processes, so
    every rank holds, and rank 0 saves, the same model. Each rank's statistics come from its own
    records (DDP only broadcasts rank 0's at each forward)."""
    if not _dist_on():
        return
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    for b in bufs:
        dist.all_reduce(b)
    torch._foreach_div_(bufs, float(dist.get_world_size()))


def _gather(obj) -> list:
    if not _dist_on():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def pretrain(
    prepared_dir: str | Path,
    out: str | Path,
    modality: str,
    profile: str = "tiny",
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    transforms: str | None = None,
    seed: int = 0,
    resume: bool = False,
    keep: str | None = None,
    progress: bool = True,
    records: int | Sequence[int] | None = None,
    stop_after: int | None = None,
    amp: bool = False,
    overrides: dict | None = None,
    config: PretrainConfig | None = None,
    force: bool = False,
    max_steps: int | None = None,
) -> Path:
    """DINO pre-training of the `modality` ("time" or "spec") backbone on a prepared corpus.

    epochs / batch_size (records per step and per process) / keep default to the profile's
    `PretrainConfig`; transforms to "t1" (time) or "t2" (spec). `records` = a count (the first
    N rows of the index) or row numbers; None = every kept record of every fold (book: Deviations, B13).
    `stop_after` = train at most this many epochs in this call and leave a resumable run
    (schedules still span `epochs`). `amp` = bf16 autocast, CUDA only. `overrides` = other
    PretrainConfig fields to replace, e.g. {"optimizer": "adam-l2", "clip_grad": 3.0}. `config` =
    the resolved settings to use instead of the profile's (what `reproduce` passes its jobs).
    OUT holds `provenance.json` (see `pretrain_request`): OUT is resumed or reported finished only
    for an equal request; one made by another request is refused unless `force`, which moves it
    aside. One process writes OUT at a time (a lock).
    `max_steps` = a smoke run: stop after that many optimisation steps (schedules still span
    `epochs`), then write every output as usual with `"smoke": true` in summary.json.
    Writes OUT/checkpoint.pt and OUT/log.csv every epoch; when finished OUT/backbone.pt (the
    student backbone's state_dict) and OUT/summary.json. Returns OUT.
    """
    started_at = time.perf_counter()
    modality = check_modality(modality)
    prof = get_profile(profile)
    cfg: PretrainConfig = prof.pretrain[modality] if config is None else config
    if not isinstance(cfg, PretrainConfig):
        raise UserError(f"config must be a PretrainConfig, got {type(cfg).__name__}")
    overrides, given = {}, dict(overrides or {})
    if epochs is not None:
        if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 1:
            raise UserError(f"--epochs must be an integer >= 1, got {epochs!r}")
        overrides["epochs"] = int(epochs)
    if batch_size is not None:
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 2:
            raise UserError(f"--batch-size must be an integer >= 2 (BatchNorm needs two records), got {batch_size!r}")
        overrides["batch_size"] = int(batch_size)
    if keep is not None:
        if keep not in KEEP_CHOICES:
            raise UserError(f"--keep {keep!r} is not a choice; choose one of {', '.join(KEEP_CHOICES)}")
        overrides["keep"] = keep
    for name, value in given.items():
        if name not in PretrainConfig.__dataclass_fields__ or name in ("epochs", "batch_size", "keep"):
            raise UserError(
                f"overrides: {name!r} is not a PretrainConfig field that can be overridden "
                f"(epochs, batch_size and keep have their own parameters)"
            )
        overrides[name] = value
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    cfg = replace(cfg, **overrides)
    _check_config(cfg)
    transforms = _check_transforms(modality, transforms)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {seed!r}")
    if stop_after is not None and (not isinstance(stop_after, (int, np.integer)) or stop_after < 1):
        raise UserError(f"--stop-after must be an integer >= 1, got {stop_after!r}")
    device = resolve_device(device)
    if amp and not device.startswith("cuda"):
        raise UserError("--amp (bf16 autocast) is for CUDA devices only; drop it on the CPU")
    prepared_dir = _check_prepared(prepared_dir)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    from .prepare import load_prepared

    prepared = load_prepared(prepared_dir)
    n_prepared = len(prepared.index)
    rows = _select_rows(n_prepared, records)
    records_key = None if rows is None else (len(rows) if isinstance(records, (int, np.integer)) else rows.tolist())
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    n_used = n_prepared if rows is None else len(rows)
    if n_used // (cfg.batch_size * world_env) < 1:
        raise UserError(
            f"--batch-size {cfg.batch_size} x {world_env} process(es) is larger than the {n_used} records; "
            f"use a batch of at most {n_used // world_env}"
        )
    req = pretrain_request(cfg, modality, transforms, int(seed), prepared.digest, records_key, world_env, amp)
    first = int(os.environ.get("RANK", "0")) == 0
    with provenance.lock(out) if first else contextlib.nullcontext():
        if first and _claim(out, req, resume, force, progress, cfg.epochs):
            return out  # finished earlier with this very request
        if not first and (out / "summary.json").is_file() and (provenance.read(out) or {}).get("request") == req:
            return out
        return _pretrain_claimed(
            prepared,
            prepared_dir,
            out,
            rows,
            records_key,
            req,
            prof.name,
            cfg,
            modality,
            transforms,
            int(seed),
            device,
            resume,
            progress,
            stop_after,
            amp,
            started_at,
        )


def pretrain_request(
    cfg: PretrainConfig,
    modality: str,
    transforms: str,
    seed: int,
    prepared_digest: str,
    records=None,
    world_size: int = 1,
    amp: bool = False,
) -> dict:
    """The provenance request of a pre-training: every resolved setting (never a profile name),
    the prepared corpus's digest, the seed. Equal requests give equal runs."""
    settings = {
        "modality": modality,
        "transforms": transforms,
        "config": as_dict(cfg),
        "records": records,
        "world_size": int(world_size),
        "amp": bool(amp),
    }
    return provenance.request("pretrain", settings, {"prepared": prepared_digest}, seed)


def _claim(out: Path, req: dict, resume: bool, force: bool, progress: bool, epochs: int) -> bool:
    """Make OUT the home of `req` (provenance.claim); True when it already holds this finished run.
    A half-done run of the same request continues only with --resume."""
    status = provenance.claim(out, req, force=force)
    if status != "same":
        return False
    if (out / "summary.json").is_file() and (out / "backbone.pt").is_file():
        if not resume:
            raise UserError(
                f"--out {out} already holds this finished pre-training (summary.json); pass --resume "
                f"to keep it, or choose another --out"
            )
        if progress:
            print(f"pretrain: {out} already finished ({epochs} epochs); nothing to do")
        return True
    if (out / "checkpoint.pt").is_file() and not resume:
        raise UserError(
            f"--out {out} holds an unfinished pre-training (checkpoint.pt); pass --resume to "
            f"continue it or choose another --out"
        )
    return False


def _pretrain_claimed(
    prepared,
    prepared_dir: Path,
    out: Path,
    rows,
    records_key,
    req: dict,
    profile_name: str,
    cfg: PretrainConfig,
    modality: str,
    transforms: str,
    seed: int,
    device: str,
    resume: bool,
    progress: bool,
    stop_after,
    amp: bool,
    started_at: float,
) -> Path:
    """`pretrain` once OUT is claimed and locked: set up the processes, then train."""
    from .windows import Corpus

    rank, world, device, started_dist = _dist_setup(device)
    try:
        if world > 1:
            dist.barrier()  # rank 0 has claimed OUT before any rank reads it
        corpus = Corpus.from_prepared(prepared, rows=rows, device=device)
        n = len(corpus.lengths)
        b = cfg.batch_size
        steps = n // (b * world)  # drop_last over the global batch of b * world records
        if steps < 1:
            raise UserError(
                f"--batch-size {b} x {world} process(es) is larger than the {n} records; "
                f"use a batch of at most {n // world}"
            )
        run_cfg = {
            "modality": modality,
            "profile": profile_name,
            "config": as_dict(cfg),
            "transforms": transforms,
            "seed": int(seed),
            "records": records_key,
            "world_size": world,
        }
        return _train(
            prepared,
            corpus,
            out,
            run_cfg,
            cfg,
            modality,
            transforms,
            int(seed),
            rank,
            world,
            device,
            steps,
            resume,
            progress,
            stop_after,
            amp,
            started_at,
            prepared_dir,
        )
    finally:
        if started_dist:
            dist.destroy_process_group()


def _train(
    prepared,
    corpus,
    out: Path,
    run_cfg: dict,
    cfg: PretrainConfig,
    modality: str,
    transforms: str,
    seed: int,
    rank: int,
    world: int,
    device: str,
    steps: int,
    resume: bool,
    progress: bool,
    stop_after: int | None,
    amp: bool,
    started_at: float,
    prepared_dir: Path,
) -> Path:
    from tqdm import tqdm

    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    b, n = cfg.batch_size, len(corpus.lengths)
    L, E = steps, cfg.epochs
    # Schedules, one entry per iteration (index epoch * L + i, epoch from 0; B8).
    peak_lr = cfg.base_lr * b * world / 256.0  # linear scaling with the total batch
    lr_s = cosine_schedule(peak_lr, cfg.min_lr, E, L, warmup_epochs=min(cfg.warmup_epochs, E))
    wd_s = cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, E, L)
    mom_s = momentum_schedule(cfg.teacher_momentum, E, L, cfg.teacher_momentum_schedule)
    temp_s = teacher_temp_schedule(cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs, E)

    student = build_student(modality, cfg.out_dim, seed)
    if world > 1 and device.startswith("cuda"):
        # As DINO for BatchNorm networks: batch statistics over the global batch of all GPUs, so
        # K GPUs compute what one GPU would with K times the batch. (gloo on the CPU cannot.)
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
    student = student.to(device)
    teacher = copy.deepcopy(student)  # the teacher starts as the initialised student
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.train()  # BatchNorm on batch statistics, as DINO
    loss_fn = DINOLoss(
        cfg.out_dim, cfg.n_global, temp_s, cfg.student_temp, cfg.center_momentum, center_update=cfg.center_update
    ).to(device)
    optimizer = make_optimizer(student, cfg.optimizer)
    model = student
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            student, device_ids=[torch.device(device).index] if device.startswith("cuda") else None
        )

    # Randomness: the record order is shared by all ranks (each takes its own share); views are
    # drawn from a per-rank generator on the device. Both states are checkpointed.
    perm_gen = torch.Generator().manual_seed(seed)
    view_seed = int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
    view_gen = torch.Generator(device=device).manual_seed(view_seed)
    mean = torch.as_tensor(np.asarray(prepared.mean), dtype=torch.float32, device=device)
    std = torch.as_tensor(np.asarray(prepared.std), dtype=torch.float32, device=device)

    start_epoch, best_loss, best_epoch, best_backbone = 0, math.inf, -1, None
    if resume and ckpt_path.is_file():
        ck = provenance.load_checkpoint(ckpt_path)  # tensors and plain values only, never code
        changed = sorted(k for k in run_cfg if k != "profile" and ck["run"].get(k) != run_cfg[k])
        if changed:
            raise UserError(
                f"--resume: {ckpt_path} was written with different settings ({', '.join(changed)}); "
                f"resume with the same settings or choose another --out"
            )
        student.load_state_dict(ck["student"])
        teacher.load_state_dict(ck["teacher"])
        optimizer.load_state_dict(ck["optimizer"])
        loss_fn.load_state_dict(ck["loss"])
        perm_gen.set_state(ck["perm_rng"])
        view_gen.set_state(ck["view_rng"][rank])
        start_epoch, best_loss, best_epoch = ck["epoch"], ck["best_loss"], ck["best_epoch"]
        best_backbone = ck.get("best_backbone")
    elif resume and progress and rank == 0:
        print(f"pretrain: no checkpoint in {out}; starting from epoch 0")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    log_rows = _read_log(log_path, start_epoch) if rank == 0 else []

    limit = min(cfg.max_steps, E * L) if cfg.max_steps else E * L  # optimisation steps of the whole run
    last_epoch = -(-limit // L)  # epochs that run at least one step (E unless a smoke run)
    end_epoch = last_epoch if stop_after is None else min(last_epoch, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        t_epoch = time.perf_counter()
        perm = torch.randperm(n, generator=perm_gen)  # (n,) the same on every rank
        sums = torch.zeros(3, device=device)  # loss, teacher entropy, embedding std
        views_time = model_time = 0.0
        n_steps = min(L, limit - epoch * L)  # L, but fewer in the last epoch of a smoke run
        bar = tqdm(
            range(n_steps), desc=f"pretrain {modality} {epoch + 1}/{E}", disable=not progress or rank != 0, leave=False
        )
        for i in bar:
            it = epoch * L + i
            t0 = time.perf_counter()
            rec = perm[(i * world + rank) * b : (i * world + rank + 1) * b].to(device)  # (B,) this rank's share
            views = make_views(
                corpus,
                rec,
                modality,
                mean,
                std,
                transforms,
                cfg.n_global,
                cfg.n_local,
                view_gen,
                released_fc=cfg.freq_cutout == "discarded",
            )
            _sync(device)
            t1 = time.perf_counter()
            stats = train_step(
                model,
                teacher,
                loss_fn,
                optimizer,
                views,
                epoch,
                float(lr_s[it]),
                float(wd_s[it]),
                float(mom_s[it]),
                cfg.clip_grad,
                cfg.freeze_last_layer_epochs,
                amp,
            )
            sums += torch.stack([stats["loss"], stats["teacher_entropy"], stats["embedding_std"]])
            _sync(device)
            views_time += t1 - t0
            model_time += time.perf_counter() - t1
            if progress and rank == 0:
                bar.set_postfix(loss=f"{stats['loss'].item():.4f}")
        loss, entropy, emb_std = (_mean_over_ranks(sums / n_steps)).tolist()
        _average_buffers(student)
        _average_buffers(teacher)
        if loss < best_loss:
            best_loss, best_epoch = loss, epoch
            if cfg.keep == "lowest-loss":
                best_backbone = {k: v.detach().cpu().clone() for k, v in student.backbone.state_dict().items()}
        view_states = _gather(view_gen.get_state())
        sl = slice(epoch * L, epoch * L + n_steps)
        row = {
            "epoch": epoch,
            "loss": loss,
            "lr": float(lr_s[sl].mean()),
            "wd": float(wd_s[sl].mean()),
            "teacher_temp": float(temp_s[epoch]),
            "teacher_momentum": float(mom_s[sl].mean()),
            "teacher_entropy": entropy,
            "embedding_std": emb_std,
            "time_s": time.perf_counter() - t_epoch,
            "views_time_s": views_time,
            "model_time_s": model_time,
        }
        if rank == 0:
            ck = {
                "run": run_cfg,
                "epoch": epoch + 1,
                "student": student.state_dict(),
                "teacher": teacher.state_dict(),
                "optimizer": optimizer.state_dict(),
                "loss": loss_fn.state_dict(),
                "perm_rng": perm_gen.get_state(),
                "view_rng": view_states,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "best_backbone": best_backbone,
            }
            _atomic(ckpt_path, lambda tmp: torch.save(ck, tmp))
            log_rows.append(row)
            _write_log(log_path, log_rows)
            if progress:
                print(
                    f"pretrain {modality} epoch {epoch + 1}/{E}: loss {loss:.4f}, teacher entropy {entropy:.3f}, "
                    f"embedding std {emb_std:.4f}, {row['time_s']:.1f} s"
                )
        if world > 1:
            dist.barrier()  # the checkpoint is complete before any rank goes on

    if end_epoch < last_epoch:
        return out
    if rank == 0:
        state = (
            best_backbone
            if cfg.keep == "lowest-loss"
            else {k: v.detach().cpu() for k, v in student.backbone.state_dict().items()}
        )
        _atomic(out / "backbone.pt", lambda tmp: torch.save(state, tmp))
        final = float(log_rows[-1]["loss"]) if log_rows else math.nan
        write_json_atomic(
            out / "summary.json",
            {
                **run_cfg,
                "epochs": E,
                "smoke": bool(cfg.max_steps),
                "steps": limit,  # a smoke run is never a result
                "batch_size_per_process": b,
                "steps_per_epoch": L,
                "peak_lr": peak_lr,
                "data": {
                    "prepared": str(prepared_dir),
                    "n_prepared": len(prepared.index),
                    "n_records": n,
                    "records_per_epoch": L * b * world,
                    "folds": "all (transductive, as the released code: book Deviations, B13)",
                    "window_samples": WINDOW,
                    "crops_per_record_per_epoch": 1,
                },
                "final_loss": final,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "kept": cfg.keep,
                "kept_epoch": best_epoch if cfg.keep == "lowest-loss" else last_epoch - 1,
                "final_teacher_entropy": float(log_rows[-1]["teacher_entropy"]) if log_rows else math.nan,
                "final_embedding_std": float(log_rows[-1]["embedding_std"]) if log_rows else math.nan,
                "wall_time_s": time.perf_counter() - started_at,
                "device": device
                if not device.startswith("cuda")
                else f"{device} ({torch.cuda.get_device_name(device)})",
                "amp": amp,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "provenance": provenance.read(out),
            },
        )
    if world > 1:
        dist.barrier()
    return out


# --- command line ------------------------------------------------------------------------------


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb pretrain --modality {time,spec} --prepared DIR --out OUT ...`."""
    p = argparse.ArgumentParser(
        prog="python -m ecgssl_nb pretrain",
        description="DINO self-distillation pre-training of one backbone (paper Sec. II-B).",
    )
    p.add_argument("--modality", required=True, help=f"which backbone: {' or '.join(MODALITIES)}")
    p.add_argument("--prepared", required=True, help="a folder written by `python -m ecgssl_nb prepare`")
    p.add_argument("--out", required=True, help="output folder (checkpoint.pt, log.csv, backbone.pt, summary.json)")
    p.add_argument(
        "--profile", default="tiny", help="tiny (fixture, CPU) or paper (the authors' settings); default tiny"
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None, help="records per step per process (default: the profile's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    p.add_argument(
        "--transforms",
        default=None,
        help="view transforms: time none|tc|gn|t1 (default t1), spec none|tc|fc|t2 (default t2)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation, record order and views (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same settings)")
    p.add_argument("--keep", default=None, help="backbone kept: final (default) or lowest-loss (released)")
    p.add_argument("--records", type=int, default=None, help="use only the first N prepared records (quick runs)")
    p.add_argument("--stop-after", type=int, default=None, help="train at most N epochs now; --resume goes on")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="smoke run: stop after N optimisation steps, write every output marked smoke",
    )
    add_settings_arguments(p, PretrainConfig, "--set optimizer=adam-l2 --set clip_grad=3")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument(
        "--recipe",
        default="corrected",
        help="corrected (default), released, or released departures like B7,B10 (see `recipes`); "
        "--keep and --set win over it",
    )
    a = p.parse_args(argv)
    check_modality(a.modality)
    from .recipes import parse_recipe, pretrain_overrides

    base = read_config(PretrainConfig, a.config) if a.config else get_profile(a.profile).pretrain[a.modality]
    base = replace(base, **pretrain_overrides(parse_recipe(a.recipe)))  # the recipe first; --keep and --set win
    cfg = apply_settings(base, a.set)
    out = pretrain(
        a.prepared,
        a.out,
        a.modality,
        profile=a.profile,
        epochs=a.epochs,
        batch_size=a.batch_size,
        device=a.device,
        transforms=a.transforms,
        seed=a.seed,
        resume=a.resume,
        keep=a.keep,
        progress=not a.no_progress,
        records=a.records,
        stop_after=a.stop_after,
        amp=a.amp,
        config=cfg,
        force=a.force,
        max_steps=a.max_steps,
    )
    if int(os.environ.get("RANK", "0")) == 0 and not a.no_progress:
        print(f"pretrain: wrote {out}")
    return 0
