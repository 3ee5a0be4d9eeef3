"""Backbones, heads and the eight classifiers (paper Sec. II-B, II-C;
book: Deviations, B6, B20, B21).

Parameter counts are those of the authors' released models (counted by running them) or are
worked out by hand in the comments.
Inputs are tiny (B <= 3) so the whole file runs in a few seconds on one CPU thread.
"""

import math

import pytest
import torch

from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.models import (
    ClassifierHead,
    ECGNet,
    build_model,
    init_xavier,
    load_backbone,
    make_backbone,
    se_resnet34,
    xresnet1d50,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def nets():
    """One classifier per setup family, built once (SE-ResNet34 is 21 M parameters)."""
    torch.manual_seed(0)
    return {s: build_model(s) for s in ("t", "s", "tsc", "tsg")}


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


XRESNET_POINTS = ("stem.0", "stem.2", "stem.3", "stages.0", "stages.1", "stages.2", "stages.3", "pool")
SERESNET_POINTS = ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


def trace_shapes(module: torch.nn.Module, x: torch.Tensor, names) -> dict:
    """{submodule name: output shape} of `module(x)` for the submodules `names`, in call order."""
    subs = dict(module.named_modules())
    shapes = {}

    def recorder(name):
        def hook(_module, _inputs, out) -> None:  # returning None keeps the output unchanged
            shapes.setdefault(name, tuple(out.shape))

        return hook

    hooks = [subs[n].register_forward_hook(recorder(n)) for n in names]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def inputs(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 12, 250, generator=g), torch.randn(b, 12, 13, 21, generator=g)


# ------------------------------------------------------------------ parameter counts


def test_xresnet1d50_has_886432_parameters_split_as_worked_out_by_hand():
    m = xresnet1d50()
    assert count_parameters(m) == 886_432
    # stem: conv 12->32 k5 with bias (1920 + 32) + BN 64, conv 32->32 k5 5120 + 64, conv 32->64 k5 10240 + 128
    assert count_parameters(m.stem) == 17_568
    # first block: 1x1 64->64, k5 64->64, 1x1 64->256 (+ BNs) and the 1x1 64->256 + BN shortcut
    assert count_parameters(m.stages[0][0]) == 4096 + 128 + 20480 + 128 + 16384 + 512 + 16384 + 512
    # every other block (15 of them): 1x1 256->64, k5, 1x1 64->256; shortcut has no parameters
    for stage in m.stages:
        for block in list(stage)[1 if stage is m.stages[0] else 0 :]:
            assert count_parameters(block) == 54_016
            assert count_parameters(block.shortcut) == 0
    assert m.feature_dim == 512


def test_se_resnet34_has_21470144_parameters():
    m = se_resnet34()
    assert count_parameters(m) == 21_470_144
    assert count_parameters(m.conv1) == 12 * 64 * 49 + 64  # the stem conv has a bias
    assert count_parameters(m.layer1[0].se) == 2 * 64 * (64 // 16)  # two bias-free linears, 64 -> 4 -> 64
    assert count_parameters(m.layer2[0].downsample) == 64 * 128 + 2 * 128  # 1x1 conv, no bias, + BN
    assert m.layer2[1].downsample is None and m.layer1[0].downsample is None
    assert m.feature_dim == 512


def test_heads_have_the_released_parameter_counts():
    assert count_parameters(ClassifierHead(512)) == 137_496  # 512*256+256 + 256*24+24
    assert count_parameters(ClassifierHead(1024)) == 1024 * 512 + 512 + 512 * 24 + 24
    assert ClassifierHead(1024).fc1.out_features == 512


@pytest.mark.parametrize("setup,total", [("t", 1_023_928), ("s", 21_607_640), ("tsc", 22_893_688), ("tsg", 22_895_738)])
def test_classifier_totals_match_spec(nets, setup, total):
    assert count_parameters(nets[setup]) == total


def test_count_parameters_can_skip_frozen_ones(nets):
    m = nets["t"]
    m.head.requires_grad_(False)
    try:
        assert count_parameters(m, trainable_only=True) == 1_023_928 - 137_496
    finally:
        m.head.requires_grad_(True)


# ------------------------------------------------------------------ shapes


def test_xresnet1d50_intermediate_shapes_follow_spec():
    x, _ = inputs(2)
    assert trace_shapes(xresnet1d50(), x, XRESNET_POINTS) == {
        "stem.0": (2, 32, 125),
        "stem.2": (2, 64, 125),
        "stem.3": (2, 64, 63),
        "stages.0": (2, 256, 63),
        "stages.1": (2, 256, 32),
        "stages.2": (2, 256, 16),
        "stages.3": (2, 256, 8),
        "pool": (2, 512),
    }


def test_se_resnet34_intermediate_shapes_follow_spec(nets):
    _, s = inputs(2)
    assert trace_shapes(nets["s"].spec_backbone, s, SERESNET_POINTS) == {
        "conv1": (2, 64, 7, 11),
        "maxpool": (2, 64, 4, 6),
        "layer1": (2, 64, 4, 6),
        "layer2": (2, 128, 2, 3),
        "layer3": (2, 256, 1, 2),
        "layer4": (2, 512, 1, 1),
        "avgpool": (2, 512, 1, 1),
    }


@pytest.mark.parametrize("setup", ["t", "s", "tsc", "tsg"])
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("train", [True, False])
def test_logits_are_batch_by_24_for_one_and_three_windows(nets, setup, b, train):
    m = nets[setup].train(train)
    x, s = inputs(b)
    if train and b == 1 and m.uses_spec:
        with pytest.raises(UserError, match="batch of 1"):  # BatchNorm on 1x1 maps: see next test
            m(x, s)
        return
    with torch.no_grad():
        logits, gate = m(x, s, return_gate=True)
    assert logits.shape == (b, 24)
    assert torch.isfinite(logits).all()
    assert (gate is None) == (setup != "tsg")
    if gate is not None:
        assert gate.shape == (b, 2)
    m.eval()


def test_batch_of_one_trains_through_time_backbone_but_spec_raises_clearly(nets):
    x, s = inputs(1)
    m = nets["t"].train()
    assert m(x).shape == (1, 24)  # flatten(1), not squeeze() (B21)
    m = nets["tsg"].train()
    with pytest.raises(UserError, match="batch of 1"):
        m(x, s)
    m.eval()


def test_missing_or_malformed_inputs_raise_naming_the_argument(nets):
    x, s = inputs(2)
    with pytest.raises(UserError, match="x_time"):
        nets["t"](x_spec=s)
    with pytest.raises(UserError, match="x_spec"):
        nets["tsg"](x_time=x)
    with pytest.raises(UserError, match="x_time"):
        nets["t"](x[:, 0])  # (B, 250): lead axis missing
    with pytest.raises(UserError, match="batch sizes"):
        nets["tsc"].eval()(x, s[:1])


def test_single_modality_setups_ignore_the_other_input(nets):
    x, s = inputs(2)
    m = nets["t"].eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x, s))


