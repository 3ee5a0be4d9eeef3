"""Smoke mode (`max_steps`): the profile's exact settings, stopped after N optimisation steps,
every output written as usual and marked smoke; smoke results are never shown as results."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ecgssl_nb.study import paths
from ecgssl_nb.analysis import results, tables
from ecgssl_nb.core import classify
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.metrics import METRIC_KEYS
from ecgssl_nb.core.settings import get_profile
from ecgssl_nb.study.recipes import recipe_label
from ecgssl_nb.study.reproduce import reproduce, write_tables
from ecgssl_nb.stages import finetune as ft
from ecgssl_nb.stages import pretrain as pretrain_stage

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# one crop per record, 16 records per step (the 120-record fixture gives 6 steps per epoch)
FAST = replace(
    get_profile("tiny"),
    finetune=replace(
        get_profile("tiny").finetune,
        crops=1,
        epochs={"t": 3, "s": 3, "tsc": 3, "tsg": 3},
        batch_records={"t": 16, "s": 16, "tsc": 16, "tsg": 16},
        eval_batch_windows=512,
    ),
)
PRE_SETTINGS = ["epochs=3", "batch_size=4", "out_dim=256", "warmup_epochs=0"]
PRE = dict(modality="time", records=8, progress=False, settings=PRE_SETTINGS)  # 2 steps per epoch


@pytest.fixture(scope="module")
def prepared_dir(prepared_corpus):
    return prepared_corpus  # the session's prepared 120-record fixture (tests/conftest.py), read-only


def _count_calls(monkeypatch, module, name: str) -> list:
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_finetune_stops_after_max_steps_then_evaluates_and_writes_every_output_marked_smoke(
    prepared_dir, tmp_path, monkeypatch
):
    steps = _count_calls(monkeypatch, classify, "train_step")
    res = ft.finetune("t", 0, prepared_dir, tmp_path / "run", profile=FAST, progress=False, settings=["max_steps=2"])
    assert len(steps) == 2  # of the 3 epochs x 6 steps configured
    assert res["smoke"] is True and res["epochs"] == 3 and res["config"]["max_steps"] == 2
    assert [h["epoch"] for h in res["history"]] == [1]  # stopped inside epoch 1, which was evaluated
    for name in ("result.json", "predictions.csv", "log.csv", "challenge_outputs"):
        assert (tmp_path / "run" / name).exists(), name
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert json.loads((tmp_path / "run" / "result.json").read_text())["smoke"] is True


def test_finetune_max_steps_beyond_an_epoch_runs_into_the_next_epoch(prepared_dir, tmp_path, monkeypatch):
    steps = _count_calls(monkeypatch, classify, "train_step")
    res = ft.finetune("t", 0, prepared_dir, tmp_path / "run", profile=FAST, progress=False, settings=["max_steps=8"])
    n_train = res["data"]["n_train"]
    per_epoch = -(-n_train // 16)
    assert len(steps) == 8 and per_epoch < 8 < 2 * per_epoch
    assert [h["epoch"] for h in res["history"]] == [1, 2]


def test_a_full_finetune_is_not_marked_smoke(prepared_dir, tmp_path):
    res = ft.finetune("t", 0, prepared_dir, tmp_path / "run", profile=FAST, settings=["epochs.t=0"], progress=False)
    assert res["smoke"] is False and res["config"]["max_steps"] == 0


def test_pretrain_stops_after_max_steps_and_writes_a_backbone_and_a_smoke_summary(prepared_dir, tmp_path, monkeypatch):
    steps = _count_calls(monkeypatch, pretrain_stage, "train_step")
    out = pretrain_stage.pretrain(prepared_dir, tmp_path / "pre", **{**PRE, "settings": [*PRE_SETTINGS, "max_steps=3"]})
    assert len(steps) == 3  # 2 steps in epoch 0, 1 in epoch 1, of 3 epochs x 2 steps
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] is True and summary["steps"] == 3 and summary["epochs"] == 3
    assert summary["config"]["max_steps"] == 3
    assert (out / "backbone.pt").is_file()
    log = pd.read_csv(out / "log.csv")
    assert list(log["epoch"]) == [0, 1]
    with pytest.raises(UserError, match=r"different request: .*max_steps: 3 -> 0"):  # never resumed as a full run
        pretrain_stage.pretrain(prepared_dir, out, resume=True, **PRE)


def test_a_full_pretraining_is_not_marked_smoke(prepared_dir, tmp_path):
    out = pretrain_stage.pretrain(prepared_dir, tmp_path / "pre", **{**PRE, "settings": [*PRE_SETTINGS, "epochs=1"]})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] is False and summary["steps"] == 2


def test_bad_max_steps_is_a_user_error(prepared_dir, tmp_path):
    with pytest.raises(UserError, match="^--set max_steps=-1: max_steps must be an integer >= 0, got -1$"):
        pretrain_stage.pretrain(prepared_dir, tmp_path / "a", **{**PRE, "settings": ["max_steps=-1"]})
    with pytest.raises(UserError, match="^--set max_steps=-2: max_steps must be an integer >= 0, got -2$"):
        ft.finetune("t", 0, prepared_dir, tmp_path / "b", profile=FAST, settings=["max_steps=-2"], progress=False)
    with pytest.raises(UserError, match="--max-steps"):
        reproduce("tiny", out=tmp_path, max_steps=-1)
    with pytest.raises(UserError, match="--protocol"):
        reproduce("tiny", out=tmp_path, protocol="exact")


# --- results: smoke rows are labelled and never mixed with full ones ------------------------------------


def _frame(smoke_flags) -> pd.DataFrame:
    rows = []
    for fold, smoke in enumerate(smoke_flags):
        rows.append(
            {
                "setup": "t",
                "fold": fold,
                "protocol": "paper",
                "profile": "paper",
                "data": "fixture",
                "smoke": smoke,
                "path": f"t/fold{fold}/result.json",
                **{m: 0.5 for m in METRIC_KEYS},
            }
        )
    return pd.DataFrame(rows)


def test_aggregates_and_tables_of_smoke_runs_carry_the_flag_and_the_label():
    agg = results.aggregate(_frame([True, True]), "paper")
    assert bool(agg.loc["t", "smoke"]) is True
    cmp = results.compare_with_paper(agg, "II")
    assert cmp["smoke"].all()
    shown = tables.results_table({"paper": agg}, paper=results.PAPER_TABLE_II)
    ours = [whose for _, whose in shown.columns if whose.startswith("ours")]
    assert ours and all(results.SMOKE_LABEL in whose for whose in ours)


def test_full_runs_are_shown_without_the_smoke_label():
    agg = results.aggregate(_frame([False, False]), "paper")
    assert bool(agg.loc["t", "smoke"]) is False
    assert not results.compare_with_paper(agg, "II")["smoke"].any()
    assert results.SMOKE_LABEL not in tables.results_table({"paper": agg}).to_string()


def test_aggregate_refuses_to_mix_smoke_and_full_runs():
    with pytest.raises(UserError, match="smoke"):
        results.aggregate(_frame([True, False]), "paper")


# --- reproduce: max_steps and the paper-exact protocol threaded to the runs -----------------------------


def test_reproduce_smoke_and_paper_exact_reach_every_run_and_the_tables(fixture_corpus, tmp_path):
    prof = replace(
        FAST,
        folds=(0,),
        finetune=replace(FAST.finetune, ablation_folds=(0,)),
        pretrain={m: replace(c, out_dim=256) for m, c in FAST.pretrain.items()},
    )
    fx = fixture_corpus  # make_fixture(n_records=120, seed=0), shared, read-only
    root = reproduce(
        prof,
        data_dir=fx,
        out=tmp_path / "runs",
        setups="t,ssl-t",
        devices="cpu",
        ablation=False,
        progress=False,
        max_steps=1,
        protocol="paper-exact",
    )
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["smoke"] is True and manifest["max_steps"] == 1 and manifest["protocol"] == "paper-exact"
    b14 = paths.recipe_runs(tmp_path / "runs", recipe_label(("B14",)))  # paper-exact is the departure B14
    assert root == paths.profile_root(b14, "tiny") and manifest["departures"] == ["B14"]
    for setup in ("t", "ssl-t"):
        res = json.loads((paths.finetune_dir(b14, "tiny", setup, 0) / "result.json").read_text())
        assert res["smoke"] is True and res["protocol_mode"] == "paper-exact"
        assert list(res["metrics"]) == ["paper"] and res["data"]["inner_fold"] is None
        assert len(res["data"]["train_folds"]) == 9
    main_root = paths.profile_root(tmp_path / "runs", "tiny")
    assert json.loads((main_root / "pretrain" / "time" / "summary.json").read_text())["smoke"] is True  # shared
    assert not (main_root / "finetune").exists()  # paper-exact runs live apart from the 8-fold runs
    table = pd.read_csv(paths.table_path(b14, "tiny", "table2"))
    assert table["smoke"].all() and set(table["protocol"]) == {"paper"}
    assert write_tables(tmp_path / "runs", "tiny") == {}  # no 8-fold runs: no table2.csv
    assert not np.isnan(table["ours mean"]).all()
    with pytest.raises(UserError, match="holds a smoke study"):  # a full study never reuses smoke runs
        reproduce(
            prof,
            data_dir=fx,
            out=tmp_path / "runs",
            setups="t",
            devices="cpu",
            ablation=False,
            progress=False,
            protocol="paper-exact",
        )


def test_the_commands_take_max_steps(prepared_dir, tmp_path):
    from ecgssl_nb.__main__ import main

    assert (
        main(
            [
                "pretrain",
                "--modality",
                "spec",
                "--prepared",
                str(prepared_dir),
                "--out",
                str(tmp_path / "pre"),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--records",
                "8",
                "--set",
                "out_dim=64",
                "--max-steps",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "pre" / "summary.json").read_text())
    assert summary["smoke"] is True and summary["steps"] == 1
    assert (
        main(
            [
                "finetune",
                "--setup",
                "t",
                "--fold",
                "0",
                "--prepared",
                str(prepared_dir),
                "--out",
                str(tmp_path / "ft"),
                "--epochs",
                "1",
                "--max-steps",
                "1",
                "--protocol",
                "paper-exact",
                "--no-progress",
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert res["smoke"] is True and res["config"]["max_steps"] == 1 and res["protocol_mode"] == "paper-exact"
