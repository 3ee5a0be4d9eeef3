"""The whole-study driver: runs everything once, skips finished runs, keeps going past a failing
run, blocks runs whose pre-training failed, writes the tables and the manifest; the runs layout;
bad arguments."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pandas as pd
import pytest
import torch

from ecgssl_nb.study import paths
from ecgssl_nb.study import reproduce as rp
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.models import make_backbone
from ecgssl_nb.core.settings import SETUPS, get_profile, is_ssl, setup_modalities
from ecgssl_nb.data.prepare import load_prepared, prepare
from ecgssl_nb.study.reproduce import (
    Job,
    RunsFailed,
    ensure_pretrain,
    parse_devices,
    parse_setups,
    plan,
    reproduce,
    resolve_study,
    run_jobs,
    Placement,
)
from ecgssl_nb.stages import finetune as ft
from ecgssl_nb.stages import pretrain as pretrain_stage

TINY = get_profile("tiny")


def fast(epochs: int) -> object:
    """The tiny profile with one crop per record and `epochs` epochs for every setup."""
    return replace(
        TINY,
        finetune=replace(
            TINY.finetune, crops=1, eval_batch_windows=512, epochs={f: epochs for f in ("t", "s", "tsc", "tsg")}
        ),
    )


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data_dir(fixture_corpus):
    return fixture_corpus  # make_fixture(n_records=120, seed=0), shared by the session, read-only


def test_runs_layout_is_the_documented_one():
    assert str(paths.finetune_dir("R", "tiny", "ssl-tsg", 3)) == "R/tiny/finetune/ssl-tsg/fold3"
    assert str(paths.pretrain_run_dir("R", "paper", "spec")) == "R/paper/pretrain/spec"
    assert str(paths.ablation_pretrain_dir("R", "tiny", "time", "gn")) == "R/tiny/ablation/pretrain/time-gn"
    assert str(paths.ablation_finetune_dir("R", "tiny", "spec", "fc", 0)) == "R/tiny/ablation/finetune/ssl-s-fc/fold0"
    assert str(paths.table_path("R", "tiny", "fig3")) == "R/tiny/tables/fig3.csv"
    with pytest.raises(UserError, match="ablation transforms"):
        paths.ablation_pretrain_dir("R", "tiny", "time", "t1")  # t1 is the main pre-training


def test_a_failing_run_loses_nothing_and_a_second_call_runs_only_what_is_missing(data_dir, tmp_path, monkeypatch):
    real = ft.finetune
    calls = []

    def flaky(setup, fold, *a, **k):
        calls.append((setup, fold))
        if (setup, fold) == ("s", 1) and fail["on"]:
            raise RuntimeError("injected failure")
        return real(setup, fold, *a, **k)

    fail = {"on": True}
    monkeypatch.setattr(ft, "finetune", flaky)
    kw = dict(data_dir=data_dir, out=tmp_path, setups="t,s", folds="0,1", ablation=False, progress=False)
    with pytest.raises(RunsFailed) as err:
        reproduce(fast(1), **kw)
    root = tmp_path / "tiny"
    assert [f[0] for f in err.value.failures] == ["finetune s fold 1"]
    assert "RuntimeError: injected failure" in (root / "finetune/s/fold1/error.txt").read_text()
    done = [root / f"finetune/{s}/fold{k}/result.json" for s, k in (("t", 0), ("t", 1), ("s", 0))]
    assert all(p.is_file() for p in done)
    table2 = pd.read_csv(root / "tables/table2.csv")
    assert set(table2["setting"]) == {"T", "S"} and set(table2["protocol"]) == {"paper", "honest"}
    assert not (root / "tables/table1.csv").exists()  # no SSL setup ran
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 3, "skipped": 0, "failed": 1, "blocked": 0}
    assert set(manifest["steps"]) == {"prepare", "runs", "tables"}  # pre-trainings and fine-tunings: one step
    assert manifest["data_kind"] == "fixture" and manifest["finished"]

    stamps = [p.stat().st_mtime_ns for p in done]
    fail["on"], calls[:] = False, []
    assert reproduce(fast(1), **kw) == root
    assert calls == [("s", 1)]
    assert [p.stat().st_mtime_ns for p in done] == stamps
    assert not (root / "finetune/s/fold1/error.txt").exists()
    assert not list((root / "finetune").rglob("*.stale-*"))  # a failure note is not a run to move aside
    second = json.loads((root / "manifest.json").read_text())
    assert second["counts"] == {"done": 1, "skipped": 3, "failed": 0, "blocked": 0}
    first_walls = {k: v["wall_s"] for k, v in manifest["runs"].items() if v["status"] == "done"}
    assert first_walls and all(w > 0 for w in first_walls.values())
    for name, wall in first_walls.items():  # skipped runs keep the wall time measured when they ran
        assert second["runs"][name]["status"] == "skipped" and second["runs"][name]["wall_s"] == wall

    calls[:] = []
    reproduce(fast(1), **kw)
    assert calls == []
    third = json.loads((root / "manifest.json").read_text())
    assert third["counts"]["done"] == 0  # a call that only skips keeps the study's total wall time, adding its own
    assert second["wall_s"] == pytest.approx(manifest["wall_s"] + second["call_wall_s"], abs=0.002)
    assert third["wall_s"] == pytest.approx(second["wall_s"] + third["call_wall_s"], abs=0.002)


def test_ssl_and_ablation_runs_fine_tune_from_their_own_pretrainings(data_dir, tmp_path, monkeypatch):
    made = []

    def fake_pretrain(prepared_dir, out, modality, transforms=None, **kw):
        """Stands in for DINO (tested in test_selfkd): a seeded fresh backbone, as finished."""
        made.append(f"{modality}-{transforms}")
        if (modality, transforms) == ("spec", "fc"):
            raise RuntimeError("pre-training diverged")
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(len(made))
        torch.save(make_backbone(modality).state_dict(), out / "backbone.pt")
        (out / "summary.json").write_text("{}")
        return out

    monkeypatch.setattr(pretrain_stage, "pretrain", fake_pretrain)
    prof = replace(fast(0), folds=(0, 1), finetune=replace(fast(0).finetune, ablation_folds=(0,)))
    with pytest.raises(RunsFailed) as err:
        reproduce(prof, data_dir=data_dir, out=tmp_path, setups="ssl-t,ssl-s", progress=False)
    assert made == ["time-t1", "spec-t2", "time-none", "time-tc", "time-gn", "spec-none", "spec-tc", "spec-fc"]
    assert [f[0] for f in err.value.failures] == ["pretrain spec-fc", "ablation ssl-s-fc fold 0"]
    root = tmp_path / "tiny"
    assert "needs pretrain spec-fc" in (root / "ablation/finetune/ssl-s-fc/fold0/error.txt").read_text()

    res = json.loads((root / "ablation/finetune/ssl-t-gn/fold0/result.json").read_text())
    assert res["setup"] == "ssl-t"
    assert res["pretrained"] == {"time": str(root / "ablation/pretrain/time-gn/backbone.pt")}
    main_run = json.loads((root / "finetune/ssl-s/fold0/result.json").read_text())
    assert main_run["pretrained"] == {"spec": str(root / "pretrain/spec/backbone.pt")}

    fig3 = pd.read_csv(root / "tables/fig3.csv")
    paper = fig3[fig3["protocol"] == "paper"]
    assert list(zip(paper["modality"], paper["transforms"])) == [
        ("time", "none"),
        ("time", "tc"),
        ("time", "gn"),
        ("time", "t1"),
        ("spec", "none"),
        ("spec", "tc"),
        ("spec", "t2"),
    ]
    # the main runs ran folds 0 and 1, the ablation fold 0: Fig. 3 compares every view set on fold 0
    assert set(paper["folds"].astype(str)) == {"0"} and set(paper["n_folds"]) == {1}
    assert set(pd.read_csv(root / "tables/table1.csv")["setting"]) == {"SSL-T", "SSL-S"}


@pytest.mark.slow  # a local Ray cluster (~5 s) and a child process
def test_a_run_failing_in_a_ray_task_keeps_its_traceback_in_error_txt(tmp_path):
    bad = Job("finetune", "bad", tmp_path / "bad", {"setup": "bogus", "fold": 0, "prepared": "x", "out": "y"})
    assert bad.argv("cpu") == [
        "finetune",
        "--setup",
        "bogus",
        "--fold",
        "0",
        "--prepared",
        "x",
        "--out",
        "y",
        "--device",
        "cpu",
    ]
    run_jobs([bad], "cpu", Placement(local_cpus=1), progress=False)
    assert bad.status == "failed" and "'bogus' is not a setup" in bad.reason
    assert "'bogus' is not a setup" in (tmp_path / "bad" / "error.txt").read_text()
    assert bad.node and bad.host  # where Ray ran it


@pytest.mark.slow
def test_the_study_on_a_local_ray_cluster_runs_k_fine_tunings_at_once_and_records_where_each_ran(
    data_dir, tmp_path, capsys
):
    kw = dict(data_dir=data_dir, out=tmp_path, setups="ssl-t", folds="0,1", ablation=False, progress=False)
    reproduce(fast(1), **kw, max_steps=1, runs_per_device=2)
    root = tmp_path / "tiny"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["runs_per_device"] == {"pretrain": 1, "finetune": 2}
    assert manifest["placement"]["engine"] == "ray" and manifest["placement"]["local_cpus"] == 2
    runs = manifest["runs"]
    assert all(r["status"] == "done" and r["node"] and r["device"] == "cpu" for r in runs.values())
    fts = [runs[f"finetune ssl-t fold {k}"] for k in (0, 1)]
    assert all(r["started_s"] >= runs["pretrain time"]["ended_s"] for r in fts)  # each after its backbone
    assert all(paths.job_file(tmp_path, "tiny", f"finetune ssl-t fold {k}", ".log").is_file() for k in (0, 1))
    assert main(["reproduce", "--out", str(tmp_path / "x"), "--runs-per-device", "0"]) == 2
    assert "--runs-per-device must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(UserError, match="--data-dir is required"):
        reproduce("paper", out=tmp_path)
    assert main(["reproduce", "--profile", "paper", "--out", str(tmp_path)]) == 2
    assert "--data-dir is required" in capsys.readouterr().err
    with pytest.raises(UserError, match="--setup 'tgs'"):
        reproduce("tiny", out=tmp_path, setups="t,tgs")
    with pytest.raises(UserError, match="--folds '0-12': fold 10 is out of range"):
        reproduce("tiny", out=tmp_path, folds="0-12")
    with pytest.raises(UserError, match="--profile"):
        reproduce("huge", out=tmp_path)
    with pytest.raises(UserError, match="--data-dir"):
        reproduce("tiny", data_dir=tmp_path / "missing", out=tmp_path)
    assert not (tmp_path / "tiny").exists() and not (tmp_path / "paper").exists()
    assert parse_setups("ssl-tsg,t") == ("t", "ssl-tsg")
    assert parse_devices("cpu,cpu", TINY) == ["cpu", "cpu"]
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            parse_devices("0", TINY)
        with pytest.raises(UserError, match="none is visible; pass --devices cpu"):
            reproduce("paper", data_dir=tmp_path, out=tmp_path)  # paper defaults to every visible GPU
        assert not (tmp_path / "paper").exists()


def test_the_tiny_plan_lists_every_job_and_what_it_needs_without_writing_anything(tmp_path):
    prof, seed = resolve_study("tiny")
    p = plan(prof, seed, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # a plan is data: nothing written, nothing run
    root = tmp_path / "runs" / "tiny"
    assert [(j.kind, j.folder) for j in p.data] == [("fixture", root / "fixture"), ("prepare", root / "prepared")]
    assert p.data[1].args["data_dir"] == root / "fixture" and p.data_kind == "fixture"
    assert [j.name for j in p.main_pre.values()] == ["pretrain time", "pretrain spec"]
    assert [j.name for j in p.ablation_pre.values()] == [
        f"pretrain {m}-{tr}" for m in ("time", "spec") for tr in paths.ABLATION_TRANSFORMS[m]
    ]
    main_ft = [j for j in p.ft_jobs if j.name.startswith("finetune ")]
    assert [j.name for j in main_ft] == [f"finetune {s} fold {k}" for k in prof.folds for s in SETUPS]  # 8 x 2
    for job in main_ft:  # ssl- jobs depend on the main pre-trainings of the modalities they read
        setup = job.args["setup"]
        want = [p.main_pre[m] for m in setup_modalities(setup)] if is_ssl(setup) else []
        assert [id(n) for n in job.needs] == [id(n) for n in want]
        assert job.folder == paths.finetune_dir(tmp_path / "runs", "tiny", setup, job.args["fold"])
    ablation_ft = p.ft_jobs[len(main_ft) :]
    assert [j.name for j in ablation_ft] == [
        f"ablation {paths.ABLATION_SETUPS[m]}-{tr} fold 0"
        for m in ("time", "spec")
        for tr in paths.ABLATION_TRANSFORMS[m]
    ]  # the tiny profile's Fig. 3 runs on fold 0
    for job, pre in zip(ablation_ft, p.ablation_pre.values()):
        assert job.needs == [pre] and job.args["pretrained"] == {pre.args["modality"]: pre.folder / "backbone.pt"}
    assert (len(p.pre_jobs), len(p.ft_jobs)) == (8, 22)

    # one spec for the three ways to run a job: its arguments, its command line, its notebook parameters
    job = p.main_pre["spec"]
    assert job.argv("cuda:1")[:8] == [
        "pretrain",
        "--prepared",
        str(root / "prepared"),
        "--out",
        str(root / "pretrain/spec"),
        "--modality",
        "spec",
        "--profile",
    ]
    assert {"--resume", "--force", "--no-progress", "--transforms", "t2"} <= set(job.argv("cuda:1"))
    assert (
        json.loads((root / "jobs" / "pretrain_spec.json").read_text())["batch_size"] == prof.pretrain["spec"].batch_size
    )
    assert job.notebook["modality"] == "spec" and job.notebook["study_config"] == str(root / "jobs" / "study.json")
    ssl_tsg = main_ft[-1].argv("cpu")
    assert ssl_tsg[ssl_tsg.index("--pretrained") + 1] == str(root / "pretrain")
    assert ssl_tsg[ssl_tsg.index("--recipe") + 1] == "corrected" and "--data-kind" in ssl_tsg

    scratch = plan(prof, seed, tmp_path / "runs", "DATA", ("t", "s"), (3,))  # no ssl- setup: no pre-training
    assert [j.kind for j in scratch.data] == ["prepare"] and scratch.data_kind is None
    assert scratch.pre_jobs == [] and [j.name for j in scratch.ft_jobs] == ["finetune t fold 3", "finetune s fold 3"]


def _finish_pretraining(prepared_dir, out, modality, transforms, config, seed, hold_s=0.0, started=None, **kw):
    """Stands in for DINO as the real one writes a folder: under its lock, provenance first."""
    with rp.provenance.lock(out):
        if started is not None:
            started.set()
        time.sleep(hold_s)
        req = pretrain_stage.pretrain_request(config, modality, transforms, seed, load_prepared(prepared_dir).digest)
        rp.provenance.claim(out, req, force=True)
        torch.save(make_backbone(modality).state_dict(), out / "backbone.pt")
        (out / "summary.json").write_text("{}")
        rp.provenance.write_digests(out, pretrain_stage.OUTPUTS)  # last, as the real one
    return out


def test_two_folds_that_need_one_missing_pretraining_wait_for_each_other_and_the_wait_is_bounded(
    data_dir, tmp_path, monkeypatch
):
    prepare(data_dir, paths.prepared_dir(tmp_path, "tiny"), workers=TINY.workers, progress=False)
    started, made = threading.Event(), []

    def slow(*a, **k):
        made.append(k["modality"])
        return _finish_pretraining(*a, hold_s=1.5, started=started, **k)

    monkeypatch.setattr(pretrain_stage, "pretrain", slow)
    kw = dict(data=data_dir, device="cpu")
    first = threading.Thread(target=lambda: results.append(ensure_pretrain("tiny", tmp_path, "time", **kw)))
    results: list = []
    first.start()
    assert started.wait(60)
    second = ensure_pretrain("tiny", tmp_path, "time", **kw)  # another notebook: waits for the lock, then reuses
    first.join()
    assert made == ["time"] and results[0].statuses == {"pretrain time": "done"}
    assert second.statuses == {"pretrain time": "skipped"} and second.folder == results[0].folder

    # a holder that never lets go: the wait ends after LOCK_WAIT_S and the run reports the lock
    monkeypatch.setattr(rp, "LOCK_WAIT_S", 0.5)
    release = threading.Event()
    spec = paths.pretrain_run_dir(tmp_path, "tiny", "spec")

    def hold() -> None:
        with rp.provenance.lock(spec):
            started.set()
            release.wait(60)

    started.clear()
    holder = threading.Thread(target=hold)
    holder.start()
    assert started.wait(60)
    t0 = time.monotonic()
    try:
        with pytest.raises(RunsFailed, match="is in use by"):
            ensure_pretrain("tiny", tmp_path, "spec", **kw)
        assert time.monotonic() - t0 < 30
    finally:
        release.set()
        holder.join()
