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

from ecgssl_nb.core import settings

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _bench_paper():
    spec = importlib.util.spec_from_file_location("bench_paper", ROOT / "benchmarks" / "bench_paper.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _env():
    return {**os.environ, "PYTHON": os.environ.get("PYTHON", __import__("sys").executable), "OMP_NUM_THREADS": "1"}


def test_study_estimate_multiplies_steps_epochs_runs_evaluation_and_checkpoints_as_computed_by_hand():
    bp = _bench_paper()
    res = {
        "prepare": {"n_prepared": 1000, "windows": 10000},
        "pretrain-time": {"batch": 100, "epochs": 300, "s_per_step": 2.0, "checkpoint_s": 1.0},
        "finetune-ssl-t": {"n_train": 800, "batch": 128, "epochs": 100, "s_per_step": 1.0, "eval_windows_per_s": 1e3},
    }
    res["finetune-ssl-t"] |= {"checkpoint_s": 2.0, "settings": {"checkpoint_epochs": 10}}
    flops = {"pretrain-time": {"step": 1e12, "eval_window": 0}, "finetune-ssl-t": {"step": 2e11, "eval_window": 1e8}}
    rows = {r["stage"]: r for r in bp.estimate(res, "paper", bp.FULL_RECORDS, 1, flops)}
    pre = rows["pretrain time"]
    # 1000 records // 100 = 10 steps per epoch x 300 epochs; main: 1 run, with Fig. 3: + 3 ablation runs;
    # a checkpoint every epoch (no checkpoint_epochs setting): 300 x 1 s
    assert (pre["steps_per_run"], pre["runs_main"], pre["runs"]) == (3000, 1, 4)
    assert math.isclose(pre["hours"], 4 * (3000 * 2.0 + 300 * 1.0) / 3600)
    assert math.isclose(pre["hours_main"], (3000 * 2.0 + 300) / 3600)
    assert math.isclose(pre["pflop_main"], 3000 * 1e12 / 1e15) and math.isclose(pre["pflop"], 4 * 3.0)
    ft = rows["finetune t (+ ssl-t)"]
    # ceil(800 / 128) = 7 steps x 100 epochs; each epoch predicts 2 of 10 folds: 2000 windows / 1000 per s;
    # checkpoint every 10 epochs: 10 x 2 s. Runs: t and ssl-t on 10 folds (+ ssl-t from 3 ablation
    # backbones on 10 folds)
    assert (ft["steps_per_run"], ft["runs_main"], ft["runs"]) == (700, 20, 50)
    assert math.isclose(ft["eval_h_per_run"], 100 * 2.0 / 3600)
    assert math.isclose(ft["hours"], 50 * (700 * 1.0 + 200.0 + 20.0) / 3600)
    per_run_pflop = (700 * 2e11 + 100 * 2000 * 1e8) / 1e15
    assert math.isclose(ft["pflop_main"], 20 * per_run_pflop) and math.isclose(ft["pflop"], 50 * per_run_pflop)
    # k fine-tunings at once (their s/step measured so) divide the fine-tuning hours, not the pre-training's
    packed = {r["stage"]: r for r in bp.estimate(res, "paper", bp.FULL_RECORDS, 4, flops)}
    assert math.isclose(packed["finetune t (+ ssl-t)"]["hours"], ft["hours"] / 4)
    assert math.isclose(packed["pretrain time"]["hours"], pre["hours"])
    # a tenth of the corpus measured: steps per epoch and evaluation windows scale by ten
    tenth = {r["stage"]: r for r in bp.estimate(res, "paper", bp.FULL_RECORDS / 10)}
    assert tenth["pretrain time"]["steps_per_run"] == 30000
    assert tenth["finetune t (+ ssl-t)"]["steps_per_run"] == 100 * 63  # ceil(8000 / 128)
    # the floor: 0.5 EFLOP at 50 % / 30 % of the H100's 989.4 TFLOP/s
    fast, slow = bp.floor_hours(500.0)
    assert math.isclose(fast, 5e17 / (989.4e12 * 0.5) / 3600) and math.isclose(slow, 5e17 / (989.4e12 * 0.3) / 3600)


def test_paper_runs_per_device_is_what_the_memory_estimate_fits_on_an_80_gb_h100():
    # the paper profile's default is an estimate (no GPU has measured it): it must be the
    # benchmark's derivation, not a number typed in
    bp = _bench_paper()
    est = bp.memory_estimate("paper")
    paper, tiny = settings.get_profile("paper"), settings.get_profile("tiny")
    assert paper.runs_per_device == settings.PAPER_RUNS_PER_DEVICE == est["runs_per_device"] > 1
    assert getattr(tiny, "runs_per_device", None) == 1
    fams = est["families"]
    assert [fams[s]["windows"] for s in ("ssl-t", "ssl-s", "ssl-tsc", "ssl-tsg")] == [640, 1280, 640, 640]
    # each run holds the corpus and a context; fusion models hold both backbones' activations
    assert all(r["per_run_gb"] > bp.FULL_SIGNALS_GB + bp.CUDA_CONTEXT_GB for r in fams.values())
    assert fams["ssl-tsc"]["activations_gb"] > fams["ssl-t"]["activations_gb"]
    worst = max(r["per_run_gb"] for r in fams.values())
    assert est["runs_per_device"] * worst <= bp.USABLE * bp.GPU_BYTES / 1e9


def test_the_fine_tuning_wave_runs_k_at_once_and_every_family_at_least_once():
    bp = _bench_paper()
    assert bp.finetune_wave(1) == [("ssl-t", 0), ("ssl-s", 0), ("ssl-tsc", 0), ("ssl-tsg", 0)]
    six = bp.finetune_wave(6)
    assert six[4:] == [("ssl-t", 1), ("ssl-s", 1)] and len(set(six)) == 6


def test_gpu_check_refuses_a_bad_device_and_cuda_where_there_is_none():
    p = subprocess.run(["bash", str(SCRIPT), "--device", "tpu"], capture_output=True, text=True, env=_env())
    assert p.returncode == 2 and "--device must be cuda or cpu" in p.stderr
    if not torch.cuda.is_available():
        p = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=_env())
        assert p.returncode == 2 and "CUDA is not available" in p.stderr