# ------------------------------------------------------------------ heads and fusion


def test_head_is_two_linears_with_no_nonlinearity_between():
    head = ClassifierHead(512)
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(2, 512, generator=g), torch.randn(2, 512, generator=g)
    zero = head(torch.zeros(1, 512))
    with torch.no_grad():
        # an affine map: h(a u + b v) - h(0) = a (h(u) - h(0)) + b (h(v) - h(0)), even for negative a
        lhs = head(-3.0 * u + 2.0 * v) - zero
        rhs = -3.0 * (head(u) - zero) + 2.0 * (head(v) - zero)
    torch.testing.assert_close(lhs, rhs, atol=1e-4, rtol=1e-4)


def test_tsc_is_the_head_applied_to_concatenated_features(nets):
    m = nets["tsc"].eval()
    x, s = inputs(3)
    with torch.no_grad():
        f = torch.cat([m.time_backbone(x), m.spec_backbone(s)], dim=1)
        torch.testing.assert_close(m(x, s), m.head(f))


def test_tsg_scales_each_modality_by_its_softmax_gate(nets):
    m = nets["tsg"].eval()
    x, s = inputs(3)
    with torch.no_grad():
        f1, f2 = m.time_backbone(x), m.spec_backbone(s)
        w = torch.softmax(m.gate(torch.cat([f1, f2], 1)), 1)
        expected = m.head(torch.cat([w[:, :1] * f1, w[:, 1:] * f2], 1))
        logits, gate = m(x, s, return_gate=True)
    torch.testing.assert_close(gate, w)
    torch.testing.assert_close(logits, expected)
    assert (gate > 0).all()
    torch.testing.assert_close(gate.sum(1), torch.ones(3))


