"""The paper profile at full size, run as `reproduce` runs it: cost per stage, and the study's cost.

    python benchmarks/bench_paper.py --device cpu --records 4310 --steps 2      # a tenth, on the CPU
    python benchmarks/bench_paper.py --device cuda --records 43101 --steps 8     # full size on CUDA
    python benchmarks/bench_paper.py --device cpu --records 300 --steps 1 --profile tiny   # CI's reduced form
    python benchmarks/bench_paper.py --memory-estimate                          # k runs per GPU, estimated

What it runs is what `reproduce` runs: every pre-training and fine-tuning here is the job that
`reproduce.plan` makes for the study (`Job.call`), with the profile's resolved settings (precision,
compile mode, checkpoint cadence, whatever the profile and `--set KEY=VALUE` items say, exactly as
`reproduce --set` takes them; the profile's own values by default) and smoke-limited to --steps
optimisation steps (`reproduce --max-steps`). Stages, each in its own process (so each peak memory
is its own):

1. fixture: a synthetic corpus of the real data set's shape (`fixture --shape physionet2020`: the
   six sources in their real proportions, 30-minute INCART and long PTB records); records/s, disk.
2. prepare: the study's prepare job; time, peak resident memory, size of signals.npy.
3. pretrain-time, pretrain-spec: the study's main pre-training jobs (a whole device each, as in
   `reproduce`); seconds per step (window cutting + views + DINO step), syncs per step, the one
   checkpoint a smoke epoch writes, peak memory.
4. finetune-ssl-{t,s,tsc,tsg}: the study's fine-tuning jobs from the backbones of step 3, packed as
   `reproduce` packs them: `--runs-per-device K` (default the profile's `runs_per_device`) child
   processes at once on the device, the families taken in turn (t, s, tsc, tsg, t, ...) over
   folds 0, 1, ... until K runs (at least one per family) ran. Each gives its seconds per step under
   that contention, syncs per step, one evaluation of the inner and outer folds, one checkpoint
   (written once explicitly: a smoke run of one epoch writes none) and peak memory.

Syncs per step are counted over the steady-state steps (after the warm-up ones) of the training
step and its batch preparation: with `ecgssl_nb.syncs.count_ops` (a dispatch mode that flags the
ops that block the host on CUDA) wherever the step runs eagerly, and on CUDA also with
`torch.cuda.set_sync_debug_mode("warn")` (each warning is a real synchronisation; this one also
sees compiled steps, where a dispatch mode would change what runs).

From those, the study's cost on this device: for each stage, the steps one run needs at full size
(epochs x steps per epoch from the profile), the runs of the main study (2 pre-trainings + 8 setups
x 10 folds) and of the study with the Fig. 3 ablation (3 more pre-trainings per modality and their
ssl-t / ssl-s fine-tunings), and the hours, fine-tunings divided by the K that ran at once. Beside
it the FLOP floor: FLOPs per step counted with `torch.utils.flop_counter.FlopCounterMode` at the
profile's shapes (on the meta device: shapes only, no arithmetic), in H100-hours at 30-50 % of
the H100's dense bf16 peak. Figures at a fraction of 43,101 records are scaled to full size (steps
per epoch and evaluation windows grow with the corpus; the time of a step does not). The first
steps of a stage carry warm-up costs (compilation, CUDA graph capture): with more steps than
warm-up ones they are left out of the mean. Every run here is a smoke run (marked so in its
files); nothing it writes is a result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL_RECORDS = 43101  # PhysioNet/CinC 2020 training records of the six sources (paper Sec. III-A)
FAMILIES = ("t", "s", "tsc", "tsg")
ABLATION_PRETRAININGS = 3  # per modality: time-{none,tc,gn}, spec-{none,tc,fc} (Fig. 3)
MARK = "BENCH_RESULT "
# The settings the GPU path adds (issue 15) that this benchmark prints and passes on; a version of
# the library without one of them runs that stage's built-in behaviour, printed as "-".
RUN_SETTINGS = ("amp", "compile", "checkpoint_epochs", "checkpoint_minutes", "log_every")
H100_BF16_DENSE_TFLOPS = 989.4  # NVIDIA H100 SXM, dense bf16 tensor-core peak (TFLOP/s)
FLOOR_UTILISATION = (0.5, 0.3)  # the floor's range: 50 % down to 30 % of that peak
GPU_BYTES = 80e9  # an H100's memory, for the estimate of runs per device
USABLE = 0.9  # of it, for runs (the rest: other processes, fragmentation)
FULL_SIGNALS_GB = 3.1  # signals.npy of the 43,101-record corpus of the real shape (measured by this script's prepare)
CUDA_CONTEXT_GB = 0.6  # a CUDA context with cuBLAS/cuDNN workspaces, per process (an assumption)
ACTIVATION_MARGIN = 1.5  # backward's transient gradients, the allocator's rounding and CUDA graph pools
HOST_CORES = 16  # the reference machine (one H100, 16 host cores): a run's Python thread needs a core,
HOST_SPARE = 2  # and 2 stay for `reproduce` itself and the system


# --- measuring one stage ----------------------------------------------------------------------------


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class Meter:
    """Per call of a wrapped function: its seconds (device synchronised), and the syncs of call
    number `warmup` (the first steady-state one): `ops` counted by `syncs.count_ops` where
    `count_ops` is on, `cuda` by the CUDA sync debug mode. That call is counted, not timed (a
    dispatch mode costs host time per aten call): the mean is over the calls after it."""

    def __init__(self, device: str, warmup: int, count_ops: bool):
        self.device, self.warmup, self.count_ops = device, warmup, count_ops
        self.seconds: list[float] = []
        self.ops: list[int] = []
        self.cuda: list[int] = []

    def wrap(self, fn):
        def wrapper(*args, **kwargs):
            counted = len(self.seconds) == self.warmup
            _sync(self.device)
            t = time.perf_counter()
            with self._watch(counted):
                out = fn(*args, **kwargs)
            _sync(self.device)
            self.seconds.append(time.perf_counter() - t)
            return out

        return wrapper

    @contextlib.contextmanager
    def _watch(self, counted: bool):
        import torch

        from ecgssl_nb.syncs import count_ops

        cuda = self.device.startswith("cuda")
        if not counted:
            yield
            return
        with contextlib.ExitStack() as stack:
            counts = stack.enter_context(count_ops()) if self.count_ops else None
            caught = stack.enter_context(warnings.catch_warnings(record=True)) if cuda else None
            if cuda:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
                    self.cuda.append(sum("synchroniz" in str(w.message) for w in caught))
                if counts is not None:
                    self.ops.append(counts.n_syncs)

    def per_step(self) -> float:
        """Mean seconds per call after the counted one (or from it, or all, when there are no more)."""
        timed = self.seconds[self.warmup + 1 :] or self.seconds[self.warmup :] or self.seconds
        if not timed:
            raise RuntimeError("the stage ran no step")
        return sum(timed) / len(timed)


def _per_step_syncs(*meters: Meter, key: str) -> float | None:
    """Syncs per steady-state step, summed over the meters of one step (step + batch preparation)."""
    lists = [getattr(m, key) for m in meters]
    if not lists or any(not x for x in lists):
        return None
    return sum(sum(x) / len(x) for x in lists)


def _windows(lengths, stride: int = 125, length: int = 250) -> int:
    """Evaluation windows of records of these lengths (samples at 100 Hz; a short tail dropped)."""
    import numpy as np

    n = np.asarray(lengths, dtype=np.int64)
    return int(np.where(n >= length, (n - length) // stride + 1, 0).sum())


def run_settings(cfg) -> dict:
    """The GPU path's settings of a PretrainConfig / FinetuneConfig (None: not a setting here)."""
    return {name: getattr(cfg, name, None) for name in RUN_SETTINGS}


