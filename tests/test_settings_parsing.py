"""Settings read back from JSON and from `--set` text: validated by pydantic against the field
types (strictly: a config file's "3" is not an integer), with the same one-line errors as before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ecgssl_nb.config import apply_settings, as_dict, config_from_dict
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.settings import AugmentConfig, FinetuneConfig, PretrainConfig, get_profile


def _configs(profile: str) -> list:
    prof = get_profile(profile)
    return [*prof.pretrain.values(), prof.finetune]


@pytest.mark.parametrize("profile", ["tiny", "paper", "samples"])
def test_every_profiles_configs_survive_the_json_round_trip_with_their_tuples_and_nested_settings(profile):
    for cfg in _configs(profile):
        back = config_from_dict(type(cfg), json.loads(json.dumps(as_dict(cfg))), "--config x.json")
        assert back == cfg and type(back) is type(cfg)
        for f in ("augment", "threshold_grid", "ablation_folds"):
            assert type(getattr(back, f, None)) is type(getattr(cfg, f, None))  # tuples, not lists
    pre = get_profile(profile).pretrain["time"]
    assert isinstance(config_from_dict(PretrainConfig, as_dict(pre)).augment.noise_sigma, tuple)


@pytest.mark.parametrize(
    "cls, key, value, words",
    [
        (PretrainConfig, "epochs", "3", "epochs takes an integer, got '3'"),
        (PretrainConfig, "epochs", True, "epochs takes an integer, got True"),
        (PretrainConfig, "epochs", 3.0, "epochs takes an integer, got 3.0"),
        (PretrainConfig, "base_lr", True, "base_lr takes a float, got True"),
        (PretrainConfig, "base_lr", "1e-3", "base_lr takes a float, got '1e-3'"),
        (PretrainConfig, "optimizer", 3, "optimizer takes text, got 3"),
        (PretrainConfig, "amp", 1, "amp takes true or false, got 1"),
        (PretrainConfig, "augment", 3, "augment takes a JSON object of AugmentConfig settings, got 3"),
        (FinetuneConfig, "ablation_folds", "0", "ablation_folds takes a JSON list, got '0'"),
        (FinetuneConfig, "epochs", [3], "epochs takes a JSON object, got [3]"),
    ],
)
def test_a_config_file_value_of_the_wrong_json_type_is_refused_strictly_on_one_line(cls, key, value, words):
    cfg = get_profile("tiny").finetune if cls is FinetuneConfig else get_profile("tiny").pretrain["time"]
    with pytest.raises(UserError) as e:
        config_from_dict(cls, {**as_dict(cfg), key: value}, "--config x.json")
    assert str(e.value) == f"--config x.json: {words}"


def test_a_config_file_names_a_missing_field_and_a_wrong_type_inside_the_nested_view_settings():
    data = as_dict(get_profile("tiny").pretrain["time"])
    with pytest.raises(UserError, match=r"^--config x\.json: epochs is missing \(a PretrainConfig setting"):
        config_from_dict(PretrainConfig, {k: v for k, v in data.items() if k != "epochs"}, "--config x.json")
    data["augment"]["time_cutout_mode"] = 1
    with pytest.raises(UserError) as e:
        config_from_dict(PretrainConfig, data, "--config x.json")
    assert str(e.value) == "--config x.json: augment: time_cutout_mode takes text, got 1"


def test_set_text_is_read_by_the_field_type_nones_bools_and_json_lists():
    fin = apply_settings(get_profile("tiny").finetune, ["ablation_folds=[1, 0]", "amp=No", "lr=2e-3"])
    assert fin.ablation_folds == (1, 0) and fin.amp is False and fin.lr == 2e-3
    assert apply_settings(fin, ["ablation_folds=NULL"]).ablation_folds is None
    aug = apply_settings(get_profile("tiny").pretrain["spec"], ["augment.noise_sigma=[0, 0.1]"]).augment
    assert aug == AugmentConfig(noise_sigma=(0, 0.1)) and isinstance(aug.noise_sigma, tuple)
    for item, words in (
        ("ablation_folds=0", "ablation_folds takes a JSON list (or none)"),
        ("lr=inf", "lr takes a float"),
        ("crops=3.5", "crops takes an integer"),
        ("epochs.t=x", "epochs.t takes an integer"),
    ):
        with pytest.raises(UserError) as e:
            apply_settings(fin, [item])
        assert str(e.value) == f"--set {item}: {words}"


def test_importing_the_settings_does_not_import_pydantic():
    # pydantic costs about 30 ms at import; the commands' --help and the science need none of it
    code = "import sys, ecgssl_nb.config; sys.exit('pydantic' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_an_entry_item_after_a_whole_field_item_blames_the_whole_one():
    # the finetune CLI puts its --epochs after the --set items: `--set epochs={} --epochs 0`
    cfg = get_profile("tiny").finetune
    with pytest.raises(UserError, match=r"^--set epochs=\{\}: epochs must have exactly the entries t, s, tsc, tsg"):
        apply_settings(cfg, ["epochs={}", "epochs.t=0"])
    assert apply_settings(cfg, ['epochs={"t": 1, "s": 1, "tsc": 1, "tsg": 1}', "epochs.t=2"]).epochs["t"] == 2
    with pytest.raises(UserError, match="^--set epochs.x=1: epochs has no entry 'x' \\(entries: t, s, tsc, tsg\\)$"):
        apply_settings(cfg, ["epochs.x=1"])
    # an entry of a setting that is not a table: one line, not a TypeError from dict(1e-3)
    with pytest.raises(UserError, match="^--set lr.x=1: lr has no entry 'x'$"):
        apply_settings(cfg, ["lr.x=1"])