def test_tsg_output_and_gate_change_when_only_one_modality_changes(nets):
    m = nets["tsg"].eval()
    x, s = inputs(2)
    _, s2 = inputs(2, seed=7)
    with torch.no_grad():
        a, ga = m(x, s, return_gate=True)
        b, gb = m(x, s2, return_gate=True)
    assert not torch.allclose(a, b)
    assert not torch.allclose(ga, gb)


def test_gradients_reach_both_backbones_and_the_gate_in_tsg(nets):
    m = nets["tsg"].train()
    x, s = inputs(3)
    m.zero_grad(set_to_none=True)
    m(x, s).square().mean().backward()
    last_block = m.time_backbone.stages[3][2]
    for p in (
        m.time_backbone.stem[0].conv.weight,
        last_block.convs[2].bn.weight,
        m.spec_backbone.conv1.weight,
        m.spec_backbone.layer4[2].conv2.weight,
        m.gate.weight,
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # zero-gamma: at init the residual branch is cut off below its last BN, so its convs get none
    assert last_block.convs[0].conv.weight.grad.abs().sum() == 0
    m.zero_grad(set_to_none=True)
    m.eval()


# ------------------------------------------------------------------ setups


def test_build_model_accepts_ssl_names_and_wires_the_right_parts():
    m = build_model("ssl-t")
    assert isinstance(m, ECGNet) and m.setup == "ssl-t" and m.family == "t"
    assert m.spec_backbone is None and m.gate is None and m.time_backbone.feature_dim == 512
    assert m.head.fc1.in_features == 512 and m.head.fc1.out_features == 256


def test_build_model_rejects_unknown_setups_and_bad_class_counts():
    with pytest.raises(UserError, match="'tg'"):
        build_model("tg")
    with pytest.raises(UserError, match="n_classes"):
        ECGNet("t", n_classes=0)
    assert ECGNet("t", n_classes=5).eval()(inputs(2)[0]).shape == (2, 5)


def test_make_backbone_by_modality():
    assert make_backbone("time").cfg.layers == (3, 4, 6, 3)
    with pytest.raises(UserError, match="modality"):
        make_backbone("image")


def test_backbones_take_other_lead_counts_and_reject_nonsense():
    assert xresnet1d50(in_channels=1)(torch.randn(2, 1, 250)).shape == (2, 512)
    with pytest.raises(UserError, match="in_channels"):
        xresnet1d50(in_channels=0)
    with pytest.raises(UserError, match="in_channels"):
        se_resnet34(in_channels=-1)


# ------------------------------------------------------------------ initialisation


def test_xresnet_blocks_start_as_identity_thanks_to_zero_gamma():
    m = xresnet1d50()
    for stage in m.stages:
        for block in stage:
            assert torch.all(block.convs[2].bn.weight == 0)
            assert torch.all(block.convs[0].bn.weight == 1)
    block = m.stages[1][1]  # stride 1, 256 -> 256: identity shortcut
    x = torch.randn(2, 256, 16)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_xresnet_default_init_is_kaiming_with_zero_biases_except_released_stem_conv():
    torch.manual_seed(3)
    m = xresnet1d50()
    w = m.stages[0][1].convs[1].conv.weight  # 64 -> 64, k5: fan_in 320, 20,480 values
    assert abs(w.std().item() / math.sqrt(2 / 320) - 1) < 0.05
    first = m.stem[0].conv
    bound = 1 / math.sqrt(12 * 5)  # PyTorch's default uniform bound for that bias
    assert first.bias.abs().max() <= bound and first.bias.abs().sum() > 0
    assert all(c.bias is None for c in m.modules() if isinstance(c, torch.nn.Conv1d) and c is not first)


def test_init_xavier_follows_the_released_scratch_init():
    m = xresnet1d50()
    head = ClassifierHead(512)
    head_bias = head.fc1.bias.clone()
    g = torch.Generator().manual_seed(0)
    init_xavier(m, generator=g)
    init_xavier(head, generator=g)
    gammas = torch.cat([b.weight for b in m.modules() if isinstance(b, torch.nn.BatchNorm1d)])
    betas = torch.cat([b.bias for b in m.modules() if isinstance(b, torch.nn.BatchNorm1d)])
    assert abs(gammas.mean().item() - 1) < 0.002 and 0.018 < gammas.std().item() < 0.022
    assert torch.all(betas == 0)
    assert torch.all(m.stages[0][0].convs[2].bn.weight != 0)  # zero-gamma undone
    w = m.stages[0][1].convs[1].conv.weight  # xavier: std sqrt(2 / (320 + 320))
    assert abs(w.std().item() / math.sqrt(2 / 640) - 1) < 0.05
    # conv biases ~ N(0, 1): the only ones are the stem convs' (32 here, 64 more in SE-ResNet34)
    spec = init_xavier(se_resnet34().conv1, generator=g)
    biases = torch.cat([m.stem[0].conv.bias, spec.bias])
    assert 0.7 < biases.std().item() < 1.3
    w = head.fc1.weight  # xavier: std sqrt(2 / (512 + 256))
    assert abs(w.std().item() / math.sqrt(2 / 768) - 1) < 0.05
    torch.testing.assert_close(head.fc1.bias, head_bias)  # Linear biases untouched


def test_init_xavier_is_reproducible_with_a_generator():
    a, b = xresnet1d50(), xresnet1d50()
    init_xavier(a, generator=torch.Generator().manual_seed(5))
    init_xavier(b, generator=torch.Generator().manual_seed(5))
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=k)


