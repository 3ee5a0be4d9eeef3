"""Pre-training steps on this CPU, eager against compiled, now and (with --before) at an older
commit, in one run (issue 15, item 8).

    python benchmarks/bench_steps_pretrain.py                  # this checkout, the tiny profile's shapes
    python benchmarks/bench_steps_pretrain.py --before 2de5546 # and the same step at that commit

Per modality it builds the tiny profile's pre-training (paper backbone, 2 global + n_local views,
its batch and head width) on a synthetic corpus (random raw windows: the step cannot tell them
from ECGs) and measures one step with its batch preparation (`make_views` then `train_step`):
* aten calls and host-device synchronisations per step, counted by `ecgssl_nb.syncs.count_ops`
  over one steady-state eager step (after warm-up steps; under a dispatch mode torch.compile does
  not compile, and a compiled step runs inductor kernels rather than aten calls);
* steps/s eager, and compiled (`dino.CompiledForward`, inductor) where the code has it.
Each measurement runs in a fresh subprocess with PYTHONPATH at the code measured: this checkout,
or a temporary `git worktree` of --before (removed afterwards), so all figures come from one run on
the same machine and load. Ratios are now / before and compiled / eager.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _measure(modality: str, mode: str, steps: int, warmup: int) -> dict:
    """One modality, eager (mode "off") or compiled, with the ecgssl_nb on sys.path."""
    import copy

    import torch

    from ecgssl_nb.core import dino
    from ecgssl_nb.core.settings import MAIN_TRANSFORMS, get_profile
    from ecgssl_nb.core.windows import Corpus
    from ecgssl_nb.syncs import count_ops

    torch.set_num_threads(1)
    cfg = get_profile("tiny").pretrain[modality]
    gen = torch.Generator().manual_seed(0)
    n_rec = cfg.batch_size
    corpus = Corpus(torch.randn(12, n_rec * 1000, generator=gen) * 0.3, torch.arange(n_rec) * 1000,
                    torch.full((n_rec,), 1000))  # fmt: skip
    student = dino.build_student(modality, cfg.out_dim, seed=0)
    teacher = copy.deepcopy(student).requires_grad_(False)
    loss_fn = dino.DINOLoss(cfg.out_dim, cfg.n_global, teacher_temp=cfg.teacher_temp)
    opt = dino.make_optimizer(student, cfg.optimizer)
    mean, std = torch.zeros(12), torch.full((12,), 0.3)
    rec = torch.arange(n_rec)
    view_args = {"checked": True} if "checked" in inspect.signature(dino.make_views).parameters else {}
    step_args = {}
    if mode != "off":
        if not hasattr(dino, "CompiledForward"):
            return {"modality": modality, "mode": mode, "missing": True}
        step_args = {"forward": dino.CompiledForward(mode)}

    def step() -> None:
        views = dino.make_views(corpus, rec, modality, mean, std, MAIN_TRANSFORMS[modality], cfg.n_global,
                                  cfg.n_local, gen, **view_args)  # fmt: skip
        dino.train_step(student, teacher, loss_fn, opt, views, 1, 1e-4, 0.04, 0.996, **step_args)

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    warm_s = time.perf_counter() - t0
    counted = {}
    if mode == "off":  # (a dispatch mode turns compilation off: compiled steps run inductor kernels, not aten calls)
        with count_ops() as ops:
            step()
        counted = {"calls": ops.n_calls, "syncs": ops.n_syncs, "sync_ops": dict(ops.syncs)}
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - t0) / steps
    return {"modality": modality, "mode": mode, **counted, "steps_s": 1.0 / per_step, "warmup_s": warm_s,
            "batch": n_rec, "views": cfg.n_global + cfg.n_local, "out_dim": cfg.out_dim}  # fmt: skip


def _run(code: Path, modality: str, mode: str, steps: int, warmup: int) -> dict:
    """_measure in a subprocess whose ecgssl_nb is the one under `code`."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [sys.executable, __file__, "--measure", modality, mode, str(steps), str(warmup)]
    out = subprocess.run(args, env=env, cwd=code, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"measuring {modality} {mode} at {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: dict, before: str | None) -> list[str]:
    lines = []
    for modality in ("time", "spec"):
        now, comp = rows[("now", modality, "off")], rows[("now", modality, "default")]
        lines.append(
            f"{modality}: batch {now['batch']} x {now['views']} views, out_dim {now['out_dim']} | now eager: "
            f"{now['calls']} aten calls, {now['syncs']} syncs, {now['steps_s']:.2f} steps/s | compiled forward: "
            f"{comp['steps_s']:.2f} steps/s "
            f"(x{comp['steps_s'] / now['steps_s']:.2f} eager; first steps {comp['warmup_s']:.0f} s)"
        )
        if before:
            old = rows[("before", modality, "off")]
            lines.append(
                f"{modality}: before ({before}) eager: {old['calls']} calls, {old['syncs']} syncs "
                f"{old['sync_ops']}, {old['steps_s']:.2f} steps/s | now/before: calls x{now['calls'] / old['calls']:.2f}, "
                f"steps/s x{now['steps_s'] / old['steps_s']:.2f}, compiled/before x{comp['steps_s'] / old['steps_s']:.2f}"
            )
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        modality, mode, steps, warmup = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(_measure(modality, mode, steps, warmup)))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=None, help="a git commit to measure beside this checkout (eager)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiling included; default 2)")
    a = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        if a.before:
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), a.before], cwd=ROOT, check=True)
        try:
            for modality in ("time", "spec"):
                for mode in ("off", "default"):
                    rows[("now", modality, mode)] = _run(ROOT, modality, mode, a.steps, a.warmup)
                if a.before:
                    rows[("before", modality, "off")] = _run(old, modality, "off", a.steps, a.warmup)
        finally:
            if a.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    print(f"pre-training steps on this CPU (1 thread), tiny profile shapes; {a.steps} timed steps after {a.warmup}")
    print("\n".join(_table(rows, a.before)))


if __name__ == "__main__":
    main()
