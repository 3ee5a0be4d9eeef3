"""Pre-training throughput: records/s of DINO views (10 per record) and of the model step.

    python benchmarks/bench_pretrain.py                      # both modalities, CUDA if available
    python benchmarks/bench_pretrain.py --device cpu --batch-time 16 --batch-spec 16

For each modality it times, separately and then together, on random raw windows held on the
device (a synthetic Corpus: the view code cannot tell them from ECGs):
* views: one random 250-sample window per record, then 2 global + 8 local views (`make_views`);
* step:  `train_step` = teacher forward on the global views, student forward/backward on all
  10 views in one pass, DINO loss, AdamW step, EMA (paper head: out_dim 65,536);
* floor: the student's forward/backward alone on the same views, measured beside the step so
  the step's overhead (teacher, loss, optimiser, EMA) can be read whatever else loads the machine.
Defaults are the paper's batches (196 time, 256 spec) on CUDA; on the CPU they are far too slow
to time, so the CPU default is 16 records (say so when quoting the figures). On a small shared
CPU, --threads 1 is usually fastest: spin-waiting OpenMP threads cost more than they give.

Reference points (this project's measurements of the released code on a 2-core
machine): a time-series DINO step of about 34 records/s, and view making of about 260 records/s
per DataLoader worker process.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from ecgssl_nb.core.dino import DINOLoss, build_student, make_optimizer, make_views, train_step
from ecgssl_nb.core.settings import MAIN_TRANSFORMS, get_profile, resolve_device
from ecgssl_nb.core.windows import Corpus

REF_STEP_RECORDS_S = 34.0  # released code, time-series DINO step on the 2-core machine
REF_VIEWS_RECORDS_S = 260.0  # released code, views per DataLoader worker process


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fn, repeats: int, device: str) -> float:
    """Seconds per call (mean over `repeats`, after the caller's warm-up)."""
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


def bench(
    modality: str,
    batch: int,
    device: str,
    repeats: int,
    warmup: int,
    out_dim: int,
    amp: bool,
    n_records: int = 2048,
    seed: int = 0,
) -> dict:
    cfg = get_profile("paper").pretrain[modality]
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(250, 3000, (n_records,), generator=g)
    offsets = torch.cumsum(lengths, 0) - lengths
    signal = 0.2 * torch.randn(12, int(lengths.sum()), generator=g)  # raw mV
    corpus = Corpus(signal, offsets, lengths, device=device)
    mean = torch.zeros(12, device=device)
    std = torch.full((12,), 0.2, device=device)
    view_gen = torch.Generator(device=device).manual_seed(seed)
    transforms = MAIN_TRANSFORMS[modality]

    def views():
        rec = torch.randint(0, n_records, (batch,), generator=view_gen, device=device)
        return make_views(corpus, rec, modality, mean, std, transforms, cfg.n_global, cfg.n_local, view_gen)

    student = build_student(modality, out_dim, seed).to(device)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    loss_fn = DINOLoss(out_dim, cfg.n_global, cfg.teacher_temp, cfg.student_temp, cfg.center_momentum).to(device)
    opt = make_optimizer(student, "adamw")
    fixed = views()

    def step(v=None):
        train_step(
            student,
            teacher,
            loss_fn,
            opt,
            fixed if v is None else v,
            epoch=1,
            lr=1e-4,
            weight_decay=0.04,
            momentum=0.996,
            amp=amp,
        )

    def floor():  # the student's forward + backward on all views and nothing else: the step's floor
        student(fixed).float().logsumexp(-1).mean().backward()
        student.zero_grad(set_to_none=True)

    for _ in range(warmup):
        views()
        step()
        floor()
    t_views = _timed(views, repeats, device)
    t_step = _timed(step, repeats, device)
    t_floor = _timed(floor, repeats, device)
    t_both = _timed(lambda: step(views()), repeats, device)
    return {
        "modality": modality,
        "batch": batch,
        "views_shape": tuple(fixed.shape),
        "views_records_s": batch / t_views,
        "step_records_s": batch / t_step,
        "floor_records_s": batch / t_floor,
        "iteration_records_s": batch / t_both,
        "views_share": t_views / (t_views + t_step),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--modality", default="both", choices=["time", "spec", "both"])
    p.add_argument("--batch-time", type=int, default=None, help="records per step (default 196 CUDA, 16 CPU)")
    p.add_argument("--batch-spec", type=int, default=None, help="records per step (default 256 CUDA, 16 CPU)")
    p.add_argument("--out-dim", type=int, default=65536, help="DINO head width (paper 65,536)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls each (default 20 CUDA, 3 CPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    cuda = device.startswith("cuda")
    if a.threads:
        torch.set_num_threads(a.threads)
    repeats = a.repeats or (20 if cuda else 3)
    batches = {"time": a.batch_time or (196 if cuda else 16), "spec": a.batch_spec or (256 if cuda else 16)}
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device: {device} ({where}); torch {torch.__version__}; out_dim {a.out_dim}; amp {a.amp}; "
        f"{repeats} timed calls after {a.warmup} warm-up"
    )
    if not cuda:
        print("note: CPU run, batches smaller than the paper's 196 / 256 records")
    modalities = ("time", "spec") if a.modality == "both" else (a.modality,)
    for m in modalities:
        r = bench(m, batches[m], device, repeats, a.warmup, a.out_dim, a.amp)
        print(
            f"{m:>4}: B={r['batch']:>3} views {r['views_shape']}: "
            f"views {r['views_records_s']:9.1f} rec/s ({r['views_records_s'] / REF_VIEWS_RECORDS_S:6.1f}x the "
            f"released {REF_VIEWS_RECORDS_S:.0f}/worker) | step {r['step_records_s']:8.1f} rec/s"
            + (
                f" ({r['step_records_s'] / REF_STEP_RECORDS_S:.2f}x the released {REF_STEP_RECORDS_S:.0f})"
                if m == "time"
                else ""
            )
            + f" | student fwd+bwd alone {r['floor_records_s']:8.1f} rec/s (the step costs "
            f"{100 * (r['floor_records_s'] / r['step_records_s'] - 1):+.0f}%)"
            + f" | views + step {r['iteration_records_s']:8.1f} rec/s, views {100 * r['views_share']:.1f}% of the time"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
