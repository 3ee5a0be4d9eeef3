"""Runs you can trust: each stage folder records what made it (provenance.json) and is reused only
for an equal request; checkpoints never unpickle code; one writer per folder; settings travel
with the run; `--set` is type-checked. Each test names the finding of the issue it pins."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ecgssl_nb import atomic, provenance
from ecgssl_nb.analysis import results
from ecgssl_nb.__main__ import main
from ecgssl_nb.config import apply_settings
from ecgssl_nb.core import classify
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.settings import FinetuneConfig, PretrainConfig, get_profile
from ecgssl_nb.data.fixture import make_fixture
from ecgssl_nb.data.prepare import load_prepared, prepare
from ecgssl_nb.study.reproduce import reproduce, resolve_settings
from ecgssl_nb.stages import finetune as ft
from ecgssl_nb.stages import pretrain as pretrain_stage

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = get_profile("tiny")
# A real but very small study: 1 pre-training epoch of 2 views and a 64-wide head; fine-tunings
# of 0 epochs (the initial network is evaluated), so a whole `reproduce` call takes seconds.
SMALL_PRE = replace(TINY.pretrain["time"], epochs=1, batch_size=16, n_local=0, out_dim=64, warmup_epochs=0)
SMALL = replace(
    TINY,
    pretrain={"time": SMALL_PRE, "spec": SMALL_PRE},
    finetune=replace(TINY.finetune, crops=1, eval_batch_windows=512, epochs={f: 0 for f in ("t", "s", "tsc", "tsg")}),
)
FAST_PRE = {"out_dim": 64, "base_lr": 0.5, "warmup_epochs": 0}
PRE_RUN = dict(modality="time", records=8, progress=False)
PRE_RUN["settings"] = ["epochs=2", "batch_size=4", *(f"{k}={v}" for k, v in FAST_PRE.items())]


class Payload:
    """A pickle that, when unpickled, runs a shell command writing a marker file: the planted
    'checkpoint' of the issue."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"echo payload ran > {self.marker}",))


def plant(path, marker):
    with open(path, "wb") as fh:
        pickle.dump(Payload(marker), fh, protocol=2)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two prepared corpora A and B (different records), and A's records folder."""
    root = tmp_path_factory.mktemp("trust")
    make_fixture(root / "A", n_records=60, seed=0)
    make_fixture(root / "B", n_records=60, seed=5)
    a = prepare(root / "A", root / "prepA", workers=1, progress=False)
    b = prepare(root / "B", root / "prepB", workers=1, progress=False)
    assert load_prepared(a).digest != load_prepared(b).digest
    return {"A": a, "B": b, "A_data": root / "A", "B_data": root / "B"}


# --- finding 1: no code runs from a results folder --------------------------------------------


def test_planted_pretraining_checkpoint_is_refused_and_its_payload_never_runs(corpora, tmp_path):
    out, marker = tmp_path / "pre", tmp_path / "ran.txt"
    pretrain_stage.pretrain(corpora["A"], out, stop_after=1, **PRE_RUN)  # a genuine, resumable run
    plant(out / "checkpoint.pt", marker)
    with pytest.raises(UserError, match="checkpoint.pt is not a checkpoint of plain tensors"):
        pretrain_stage.pretrain(corpora["A"], out, resume=True, **PRE_RUN)
    assert not marker.exists()


