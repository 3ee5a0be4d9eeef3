"""benchmarks/gpu_check.sh and benchmarks/bench_paper.py: the reduced CPU form runs end to end,
and the study's cost is extrapolated with the profile's epochs, batches, folds and runs."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _bench_paper():
    spec = importlib.util.spec_from_file_location("bench_paper", ROOT / "benchmarks" / "bench_paper.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _env():
    return {**os.environ, "PYTHON": os.environ.get("PYTHON", __import__("sys").executable), "OMP_NUM_THREADS": "1"}


def test_study_estimate_multiplies_steps_epochs_runs_and_evaluation_as_computed_by_hand():
    bp = _bench_paper()
    res = {
        "prepare": {"n_prepared": 1000, "windows": 10000},
        "pretrain-time": {"batch": 100, "epochs": 300, "s_per_step": 2.0},
        "finetune-ssl-t": {"n_train": 800, "batch": 128, "epochs": 100, "s_per_step": 1.0, "eval_windows_per_s": 1e3},
    }
    rows = {r["stage"]: r for r in bp.estimate(res, "paper", bp.FULL_RECORDS)}
    pre = rows["pretrain time"]
    # 1000 records // 100 = 10 steps per epoch x 300 epochs; main + 3 ablation pre-trainings
    assert (pre["steps_per_run"], pre["runs"]) == (3000, 4)
    assert math.isclose(pre["hours"], 4 * 3000 * 2.0 / 3600)
    ft = rows["finetune t (+ ssl-t)"]
    # ceil(800 / 128) = 7 steps x 100 epochs; each epoch predicts 2 of 10 folds: 2000 windows / 1000 per s
    # runs: t and ssl-t on 10 folds + ssl-t from 3 ablation backbones on 10 folds
    assert (ft["steps_per_run"], ft["runs"]) == (700, 50)
    assert math.isclose(ft["eval_h_per_run"], 100 * 2.0 / 3600)
    assert math.isclose(ft["hours"], 50 * (700 * 1.0 + 200.0) / 3600)
    # a tenth of the corpus measured: steps per epoch and evaluation windows scale by ten
    tenth = {r["stage"]: r for r in bp.estimate(res, "paper", bp.FULL_RECORDS / 10)}
    assert tenth["pretrain time"]["steps_per_run"] == 30000
    assert tenth["finetune t (+ ssl-t)"]["steps_per_run"] == 100 * 63  # ceil(8000 / 128)


def test_gpu_check_refuses_a_bad_device_and_cuda_where_there_is_none():
    p = subprocess.run(["bash", str(SCRIPT), "--device", "tpu"], capture_output=True, text=True, env=_env())
    assert p.returncode == 2 and "--device must be cuda or cpu" in p.stderr
    if not torch.cuda.is_available():
        p = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=_env())
        assert p.returncode == 2 and "CUDA is not available" in p.stderr


@pytest.mark.slow
def test_gpu_check_runs_its_reduced_form_on_the_cpu(tmp_path):
    out = tmp_path / "figures.json"
    p = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    figures = json.loads(out.read_text())
    bp = _bench_paper()
    assert list(figures["stages"]) == list(bp.STAGES) and figures["failed"] is None
    for name, r in figures["stages"].items():
        assert r["peak_rss_mb"] > 0
        if name.startswith(("pretrain", "finetune")):
            assert r["smoke"] is True and r["steps"] == 1 and r["s_per_step"] > 0
    assert len(figures["estimate"]) == 6 and all(r["hours"] > 0 for r in figures["estimate"])
    assert "study at full size (43101 records)" in p.stdout and "device-hours" in p.stdout