def _compiled(cfg) -> bool:
    return getattr(cfg, "compile", "off") not in (None, "off", False)


def _count_ops(device: str, cfg) -> bool:
    """count_ops on the CPU (where it is the only count; a compiled step then runs eagerly under
    it) and on CUDA for an eager step (a dispatch mode would change what a compiled step runs:
    there the CUDA sync debug mode counts alone)."""
    return not device.startswith("cuda") or not _compiled(cfg)


def _warmup(cfg, steps: int) -> int:
    """Calls left out of the mean: 1 (eager), 3 (compiled: compilation, then CUDA graph capture)."""
    return min(3 if _compiled(cfg) else 1, max(steps - 1, 0))


# --- the study's jobs, as `reproduce` plans them ------------------------------------------------------

SSL_SETUPS = tuple(f"ssl-{f}" for f in FAMILIES)


def study_plan(a):
    """(resolved profile, the plan of its main study's ssl- setups on every fold) as `reproduce`
    makes them: `--set` items and the smoke limit of --steps applied (`resolve_study`)."""
    from ecgssl_nb.core.settings import N_FOLDS
    from ecgssl_nb.study.reproduce import plan, resolve_study

    prof, seed = resolve_study(a.profile, settings=a.set, max_steps=a.steps)
    runs, data = Path(a.out) / "runs", Path(a.out) / "data"
    return prof, plan(prof, seed, runs, data, SSL_SETUPS, tuple(range(N_FOLDS)), (), ablation=False)