# ------------------------------------------------------------------ loading weights (B6)


def _trained_pair():
    """Two xresnets with different weights (and BN statistics), both in eval mode."""
    torch.manual_seed(10)
    a = init_xavier(xresnet1d50(), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        a.train()(torch.randn(4, 12, 250))  # move the BN running statistics away from defaults
    return a.eval(), xresnet1d50().eval()


def test_load_backbone_round_trips_a_state_dict():
    a, b = _trained_pair()
    x = inputs(2)[0]
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
        n = load_backbone(b, a.state_dict())
        torch.testing.assert_close(a(x), b(x))
    assert n == len(a.state_dict())  # every tensor, buffers included


def test_load_backbone_reads_a_file_and_strips_ddp_and_wrapper_prefixes(tmp_path, caplog):
    a, b = _trained_pair()
    path = tmp_path / "backbone.pt"
    torch.save({f"module.backbone.{k}": v for k, v in a.state_dict().items()}, path)
    with caplog.at_level("INFO", logger="ecgssl_nb.core.models"):
        n = load_backbone(b, path)
    assert n == len(a.state_dict())
    assert f"loaded {n} of {n} tensors" in caplog.text
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v)


def _edited(state, drop=None, add=None, reshape=None):
    state = dict(state)
    if drop:
        del state[drop]
    if add:
        state[add] = torch.zeros(3)
    if reshape:
        state[reshape] = torch.zeros(7)
    return state


@pytest.mark.parametrize(
    "edit,needle",
    [
        ({"drop": "stem.1.conv.weight"}, "1 missing keys (stem.1.conv.weight)"),
        ({"add": "head.fc.weight"}, "1 unexpected keys (head.fc.weight)"),
        ({"reshape": "stem.0.conv.bias"}, "stem.0.conv.bias: (7,) vs (32,) expected"),
    ],
)
def test_load_backbone_refuses_partial_loads_and_loads_nothing(edit, needle):
    a, b = _trained_pair()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(UserError) as err:
        load_backbone(b, _edited(a.state_dict(), **edit))
    assert needle in str(err.value)
    for k, v in b.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_load_backbone_reports_an_unknown_prefix_instead_of_loading_zero_keys():
    a, b = _trained_pair()
    n = len(a.state_dict())
    renamed = {f"features.{k}": v for k, v in a.state_dict().items()}  # what B6 silently ignored
    with pytest.raises(UserError, match=f"{n} missing keys .stem.*{n} unexpected keys .features.stem") as err:
        load_backbone(b, renamed)
    assert "every key starts with 'features.'" in str(err.value)


def test_load_backbone_rejects_missing_files_and_non_state_dicts(tmp_path):
    b = xresnet1d50()
    with pytest.raises(UserError, match="does not exist"):
        load_backbone(b, tmp_path / "nope.pt")
    with pytest.raises(UserError, match="state_dict"):
        load_backbone(b, {"epoch": 3})
