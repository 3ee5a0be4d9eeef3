"""Self-knowledge distillation, DINO-style (paper Sec. II-A, II-B; book: Self-distillation), in the
paper's order: the head, the loss and its centre (B7), the optimiser (B10), ONE pre-training step
(the head's last layer frozen in epoch 0, B9; then the EMA teacher), the views of a batch and the
schedules (B8); the loop around them is `ecgssl_nb.stages.pretrain`'s. A step never blocks the
host (no value read back, no data-dependent shape); on CUDA the backbone and head run in bf16
autocast, the head's last layer, the centring and the loss in fp32 (issue 15).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices  # torch's own list

from .errors import UserError, check_choice
from .models import init_xavier, make_backbone
from .schedules import cosine_schedule, momentum_schedule, teacher_temp_schedule
from .settings import CENTER_UPDATES, MAIN_TRANSFORMS, OPTIMIZERS, WINDOW, AugmentConfig, PretrainConfig
from .transforms import SPEC_TRANSFORMS, TIME_TRANSFORMS, spec_views, time_views
from .windows import Corpus

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
        norm = torch.linalg.vector_norm(self.weight_v, dim=1, keepdim=True).clamp_min(1e-12)  # (out, 1)
        return self.weight_v * (self.weight_g * norm.reciprocal())  # (out, in), rows of norm g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)  # (N, in) -> (N, out)


class DINOHead(nn.Module):
    """MLP in_dim -> hidden -> hidden -> bottleneck (512, 512, 128; GELU, no BN, trunc-normal(0.02)
    weights, zero biases), L2-normalise, weight-normed Linear(bottleneck -> out_dim), row norms 1."""

    def __init__(self, in_dim: int = 512, out_dim: int = 65536, hidden: int = 512, bottleneck: int = 128):
        super().__init__()
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

    def forward(
        self, x: torch.Tensor, return_embedding: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(N, in_dim) -> logits (N, out_dim); with return_embedding, also z (N, bottleneck)."""
        z = F.normalize(self.mlp(x), dim=-1)  # (N, bottleneck), ||z|| = 1 (bf16 under CUDA autocast)
        # The last layer runs in fp32 whatever the autocast: its logits are sharpened at
        # tau = 0.04 by the loss, where bf16 rounding errs by up to 5 % on the top teacher
        # probability (issue 15).
        with torch.autocast(x.device.type if x.device.type in ("cuda", "cpu") else "cpu", enabled=False):
            out = self.last_layer(z.float())  # (N, out_dim) float32
        return (out, z) if return_embedding else out