def finetune_wave(k: int) -> list[tuple[str, int]]:
    """The fine-tunings that run at once: k of them (at least one per family), the families in
    turn over folds 0, 1, ...: k = 6 -> ssl-t, -s, -tsc, -tsg on fold 0, ssl-t, -s on fold 1."""
    n = max(k, len(FAMILIES))
    return [(SSL_SETUPS[i % len(FAMILIES)], i // len(FAMILIES)) for i in range(n)]


# --- the stages (run in a child process each) -----------------------------------------------------


def stage_fixture(a) -> dict:
    from ecgssl_nb.data.fixture import make_fixture

    t = time.perf_counter()
    out = make_fixture(Path(a.out) / "data", a.records, seed=0, shape="physionet2020", workers=a.workers)
    wall = time.perf_counter() - t
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"wall_s": wall, "records_per_s": a.records / wall, "disk_mb": size / 1e6}


def stage_prepare(a) -> dict:
    from ecgssl_nb.data.prepare import load_prepared, prepare

    _, p = study_plan(a)
    job = p.data[-1]  # the study's prepare job (the data folder is given: no fixture job)
    t = time.perf_counter()
    out = prepare(**{**job.args, "workers": a.workers, "progress": False})
    wall = time.perf_counter() - t
    prep = load_prepared(out)
    return {
        "wall_s": wall,
        "records_per_s": a.records / wall,
        "n_prepared": int(len(prep.index)),
        "signals_mb": (Path(out) / "signals.npy").stat().st_size / 1e6,
        "windows": _windows(prep.index["length"].to_numpy()),
    }


def _written(make_job):
    """`stage.checkpoint_job`, its write run at once rather than in the background: the
    meter then times the whole write (host copy, serialise, fsync), an upper bound on what a
    checkpoint can stall the steps."""

    def written(*args, **kwargs) -> None:
        make_job(*args, **kwargs)()  # nothing left for the background writer

    return written


def stage_pretrain(a, modality: str) -> dict:
    from ecgssl_nb.stages import pretrain as pretrain_stage
    from ecgssl_nb.stages import stage

    prof, p = study_plan(a)
    job, cfg = p.main_pre[modality], prof.pretrain[modality]
    warm, eager = _warmup(cfg, a.steps), _count_ops(a.device, cfg)
    step, views, ckpt = Meter(a.device, warm, eager), Meter(a.device, warm, eager), Meter(a.device, 0, False)
    pretrain_stage.train_step = step.wrap(pretrain_stage.train_step)  # what the stage's loop calls
    pretrain_stage.make_views = views.wrap(pretrain_stage.make_views)
    stage.checkpoint_job = ckpt.wrap(_written(stage.checkpoint_job))  # what the stage's loop calls
    job.args["progress"] = False
    shutil.rmtree(job.folder, ignore_errors=True)  # this benchmark's own folder: a run of an earlier call
    t = time.perf_counter()
    job.call(a.device)  # what `reproduce` runs for this job
    summary = json.loads((job.folder / "summary.json").read_text())
    per_step = step.per_step() + views.per_step()
    return {
        "wall_s": time.perf_counter() - t,
        "smoke": summary["smoke"],
        "steps": len(step.seconds),
        "warmup_steps": warm,
        "batch": cfg.batch_size,
        "views": cfg.n_global + cfg.n_local,
        "out_dim": cfg.out_dim,
        "s_per_step": per_step,
        "views_s_per_step": views.per_step(),
        "records_per_s": cfg.batch_size / per_step,
        "syncs_per_step": _per_step_syncs(step, views, key="ops"),
        "cuda_syncs_per_step": _per_step_syncs(step, views, key="cuda"),
        "checkpoints": len(ckpt.seconds),
        "checkpoint_s": max(ckpt.seconds) if ckpt.seconds else None,
        "epochs": cfg.epochs,
        "n_records": summary["data"]["n_records"],
        "settings": run_settings(cfg),
    }


def _one_checkpoint(ft, ckpt: Meter, trainers: list):
    """ft.write_outputs wrapped: first one checkpoint of the finished smoke epoch, timed (a smoke
    run of one epoch writes none: its last epoch goes straight to result.json)."""
    from ecgssl_nb.stages import stage

    write = ft.write_outputs

    def wrapper(run, data, done):
        if trainers:
            state = ft.checkpoint_state(run, trainers[-1], done, max(len(done.history), 1))
            ckpt.wrap(_written(stage.checkpoint_job))(run.out, state, done.history, ft.log_columns(run.cfg.protocol))
        return write(run, data, done)

    return wrapper


def stage_finetune(a, setup: str) -> dict:
    from ecgssl_nb.core import classify, windows
    from ecgssl_nb.core.settings import setup_family
    from ecgssl_nb.stages import finetune as ft

    prof, p = study_plan(a)
    cfg, family = prof.finetune, setup_family(setup)
    job = next(j for j in p.ft_jobs if j.args["setup"] == setup and j.args["fold"] == a.fold)
    warm, eager = _warmup(cfg, a.steps), _count_ops(a.device, cfg)
    step, crops, labels = (Meter(a.device, warm, eager) for _ in range(3))
    preds, ckpt, trainers = Meter(a.device, 0, False), Meter(a.device, 0, False), []
    classify.train_step, classify.predict = step.wrap(classify.train_step), preds.wrap(classify.predict)
    windows.Corpus.random_windows = crops.wrap(windows.Corpus.random_windows)
    windows.Corpus.window_labels = labels.wrap(windows.Corpus.window_labels)
    build = ft.build_trainer
    ft.build_trainer = lambda run: trainers.append(build(run)) or trainers[-1]
    ft.write_outputs = _one_checkpoint(ft, ckpt, trainers)
    job.args["progress"] = False
    shutil.rmtree(job.folder, ignore_errors=True)  # this benchmark's own folder: a run of an earlier call
    t = time.perf_counter()
    res = job.call(a.device)  # what `reproduce` runs for this job
    per_step = step.per_step() + crops.per_step() + labels.per_step()
    n_eval = len(preds.seconds)
    batch = cfg.batch_records[family]
    return {
        "wall_s": time.perf_counter() - t,
        "fold": a.fold,
        "smoke": res["smoke"],
        "steps": len(step.seconds),
        "warmup_steps": warm,
        "batch": batch,
        "crops": cfg.crops,
        "s_per_step": per_step,
        "windows_per_s": batch * cfg.crops / per_step,
        "syncs_per_step": _per_step_syncs(step, crops, labels, key="ops"),
        "cuda_syncs_per_step": _per_step_syncs(step, crops, labels, key="cuda"),
        "evaluations": n_eval,
        "eval_windows": _EVAL_WINDOWS.get("n", 0),
        "eval_s": sum(preds.seconds),
        "eval_windows_per_s": _EVAL_WINDOWS.get("n", 0) / max(sum(preds.seconds), 1e-9),
        "checkpoints": len(ckpt.seconds),
        "checkpoint_s": max(ckpt.seconds) if ckpt.seconds else None,
        "epochs": cfg.epochs[family],
        "n_train": res["data"]["n_train"],
        "auroc": res["metrics"]["paper"]["auroc"],
        "settings": run_settings(cfg),
    }


_EVAL_WINDOWS: dict = {}  # windows predicted by the wrapped classify.predict calls of this process


def _count_eval_windows(ft) -> None:
    from ecgssl_nb.core import classify

    predict = classify.predict

    def wrapper(model, corpus, *args, **kwargs):
        stride = kwargs.get("stride", 125)
        lengths = getattr(corpus, "_lengths_host", None)  # the host copy (no sync), where there is one
        lengths = corpus.lengths.cpu() if lengths is None else lengths
        _EVAL_WINDOWS["n"] = _EVAL_WINDOWS.get("n", 0) + _windows(lengths.numpy(), stride)
        return predict(model, corpus, *args, **kwargs)

    classify.predict = wrapper


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
        from ecgssl_nb.stages import finetune as ft

        _count_eval_windows(ft)
        r = stage_finetune(a, stage.split("-", 1)[1])
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    r["peak_rss_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest worker
    r["peak_gpu_mb"] = torch.cuda.max_memory_allocated(a.device) / 2**20 if cuda else None
    r["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved(a.device) / 2**20 if cuda else None
    print(MARK + json.dumps(r), flush=True)


class StageFailed(Exception):
    pass


def run_stage(stage: str, a, fold: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, "--device", a.device, "--records", str(a.records)]
    cmd += ["--steps", str(a.steps), "--out", str(a.out), "--profile", a.profile, "--workers", str(a.workers)]
    cmd += ["--fold", str(fold), *(arg for item in a.set for arg in ("--set", item))]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    limit = a.stage_timeout if a.deadline is None else min(a.stage_timeout, a.deadline - time.time())
    if limit <= 0:
        raise StageFailed(f"stage {stage}: no time left (--time-limit)")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit)
    except subprocess.TimeoutExpired:
        raise StageFailed(f"stage {stage} ran past {limit:.0f} s (--stage-timeout / --time-limit)") from None
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    if p.returncode != 0 or not lines:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-6000:])
        raise StageFailed(f"stage {stage} (fold {fold}) failed (exit status {p.returncode})")
    return json.loads(lines[-1][len(MARK) :])


