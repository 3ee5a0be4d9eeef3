"""Fine-tuning: every setup runs and writes its files, SSL weights really load (B6), the honest
protocol never looks at the outer fold (B14), resume equals an uninterrupted run, a killed run
leaves no result, TSG learns the fixture, bad arguments are refused."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ecgssl_nb import checkpoint
from ecgssl_nb.__main__ import main
from ecgssl_nb.core import classify
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.labels import ABBREVIATIONS
from ecgssl_nb.core.metrics import METRIC_KEYS
from ecgssl_nb.core.models import se_resnet34, xresnet1d50
from ecgssl_nb.core.settings import SETUPS, get_profile
from ecgssl_nb.data.fixture import make_fixture
from ecgssl_nb.data.prepare import load_prepared, prepare
from ecgssl_nb.analysis.results import check_result
from ecgssl_nb.stages import finetune as ft

# A cheap variant of the tiny profile: one crop per record, 1 epoch by default.
FAST = replace(
    get_profile("tiny"),
    finetune=replace(
        get_profile("tiny").finetune,
        crops=1,
        epochs={"t": 1, "s": 1, "tsc": 1, "tsg": 1},
        batch_records={"t": 32, "s": 32, "tsc": 32, "tsg": 32},
        eval_batch_windows=512,
    ),
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def prepared_dir(prepared_corpus):
    return prepared_corpus  # the session's prepared 120-record fixture (tests/conftest.py), read-only


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """PRE/time/backbone.pt and PRE/spec/backbone.pt saved from fresh (seeded) backbones."""
    pre = tmp_path_factory.mktemp("pre")
    torch.manual_seed(123)
    for modality, backbone in (("time", xresnet1d50()), ("spec", se_resnet34())):
        (pre / modality).mkdir()
        torch.save(backbone.state_dict(), pre / modality / "backbone.pt")
    return pre


def _run(setup, prepared_dir, out, **kw):
    kw.setdefault("profile", FAST)
    kw.setdefault("progress", False)
    return ft.finetune(setup, 0, prepared_dir, out, **kw)


# --- every setup -------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", SETUPS)
def test_every_setup_trains_an_epoch_and_writes_a_result_in_the_schema(setup, prepared_dir, pretrained_dir, tmp_path):
    pre = pretrained_dir if setup.startswith("ssl-") else None
    res = _run(setup, prepared_dir, tmp_path, pretrained=pre)
    prep = load_prepared(prepared_dir)
    folds = prep.index["fold"].to_numpy()
    n_outer, n_inner = int((folds == 0).sum()), int((folds == 1).sum())

    assert check_result(res) == []
    assert res == json.loads((tmp_path / "result.json").read_text())
    assert set(res["metrics"]) == {"paper", "honest"}
    for protocol in ("paper", "honest"):
        assert set(METRIC_KEYS) <= set(res["metrics"][protocol])
        assert res["metrics"][protocol]["epoch"] == 1
        assert len(res["thresholds"][protocol]) == 24
        assert set(res["thresholds"][protocol]) <= {0.1, 0.2, 0.3, 0.4, 0.5}
        assert all(len(res["per_class"][protocol][k]) == 24 for k in ("auroc", "auprc", "f1"))
    assert res["data"]["kind"] == "fixture"
    assert (res["data"]["n_val"], res["data"]["n_inner"]) == (n_outer, n_inner)
    assert res["data"]["n_train"] == len(prep.index) - n_outer - n_inner
    assert res["data"]["train_folds"] == [2, 3, 4, 5, 6, 7, 8, 9]

    pred = pd.read_csv(tmp_path / "predictions.csv")
    assert len(pred) == 2 * n_outer + n_inner
    assert sorted(pred.groupby(["protocol", "role"]).size().items()) == [
        (("honest", "inner"), n_inner),
        (("honest", "outer"), n_outer),
        (("paper", "outer"), n_outer),
    ]
    probs = pred[[f"p_{a}" for a in ABBREVIATIONS]].to_numpy()
    assert ((probs > 0) & (probs < 1)).all()
    assert len(list((tmp_path / "challenge_outputs").glob("*.csv"))) == n_outer
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log["epoch"]) == [1] and np.isfinite(log["train_loss"]).all()
    assert not (tmp_path / "checkpoint.pt").exists()

    gate = res["gate_weights"]
    if setup.endswith("tsg"):
        t, s = np.array(gate["time"], dtype=float), np.array(gate["spec"], dtype=float)
        ok = np.isfinite(t)
        assert ok.any() and np.allclose(t[ok] + s[ok], 1.0)
        assert gate["n_positive"] == [int(v) for v in prep.label_matrix()[folds == 0].sum(axis=0)]
    else:
        assert gate is None


def test_a_finished_run_is_returned_without_training_again(prepared_dir, tmp_path, monkeypatch):
    first = _run("t", prepared_dir, tmp_path)

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(classify, "train_step", boom)
    assert _run("t", prepared_dir, tmp_path) == first


# --- initialisation and SSL weights (book: Deviations, B6) -------------------------------------


def test_ssl_setups_start_from_the_saved_backbones(prepared_dir, pretrained_dir, tmp_path, monkeypatch):
    built = {}
    real = classify.build_finetune_model

    def spy(*a, **k):
        model = real(*a, **k)
        built["state"] = copy.deepcopy(model.state_dict())
        return model

    monkeypatch.setattr(classify, "build_finetune_model", spy)
    res = _run("ssl-tsc", prepared_dir, tmp_path, pretrained=pretrained_dir, settings=["epochs.tsc=0"])
    assert res["metrics"]["paper"]["epoch"] == 0 and res["epochs"] == 0
    for modality in ("time", "spec"):
        saved = torch.load(pretrained_dir / modality / "backbone.pt")
        for key, value in saved.items():
            assert torch.equal(built["state"][f"{modality}_backbone.{key}"], value), key


def test_scratch_setups_get_the_released_xavier_init_and_ssl_setups_do_not(tmp_path):
    def stem_bias(model):
        conv = next(m for m in model.time_backbone.modules() if isinstance(m, torch.nn.Conv1d) and m.bias is not None)
        return conv.bias

    assert (
        0.6 < float(stem_bias(classify.build_finetune_model("t", seed=0)).detach().std()) < 1.5
    )  # N(0, 1), as released
    torch.save(xresnet1d50().state_dict(), tmp_path / "backbone.pt")  # PyTorch default: |bias| < 1/sqrt(60)
    loaded = classify.build_finetune_model("ssl-t", {"time": tmp_path / "backbone.pt"}, seed=0)
    assert float(stem_bias(loaded).detach().abs().max()) < 0.2  # loaded, not re-initialised


def test_a_missing_or_partial_backbone_file_is_refused(prepared_dir, pretrained_dir, tmp_path):
    with pytest.raises(UserError, match="--pretrained is required"):
        _run("ssl-t", prepared_dir, tmp_path / "a")
    only_time = tmp_path / "pre"
    shutil.copytree(pretrained_dir / "time", only_time / "time")
    with pytest.raises(UserError, match=r"spec/backbone\.pt does not exist"):
        _run("ssl-tsg", prepared_dir, tmp_path / "b", pretrained=only_time)
    state = torch.load(pretrained_dir / "time" / "backbone.pt")
    state.pop(next(iter(state)))
    torch.save(state, only_time / "time" / "backbone.pt")
    with pytest.raises(UserError, match="missing keys"):
        _run("ssl-t", prepared_dir, tmp_path / "c", pretrained=only_time)
    with pytest.raises(UserError, match="only for ssl- setups"):
        _run("t", prepared_dir, tmp_path / "d", pretrained=pretrained_dir)
    assert not any((tmp_path / x / "result.json").exists() for x in "abcd")


# --- protocols (B14) ---------------------------------------------------------------------------


def reseal_prepared(folder) -> None:
    """Record a prepared folder edited on purpose as if `prepare` had written it: its digests.json
    and the content digest in .complete.json (else every stage refuses it as damaged)."""
    from ecgssl_nb.data import prepare as P

    P.provenance.write_digests(folder, P.OUTPUTS)
    complete = json.loads((folder / ".complete.json").read_text())
    (folder / ".complete.json").write_text(json.dumps({**complete, "digest": P.corpus_digest(folder)}))


def test_honest_protocol_never_looks_at_the_outer_fold(prepared_dir, tmp_path):
    # Same signals, outer fold 0's labels shuffled among its records.
    shuffled = tmp_path / "shuffled"
    shutil.copytree(prepared_dir, shuffled)
    index = pd.read_csv(shuffled / "index.csv", dtype=str, keep_default_na=False)
    outer = np.flatnonzero(index["fold"].astype(int).to_numpy() == 0)
    index.loc[outer, "labels"] = index.loc[np.roll(outer, 3), "labels"].to_numpy()
    index.to_csv(shuffled / "index.csv", index=False)
    reseal_prepared(shuffled)

    a = _run("t", prepared_dir, tmp_path / "a", settings=["epochs.t=3"])
    b = _run("t", shuffled, tmp_path / "b", settings=["epochs.t=3"])
    assert a["metrics"]["honest"]["epoch"] == b["metrics"]["honest"]["epoch"]
    assert a["thresholds"]["honest"] == b["thresholds"]["honest"]
    assert a["selection"]["honest"]["score"] == b["selection"]["honest"]["score"]
    pa, pb = (pd.read_csv(tmp_path / x / "predictions.csv") for x in "ab")
    inner = lambda p: p[p["role"] == "inner"].drop(columns="record").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(inner(pa), inner(pb))
    # the outer labels do change what the paper protocol reports (and may change its choices)
    assert a["metrics"]["paper"]["auroc"] != b["metrics"]["paper"]["auroc"]
    assert a["selection"]["paper"]["selected_on"] == "outer" and a["selection"]["honest"]["selected_on"] == "inner"


def test_paper_exact_protocol_trains_on_all_nine_other_folds(prepared_dir, tmp_path):
    res = _run("t", prepared_dir, tmp_path, settings=["protocol=paper-exact", "epochs.t=0"])
    assert res["data"]["train_folds"] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert set(res["metrics"]) == {"paper"} and check_result(res) == []
    assert set(pd.read_csv(tmp_path / "predictions.csv")["role"]) == {"outer"}


# --- resume ------------------------------------------------------------------------------------


def test_a_run_killed_mid_epoch_leaves_no_result_and_resumes_to_the_uninterrupted_result(
    prepared_dir, tmp_path, monkeypatch
):
    whole = _run("t", prepared_dir, tmp_path / "whole", settings=["epochs.t=2"])

    calls = {"n": 0}
    real = classify.train_step

    def dies_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # 97 training records: 4 steps of 32 per epoch (the last filled from the shuffle)
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(classify, "train_step", dies_in_epoch_two)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _run("t", prepared_dir, out, settings=["epochs.t=2"])
    assert not (out / "result.json").exists()
    assert (out / "checkpoint.pt").is_file()
    assert list(pd.read_csv(out / "log.csv")["epoch"]) == [1]
    with pytest.raises(UserError, match="different request: seed: 0 -> 1"):
        _run("t", prepared_dir, out, settings=["epochs.t=2"], seed=1, resume=True)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match=r"unfinished run \(.*checkpoint\.pt\); pass --resume .* or remove"):
        _run("t", prepared_dir, out, settings=["epochs.t=2"])  # the one rule of both stages: never silently start over
    assert (out / "checkpoint.pt").read_bytes() == before

    monkeypatch.setattr(classify, "train_step", real)
    resumed = _run("t", prepared_dir, out, settings=["epochs.t=2"], resume=True)
    for key in ("metrics", "per_class", "thresholds", "selection"):
        assert resumed[key] == whole[key], key
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in whole["history"]]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "predictions.csv"), pd.read_csv(tmp_path / "whole" / "predictions.csv")
    )
    assert not (out / "checkpoint.pt").exists()


def test_a_run_killed_while_checkpointing_leaves_no_log_row_that_the_resume_runs_again(
    prepared_dir, tmp_path, monkeypatch
):
    real = checkpoint.atomic_write

    def dies_writing_the_checkpoint(path, write):
        if path.name == "checkpoint.pt":
            raise KeyboardInterrupt("killed")
        return real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", dies_writing_the_checkpoint)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _run("t", prepared_dir, out, settings=["epochs.t=2"])
    assert not (out / "checkpoint.pt").exists() and not (out / "log.csv").exists()


# --- it learns ---------------------------------------------------------------------------------


@pytest.mark.slow  # 400 records, 3 epochs: ~54 s on a busy 2-core machine
def test_tsg_on_the_tiny_profile_learns_the_fixture_well_above_chance(tmp_path):
    # The tiny profile as `reproduce` runs it: 400 records (~40 per fold), 3 epochs of 2 crops.
    # The fixture's waveforms follow the labels; measured: macro AUROC 0.755 on fold 0 (both
    # protocols), against 0.5 for chance.
    make_fixture(tmp_path / "fixture", n_records=400, seed=0)
    prep = prepare(tmp_path / "fixture", tmp_path / "prepared", workers=2, progress=False)
    res = ft.finetune("tsg", 0, prep, tmp_path / "run", profile="tiny", progress=False)
    assert res["epochs"] == 3
    assert res["metrics"]["honest"]["auroc"] > 0.65
    assert res["metrics"]["paper"]["auroc"] > 0.65


# --- bad input ---------------------------------------------------------------------------------


def test_bad_arguments_raise_user_errors_that_name_the_parameter(prepared_dir, tmp_path):
    with pytest.raises(UserError, match="--setup"):
        _run("tsx", prepared_dir, tmp_path)
    with pytest.raises(UserError, match="--fold 10"):
        ft.finetune("t", 10, prepared_dir, tmp_path, profile=FAST, progress=False)
    with pytest.raises(UserError, match="not a prepared folder"):
        _run("t", tmp_path / "nothing", tmp_path / "o")
    with pytest.raises(UserError, match="^--set epochs.t=-1: epochs.t must be an integer >= 0, got -1$"):
        _run("t", prepared_dir, tmp_path, settings=["epochs.t=-1"])
    with pytest.raises(
        UserError, match="^--set protocol=optimistic: protocol 'optimistic' is not one of both, paper-exact$"
    ):
        _run("t", prepared_dir, tmp_path, settings=["protocol=optimistic"])
    with pytest.raises(UserError, match="^--set epochs=2: epochs takes a JSON object$"):  # a dict field: epochs.t=2
        _run("t", prepared_dir, tmp_path, settings=["epochs=2"])
    with pytest.raises(UserError, match="settings must be a list of KEY=VALUE items"):
        _run("t", prepared_dir, tmp_path, settings="epochs.t=2")
    with pytest.raises(UserError, match="--profile"):
        _run("t", prepared_dir, tmp_path, profile="huge")


def test_cli_exits_2_on_bad_input_and_runs_a_zero_epoch_evaluation(prepared_dir, tmp_path, capsys):
    assert (
        main(
            [
                "finetune",
                "--setup",
                "nope",
                "--fold",
                "0",
                "--prepared",
                str(prepared_dir),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "--setup 'nope'" in capsys.readouterr().err
    assert (
        main(
            ["finetune", "--setup", "t", "--fold", "12", "--prepared", str(prepared_dir), "--out", str(tmp_path / "x")]
        )
        == 2
    )
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
                str(tmp_path / "y"),
                "--epochs",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "t fold 0 paper  epoch 0" in capsys.readouterr().out
    assert json.loads((tmp_path / "y" / "result.json").read_text())["epochs"] == 0


def test_the_cli_turns_its_setting_options_into_one_list_of_set_items_in_which_the_options_win():
    from ecgssl_nb.stages import pretrain as pretrain_stage
    from ecgssl_nb.stages import stage

    base = ["--prepared", "p", "--out", "o", "--set", "epochs=5", "--set", "lr=1e-3"]
    a = ft._parser().parse_args(["--setup", "ssl-tsg", "--fold", "0", *base, "--epochs", "2", "--protocol",
                                 "paper-exact", "--max-steps", "3"])  # fmt: skip
    flags = {"epochs.tsg": a.epochs, "protocol": a.protocol, "max_steps": a.max_steps}
    items = stage.run_options(a, None, flags)["settings"]
    assert items == ["epochs=5", "lr=1e-3", "epochs.tsg=2", "protocol=paper-exact", "max_steps=3"]  # last wins
    a = pretrain_stage._parser().parse_args(["--modality", "time", *base, "--keep", "lowest-loss"])
    opts = stage.run_options(a, "cfg", {"batch_size": a.batch_size, "keep": a.keep, "epochs": a.epochs})
    assert opts["settings"] == ["epochs=5", "lr=1e-3", "keep=lowest-loss"] and opts["config"] == "cfg"
