"""The paper profile at full size: cost per stage, and the whole study's cost extrapolated.

    python benchmarks/bench_paper.py --device cpu --records 4310 --steps 2      # a tenth, on the CPU
    python benchmarks/bench_paper.py --device cuda --records 43101 --steps 3     # full size, bf16 on CUDA
    python benchmarks/bench_paper.py --device cpu --records 300 --steps 1 --profile tiny   # CI's reduced form

Stages, each in its own process (so each peak memory is its own):

1. fixture: a synthetic corpus of the real data set's shape (`fixture --shape physionet2020`: the
   six sources in their real proportions, 30-minute INCART and long PTB records); records/s, disk.
2. prepare: time, peak resident memory, size of signals.npy.
3. pretrain-time, pretrain-spec: the paper smoke of each pre-training (`selfkd.pretrain(...,
   max_steps=STEPS)`: the profile's exact batch, 2 + 8 views, 65,536-wide head); seconds per
   step (window cutting + views + DINO step), records/s, peak memory.
4. finetune-ssl-{t,s,tsc,tsg}: the paper smoke of one setup per fine-tuning family from the
   backbones of step 3, outer fold 0 (`finetune.finetune(..., max_steps=STEPS)`, its evaluation
   of the inner and outer folds included); seconds per training step, windows/s of training and of
   evaluation, peak memory.

From those, the study's cost on this device: for each stage, the steps one run needs at full size
(epochs x steps per epoch from the profile), the number of runs (10 folds, scratch and ssl-
setups, the Fig. 3 ablation: 3 more pre-trainings per modality and their ssl-t / ssl-s
fine-tunings), and the hours. Figures at a fraction of 43,101 records are scaled to full size
(steps per epoch and evaluation windows grow with the corpus; the time of a step does not).
The first step of a stage carries warm-up costs: with --steps > 1 it is left out of the mean.
Every run here is a smoke run (marked so in its files); nothing it writes is a result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL_RECORDS = 43101  # PhysioNet/CinC 2020 training records of the six sources (paper Sec. III-A)
FAMILIES = ("t", "s", "tsc", "tsg")
ABLATION_PRETRAININGS = 3  # per modality: time-{none,tc,gn}, spec-{none,tc,fc} (Fig. 3)
MARK = "BENCH_RESULT "


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fn, log: list, device: str):
    """fn wrapped so that each call's seconds (device synchronised) are appended to log."""

    def wrapper(*args, **kwargs):
        _sync(device)
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync(device)
        log.append((time.perf_counter() - t, args, kwargs))
        return out

    return wrapper


def _per_step(seconds: list[float]) -> float:
    """Mean seconds per step, the first (warm-up) step left out when there are more."""
    return sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else seconds[0]


