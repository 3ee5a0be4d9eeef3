"""The fine-tuning step on this CPU: aten calls and host-device syncs per step, steps/s eager
against compiled, and (with --before REF) the same step of an older commit, in one run.

The step is the library's own: `finetune.train_one_epoch` of a resolved run (record sampling,
random crops, z-score, STFT, forward, gate, loss, backward, optimiser) at the tiny profile's
shapes (16 records x 2 crops = 32 windows of 250 samples), on a 120-record fixture. Figures per
step are differences between an epoch cut after n+1 steps and one cut after 1 step, both after
a warm-up epoch (compilation happens there), so the once-per-epoch work cancels out. Calls and
syncs are counted with `syncs.count_ops` in eager mode (a dispatch mode turns torch.compile off).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_steps_finetune.py --before 2de5546

--before REF checks REF out in a temporary `git worktree` and measures it in a subprocess with
PYTHONPATH pointing there (its eager step only: it may predate the `compile` setting).
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
from dataclasses import fields, replace
from pathlib import Path

SETUPS = ("t", "s", "tsg")


def _epoch(ft, run, tr, data, steps: int) -> None:
    run = replace(run, cfg=replace(run.cfg, max_steps=steps))
    from ecgssl_nb.core import classify

    classify.train_one_epoch(tr, data, run.cfg, run.batch_records, 1, run.amp)


def _measure(prepared: str, setup: str, compile_mode: str, steps: int, out: str) -> dict:
    """{calls, syncs, steps_per_s} of one setup's step in this process's ecgssl_nb."""
    import torch

    from ecgssl_nb.core import classify
    from ecgssl_nb.core.settings import get_profile
    from ecgssl_nb.stages import finetune as ft
    from ecgssl_nb.syncs import count_ops

    torch.set_num_threads(1)
    prof = get_profile("tiny")
    cfg = prof.finetune
    if compile_mode != "off":
        if "compile" not in {f.name for f in fields(cfg)}:
            return {}
        cfg = replace(cfg, compile=compile_mode)
    given = dict(setup=setup, fold=0, prepared=prepared, out=Path(out) / f"{setup}-{compile_mode}", pretrained=None,
                 profile=prof, config=cfg, settings=(), device="cpu", seed=0, resume=False, progress=False)  # fmt: skip
    # by name, None for the rest: an older commit's `_resolve` (--before) took epochs, protocol, max_steps
    run = ft._resolve(**{name: given.get(name) for name in inspect.signature(ft._resolve).parameters})
    tr, data = ft.build_trainer(run), classify.load_data(run.prep, run.split, run.device)
    _epoch(ft, run, tr, data, 1)  # warm-up: optimiser state, compilation
    res = {}
    if compile_mode == "off":
        counts = []
        for k in (2, 3):
            with count_ops() as c:
                _epoch(ft, run, tr, data, k)
            counts.append(c)
        res["calls"] = counts[1].n_calls - counts[0].n_calls
        res["syncs"] = counts[1].n_syncs - counts[0].n_syncs
    times = []
    for k in (1, 1 + steps):
        t0 = time.perf_counter()
        _epoch(ft, run, tr, data, k)
        times.append(time.perf_counter() - t0)
    res["steps_per_s"] = steps / max(times[1] - times[0], 1e-9)
    return res


def _worker(a) -> None:
    out = {}
    for setup in a.setups.split(","):
        out[setup] = {"eager": _measure(a.prepared, setup, "off", a.steps, a.out)}
        if setup in a.compile_setups.split(","):
            out[setup]["compiled"] = _measure(a.prepared, setup, "default", a.steps, a.out)
    print("RESULT " + json.dumps(out))


def _run_worker(tree: Path, a, tmp: Path, compile_setups: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--prepared", a.prepared, "--out", str(tmp)]
    cmd += ["--setups", a.setups, "--steps", str(a.steps), "--compile-setups", compile_setups]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise SystemExit(f"bench_steps_finetune: the measurement in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT ") :])


def _prepare(tmp: Path) -> str:
    from ecgssl_nb.data.fixture import make_fixture
    from ecgssl_nb.data.prepare import prepare

    fixture = make_fixture(tmp / "fixture", n_records=120, seed=0)
    return str(prepare(fixture, tmp / "prepared", workers=1, progress=False))


def _table(after: dict, before: dict | None) -> None:
    print(f"{'setup':5s} {'calls/step':>10s} {'syncs/step':>10s} {'eager st/s':>10s} {'compiled st/s':>13s} "
          f"{'compiled/eager':>14s}" + ("  | before: calls syncs st/s  after/before st/s" if before else ""))  # fmt: skip
    for setup, r in after.items():
        e, c = r["eager"], r.get("compiled", {})
        cs = f"{c['steps_per_s']:13.2f}" if c else f"{'-':>13s}"
        ratio = f"{c['steps_per_s'] / e['steps_per_s']:14.2f}" if c else f"{'-':>14s}"
        line = f"{setup:5s} {e['calls']:10d} {e['syncs']:10d} {e['steps_per_s']:10.2f} {cs} {ratio}"
        if before:
            b = before[setup]["eager"]
            line += f"  | {b['calls']:6d} {b['syncs']:5d} {b['steps_per_s']:5.2f}  {e['steps_per_s'] / b['steps_per_s']:.2f}"
        print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", default=",".join(SETUPS), help="comma-separated setups (default t,s,tsg)")
    p.add_argument("--compile-setups", default=",".join(SETUPS), help="setups also timed compiled")
    p.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    p.add_argument("--before", default=None, help="a git ref to measure in the same run")
    p.add_argument("--prepared", default=None, help="(internal) a prepared folder")
    p.add_argument("--out", default=None, help="(internal) run folders")
    p.add_argument("--worker", action="store_true", help="(internal) measure in this process")
    a = p.parse_args()
    if a.worker:
        return _worker(a)
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-ft-") as tmp:
        tmp = Path(tmp)
        a.prepared = _prepare(tmp)
        after = _run_worker(repo, a, tmp / "after", a.compile_setups)
        before = None
        if a.before:
            tree = tmp / "before-tree"
            subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), a.before], check=True,
                           capture_output=True)  # fmt: skip
            try:
                before = _run_worker(tree, a, tmp / "before", "")
            finally:
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"fine-tuning step, tiny profile shapes (32 windows), CPU, 1 thread, {a.steps} timed steps")
    _table(after, before)


if __name__ == "__main__":
    main()
