"""Recipes: each released departure, switched on alone, changes exactly the setting and the
behaviour it names (B1 lead I everywhere, B6 fusion backbones unloaded, B7 centre divided twice,
B9 no freeze, B10 Adam + L2, B12 lowest loss, B14 nine folds, B16 frequency cutout dropped); the
crashes are refused; recipes parse, label and share folders as documented; the released recipe
runs end to end and records itself; two recipes' results are never mixed."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from ecgssl_nb.study import paths, recipes
from ecgssl_nb import provenance
from ecgssl_nb.config import as_dict
from ecgssl_nb.core import classify, dino
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.settings import FinetuneConfig, PretrainConfig, Profile
from ecgssl_nb.core.models import build_model, se_resnet34, xresnet1d50
from ecgssl_nb.core.settings import get_profile
from ecgssl_nb.data.fixture import make_fixture
from ecgssl_nb.data.prepare import load_prepared, prepare
from ecgssl_nb.stages import finetune as ft

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = get_profile("tiny")


def _flat(profile) -> dict:
    """Every setting of a profile as {dotted name: value}, without the recipe stamps."""
    d = as_dict(profile)
    out = {k: v for k, v in d.items() if k not in ("pretrain", "finetune", "recipe", "departures")}
    for m, cfg in d["pretrain"].items():
        out.update({f"pretrain.{m}.{k}": v for k, v in cfg.items()})
    out.update({f"finetune.{k}": v for k, v in d["finetune"].items()})
    return out


# --- the table and the recipe language ---------------------------------------------------------


@pytest.mark.parametrize("key", list(recipes.DEPARTURES))
def test_each_departure_alone_changes_exactly_its_own_setting(key):
    base, mine = _flat(TINY), _flat(recipes.apply_recipe(TINY, key))
    changed = {k for k in base if base[k] != mine[k]}
    expected = set()
    for setting, value in recipes.DEPARTURES[key].override:
        group, _, name = setting.rpartition(".")
        names = [f"pretrain.{m}.{name}" for m in TINY.pretrain] if group == "pretrain" else [setting]
        expected |= set(names)
        assert all(mine[n] == value for n in names)
    assert changed == expected


def test_released_recipe_has_every_departure_and_records_itself():
    prof = recipes.apply_recipe(TINY, "released")
    assert prof.recipe == "released" and prof.departures == tuple(recipes.DEPARTURES)
    assert set(prof.departures) == {"B1", "B6", "B7", "B9", "B10", "B12", "B14", "B16"}
    assert prof.leads == "lead-i" and prof.finetune.protocol == "paper-exact" and prof.finetune.fusion_ssl == "ignored"
    for cfg in prof.pretrain.values():
        assert (cfg.optimizer, cfg.keep, cfg.freeze_last_layer_epochs, cfg.center_update, cfg.freq_cutout) == (
            "adam-l2",
            "lowest-loss",
            0,
            "twice",
            "discarded",
        )
    corrected = recipes.apply_recipe(TINY, "corrected")
    assert corrected == TINY  # the default is the corrected study
    with pytest.raises(UserError, match="already carries"):
        recipes.apply_recipe(prof, "B7")


@pytest.mark.parametrize(
    "spec, keys, label",
    [
        ("corrected", (), "corrected"),
        ("B7", ("B7",), "b7"),
        ("b1, centre-twice", ("B1", "B7"), "b1+b7"),
        ("b7+b1", ("B1", "B7"), "b1+b7"),
        ("released-B7", ("B1", "B9", "B10", "B12", "B16", "B6", "B14"), "released-b7"),
    ],
)
def test_recipes_parse_and_their_labels_parse_back(spec, keys, label):
    assert recipes.parse_recipe(spec) == keys
    assert recipes.recipe_label(keys) == label
    assert recipes.parse_recipe(label) == keys


def test_crashes_and_unknown_departures_are_refused_by_name():
    with pytest.raises(UserError, match="B4 is a crash.*not reproduced"):
        recipes.parse_recipe("B4")
    with pytest.raises(UserError, match="B8 is a crash"):
        recipes.parse_recipe("B1,B8")
    with pytest.raises(UserError, match="'B99' is not a departure"):
        recipes.parse_recipe("B99")
    table = recipes.departure_table()
    assert list(table.index) == [*recipes.DEPARTURES, "B4", "B8"]
    assert (table.loc[["B4", "B8"], "setting"] == "not reproduced").all()


def test_each_expands_to_every_departure_alone_and_each_fix_to_released_minus_one():
    sets = recipes.expand_recipes(["corrected", "released", "each"])
    assert sets[0] == () and sets[1] == tuple(recipes.DEPARTURES)
    assert sets[2:] == [(k,) for k in recipes.DEPARTURES]
    fixes = recipes.expand_recipes(["each-fix"])
    assert [set(recipes.DEPARTURES) - set(s) for s in fixes] == [{k} for k in recipes.DEPARTURES]


def test_a_recipe_shares_only_the_stages_it_does_not_change():
    released = recipes.parse_recipe("released")
    assert recipes.stage_runs("R", (), "finetune") == paths.recipe_runs("R") == paths.Path("R")
    assert str(recipes.stage_runs("R", released, "finetune")) == "R/recipes/released"
    assert str(recipes.stage_runs("R", released, "prepare")) == "R/recipes/released"
    # B6 only changes fine-tuning: its pre-trainings and corpus are the corrected ones
    assert str(recipes.stage_runs("R", ("B6",), "pretrain")) == "R"
    assert str(recipes.stage_runs("R", ("B6",), "finetune")) == "R/recipes/b6"
    # B1 alone prepares the released corpus, then pre-trains its own way
    assert str(recipes.stage_runs("R", ("B1",), "prepare")) == "R/recipes/released"
    assert str(recipes.stage_runs("R", ("B1",), "pretrain")) == "R/recipes/b1"
    assert str(recipes.stage_runs("R", ("B7",), "prepare")) == "R"


# --- each departure's behaviour ----------------------------------------------------------------


def test_b1_every_prepared_lead_equals_lead_i_and_the_corpus_has_another_digest(tmp_path):
    data = make_fixture(tmp_path / "fx", n_records=24, seed=0)
    twelve = load_prepared(prepare(data, tmp_path / "twelve", workers=1, progress=False))
    lead_i = load_prepared(prepare(data, tmp_path / "lead-i", workers=1, progress=False, leads="lead-i"))
    a, b = np.asarray(twelve.signals), np.asarray(lead_i.signals)  # (T, 12)
    assert a.shape == b.shape and not np.allclose(a[:, 1], a[:, 0])
    assert np.array_equal(b, np.repeat(a[:, :1], 12, axis=1))
    assert np.allclose(lead_i.mean, lead_i.mean[0]) and np.allclose(lead_i.std, lead_i.std[0])
    assert twelve.digest != lead_i.digest
    marks = [json.loads((tmp_path / n / ".complete.json").read_text())["leads"] for n in ("twelve", "lead-i")]
    assert marks == ["twelve", "lead-i"]
    with pytest.raises(UserError, match="--leads 'lead-ii'"):
        prepare(data, tmp_path / "bad", workers=1, progress=False, leads="lead-ii")


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    pre = tmp_path_factory.mktemp("pre")
    torch.manual_seed(123)
    for modality, backbone in (("time", xresnet1d50()), ("spec", se_resnet34())):
        (pre / modality).mkdir()
        torch.save(backbone.state_dict(), pre / modality / "backbone.pt")
    return pre


def test_b6_fusion_backbones_keep_their_scratch_weights(backbones):
    seed = 7
    released = classify.build_finetune_model(
        "ssl-tsg", ft.resolve_pretrained("ssl-tsg", backbones), seed=seed, fusion_ssl="ignored"
    )
    corrected = classify.build_finetune_model("ssl-tsg", ft.resolve_pretrained("ssl-tsg", backbones), seed=seed)
    torch.manual_seed(seed)
    scratch = build_model("ssl-tsg")  # PyTorch default init, no xavier: what the released code trains
    assert all(torch.equal(v, scratch.state_dict()[k]) for k, v in released.state_dict().items())
    saved = torch.load(backbones / "time" / "backbone.pt")
    key = next(k for k in saved if k.endswith("weight") and saved[k].ndim > 1)
    assert torch.equal(corrected.time_backbone.state_dict()[key], saved[key])
    assert not torch.equal(released.time_backbone.state_dict()[key], saved[key])
    # single-modality ssl- setups load as before: B6 is about the fusion models only
    t = classify.build_finetune_model(
        "ssl-t", ft.resolve_pretrained("ssl-t", backbones), seed=seed, fusion_ssl="ignored"
    )
    assert torch.equal(t.time_backbone.state_dict()[key], saved[key])


def test_b7_centre_after_one_update_equals_the_released_value_by_hand():
    g, b, k = 2, 196, 8
    teacher = torch.full((g, b, k), 3.0)
    for update, expected in (("once", 0.1 * 3.0), ("twice", 0.1 * 3.0 / (g * b))):
        loss = dino.DINOLoss(k, n_global=g, center_update=update)
        loss.update_center(teacher)
        torch.testing.assert_close(loss.center, torch.full((1, k), expected))
    assert abs(0.1 * 3.0 / 392 - 7.653e-4) < 1e-6  # the value computed by hand for the signal batch
    with pytest.raises(UserError, match="center_update"):
        dino.DINOLoss(k, center_update="thrice")


def test_b9_released_never_freezes_the_last_layer():
    model = dino.MultiCropModel(torch.nn.Flatten(), dino.DINOHead(8, 4, hidden=8, bottleneck=4))
    for epochs, frozen in (
        (TINY.pretrain["time"].freeze_last_layer_epochs, True),
        (recipes.apply_recipe(TINY, "B9").pretrain["time"].freeze_last_layer_epochs, False),
    ):
        model(torch.randn(2, 3, 8)).sum().backward()  # (V, B, features)
        dino.cancel_last_layer_grads(model, 0, epochs)
        assert (model.head.last_layer.weight_v.grad is None) == frozen
        model.zero_grad(set_to_none=True)


def test_b10_released_optimiser_is_one_adam_group_over_every_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    kind = recipes.apply_recipe(TINY, "B10").pretrain["spec"].optimizer
    opt = dino.make_optimizer(model, kind)
    assert type(opt) is torch.optim.Adam and len(opt.param_groups) == 1
    assert len(opt.param_groups[0]["params"]) == 4  # weight, bias, BN gamma, BN beta
    assert len(dino.make_optimizer(model, TINY.pretrain["spec"].optimizer).param_groups) == 2


def test_b16_released_spectrogram_views_have_no_cut_frequency_row():
    class Fake:  # what make_views needs of a corpus (windows.Corpus.random_windows): raw windows
        def random_windows(self, rec, n, gen, length=250, checked=False):
            return torch.randn(len(rec), 12, length, generator=gen)

    rec = torch.arange(4)
    args = (Fake(), rec, "spec", None, None, "fc", 2, 0)
    kept = dino.make_views(*args, torch.Generator().manual_seed(0))  # (V, B, 12, 13, 21)
    dropped = dino.make_views(*args, torch.Generator().manual_seed(0), released_fc=True)
    zero_rows = lambda v: int((v == 0).all(dim=-1).sum())  # noqa: E731 (whole frequency rows set to 0)
    assert zero_rows(kept) == 2 * 4 * 12  # one row per view, record and channel
    assert zero_rows(dropped) == 0


# --- end to end ---------------------------------------------------------------------------------


def _quick():
    """The tiny profile shrunk to seconds: one pre-training epoch, one fine-tuning epoch."""
    return replace(
        TINY,
        pretrain={m: replace(c, epochs=1, batch_size=16) for m, c in TINY.pretrain.items()},
        finetune=replace(TINY.finetune, crops=1, epochs={f: 1 for f in ("t", "s", "tsc", "tsg")}),
    )


@pytest.mark.slow
def test_released_recipe_runs_end_to_end_records_itself_and_compares_with_corrected(tmp_path):
    from ecgssl_nb.study.reproduce import reproduce

    data = make_fixture(tmp_path / "fx", n_records=100, seed=0)
    kw = dict(data_dir=data, out=tmp_path / "runs", folds="0", setups="ssl-t", ablation=False, progress=False)
    reproduce(_quick(), **kw)
    root = reproduce(_quick(), recipe="released", **kw)
    assert root == tmp_path / "runs/recipes/released/tiny"
    res = json.loads((root / "finetune/ssl-t/fold0/result.json").read_text())
    assert res["recipe"] == {"name": "released", "departures": list(recipes.DEPARTURES)}
    assert set(res["metrics"]) == {"paper"} and len(res["data"]["train_folds"]) == 9  # B14
    assert res["config"]["fusion_ssl"] == "ignored" and res["config"]["protocol"] == "paper-exact"
    summary = json.loads((root / "pretrain/time/summary.json").read_text())
    assert summary["config"]["center_update"] == "twice" and summary["config"]["optimizer"] == "adam-l2"
    assert json.loads((root / "prepared/.complete.json").read_text())["leads"] == "lead-i"
    assert json.loads((root / "manifest.json").read_text())["recipe"] == "released"
    corrected = json.loads((tmp_path / "runs/tiny/finetune/ssl-t/fold0/result.json").read_text())
    assert corrected["recipe"]["name"] == "corrected" and set(corrected["metrics"]) == {"paper", "honest"}

    cmp = recipes.compare_recipes(tmp_path / "runs", "tiny", ["released"], n_boot=200)
    assert set(cmp["metric"]) == {"auroc", "auprc", "challenge"} and (cmp["protocol"] == "paper").all()
    row = cmp[cmp["metric"] == "auroc"].iloc[0]
    assert row["difference"] == pytest.approx(
        100 * (res["metrics"]["paper"]["auroc"] - corrected["metrics"]["honest"]["auroc"])
    )
    assert list(recipes.departure_effects(cmp).index) == ["released"]

    # a result of another recipe in the released folder is refused, not mixed in
    res["recipe"] = {"name": "corrected", "departures": []}
    (root / "finetune/ssl-t/fold0/result.json").write_text(json.dumps(res))
    provenance.write_digests(root / "finetune/ssl-t/fold0", ("result.json", "predictions.csv"))  # as if it ran so
    with pytest.raises(UserError, match="mixed"):
        recipes.load_recipe_results(tmp_path / "runs", "tiny", "released")


def test_only_the_setups_a_departure_changes_are_rerun():
    from ecgssl_nb.core.settings import SETUPS

    assert recipes.affected_setups(("B7",), SETUPS) == ("ssl-t", "ssl-s", "ssl-tsc", "ssl-tsg")
    assert recipes.affected_setups(("B6",), SETUPS) == ("ssl-tsc", "ssl-tsg")
    assert recipes.affected_setups(("B1",), SETUPS) == SETUPS
    assert recipes.affected_setups(("B14",), ("t", "ssl-t")) == ("t", "ssl-t")
    assert recipes.affected_setups(recipes.parse_recipe("released"), SETUPS) == SETUPS


def test_reproduce_command_runs_each_recipe_with_only_its_changed_setups_and_no_second_ablation(monkeypatch, tmp_path):
    from ecgssl_nb.study import reproduce as rp
    from ecgssl_nb.__main__ import main

    calls = []
    monkeypatch.setattr(rp, "reproduce", lambda profile, **k: calls.append(k) or tmp_path)
    assert (
        main(
            [
                "reproduce",
                "--out",
                str(tmp_path),
                "--recipe",
                "corrected",
                "--recipe",
                "released",
                "--recipe",
                "each",
                "--no-progress",
            ]
        )
        == 0
    )
    got = [(recipes.recipe_label(c["recipe"]), c["setups"], c["ablation"]) for c in calls]
    assert got[0] == ("corrected", rp.SETUPS, True)
    assert got[1] == ("released", rp.SETUPS, False)
    assert [g[0] for g in got[2:]] == [k.lower() for k in recipes.DEPARTURES]
    by = {g[0]: g for g in got}
    assert by["b7"][1] == ("ssl-t", "ssl-s", "ssl-tsc", "ssl-tsg") and by["b6"][1] == ("ssl-tsc", "ssl-tsg")
    assert not any(g[2] for g in got[1:])


def test_every_override_names_an_existing_setting():
    names = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "": Profile}
    names = {group: {f.name for f in fields(cls)} for group, cls in names.items()}
    for d in recipes.DEPARTURES.values():
        for setting, _ in d.override:
            group, _, name = setting.rpartition(".")
            assert name in names[group], f"{d.key}: {setting} is not a setting"