def _windows(lengths, stride: int = 125, length: int = 250) -> int:
    """Evaluation windows of records of these lengths (samples at 100 Hz; a short tail dropped)."""
    import numpy as np

    n = np.asarray(lengths, dtype=np.int64)
    return int(np.where(n >= length, (n - length) // stride + 1, 0).sum())


# --- the stages (run in a child process each) -----------------------------------------------------


def stage_fixture(a) -> dict:
    from ecgssl_nb.fixture import make_fixture

    t = time.perf_counter()
    out = make_fixture(Path(a.out) / "data", a.records, seed=0, shape="physionet2020", workers=a.workers)
    wall = time.perf_counter() - t
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"wall_s": wall, "records_per_s": a.records / wall, "disk_mb": size / 1e6}


def stage_prepare(a) -> dict:
    from ecgssl_nb.prepare import load_prepared, prepare

    t = time.perf_counter()
    out = prepare(Path(a.out) / "data", Path(a.out) / "prepared", workers=a.workers, progress=False)
    wall = time.perf_counter() - t
    prep = load_prepared(out)
    return {
        "wall_s": wall,
        "records_per_s": a.records / wall,
        "n_prepared": int(len(prep.index)),
        "signals_mb": (Path(out) / "signals.npy").stat().st_size / 1e6,
        "windows": _windows(prep.index["length"].to_numpy()),
    }


def stage_pretrain(a, modality: str) -> dict:
    from ecgssl_nb import selfkd
    from ecgssl_nb.config import get_profile

    cfg = get_profile(a.profile).pretrain[modality]
    steps, views = [], []
    selfkd.train_step = _timed(selfkd.train_step, steps, a.device)
    selfkd.make_views = _timed(selfkd.make_views, views, a.device)
    out = Path(a.out) / "pretrain" / modality
    t = time.perf_counter()
    selfkd.pretrain(
        Path(a.out) / "prepared",
        out,
        modality,
        profile=a.profile,
        device=a.device,
        max_steps=a.steps,
        progress=False,
    )
    summary = json.loads((out / "summary.json").read_text())
    per_step = _per_step([s[0] + v[0] for s, v in zip(steps, views)])
    return {
        "wall_s": time.perf_counter() - t,
        "smoke": summary["smoke"],
        "steps": len(steps),
        "batch": cfg.batch_size,
        "views": cfg.n_global + cfg.n_local,
        "out_dim": cfg.out_dim,
        "s_per_step": per_step,
        "views_s_per_step": _per_step([v[0] for v in views]),
        "records_per_s": cfg.batch_size / per_step,
        "epochs": cfg.epochs,
        "n_records": summary["data"]["n_records"],
    }


def stage_finetune(a, setup: str) -> dict:
    from ecgssl_nb import finetune as ft
    from ecgssl_nb.config import get_profile, setup_family

    prof = get_profile(a.profile)
    family = setup_family(setup)
    steps, preds = [], []
    ft.train_step = _timed(ft.train_step, steps, a.device)
    ft.predict = _timed(ft.predict, preds, a.device)
    out = Path(a.out) / "finetune" / setup
    t = time.perf_counter()
    res = ft.finetune(
        setup,
        0,
        Path(a.out) / "prepared",
        out,
        pretrained=Path(a.out) / "pretrain",
        profile=a.profile,
        device=a.device,
        max_steps=a.steps,
        progress=False,
    )
    per_step = _per_step([s[0] for s in steps])
    eval_windows = sum(_windows(p[1][1].lengths.cpu().numpy()) for p in preds)  # args = (model, corpus, ...)
    eval_s = sum(p[0] for p in preds)
    batch = prof.finetune.batch_records[family]
    return {
        "wall_s": time.perf_counter() - t,
        "smoke": res["smoke"],
        "steps": len(steps),
        "batch": batch,
        "crops": prof.finetune.crops,
        "s_per_step": per_step,
        "windows_per_s": batch * prof.finetune.crops / per_step,
        "eval_windows": eval_windows,
        "eval_s": eval_s,
        "eval_windows_per_s": eval_windows / eval_s,
        "epochs": prof.finetune.epochs[family],
        "n_train": res["data"]["n_train"],
        "auroc": res["metrics"]["paper"]["auroc"],
    }


def child(a) -> None:
    """Run one stage in this process and print its figures as one JSON line."""
    import torch

    cuda = a.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(a.device)
    stage = a.stage
    if stage == "fixture":
        r = stage_fixture(a)
    elif stage == "prepare":
        r = stage_prepare(a)
    elif stage.startswith("pretrain-"):
        r = stage_pretrain(a, stage.split("-", 1)[1])
    else:
        r = stage_finetune(a, stage.split("-", 1)[1])
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    r["peak_rss_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest worker
    r["peak_gpu_mb"] = torch.cuda.max_memory_allocated(a.device) / 2**20 if cuda else None
    print(MARK + json.dumps(r), flush=True)


class StageFailed(Exception):
    pass


def run_stage(stage: str, a) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--stage",
        stage,
        "--device",
        a.device,
        "--records",
        str(a.records),
        "--steps",
        str(a.steps),
        "--out",
        str(a.out),
        "--profile",
        a.profile,
        "--workers",
        str(a.workers),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=a.stage_timeout)
    except subprocess.TimeoutExpired:
        raise StageFailed(f"stage {stage} ran past {a.stage_timeout:.0f} s") from None
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    if p.returncode != 0 or not lines:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-6000:])
        raise StageFailed(f"stage {stage} failed (exit status {p.returncode})")
    return json.loads(lines[-1][len(MARK) :])


