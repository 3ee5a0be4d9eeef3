"""The one source of each study fact in config: the setup table, the view (augmentation) settings,
the transform sets and the threshold search settings."""

import re

import pytest

from ecgssl_nb.config import apply_settings, as_dict, config_from_dict
from ecgssl_nb.core import metrics
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.settings import (
    ABLATION_SETUPS,
    ABLATION_TRANSFORMS,
    MAIN_TRANSFORMS,
    SETUPS,
    AugmentConfig,
    PretrainConfig,
    get_profile,
    is_ssl,
    setup_family,
    setup_modalities,
)
from ecgssl_nb.core.transforms import SPEC_TRANSFORMS, TIME_TRANSFORMS


def test_setup_facts_come_from_one_table_and_match_table_ii_of_the_paper():
    assert [setup_family(s) for s in SETUPS] == ["t", "s", "tsc", "tsg"] * 2
    assert setup_modalities("ssl-t") == ("time",) and setup_modalities("s") == ("spec",)
    assert setup_modalities("tsg") == setup_modalities("ssl-tsc") == ("time", "spec")
    assert [is_ssl(s) for s in SETUPS] == [False] * 4 + [True] * 4
    with pytest.raises(UserError, match="--setup 'x' is not a setup"):
        setup_modalities("x")


def test_augment_settings_default_to_the_view_ranges_of_the_study():
    a = PretrainConfig(epochs=1, batch_size=2).augment
    assert a == AugmentConfig()
    assert (a.time_global_scale, a.time_local_scale, a.time_cutout, a.paper_time_cutout) == (
        (0.5, 1.0),
        (0.1, 0.5),
        (0.2, 0.4),
        (0.0, 0.5),
    )
    assert (a.noise_sigma, a.spec_global_scale, a.spec_local_scale, a.spec_time_cutout) == (
        (0.005, 0.025),
        (0.6, 1.0),
        (0.3, 0.6),
        (0.1, 0.35),
    )
    assert a.time_view_args() == dict(
        global_scale=(0.5, 1.0), local_scale=(0.1, 0.5), tc_mode="per_lead", tc_ratio=(0.2, 0.4), sigma=(0.005, 0.025)
    )
    assert AugmentConfig(time_cutout_mode="paper").time_view_args()["tc_ratio"] == (0.0, 0.5)
    assert a.spec_view_args() == dict(global_scale=(0.6, 1.0), local_scale=(0.3, 0.6), tc_ratio=(0.1, 0.35))


def test_augment_settings_are_reached_by_set_and_survive_a_config_file():
    pre = get_profile("tiny").pretrain["time"]
    cfg = apply_settings(pre, ["augment.noise_sigma=[0.01, 0.02]", "augment.time_cutout_mode=paper", "clip_grad=3"])
    assert cfg.augment.noise_sigma == (0.01, 0.02) and cfg.augment.time_cutout_mode == "paper"
    assert cfg.augment.time_cutout == pre.augment.time_cutout and cfg.clip_grad == 3.0
    assert config_from_dict(PretrainConfig, as_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "item, words",
    [
        ("augment.nope=1", "augment has no setting 'nope'"),
        ("augment.noise_sigma=[1]", "noise_sigma must be a pair"),
        ("augment.noise_sigma=abc", "noise_sigma takes a JSON list"),
        ("augment.time_global_scale=[0, 1]", "time_global_scale must satisfy 0.0 < lo"),
        ("augment.spec_time_cutout=[0.5, 0.2]", "spec_time_cutout must satisfy"),
        ("augment.time_cutout_mode=x", "time_cutout_mode 'x' is not one of per_lead, paper"),
        ("augment=3", "set one entry of augment at a time"),
    ],
)
def test_bad_augment_settings_raise_one_line_naming_the_item(item, words):
    with pytest.raises(UserError, match=re.escape(f"--set {item}: ")) as e:
        apply_settings(get_profile("tiny").pretrain["spec"], [item])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_config_file_with_a_bad_augment_setting_names_the_file_and_the_field():
    data = as_dict(get_profile("tiny").pretrain["time"])
    data["augment"]["noise_sigma"] = [0.1, 0.0]
    with pytest.raises(UserError, match="--config x.json: augment.*noise_sigma"):
        config_from_dict(PretrainConfig, data, "--config x.json")


def test_threshold_search_settings_default_to_the_metrics_grid():
    fin = get_profile("paper").finetune
    assert fin.threshold_grid == metrics.DEFAULT_GRID == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert fin.threshold_default == metrics.DEFAULT_THRESHOLD == 0.1


def test_every_transform_set_of_the_study_is_a_transform_set_of_its_modality():
    for modality, table in (("time", TIME_TRANSFORMS), ("spec", SPEC_TRANSFORMS)):
        assert {MAIN_TRANSFORMS[modality], *ABLATION_TRANSFORMS[modality]} == set(table)
        assert setup_modalities(ABLATION_SETUPS[modality]) == (modality,) and is_ssl(ABLATION_SETUPS[modality])
