"""The whole-study driver: runs everything once, skips finished runs, keeps going past a failing
run, blocks runs whose pre-training failed, writes the tables and the manifest; the runs layout;
bad arguments."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from ecgssl_nb import finetune as ft
from ecgssl_nb import paths, selfkd
from ecgssl_nb.__main__ import main
from ecgssl_nb.config import get_profile
from ecgssl_nb.errors import UserError
from ecgssl_nb.models import make_backbone
from ecgssl_nb.reproduce import Job, RunsFailed, parse_devices, parse_setups, reproduce, run_jobs

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
    assert set(manifest["steps"]) == {"prepare", "finetune", "tables"}
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

    monkeypatch.setattr(selfkd, "pretrain", fake_pretrain)
    with pytest.raises(RunsFailed) as err:
        reproduce(fast(0), data_dir=data_dir, out=tmp_path, setups="ssl-t,ssl-s", folds="0", progress=False)
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
    assert set(pd.read_csv(root / "tables/table1.csv")["setting"]) == {"SSL-T", "SSL-S"}


def test_several_devices_run_subprocesses_from_one_queue_and_keep_their_failures(tmp_path):
    def job(name, argv):
        return Job("pretrain", name, tmp_path / name, run=None, argv=lambda device: argv)

    good = job("good", ["fixture", "--out", str(tmp_path / "fx"), "--records", "24"])
    bad = job("bad", ["finetune", "--setup", "bogus", "--fold", "0", "--prepared", "x", "--out", "y"])
    run_jobs([good, bad], ["cpu", "cpu"], progress=False)
    assert (good.status, bad.status) == ("done", "failed")
    assert (tmp_path / "fx" / "fixture.json").is_file()
    assert "'bogus' is not a setup" in (tmp_path / "bad" / "error.txt").read_text()
    assert "exit status 2" in bad.reason


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