# --- the estimate ------------------------------------------------------------------------------------


def estimate(res: dict, profile: str, records: int) -> list[dict]:
    """Per stage of the study: steps per run, runs, total steps and hours on this device, scaled
    from `records` to the full 43,101."""
    from ecgssl_nb.config import N_FOLDS, get_profile

    prof = get_profile(profile)
    scale = FULL_RECORDS / records
    n_full = res["prepare"]["n_prepared"] * scale  # records kept by prepare, at full size
    n_folds = len(prof.folds)
    ablation_folds = len(prof.finetune.ablation_folds or prof.folds)
    rows = []
    for m in ("time", "spec"):
        r = res.get(f"pretrain-{m}")
        if r is None:
            continue
        per_epoch = int(n_full // r["batch"])
        steps = r["epochs"] * per_epoch
        runs = 1 + ABLATION_PRETRAININGS
        rows.append(
            {
                "stage": f"pretrain {m}",
                "s_per_step": r["s_per_step"],
                "steps_per_run": steps,
                "runs": runs,
                "eval_h_per_run": 0.0,
                "hours": runs * steps * r["s_per_step"] / 3600,
            }
        )
    for f in FAMILIES:
        r = res.get(f"finetune-ssl-{f}")
        if r is None:
            continue
        n_train = r["n_train"] * scale
        per_epoch = math.ceil(n_train / r["batch"])
        steps = r["epochs"] * per_epoch
        # every epoch predicts the inner and the outer fold: 2 of 10 folds of the corpus's windows
        eval_s = r["epochs"] * 2 * res["prepare"]["windows"] * scale / N_FOLDS / r["eval_windows_per_s"]
        runs = 2 * n_folds + (ABLATION_PRETRAININGS * ablation_folds if f in ("t", "s") else 0)
        rows.append(
            {
                "stage": f"finetune {f} (+ ssl-{f})",
                "s_per_step": r["s_per_step"],
                "steps_per_run": steps,
                "runs": runs,
                "eval_h_per_run": eval_s / 3600,
                "hours": runs * (steps * r["s_per_step"] + eval_s) / 3600,
            }
        )
    return rows


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def report(res: dict, a, device_name: str) -> str:
    fx, pr = res.get("fixture"), res.get("prepare")
    lines = [
        f"bench_paper: profile {a.profile}, {a.records} records ({a.records / FULL_RECORDS:.1%} of "
        f"{FULL_RECORDS}), {a.steps} step(s) per stage, device {a.device} ({device_name}); "
        f"smoke runs, not results"
    ]
    if pr is None:
        return "\n".join(lines + ["(no prepare figures: no estimate)"])
    if fx is not None:
        lines.append(
            f"fixture : {fx['wall_s']:.1f} s, {fx['records_per_s']:.1f} records/s, {fx['disk_mb']:.0f} MB on "
            f"disk, peak RSS {fx['peak_rss_mb']:.0f} MB"
        )
    lines.append(
        f"prepare : {pr['wall_s']:.1f} s ({a.workers} workers), {pr['records_per_s']:.1f} records/s, "
        f"{pr['n_prepared']} kept, signals.npy {pr['signals_mb']:.0f} MB, peak RSS {pr['peak_rss_mb']:.0f} MB "
        f"(largest worker {pr['peak_rss_worker_mb']:.0f} MB)"
    )
    lines.append(
        f"{'stage':22s} {'batch':>6s} {'s/step':>8s} {'rec/s':>8s} {'win/s':>8s} {'eval win/s':>10s} "
        f"{'RSS MB':>8s} {'GPU MB':>8s}"
    )
    for k, r in res.items():
        if k.startswith("pretrain-"):
            lines.append(
                f"{k:22s} {r['batch']:6d} {r['s_per_step']:8.2f} {r['records_per_s']:8.1f} {'-':>8s} "
                f"{'-':>10s} {r['peak_rss_mb']:8.0f} {_fmt(r['peak_gpu_mb'], '8.0f'):>8s}"
            )
        elif k.startswith("finetune-"):
            lines.append(
                f"{k:22s} {r['batch']:6d} {r['s_per_step']:8.2f} {r['batch'] / r['s_per_step']:8.1f} "
                f"{r['windows_per_s']:8.1f} {r['eval_windows_per_s']:10.1f} {r['peak_rss_mb']:8.0f} "
                f"{_fmt(r['peak_gpu_mb'], '8.0f'):>8s}"
            )
    rows = estimate(res, a.profile, a.records)
    scale = FULL_RECORDS / a.records
    lines.append(f"study at full size ({FULL_RECORDS} records) on this device, profile {a.profile}:")
    lines.append(f"{'stage':22s} {'steps/run':>10s} {'runs':>5s} {'steps':>10s} {'eval h/run':>10s} {'hours':>9s}")
    for r in rows:
        lines.append(
            f"{r['stage']:22s} {r['steps_per_run']:10d} {r['runs']:5d} {r['steps_per_run'] * r['runs']:10d} "
            f"{r['eval_h_per_run']:10.2f} {r['hours']:9.1f}"
        )
    total = sum(r["hours"] for r in rows)
    data_h = ((fx["wall_s"] if fx else 0.0) + pr["wall_s"]) * scale / 3600
    lines.append(
        f"total: {total:.1f} device-hours of training and evaluation (+ {data_h:.2f} h to write and "
        f"prepare the corpus, scaled linearly); one device, runs one after another"
    )
    return "\n".join(lines)


STAGES = ("fixture", "prepare", "pretrain-time", "pretrain-spec", *(f"finetune-ssl-{f}" for f in FAMILIES))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--records", type=int, default=FULL_RECORDS, help=f"corpus size (default {FULL_RECORDS})")
    p.add_argument("--steps", type=int, default=2, help="optimisation steps per stage (default 2)")
    p.add_argument("--profile", default="paper", help="paper (default) or tiny (the reduced form)")
    p.add_argument("--out", default=None, help="working folder (default: a temporary one, removed)")
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, min(16, os.cpu_count() or 1)),
        help="processes for fixture and prepare (default: the CPUs, at most 16)",
    )
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    p.add_argument("--stage-timeout", type=float, default=3600, help="seconds per stage before giving up")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage
    a = p.parse_args(argv)
    if a.records < 1 or a.steps < 1:
        p.error("--records and --steps must be >= 1")
    if a.stage:
        child(a)
        return 0
    import torch

    from ecgssl_nb.config import resolve_device

    a.device = resolve_device(a.device)
    name = (
        torch.cuda.get_device_name(a.device)
        if a.device.startswith("cuda")
        else (platform.processor() or platform.machine())
    )
    tmp = None
    if a.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_paper_")
        a.out = tmp.name
    res, failed = {}, None
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    for stage in stages:
        if stage not in STAGES:
            p.error(f"--stages: {stage!r} is not one of {', '.join(STAGES)}")
    try:
        for stage in stages:
            t = time.perf_counter()
            try:
                res[stage] = run_stage(stage, a)
            except StageFailed as exc:
                failed = str(exc)
                print(f"bench_paper: {exc}; reporting the stages done", file=sys.stderr, flush=True)
                break
            print(
                f"bench_paper: {stage} done in {time.perf_counter() - t:.1f} s: {json.dumps(res[stage])}",
                file=sys.stderr,
                flush=True,
            )
        text = report(res, a, name)
        print(text)
        if a.json:
            Path(a.json).write_text(
                json.dumps(
                    {
                        "device": a.device,
                        "device_name": name,
                        "profile": a.profile,
                        "records": a.records,
                        "steps": a.steps,
                        "stages": res,
                        "failed": failed,
                        "estimate": estimate(res, a.profile, a.records) if "prepare" in res else [],
                    },
                    indent=1,
                )
                + "\n"
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