def test_gpu_check_passes_set_items_to_the_study_and_refuses_a_bad_one_before_any_work(tmp_path):
    # --set reaches the study's settings as `reproduce --set` takes them: a bad value is one line,
    # before the corpus is written
    cmd = ["bash", str(SCRIPT), "--device", "cpu", "--out", str(tmp_path), "--set", "finetune.lr=fast"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 1 and "bench_paper: --set finetune.lr=fast: finetune.lr takes a float" in p.stderr
    p = subprocess.run(cmd[:6] + ["--runs-per-device", "0"], capture_output=True, text=True, env=_env(), timeout=120)
    assert "bench_paper: --runs-per-device must be an integer >= 1, got 0" in p.stderr
    assert not (tmp_path / "bench").exists()


@pytest.mark.slow
def test_gpu_check_runs_its_reduced_form_on_the_cpu_packing_two_fine_tunings(tmp_path):
    out = tmp_path / "figures.json"
    p = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--runs-per-device", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    figures = json.loads(out.read_text())
    bp = _bench_paper()
    assert list(figures["stages"]) == list(bp.STAGES) and figures["failed"] is None
    assert figures["packing"]["runs_per_device"] == 2 and figures["packing"]["runs"] == 4
    for name, r in figures["stages"].items():
        assert r["peak_rss_mb"] > 0
        if name.startswith(("pretrain", "finetune")):
            assert r["smoke"] is True and r["steps"] == 1 and r["s_per_step"] > 0
            assert r["syncs_per_step"] is not None and r["checkpoints"] == 1 and r["checkpoint_s"] > 0
            assert set(r["settings"]) == set(bp.RUN_SETTINGS)
        if name.startswith("finetune"):
            assert r["evaluations"] >= 1 and r["eval_windows"] > 0
    assert len(figures["estimate"]) == 6 and all(r["hours"] > 0 and r["pflop"] > 0 for r in figures["estimate"])
    assert "study at full size (43101 records)" in p.stdout and "projected device-hours: main study" in p.stdout
    assert "FLOP floor" in p.stdout and "H100-hours" in p.stdout