def test_planted_finetuning_checkpoint_is_refused_and_its_payload_never_runs(corpora, tmp_path, monkeypatch):
    out, marker = tmp_path / "ft", tmp_path / "ran.txt"
    real, calls = classify.train_step, {"n": 0}

    def dies_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    prof = replace(SMALL, finetune=replace(SMALL.finetune, batch_records={f: 32 for f in ("t", "s", "tsc", "tsg")}))
    monkeypatch.setattr(classify, "train_step", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune("t", 0, corpora["A"], out, profile=prof, settings=["epochs.t=2"], progress=False)
    assert (out / "checkpoint.pt").is_file()
    plant(out / "checkpoint.pt", marker)
    monkeypatch.setattr(classify, "train_step", real)
    with pytest.raises(UserError, match="refusing to load it"):
        ft.finetune("t", 0, corpora["A"], out, profile=prof, settings=["epochs.t=2"], resume=True, progress=False)
    assert not marker.exists()


def test_load_checkpoint_reads_tensors_and_plain_values_only(tmp_path):
    import torch

    torch.save({"w": torch.ones(2), "rng": [1, 2.5, "MT"], "none": None}, tmp_path / "ok.pt")
    assert provenance.load_checkpoint(tmp_path / "ok.pt")["rng"] == [1, 2.5, "MT"]
    plant(tmp_path / "bad.pt", tmp_path / "ran.txt")
    with pytest.raises(UserError, match="nothing in it was run"):
        provenance.load_checkpoint(tmp_path / "bad.pt")
    assert not (tmp_path / "ran.txt").exists()


# --- finding 2: nothing stale after the data changed ------------------------------------------


def test_pretrain_resume_with_other_prepared_data_is_refused(corpora, tmp_path):
    out = tmp_path / "pre"
    pretrain_stage.pretrain(corpora["A"], out, stop_after=1, **PRE_RUN)
    with pytest.raises(UserError, match=r"different request: inputs\.prepared"):
        pretrain_stage.pretrain(corpora["B"], out, resume=True, **PRE_RUN)
    assert provenance.read(out)["request"]["inputs"]["prepared"] == load_prepared(corpora["A"]).digest


def _statuses(root) -> dict:
    return {k: v["status"] for k, v in json.loads((root / "manifest.json").read_text())["runs"].items()}


def test_reproduce_reruns_exactly_what_depends_on_a_change(corpora, tmp_path, capsys):
    """Same request: nothing runs. A fine-tuning setting: pre-training reused, fine-tunings re-run.
    A pre-training setting: it and the ssl- fine-tuning re-run, the scratch one is reused. The
    seed (training seed): pre-training and fine-tunings re-run, the prepared corpus is reused.
    The data: everything re-runs, and the tables come from the new corpus only."""
    kw = dict(out=tmp_path, setups="t,ssl-t", folds="0", ablation=False, progress=False)
    root = tmp_path / "tiny"
    names = ("pretrain time", "finetune t fold 0", "finetune ssl-t fold 0")
    reproduce(SMALL, data_dir=corpora["A_data"], **kw)
    assert _statuses(root) == dict.fromkeys(names, "done")
    prepared_stamp = (root / "prepared" / "signals.npy").stat().st_mtime_ns

    reproduce(SMALL, data_dir=corpora["A_data"], **kw)
    assert _statuses(root) == dict.fromkeys(names, "skipped")

    lr = replace(SMALL, finetune=replace(SMALL.finetune, lr=2e-3))
    reproduce(lr, data_dir=corpora["A_data"], **kw)
    assert _statuses(root) == {"pretrain time": "skipped", "finetune t fold 0": "done", "finetune ssl-t fold 0": "done"}
    runs = json.loads((root / "manifest.json").read_text())["runs"]
    assert runs["finetune t fold 0"]["replaced"] == ["settings.config.lr: 0.001 -> 0.002"]
    (aside,) = (root / "finetune" / "t").glob("fold0.stale-*")  # moved aside, not deleted
    assert (aside / "result.json").is_file()
    assert "finetune t fold 0" in capsys.readouterr().err  # and said so

    clip = replace(lr, pretrain={m: replace(c, clip_grad=3.0) for m, c in lr.pretrain.items()})
    reproduce(clip, data_dir=corpora["A_data"], **kw)
    assert _statuses(root) == {"pretrain time": "done", "finetune t fold 0": "skipped", "finetune ssl-t fold 0": "done"}
    assert runs != json.loads((root / "manifest.json").read_text())["runs"]
    replaced = json.loads((root / "manifest.json").read_text())["runs"]["finetune ssl-t fold 0"]["replaced"]
    assert [d.split(":")[0] for d in replaced] == ["inputs.backbone.time"]

    reproduce(clip, data_dir=corpora["A_data"], seed=1, **kw)
    assert _statuses(root) == dict.fromkeys(names, "done")
    assert (root / "prepared" / "signals.npy").stat().st_mtime_ns == prepared_stamp
    assert all(json.loads((root / f"finetune/{s}/fold0/result.json").read_text())["seed"] == 1 for s in ("t", "ssl-t"))

    reproduce(clip, data_dir=corpora["B_data"], seed=1, **kw)
    assert _statuses(root) == dict.fromkeys(names, "done")
    digest_b = load_prepared(root / "prepared").digest
    assert digest_b == load_prepared(corpora["B"]).digest
    df = results.load_results(root / "finetune")  # stale folders are not read
    assert len(df) == 4 and set(df["digest"]) == {digest_b}
    tables = json.loads((root / "tables" / "provenance.json").read_text())["request"]
    assert tables["inputs"] == {"prepared": digest_b} and sorted(tables["settings"]["runs"]) == [
        "finetune/ssl-t/fold0",
        "finetune/t/fold0",
    ]
    assert provenance.read(root / "pretrain" / "time")["request"]["inputs"]["prepared"] == digest_b


# --- finding 4: a result is never reused for other settings; one writer per folder -------------


def test_finetune_into_a_folder_of_another_run_is_refused_unless_forced(corpora, tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["--prepared", str(corpora["A"]), "--out", out, "--epochs", "0", "--no-progress"]
    assert main(["finetune", "--setup", "t", "--fold", "0", *base]) == 0
    first = json.loads((tmp_path / "run" / "result.json").read_text())
    capsys.readouterr()
    assert main(["finetune", "--setup", "s", "--fold", "5", "--seed", "9", *base]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "settings.setup: t -> s" in err and "seed: 0 -> 9" in err and "--force" in err
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == first  # untouched
    assert main(["finetune", "--setup", "s", "--fold", "5", "--seed", "9", "--force", *base]) == 0
    now = json.loads((tmp_path / "run" / "result.json").read_text())
    assert (now["setup"], now["fold"], now["seed"]) == ("s", 5, 9)
    (aside,) = tmp_path.glob("run.stale-*")
    assert json.loads((aside / "result.json").read_text()) == first
    assert now["provenance"]["request"]["inputs"] == {"prepared": load_prepared(corpora["A"]).digest}


def test_a_second_writer_of_one_folder_is_refused_naming_the_first(corpora, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom ecgssl_nb import provenance as P\n"
            f"with P.lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(
            [
                "finetune",
                "--setup",
                "t",
                "--fold",
                "0",
                "--prepared",
                str(corpora["A"]),
                "--out",
                str(out),
                "--epochs",
                "0",
                "--no-progress",
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and f"in use by pid {holder.pid}" in err
        code = main(
            [
                "pretrain",
                "--modality",
                "time",
                "--prepared",
                str(corpora["A"]),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--records",
                "8",
                "--no-progress",
            ]
        )
        assert code == 2 and f"in use by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "result.json").exists() and not (out / "provenance.json").exists()


# --- settings travel with the run; --set is type-checked (finding 6, runs side) --------------


def test_subprocess_jobs_get_the_resolved_settings_and_match_in_process_runs(corpora, tmp_path):
    custom = replace(SMALL, finetune=replace(SMALL.finetune, lr=0.0123))  # a profile no name stands for
    kw = dict(data_dir=corpora["A_data"], out=tmp_path, setups="t", folds="0", ablation=False, progress=False)
    reproduce(custom, devices="cpu,cpu", **kw)  # two at once: a Ray task, run in a child process
    root = tmp_path / "tiny"
    req = provenance.read(root / "finetune" / "t" / "fold0")["request"]
    assert req["settings"]["config"]["lr"] == 0.0123 and req["settings"]["config"]["epochs"]["t"] == 0
    reproduce(custom, **kw)  # one device, in this process: the same request, so nothing re-runs
    assert _statuses(root) == {"finetune t fold 0": "skipped"}


@pytest.mark.parametrize(
    "command",
    [
        ["pretrain", "--modality", "time", "--prepared", "P", "--out", "O"],
        ["finetune", "--setup", "t", "--fold", "0", "--prepared", "P", "--out", "O"],
        ["reproduce", "--out", "O"],
    ],
)
def test_a_mistyped_set_value_is_one_line_naming_the_key(command, tmp_path, capsys):
    argv = [str(tmp_path / a) if a in ("P", "O") else a for a in command]
    key = "clip_grad" if command[0] != "finetune" else "lr"
    assert main([*argv, "--set", f"{key}=abc"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --set {key}=abc: {key} takes a float\n"
    assert main([*argv, "--set", "no_such_key=1"]) == 2
    assert "'no_such_key' is not a" in capsys.readouterr().err
    assert not (tmp_path / "O").exists()


def test_apply_settings_converts_by_field_type():
    pre = apply_settings(TINY.pretrain["time"], ["clip_grad=3", "n_local=6", "optimizer=adam-l2"])
    assert (pre.clip_grad, pre.n_local, pre.optimizer) == (3.0, 6, "adam-l2")
    assert isinstance(pre.clip_grad, float) and isinstance(pre.n_local, int)
    fin = apply_settings(
        TINY.finetune,
        ["epochs.tsg=7", "amp=false", "threshold_grid=[0.2, 0.4]", "ablation_folds=none", "min_lr.s=1e-4"],
    )
    assert fin.epochs == {**TINY.finetune.epochs, "tsg": 7} and fin.amp is False
    assert fin.threshold_grid == (0.2, 0.4) and fin.ablation_folds is None and fin.min_lr["s"] == 1e-4
    pre_cfg, ft_cfg = TINY.pretrain["time"], TINY.finetune
    for cfg, item, word in (
        (pre_cfg, "n_local=2.5", "n_local takes an integer"),
        (ft_cfg, "amp=maybe", "amp takes true or false"),
        (ft_cfg, "epochs.x=1", "epochs has no entry 'x'"),
        (ft_cfg, "epochs=3", "epochs takes a JSON object"),
        (pre_cfg, "clip_grad", "must look like KEY=VALUE"),
        (ft_cfg, "lr=nan", "lr takes a float"),
    ):
        with pytest.raises(UserError, match=word):
            apply_settings(cfg, [item])


def test_reproduce_routes_set_items_to_the_config_that_has_the_key():
    pre, fin = resolve_settings(TINY, ["clip_grad=3", "lr=2e-3", "pretrain.time.n_local=2", "finetune.epochs.t=9"])
    assert pre["time"].clip_grad == pre["spec"].clip_grad == 3.0
    assert (pre["time"].n_local, pre["spec"].n_local) == (2, TINY.pretrain["spec"].n_local)
    assert fin.lr == 2e-3 and fin.epochs["t"] == 9
    with pytest.raises(UserError, match="both pre-training and fine-tuning"):
        resolve_settings(TINY, ["epochs=3"])
    assert isinstance(pre["time"], PretrainConfig) and isinstance(fin, FinetuneConfig)


# --- tables refuse runs of different data or settings, naming them ----------------------------


def _result(setup, fold, digest, lr, seed=0):
    m = {k: 0.5 for k in results.METRIC_KEYS}
    req = provenance.request(
        "finetune",
        {"setup": setup, "fold": fold, "inner_fold": fold + 1, "config": {"lr": lr}},
        {"prepared": digest},
        seed,
    )
    return {
        "setup": setup,
        "fold": fold,
        "profile": "tiny",
        "data": {"kind": "fixture"},
        "seed": seed,
        "metrics": {"paper": dict(m, epoch=1)},
        "provenance": provenance.record(req),
    }


@pytest.mark.parametrize(
    "change, words",
    [
        ({"digest": "bbb"}, "different prepared data"),
        ({"lr": 0.5}, "different settings or seed"),
        ({"seed": 3}, "different settings or seed"),
    ],
)
def test_tables_refuse_runs_of_other_data_or_settings_naming_them(tmp_path, change, words):
    from ecgssl_nb.study.reproduce import write_tables

    ft_root = tmp_path / "tiny" / "finetune"
    atomic.write_json_atomic(ft_root / "t/fold0/result.json", _result("t", 0, "aaa", 0.1))
    base = {"digest": "aaa", "lr": 0.1, "seed": 0}
    atomic.write_json_atomic(ft_root / "tsg/fold1/result.json", _result("tsg", 1, **{**base, **change}))
    atomic.write_json_atomic(ft_root / "tsg/fold0/result.json", _result("tsg", 0, "aaa", 0.1))
    df = results.load_results(ft_root)
    with pytest.raises(UserError, match=f"{words}: t fold 0 .* and tsg fold 1"):
        results.aggregate(df, "paper")
    with pytest.raises(UserError, match=words):
        write_tables(tmp_path, "tiny")
    assert not (tmp_path / "tiny" / "tables" / "table2.csv").exists()
    ok = df[df["path"].str.contains("fold0")]
    assert list(results.aggregate(ok, "paper").index) == ["t", "tsg"]  # one study: aggregated


def test_results_moved_aside_are_never_read(tmp_path):
    atomic.write_json_atomic(tmp_path / "t/fold0/result.json", _result("t", 0, "aaa", 0.1))
    atomic.write_json_atomic(tmp_path / "t/fold0.stale-20261202-000000/result.json", _result("t", 0, "old", 0.1))
    df = results.load_results(tmp_path)
    assert list(df["digest"]) == ["aaa"] and isinstance(df["code_version"].iloc[0], str)
    assert isinstance(pd.DataFrame(df)["settings_id"].iloc[0], str) and np.all(df["fold"] == 0)


def test_a_job_config_file_round_trips_and_a_mistyped_one_is_one_line(tmp_path, capsys):
    from ecgssl_nb.config import as_dict, read_config

    for cls, cfg in ((PretrainConfig, TINY.pretrain["spec"]), (FinetuneConfig, TINY.finetune)):
        (tmp_path / "c.json").write_text(json.dumps(as_dict(cfg)))
        assert read_config(cls, tmp_path / "c.json") == cfg
    (tmp_path / "bad.json").write_text(json.dumps({**as_dict(TINY.finetune), "lr": "fast"}))
    assert (
        main(
            [
                "finetune",
                "--setup",
                "t",
                "--fold",
                "0",
                "--prepared",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--config",
                str(tmp_path / "bad.json"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err == f"error: --config {tmp_path / 'bad.json'}: lr takes a float, got 'fast'\n"