class _DeviceMemory:
    """The device's memory in use (MiB, every process: nvidia-smi), sampled every second in a
    thread while the fine-tunings run at once; peak None where there is no nvidia-smi."""

    def __init__(self, device: str):
        index = device.split(":", 1)[1] if ":" in device else "0"
        self.cmd = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", index]
        self.on = device.startswith("cuda") and shutil.which("nvidia-smi") is not None
        self.peak: float | None = None
        self.stop = threading.Event()

    def _sample(self) -> None:
        while not self.stop.wait(1.0):
            try:
                used = float(subprocess.run(self.cmd, capture_output=True, text=True, timeout=10).stdout.split()[0])
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                continue
            self.peak = max(self.peak or 0.0, used)

    def __enter__(self):
        if self.on:
            threading.Thread(target=self._sample, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()


def run_finetunings(a, res: dict) -> dict:
    """The fine-tuning stages: `finetune_wave(k)` child processes, k at once on the device (as
    `reproduce --runs-per-device k` packs them); each family's figures are its first run's, with
    the s/step averaged over its runs. Returns the packing figures."""
    wave, t = finetune_wave(a.runs_per_device), time.perf_counter()
    with _DeviceMemory(a.device) as mem, ThreadPoolExecutor(max_workers=a.runs_per_device) as pool:
        futures = [pool.submit(run_stage, f"finetune-{s}", a, fold) for s, fold in wave]
        done = [f.result() for f in futures]  # StageFailed propagates
    for f in FAMILIES:
        runs = [r for (s, _), r in zip(wave, done) if s == f"ssl-{f}"]
        res[f"finetune-ssl-{f}"] = {**runs[0], "runs": len(runs)}
        res[f"finetune-ssl-{f}"]["s_per_step"] = sum(r["s_per_step"] for r in runs) / len(runs)
    gpu = [r["peak_gpu_reserved_mb"] for r in done if r.get("peak_gpu_reserved_mb") is not None]
    return {
        "runs_per_device": a.runs_per_device,
        "runs": len(wave),
        "wall_s": time.perf_counter() - t,
        "sum_peak_gpu_reserved_mb": sum(gpu) if gpu else None,
        "device_used_peak_mb": mem.peak,
    }


# --- the FLOP floor and the memory estimate (on the CPU, from the profile's shapes) ---------------


def count_flops(profile: str) -> dict:
    """FLOPs (FlopCounterMode, on the meta device: shapes only) per training step of each stage
    at the profile's shapes, and per evaluation window of each fine-tuning family: the DINO step
    = teacher forward on the global views + student forward and backward on all views; a
    fine-tuning step = forward and backward on batch_records x crops windows."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ecgssl_nb.core.dino import DINOHead, MultiCropModel
    from ecgssl_nb.core.models import build_model, make_backbone
    from ecgssl_nb.core.settings import get_profile, setup_family

    def student(m: str, out_dim: int):  # built on the meta device: no memory, no initialisation
        with torch.device("meta"):
            backbone = make_backbone(m)
            return MultiCropModel(backbone, DINOHead(backbone.feature_dim, out_dim))

    prof, out = get_profile(profile), {}
    shapes = {"time": (12, 250), "spec": (12, 13, 21)}  # local views are stretched to these too (B17)
    for m, cfg in prof.pretrain.items():
        student_, teacher = (student(m, cfg.out_dim) for _ in range(2))
        views = torch.empty(cfg.n_global + cfg.n_local, cfg.batch_size, *shapes[m], device="meta")
        with FlopCounterMode(display=False) as fc:
            with torch.no_grad():
                teacher(views[: cfg.n_global])
            student_(views).float().sum().backward()
        out[f"pretrain-{m}"] = {"step": fc.get_total_flops(), "eval_window": 0}
    for setup in SSL_SETUPS:
        with torch.device("meta"):
            model = build_model(setup)
        w = prof.finetune.batch_records[setup_family(setup)] * prof.finetune.crops
        flops = []
        for n, train in ((w, True), (1, False)):
            x_time, x_spec = (torch.empty(n, *shapes[k], device="meta") for k in ("time", "spec"))
            with FlopCounterMode(display=False) as fc, torch.set_grad_enabled(train):
                out_ = model.train(train)(x_time, x_spec)
                if train:
                    out_.sum().backward()
            flops.append(fc.get_total_flops())
        out[f"finetune-{setup}"] = {"step": flops[0], "eval_window": flops[1]}
    return out


def _saved_bytes(setup: str, n_windows: int, amp: bool) -> int:
    """Bytes autograd keeps for backward (distinct storages) in a forward of `n_windows` windows."""
    import torch

    from ecgssl_nb.core.classify import model_inputs
    from ecgssl_nb.core.models import build_model

    model, storages = build_model(setup).train(), {}

    def keep(t):
        s = t.untyped_storage()
        storages[(s.data_ptr(), s.nbytes())] = s.nbytes()
        return t

    x = torch.randn(n_windows, 12, 250)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        x_time, x_spec = model_inputs(model, x, torch.zeros(12), torch.ones(12))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            model(x_time, x_spec)
    return sum(storages.values())


def memory_estimate(profile: str = "paper", corpus_gb: float = FULL_SIGNALS_GB) -> dict:
    """An ESTIMATE of one fine-tuning's device memory per family at the profile's batch (GB), and
    the runs that fit at once in USABLE x 80 GB: saved activations (measured on the CPU at 2 and 4
    windows under bf16 autocast when the profile uses it, extrapolated linearly to batch x crops)
    x ACTIVATION_MARGIN, weights + gradients + AdamW moments (16 bytes per parameter), the corpus
    on the device, and a CUDA context. gpu_check.sh measures the real peak."""
    from ecgssl_nb.core.models import build_model
    from ecgssl_nb.core.settings import get_profile

    prof = get_profile(profile)
    amp, rows = bool(getattr(prof.finetune, "amp", False)), {}
    for setup in SSL_SETUPS:
        w = prof.finetune.batch_records[setup.removeprefix("ssl-")] * prof.finetune.crops
        b2, b4 = _saved_bytes(setup, 2, amp), _saved_bytes(setup, 4, amp)
        activations = (b2 + (b4 - b2) / 2 * (w - 2)) / 1e9
        state = 16 * sum(q.numel() for q in build_model(setup).parameters()) / 1e9
        total = activations * ACTIVATION_MARGIN + state + corpus_gb + CUDA_CONTEXT_GB
        rows[setup] = {"windows": w, "activations_gb": activations, "state_gb": state, "per_run_gb": total}
    worst = max(r["per_run_gb"] for r in rows.values())
    fit = max(1, int(USABLE * GPU_BYTES / 1e9 // worst))
    k = min(fit, HOST_CORES - HOST_SPARE)
    return {"families": rows, "corpus_gb": corpus_gb, "fit": fit, "runs_per_device": k, "bf16": amp}


# --- the estimate ------------------------------------------------------------------------------------


def estimate(res: dict, profile: str, records: int, runs_per_device: int = 1, flops: dict | None = None) -> list[dict]:
    """Per stage of the study: steps per run, runs (main study; with the Fig. 3 ablation) and
    hours on this device, scaled from `records` to the full 43,101; fine-tunings ran
    `runs_per_device` at once (their s/step measured so), pre-trainings one at a time. With
    `flops` (count_flops), each row's PFLOP too."""
    from ecgssl_nb.core.settings import N_FOLDS, get_profile

    prof = get_profile(profile)
    scale = FULL_RECORDS / records
    n_full = res["prepare"]["n_prepared"] * scale  # records kept by prepare, at full size
    n_folds = len(prof.folds)
    ablation_folds = len(prof.finetune.ablation_folds or prof.folds)
    eval_windows = 2 * res["prepare"]["windows"] * scale / N_FOLDS  # each epoch: the inner and outer fold
    rows = []
    for m in ("time", "spec"):
        r = res.get(f"pretrain-{m}")
        if r is not None:
            steps = r["epochs"] * int(n_full // r["batch"])
            rows.append(_row(f"pretrain {m}", r, steps, 1, 1 + ABLATION_PRETRAININGS, 0.0, 1, flops, m))
    for f in FAMILIES:
        r = res.get(f"finetune-ssl-{f}")
        if r is not None:
            steps = r["epochs"] * math.ceil(r["n_train"] * scale / r["batch"])
            eval_s = r["epochs"] * eval_windows / r["eval_windows_per_s"]
            fig3 = 2 * n_folds + (ABLATION_PRETRAININGS * ablation_folds if f in ("t", "s") else 0)
            row = _row(f"finetune {f} (+ ssl-{f})", r, steps, 2 * n_folds, fig3, eval_s, runs_per_device, flops, f)
            if flops is not None:
                per_run = r["epochs"] * eval_windows * flops[f"finetune-ssl-{f}"]["eval_window"] / 1e15
                row["pflop_main"] += 2 * n_folds * per_run
                row["pflop"] += fig3 * per_run
            rows.append(row)
    return rows


def _row(stage, r, steps, runs_main, runs, eval_s, at_once, flops, key) -> dict:
    """One stage's estimate: per run, steps x s/step + evaluation + its checkpoints (every
    `checkpoint_epochs` epochs where that is a setting, else every epoch); hours / runs at once."""
    every = (r.get("settings") or {}).get("checkpoint_epochs") or 1
    ckpt_s = (r.get("checkpoint_s") or 0.0) * math.ceil(r["epochs"] / max(every, 1))
    per_run_h = (steps * r["s_per_step"] + eval_s + ckpt_s) / 3600
    row = {"stage": stage, "s_per_step": r["s_per_step"], "steps_per_run": steps, "runs_main": runs_main}
    row |= {"runs": runs, "eval_h_per_run": eval_s / 3600, "checkpoint_h_per_run": ckpt_s / 3600}
    row |= {"hours_main": runs_main * per_run_h / at_once, "hours": runs * per_run_h / at_once}
    if flops is not None:
        name = f"pretrain-{key}" if stage.startswith("pretrain") else f"finetune-ssl-{key}"
        row["pflop_main"] = runs_main * steps * flops[name]["step"] / 1e15
        row["pflop"] = runs * steps * flops[name]["step"] / 1e15
    return row


def floor_hours(pflop: float) -> tuple[float, float]:
    """H100-hours of `pflop` PFLOP at 50 % and at 30 % of the dense bf16 peak."""
    return tuple(pflop * 1e15 / (H100_BF16_DENSE_TFLOPS * 1e12 * u) / 3600 for u in FLOOR_UTILISATION)


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _stage_lines(res: dict, mem: dict | None) -> list[str]:
    lines = [
        f"{'stage':22s} {'batch':>6s} {'steps/s':>8s} {'win/s':>8s} {'syncs':>6s} {'cuda':>5s} {'eval s':>7s} "
        f"{'ckpt s':>7s} {'RSS MB':>7s} {'GPU MB':>7s} {'est. MB':>7s}"
    ]
    for k, r in res.items():
        if not k.startswith(("pretrain-", "finetune-")):
            continue
        win = r.get("windows_per_s")
        est = (mem or {}).get("families", {}).get(k.removeprefix("finetune-"), {}).get("per_run_gb")
        lines.append(
            f"{k:22s} {r['batch']:6d} {1 / r['s_per_step']:8.2f} {_fmt(win, '8.1f'):>8s} "
            f"{_fmt(r['syncs_per_step'], '6.1f'):>6s} {_fmt(r['cuda_syncs_per_step'], '5.1f'):>5s} "
            f"{_fmt(r.get('eval_s'), '7.1f'):>7s} {_fmt(r['checkpoint_s'], '7.2f'):>7s} {r['peak_rss_mb']:7.0f} "
            f"{_fmt(r['peak_gpu_reserved_mb'], '7.0f'):>7s} {_fmt(est and est * 1e3 / 1.048576, '7.0f'):>7s}"
        )
    return lines


def _settings_lines(res: dict) -> list[str]:
    out = []
    for k in ("pretrain-time", "finetune-ssl-t"):
        if k in res:
            shown = ", ".join(f"{n}={_fmt(v, '')}" for n, v in res[k]["settings"].items())
            out.append(f"settings measured ({k.split('-')[0]}): {shown} (- = not a setting in this version)")
    return out


def report(res: dict, a, device_name: str, packing: dict | None = None, flops=None, mem=None) -> str:
    fx, pr = res.get("fixture"), res.get("prepare")
    lines = [
        f"bench_paper: profile {a.profile}, {a.records} records ({a.records / FULL_RECORDS:.1%} of "
        f"{FULL_RECORDS}), {a.steps} step(s) per stage, device {a.device} ({device_name}), "
        f"{a.runs_per_device} fine-tuning(s) at once; smoke runs of what reproduce runs, not results"
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
    lines += _settings_lines(res)
    lines.append(
        "per stage: steady-state steps/s; syncs per step (count_ops; cuda: sync debug mode; - = not "
        "counted); one evaluation and one checkpoint (s); peak memory (GPU: reserved by the process, "
        "without its CUDA context), the estimate per run beside it"
    )
    lines += _stage_lines(res, mem)
    if packing is not None:
        lines.append(
            f"fine-tunings at once: {packing['runs']} runs, {packing['runs_per_device']} at a time, in "
            f"{packing['wall_s']:.0f} s; their peaks summed {_fmt(packing['sum_peak_gpu_reserved_mb'], '.0f')} MB, "
            f"device in use at most {_fmt(packing['device_used_peak_mb'], '.0f')} MB (nvidia-smi, all processes)"
        )
    lines += _estimate_lines(res, a, flops)
    return "\n".join(lines)


def _estimate_lines(res: dict, a, flops) -> list[str]:
    from ecgssl_nb.core.settings import get_profile

    rows = estimate(res, a.profile, a.records, a.runs_per_device, flops)
    lines = [f"study at full size ({FULL_RECORDS} records) on this device, profile {a.profile}:"]
    lines.append(
        f"{'stage':22s} {'steps/run':>10s} {'runs':>9s} {'eval h/run':>10s} {'hours main':>10s} {'with Fig.3':>10s}"
    )
    for r in rows:
        lines.append(
            f"{r['stage']:22s} {r['steps_per_run']:10d} {r['runs_main']:4d}/{r['runs']:<4d} "
            f"{r['eval_h_per_run']:10.3f} {r['hours_main']:10.2f} {r['hours']:10.2f}"
        )
    main, fig3 = (sum(r[k] for r in rows) for k in ("hours_main", "hours"))
    n_folds = len(get_profile(a.profile).folds)
    lines.append(
        f"projected device-hours: main study (2 pre-trainings + 8 setups x {n_folds} folds) {main:.2f} h, with "
        f"Fig. 3 {fig3:.2f} h; pre-trainings one at a time, {a.runs_per_device} fine-tuning(s) at once"
    )
    if flops is not None:
        pm, pf = (sum(r[k] for r in rows) for k in ("pflop_main", "pflop"))
        (m50, m30), (f50, f30) = floor_hours(pm), floor_hours(pf)
        lines.append(
            f"FLOP floor (FlopCounterMode at the profile's shapes): main study {pm / 1e3:.3g} EFLOP = "
            f"{m50:.2f}-{m30:.2f} H100-hours, with Fig. 3 {pf / 1e3:.3g} EFLOP = {f50:.2f}-{f30:.2f} H100-hours "
            f"(at 50-30 % of the {H100_BF16_DENSE_TFLOPS:g} TFLOP/s dense bf16 peak)"
        )
    return lines


STAGES = ("fixture", "prepare", "pretrain-time", "pretrain-spec", *(f"finetune-ssl-{f}" for f in FAMILIES))


def _parser() -> argparse.ArgumentParser:
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
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting as `reproduce --set` takes it, e.g. pretrain.compile=reduce-overhead (repeatable; "
        "default: the profile's own values)",
    )
    p.add_argument("--runs-per-device", type=int, default=None, help="fine-tunings at once (default: the profile's)")
    p.add_argument("--memory-estimate", action="store_true", help="print the estimate of runs per GPU and stop")
    p.add_argument("--no-flops", action="store_true", help="leave out the FLOP floor")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    p.add_argument("--stage-timeout", type=float, default=3600, help="seconds per stage before giving up")
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds for all the stages; the stages done by then are reported (default: none)",
    )
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage
    p.add_argument("--fold", type=int, default=0, help=argparse.SUPPRESS)  # internal: a fine-tuning's fold
    return p


def _print_memory_estimate(profile: str) -> None:
    est = memory_estimate(profile)
    print(
        f"ESTIMATE (not a measurement) of one fine-tuning's device memory, profile {profile}, "
        f"{'bf16 autocast' if est['bf16'] else 'fp32'}, corpus {est['corpus_gb']:.1f} GB on the device:"
    )
    for s, r in est["families"].items():
        print(
            f"  {s:8s} {r['windows']:5d} windows: activations {r['activations_gb']:.2f} GB x {ACTIVATION_MARGIN} "
            f"+ weights/grads/AdamW {r['state_gb']:.2f} GB + corpus + context {CUDA_CONTEXT_GB} GB = "
            f"{r['per_run_gb']:.1f} GB"
        )
    print(
        f"runs that fit {USABLE:.0%} of {GPU_BYTES / 1e9:.0f} GB: {est['fit']}; runs per device, at most "
        f"{HOST_CORES} - {HOST_SPARE} host cores: {est['runs_per_device']}"
    )


def _check_arguments(a) -> None:
    """The device, the runs per device and the `--set` items, checked as `reproduce` checks them."""
    from ecgssl_nb.core.errors import check_int
    from ecgssl_nb.core.settings import resolve_device
    from ecgssl_nb.study.reproduce import resolve_study

    a.device = resolve_device(a.device)
    a.deadline = None if a.time_limit is None else time.time() + a.time_limit
    prof, _ = resolve_study(a.profile, settings=a.set, max_steps=a.steps)
    k = prof.runs_per_device if a.runs_per_device is None else a.runs_per_device
    a.runs_per_device = check_int("--runs-per-device", k, 1)


def main(argv=None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if a.records < 1 or a.steps < 1:
        p.error("--records and --steps must be >= 1")
    if a.stage:
        child(a)
        return 0
    if a.memory_estimate:
        _print_memory_estimate(a.profile)
        return 0
    import torch

    from ecgssl_nb.core.errors import UserError

    try:
        _check_arguments(a)
    except UserError as exc:  # one line, before minutes of work
        print(f"bench_paper: {exc}", file=sys.stderr)
        return 2
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    for stage in stages:
        if stage not in STAGES:
            p.error(f"--stages: {stage!r} is not one of {', '.join(STAGES)}")
    name = (
        torch.cuda.get_device_name(a.device)
        if a.device.startswith("cuda")
        else (platform.processor() or platform.machine())
    )
    with contextlib.ExitStack() as stack:
        if a.out is None:
            a.out = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_paper_"))
        return _run(a, stages, name)


def _run(a, stages: list[str], name: str) -> int:
    """Run the stages in order (the fine-tunings as one packed wave), print the report, write JSON."""
    res, failed, packing = {}, None, None
    flops = None if a.no_flops else count_flops(a.profile)  # first: seconds on the CPU, never cut off
    mem = memory_estimate(a.profile) if a.device.startswith("cuda") else None
    todo = [s for s in stages if not s.startswith("finetune-")]
    try:
        for stage in todo:
            t = time.perf_counter()
            res[stage] = run_stage(stage, a)
            print(f"bench_paper: {stage} done in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        if any(s.startswith("finetune-") for s in stages):
            packing = run_finetunings(a, res)
            print(f"bench_paper: fine-tunings done in {packing['wall_s']:.1f} s", file=sys.stderr, flush=True)
    except StageFailed as exc:
        failed = str(exc)
        print(f"bench_paper: {exc}; reporting the stages done", file=sys.stderr, flush=True)
    print(report(res, a, name, packing, flops, mem))
    if a.json:
        figures = {"device": a.device, "device_name": name, "profile": a.profile, "records": a.records}
        figures |= {"steps": a.steps, "runs_per_device": a.runs_per_device, "stages": res, "failed": failed}
        figures |= {"packing": packing, "flops": flops, "memory_estimate": mem}
        figures["estimate"] = estimate(res, a.profile, a.records, a.runs_per_device, flops) if "prepare" in res else []
        Path(a.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