class MultiCropModel(nn.Module):
    """Backbone + DINO head over a stack of views: (V, B, ...) -> (V, B, out_dim), all V*B
    views in one forward pass (batch statistics of BatchNorm are over all views)."""

    def __init__(self, backbone: nn.Module, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(
        self, views: torch.Tensor, return_embedding: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(V, B, ...) views -> logits (V, B, out_dim); with return_embedding, also (V, B, bottleneck)."""
        v, b = views.shape[:2]
        f = self.backbone(views.flatten(0, 1))  # (V*B, ...) -> (V*B, 512)
        out, z = self.head(f, return_embedding=True)  # (V*B, K), (V*B, bottleneck)
        out, z = out.unflatten(0, (v, b)), z.unflatten(0, (v, b))  # (V, B, K), (V, B, bottleneck)
        return (out, z) if return_embedding else out


# --- the loss and the centre (paper Sec. II-A; B7) ----------------------------------------------


def dist_on() -> bool:
    """True inside a torch.distributed process group of more than one process (torchrun)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class DINOLoss(nn.Module):
    """Self-distillation cross-entropy, for each teacher (global) view q and student view v != q
    CE(q, v) = mean_b sum_k -softmax((t_qb - c) / tau_t)_k * log_softmax(s_vb / tau_s)_k, averaged
    over the pairs (18 for 2 + 8 views); `teacher_temp` a float or one per 0-based epoch (values
    checked here and by PretrainConfig). The centre c (1, out_dim) is updated after the loss (`update_center`)."""

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
        self.center_update = check_choice("center_update", center_update, CENTER_UPDATES)
        temps = np.atleast_1d(np.asarray(teacher_temp, dtype=np.float64))  # (1,) or (epochs,)
        # Kept here although PretrainConfig checks them too: the loss is used alone (notebooks,
        # tests), and a zero temperature or a momentum past 1 would give NaN losses, not an error.
        if not ((temps > 0).all() and student_temp > 0 and 0.0 <= center_momentum <= 1.0):
            raise UserError(
                f"DINOLoss: temperatures must be > 0 and center_momentum in [0, 1], got teacher_temp="
                f"{teacher_temp!r}, student_temp={student_temp!r}, center_momentum={center_momentum!r}"
            )
        self.n_global = n_global
        self.teacher_temp = temps
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))
        # The schedule on the device too, so a step indexes it by a device epoch (no host value
        # that a compiled step would specialise on); derived from teacher_temp, not saved.
        self.register_buffer("temps", torch.as_tensor(temps, dtype=torch.float32), persistent=False)
        self.last_teacher_entropy = torch.zeros(())  # nats, mean over teacher rows of the last call

    def temperature(self, epoch: int | torch.Tensor) -> float | torch.Tensor:
        """Teacher temperature of a 0-based epoch (a constant schedule serves every epoch); of a
        0-d device tensor, a gather from `temps` (indexing would read the epoch on the host)."""
        if isinstance(epoch, torch.Tensor):
            at = (epoch if len(self.temps) > 1 else torch.zeros_like(epoch)).reshape(1)
            return self.temps.index_select(0, at).reshape(())
        epoch = epoch if len(self.teacher_temp) > 1 else 0
        if not 0 <= epoch < len(self.teacher_temp):
            raise ValueError(
                f"epoch {epoch} is outside the teacher-temperature schedule (0..{len(self.teacher_temp) - 1})"
            )
        return float(self.teacher_temp[epoch])

    def forward(
        self,
        student_out: torch.Tensor,
        teacher_out: torch.Tensor,
        epoch: int | torch.Tensor = 0,
        update_center: bool = True,
    ) -> torch.Tensor:
        """student_out (V, B, K) over all views, teacher_out (G, B, K) (no gradient) over the global
        views -> scalar loss. `epoch`: 0-based, an int or a 0-d LongTensor on the device."""
        loss, self.last_teacher_entropy = self.loss_and_entropy(student_out, teacher_out, epoch, update_center)
        return loss

    def loss_and_entropy(
        self,
        student_out: torch.Tensor,
        teacher_out: torch.Tensor,
        epoch: int | torch.Tensor = 0,
        update_center: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`'s loss and the mean entropy (nats) of the teacher distributions, both
        float32 scalars, computed in fp32 whatever autocast the caller runs under."""
        v, b, k = student_out.shape
        g = teacher_out.shape[0]
        if g != self.n_global or teacher_out.shape[1:] != (b, k) or v < g:
            raise ValueError(
                f"DINOLoss: student_out (V, B, K) = {tuple(student_out.shape)} and teacher_out "
                f"(G={self.n_global}, B, K) = {tuple(teacher_out.shape)} do not fit"
            )
        if v == 1:
            raise ValueError("DINOLoss: one view only; there is no (teacher, other student view) pair")
        teacher_out = teacher_out.detach().float()
        with torch.autocast(student_out.device.type, enabled=False):
            log_s = F.log_softmax(student_out.float() / self.student_temp, dim=-1)  # (V, B, K)
            p_t = F.softmax((teacher_out - self.center) / self.temperature(epoch), dim=-1)  # (G, B, K)
            # ce[q, v] = -(1/B) sum_b sum_k p_t[q, b, k] log_s[v, b, k]: one (G, B*K) @ (B*K, V) product
            ce = -(p_t.reshape(g, b * k) @ log_s.reshape(v, b * k).T) / b  # (G, V)
            # The mean over the G*V - G pairs (q, v != q): a global view is not its own target;
            # subtracting the diagonal keeps the shape static (a mask would be data-dependent).
            loss = (ce.sum() - ce.diagonal().sum()) / (g * v - g)
            with torch.no_grad():
                entropy = torch.special.entr(p_t).sum(-1).mean()
        if update_center:
            self.update_center(teacher_out)
        return loss, entropy

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """center <- m * center + (1 - m) * mean of the teacher outputs (G, B, K) over all processes'
        rows, divided ONCE (B7); "twice" (released) divides it again by this process's G*B rows."""
        t = teacher_out.detach().float().reshape(-1, teacher_out.shape[-1])  # (G*B, K)
        # The row sums and the row count in one tensor (1, K + 1), filled on the device: one
        # all-reduce, and no host-to-device copy of the count.
        total = torch.cat([t.sum(0), t.new_full((1,), float(t.shape[0]))])[None]
        if dist_on():
            dist.all_reduce(total)
        mean = total[:, :-1] / total[:, -1:]
        if self.center_update == "twice":
            mean = mean / t.shape[0]  # the released double division
        self.center.mul_(self.center_momentum).add_(mean, alpha=1.0 - self.center_momentum)


# --- optimisation pieces -----------------------------------------------------------------------


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups of trainable parameters: [decayed (weights of Linear/Conv, >= 2-D),
    not decayed (biases and every 1-D parameter: BatchNorm gamma/beta)] (book: Deviations, B10)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "name": "decay"}, {"params": no_decay, "name": "no_decay", "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, kind: str = "adamw") -> torch.optim.Optimizer:
    """ "adamw": AdamW, decoupled decay on the first group only (DINO); "adam-l2": Adam with coupled
    L2 on every trainable parameter, one group (released, B10); lr and decay are `train_step`'s.
    Fused (step counters on the device: nothing read back) where torch has the kernels, else foreach."""
    devices = {p.device.type for p in model.parameters()}
    fused = True if devices and devices <= set(_get_fused_kernels_supported_devices()) else None
    if check_choice("optimizer", kind, OPTIMIZERS, "an optimiser") == "adamw":
        return torch.optim.AdamW(param_groups(model), lr=0.0, weight_decay=0.0, fused=fused)
    params = [p for p in model.parameters() if p.requires_grad]  # "adam-l2"
    return torch.optim.Adam([{"params": params, "name": "all"}], lr=0.0, weight_decay=0.0, fused=fused)


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
    """teacher <- m * teacher + (1 - m) * student per parameter; buffers (BatchNorm statistics) stay the teacher's."""
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in _unwrap(student).parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions and views of the std over the batch of unit-norm embeddings z (V, B, D):
    near 0 is collapse; spread uniformly on the sphere, about 1/sqrt(D) (0.088 for D = 128)."""
    return z.detach().float().std(dim=1).mean()


def forward_loss(
    student: nn.Module,
    teacher: nn.Module,
    loss_fn: DINOLoss,
    views: torch.Tensor,
    epoch: int | torch.Tensor,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward half of a DINO step on views (V, B, ...) (global views first): the teacher on
    the global views, the student on all, the loss and the centre update -> float32 scalars (loss,
    teacher entropy, teacher embedding std). `amp` (CUDA only): backbone and head MLP in bf16."""
    g = loss_fn.n_global
    device_type = views.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp and device_type == "cuda"):
        with torch.no_grad():
            t_out, t_z = teacher(views[:g], return_embedding=True)  # (G, B, K) fp32, (G, B, D)
        s_out = student(views)  # (V, B, K) fp32
    loss, entropy = loss_fn.loss_and_entropy(s_out, t_out, epoch)
    return loss, entropy, embedding_std(t_z)


class CompiledForward:
    """`forward_loss` under torch.compile (`mode` "default" or "reduce-overhead": CUDA graphs), a graph
    break an error. The epoch goes in as a 0-d device tensor filled once per epoch (no specialising,
    no copy). Under CUDA graphs the outputs live until the next step begins (marked here)."""

    def __init__(self, mode: str, fullgraph: bool = True, backend: str = "inductor"):
        self.graphs = mode == "reduce-overhead"
        self.fn = torch.compile(forward_loss, mode=None if mode == "default" else mode, fullgraph=fullgraph,
                                backend=backend)  # fmt: skip
        self._epoch: tuple[int, torch.Tensor] | None = None

    def __call__(
        self, student: nn.Module, teacher: nn.Module, loss_fn: DINOLoss, views: torch.Tensor, epoch: int, amp=False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._epoch is None or self._epoch[0] != epoch or self._epoch[1].device != views.device:
            self._epoch = (epoch, torch.full((), epoch, dtype=torch.long, device=views.device))
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs may be reused
        return self.fn(student, teacher, loss_fn, views, self._epoch[1], amp)


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
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = forward_loss,
) -> dict[str, torch.Tensor]:
    """One DINO iteration on views (V, B, ...): lr for every group and weight decay for the first,
    `forward` (`forward_loss` or a `CompiledForward`), the student's step (clipped; the last layer
    frozen while epoch < freeze_last_layer_epochs: B9), then the EMA teacher. Returns detached
    scalar tensors loss, teacher_entropy, embedding_std; nothing is read back."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.param_groups[0]["weight_decay"] = weight_decay  # the decayed group (adamw) or the only one
    loss, entropy, emb_std = forward(student, teacher, loss_fn, views, epoch, amp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad > 0:
        nn.utils.clip_grad_norm_([p for p in student.parameters() if p.grad is not None], clip_grad)
    cancel_last_layer_grads(student, epoch, freeze_last_layer_epochs)
    optimizer.step()
    ema_update(teacher, student, momentum)
    return {"loss": loss.detach(), "teacher_entropy": entropy, "embedding_std": emb_std}


# --- data and models ---------------------------------------------------------------------------


def make_views(
    corpus: Corpus,
    rec: torch.Tensor,
    modality: str,
    mean: torch.Tensor,
    std: torch.Tensor,
    transforms: str,
    n_global: int,
    n_local: int,
    generator: torch.Generator,
    released_fc: bool = False,
    augment: AugmentConfig | None = None,
    checked: bool = False,
) -> torch.Tensor:
    """One random 250-sample window of each record rec (B,), then its DINO views with the ranges of
    `augment` (PretrainConfig.augment): (V, B, 12, 250) or (V, B, 12, 13, 21); released_fc drops the
    frequency cutout (B16). checked=True: `rec`, `mean`, `std` checked at set-up, nothing read back."""
    augment = AugmentConfig() if augment is None else augment
    raw = corpus.random_windows(rec, 1, generator, length=WINDOW, checked=checked)  # (B, 12, 250) mV
    views = dict(transforms=transforms, n_global=n_global, n_local=n_local, generator=generator)
    if modality == "time":
        return time_views(raw, mean, std, **views, **augment.time_view_args(), checked=checked)
    return spec_views(raw, released_fc=released_fc, **views, **augment.spec_view_args())


def build_student(modality: str, out_dim: int, seed: int = 0) -> MultiCropModel:
    """Backbone + DINOHead(512 -> out_dim) initialised as the released DINO student (`init_xavier`;
    the weight-normed last layer keeps its own), from `seed`, the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = make_backbone(modality)
        model = MultiCropModel(backbone, DINOHead(backbone.feature_dim, out_dim))
        init_xavier(model, generator=torch.Generator().manual_seed(seed))
    return model


# --- the schedules of a run (paper Sec. III-B; B8) ---------------------------------------------


@dataclass(frozen=True)
class Schedules:
    """Per-iteration arrays (index it = epoch * steps + i, epoch from 0; B8) and the run's length."""

    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray  # teacher EMA momentum
    teacher_temp: np.ndarray  # per epoch
    peak_lr: float  # base_lr * total batch / 256
    steps: int  # optimisation steps per epoch, L
    limit: int  # optimisation steps of the whole run (fewer in a smoke run)

    @property
    def last_epoch(self) -> int:
        """Epochs that run at least one step (cfg.epochs unless a smoke run)."""
        return -(-self.limit // self.steps)


def make_schedules(cfg: PretrainConfig, n_records: int, world: int) -> Schedules:
    """The schedules of `n_records` records per epoch, batch_size the global batch (drop_last) shared
    by the `world` processes: neither the schedules nor the recipe depend on `world`."""
    E, L = cfg.epochs, n_records // cfg.batch_size
    peak_lr = cfg.base_lr * cfg.batch_size / 256.0  # linear scaling with the (global) batch
    return Schedules(
        lr=cosine_schedule(peak_lr, cfg.min_lr, E, L, warmup_epochs=min(cfg.warmup_epochs, E)),
        wd=cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, E, L),
        momentum=momentum_schedule(cfg.teacher_momentum, E, L, cfg.teacher_momentum_schedule),
        teacher_temp=teacher_temp_schedule(
            cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs, E
        ),
        peak_lr=peak_lr,
        steps=L,
        limit=min(cfg.max_steps, E * L) if cfg.max_steps else E * L,
    )


def check_transforms(modality: str, transforms: str | None) -> str:
    table = TIME_TRANSFORMS if modality == "time" else SPEC_TRANSFORMS
    transforms = MAIN_TRANSFORMS[modality] if transforms is None else transforms
    return check_choice("--transforms", transforms, table, f"a {modality} transform set")
