"""DINO self-distillation: head, loss, centre, EMA teacher, schedules, optimiser, and the
pre-training loop on the synthetic fixture (resume, no collapse, files, bad arguments)."""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from ecgssl_nb.core import dino
from ecgssl_nb.core.dino import DINOHead, DINOLoss, MultiCropModel
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.schedules import cosine_schedule, momentum_schedule, teacher_temp_schedule
from ecgssl_nb.stages import pretrain as pretrain_stage

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small_model(out_dim: int = 16, seed: int = 0) -> MultiCropModel:
    """A stand-in backbone (conv + BN, (N, 12, 250) -> (N, 8)) so the DINO machinery runs in
    milliseconds; the real backbones are exercised by the pre-training tests below."""
    torch.manual_seed(seed)
    backbone = nn.Sequential(
        nn.Conv1d(12, 8, 5, stride=5), nn.BatchNorm1d(8), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten()
    )
    return MultiCropModel(backbone, DINOHead(8, out_dim, hidden=16, bottleneck=4))


# --- head --------------------------------------------------------------------------------------


def test_dino_head_has_the_released_parameter_counts_and_frozen_unit_row_norms():
    head = DINOHead(512, 65536)
    total = sum(p.numel() for p in head.parameters())
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    assert (total, trainable) == (9_045_120, 8_979_584)  # the released DINO model's counts
    assert not head.last_layer.weight_g.requires_grad
    norms = head.last_layer.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(65536))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in head.modules())
    assert sum(isinstance(m, nn.GELU) for m in head.modules()) == 2


def test_dino_head_mlp_is_trunc_normal_002_with_zero_biases():
    torch.manual_seed(0)
    head = DINOHead(512, 64)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 128)]
    for m in linears:
        assert torch.count_nonzero(m.bias) == 0
        assert abs(m.weight.std().item() - 0.02) < 0.002


def test_head_output_is_the_unit_embedding_times_unit_rows():
    head = DINOHead(8, 6, hidden=16, bottleneck=4)
    x = torch.randn(5, 8)
    out, z = head(x, return_embedding=True)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    v = head.last_layer.weight_v.detach()
    torch.testing.assert_close(out, z @ (v / v.norm(dim=1, keepdim=True)).T)


def test_weight_norm_gradient_is_orthogonal_to_each_row():
    # W = V/||V||: scaling a row of V changes nothing, so dL/dV is orthogonal to V row by row.
    head = DINOHead(8, 6, hidden=16, bottleneck=4)
    head(torch.randn(7, 8)).pow(2).sum().backward()
    v, g = head.last_layer.weight_v, head.last_layer.weight_v.grad
    assert g.abs().sum() > 0
    cosine = (v * g).sum(dim=1) / (v.norm(dim=1) * g.norm(dim=1))
    torch.testing.assert_close(cosine, torch.zeros(6), atol=1e-5, rtol=0)


def test_multicrop_model_runs_all_views_in_one_forward_pass():
    model = small_model().eval()
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    views = torch.randn(10, 3, 12, 250)  # (V, B, 12, 250)
    out = model(views)
    assert out.shape == (10, 3, 16) and calls == [(30, 12, 250)]
    torch.testing.assert_close(out[7], model(views[7:8])[0])  # view-major order is kept


# --- loss and centre ---------------------------------------------------------------------------


def numpy_dino_loss(s, t, c, tau_s, tau_t, n_global):
    """The loss written out: loops over pairs, records and classes."""

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    terms = []
    for q in range(n_global):
        for v in range(s.shape[0]):
            if v == q:
                continue
            per_record = []
            for b in range(s.shape[1]):
                p = softmax((t[q, b] - c) / tau_t)
                log_s = np.log(softmax(s[v, b] / tau_s))
                per_record.append(-sum(p[k] * log_s[k] for k in range(len(p))))
            terms.append(np.mean(per_record))
    return np.mean(terms), len(terms)


def test_loss_equals_a_hand_computation_over_the_18_pairs():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(10, 3, 5))  # 2 global + 8 local student views, B = 3, K = 5
    t = rng.normal(size=(2, 3, 5))
    c = rng.normal(size=5) * 0.3
    loss_fn = DINOLoss(5, n_global=2, teacher_temp=0.5, student_temp=0.2)
    loss_fn.center.copy_(torch.tensor(c, dtype=torch.float32)[None])
    got = loss_fn(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), update_center=False)
    want, pairs = numpy_dino_loss(s, t, c, 0.2, 0.5, 2)
    assert pairs == 18
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_teacher_temperature_is_read_at_the_zero_based_epoch():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(4, 2, 6)), rng.normal(size=(2, 2, 6))
    loss_fn = DINOLoss(6, teacher_temp=[0.9, 0.3, 0.1], student_temp=0.1)
    got = loss_fn(
        torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), epoch=1, update_center=False
    )
    assert got.item() == pytest.approx(numpy_dino_loss(s, t, np.zeros(6), 0.1, 0.3, 2)[0], rel=1e-5)
    with pytest.raises(ValueError, match="epoch 3"):
        loss_fn(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), epoch=3)


def test_loss_has_no_gradient_through_the_teacher():
    s = torch.randn(4, 2, 6, requires_grad=True)
    t = torch.randn(2, 2, 6, requires_grad=True)
    DINOLoss(6)(s, t).backward()
    assert s.grad is not None and t.grad is None


def test_centre_is_the_ema_of_the_batch_mean_divided_once():
    loss_fn = DINOLoss(4, center_momentum=0.9)
    loss_fn.update_center(torch.full((2, 196, 4), 3.0))
    # B7: the released code gives 7.65e-4 here (a second division by 2B); the intended value:
    torch.testing.assert_close(loss_fn.center, torch.full((1, 4), 0.3))
    t = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)  # row mean = [10, 11, 12, 13]
    loss_fn.update_center(t)
    torch.testing.assert_close(loss_fn.center, 0.9 * 0.3 + 0.1 * torch.tensor([[10.0, 11.0, 12.0, 13.0]]))


def test_forward_uses_the_old_centre_then_updates_it():
    s, t = torch.randn(4, 2, 6), torch.randn(2, 2, 6) + 5
    loss_fn = DINOLoss(6)
    before = loss_fn(s, t, update_center=False)
    after_first = loss_fn(s, t)
    assert after_first.item() == pytest.approx(before.item())
    torch.testing.assert_close(loss_fn.center, 0.1 * t.mean(dim=(0, 1))[None])


def test_teacher_entropy_is_log_k_for_equal_logits():
    loss_fn = DINOLoss(8)
    loss_fn(torch.randn(4, 3, 8), torch.zeros(2, 3, 8))
    assert loss_fn.last_teacher_entropy.item() == pytest.approx(math.log(8), rel=1e-6)


# --- one training step -------------------------------------------------------------------------


def step_setup(optimizer="adamw"):
    student = small_model()
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    loss_fn = DINOLoss(16, teacher_temp=0.04)
    return student, teacher, loss_fn, dino.make_optimizer(student, optimizer)


def test_teacher_gets_no_gradient_and_moves_only_by_the_ema_formula():
    student, teacher, loss_fn, opt = step_setup()
    t0 = [p.clone() for p in teacher.parameters()]
    views = torch.randn(10, 4, 12, 250, generator=torch.Generator().manual_seed(0))
    dino.train_step(student, teacher, loss_fn, opt, views, epoch=1, lr=1e-2, weight_decay=0.04, momentum=0.9)
    for p_t, p0, p_s in zip(teacher.parameters(), t0, student.parameters()):
        assert p_t.grad is None and not p_t.requires_grad
        torch.testing.assert_close(p_t, 0.9 * p0 + 0.1 * p_s.detach())
    moved = sum(not torch.equal(p, p0) for p, p0 in zip(teacher.parameters(), t0))
    assert moved > 0


def test_last_layer_is_frozen_in_epoch_0_and_trained_in_epoch_1():
    student, teacher, loss_fn, opt = step_setup()
    views = torch.randn(10, 4, 12, 250, generator=torch.Generator().manual_seed(0))
    v0 = student.head.last_layer.weight_v.detach().clone()
    mlp0 = student.head.mlp[0].weight.detach().clone()
    dino.train_step(student, teacher, loss_fn, opt, views, epoch=0, lr=1e-2, weight_decay=0.04, momentum=0.99)
    assert torch.equal(student.head.last_layer.weight_v, v0)  # not even decayed
    assert not torch.equal(student.head.mlp[0].weight, mlp0)  # the rest trains
    dino.train_step(student, teacher, loss_fn, opt, views, epoch=1, lr=1e-2, weight_decay=0.04, momentum=0.99)
    assert not torch.equal(student.head.last_layer.weight_v, v0)


def test_adamw_decays_weights_but_not_biases_or_norms():
    student, _, _, opt = step_setup("adamw")
    decay_ids = {id(p) for p in opt.param_groups[0]["params"]}
    names = {n for n, p in student.named_parameters() if id(p) in decay_ids}
    assert names == {
        "backbone.0.weight",
        "head.mlp.0.weight",
        "head.mlp.2.weight",
        "head.mlp.4.weight",
        "head.last_layer.weight_v",
    }
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    for i, g in enumerate(opt.param_groups):
        g["lr"], g["weight_decay"] = 0.1, (0.5 if i == 0 else g["weight_decay"])
    for p in student.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()  # zero gradients: only decoupled decay can move a parameter, by the factor 1 - lr * wd
    for n, p in student.named_parameters():
        want = before[n] * (1 - 0.1 * 0.5) if n in names else before[n]
        torch.testing.assert_close(p.detach(), want, rtol=1e-6, atol=0)


def test_adam_l2_decays_every_parameter_including_biases():
    student, _, _, opt = step_setup("adam-l2")
    assert len(opt.param_groups) == 1
    bias0 = student.backbone[1].bias.detach().clone() + 0.5
    with torch.no_grad():
        student.backbone[1].bias.copy_(bias0)
    opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"] = 0.1, 0.5
    for p in student.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()  # coupled L2: grad = wd * p, so Adam moves every nonzero parameter by lr
    torch.testing.assert_close(student.backbone[1].bias.detach(), bias0 - 0.1 * torch.sign(bias0), rtol=0, atol=1e-6)


def test_embedding_std_is_zero_for_collapsed_and_large_for_spread_embeddings():
    z = torch.nn.functional.normalize(torch.randn(2, 4096, 128), dim=-1)
    assert dino.embedding_std(z).item() == pytest.approx(1 / math.sqrt(128), rel=0.02)
    assert dino.embedding_std(z[:, :1].expand(2, 50, 128)).item() == 0.0


# --- schedules (B8) ----------------------------------------------------------------------------


def test_cosine_schedule_warms_up_then_reaches_final_at_the_last_iteration():
    s = cosine_schedule(1.0, 0.0, epochs=3, iters_per_epoch=2, warmup_epochs=1)
    # warm-up 0, 1/2 ; cosine over 4 entries: (1 + cos(pi i / 3)) / 2 = 1, 3/4, 1/4, 0
    np.testing.assert_allclose(s, [0.0, 0.5, 1.0, 0.75, 0.25, 0.0], atol=1e-12)


def test_schedule_index_starts_at_epoch_zero_and_covers_every_iteration():
    L, E = 7, 5
    lr = cosine_schedule(3.8e-4, 1e-6, E, L, warmup_epochs=2, start_warmup=0.0)
    assert len(lr) == E * L
    assert lr[0 * L + 0] == 0.0  # epoch 0, batch 0 is the start of warm-up (the released code began at L)
    assert lr[2 * L] == pytest.approx(3.8e-4)  # first iteration after warm-up = peak
    assert lr[(E - 1) * L + (L - 1)] == pytest.approx(1e-6)  # the last epoch's last batch exists
    assert np.all(np.diff(lr[: 2 * L + 1]) > 0) and np.all(np.diff(lr[2 * L :]) < 0)


def test_weight_decay_and_momentum_schedules():
    wd = cosine_schedule(0.04, 0.4, 3, 4)
    assert (wd[0], wd[-1]) == (pytest.approx(0.04), pytest.approx(0.4))
    np.testing.assert_array_equal(momentum_schedule(0.996, 3, 4, "fixed"), np.full(12, 0.996))
    m = momentum_schedule(0.996, 3, 4, "cosine")
    assert m[0] == pytest.approx(0.996) and m[-1] == pytest.approx(1.0)


def test_teacher_temperature_warms_up_linearly_per_epoch():
    np.testing.assert_allclose(teacher_temp_schedule(0.04, 0.07, 3, 5), [0.04, 0.055, 0.07, 0.07, 0.07])
    np.testing.assert_allclose(teacher_temp_schedule(0.04, 0.04, 30, 4), [0.04] * 4)  # released: a no-op
    np.testing.assert_allclose(teacher_temp_schedule(0.02, 0.08, 4, 2), [0.02, 0.04])  # cut at the run's end


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"epochs": 0}, "epochs"),
        ({"iters_per_epoch": 0}, "iters_per_epoch"),
        ({"warmup_epochs": 4}, "warmup_epochs"),
    ],
)
def test_bad_schedule_arguments_name_the_parameter(kwargs, word):
    args = {"base": 1.0, "final": 0.0, "epochs": 3, "iters_per_epoch": 2, **kwargs}
    with pytest.raises(UserError, match=word):
        cosine_schedule(**args)


# --- the pre-training loop on the synthetic fixture --------------------------------------------

# Cheap but real: the paper's backbone and 2 global + 8 local views, 8 records, 4 records per
# step, a 256-wide head and a learning rate high enough that 3 epochs of 2 steps move the loss.
FAST = {"out_dim": 256, "base_lr": 0.5, "warmup_epochs": 0}
SETTINGS = ["epochs=3", "batch_size=4", *(f"{k}={v}" for k, v in FAST.items())]  # `--set` items
RUN = dict(modality="time", records=8, progress=False, settings=SETTINGS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from ecgssl_nb.data.fixture import make_fixture
    from ecgssl_nb.data.prepare import prepare

    root = tmp_path_factory.mktemp("selfkd")
    make_fixture(root / "fixture", n_records=24, seed=0)
    return prepare(root / "fixture", root / "prepared", workers=1, progress=False)


@pytest.fixture(scope="module")
def run3(prepared, tmp_path_factory):
    """One uninterrupted 3-epoch run, shared by the tests that read its files."""
    return pretrain_stage.pretrain(prepared, tmp_path_factory.mktemp("run3") / "time", **RUN)


def read_log(out) -> list[dict]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_pretrain_writes_a_loadable_final_student_backbone_and_a_summary(run3):
    from ecgssl_nb.core.models import load_backbone, xresnet1d50

    assert load_backbone(xresnet1d50(), run3 / "backbone.pt") == len(xresnet1d50().state_dict())
    saved = torch.load(run3 / "backbone.pt", weights_only=True)
    ck = torch.load(run3 / "checkpoint.pt", weights_only=True)
    student_backbone = {k[len("backbone.") :]: v for k, v in ck["student"].items() if k.startswith("backbone.")}
    assert saved.keys() == student_backbone.keys()
    assert all(torch.equal(saved[k], student_backbone[k]) for k in saved)  # final epoch's student (B12)
    assert not all(torch.equal(saved[k], v) for k, v in xresnet1d50().state_dict().items() if v.is_floating_point())
    summary = json.loads((run3 / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["steps_per_epoch"] == 2 and summary["kept_epoch"] == 2
    assert summary["data"]["n_records"] == 8 and summary["data"]["records_per_epoch"] == 8
    assert summary["config"]["out_dim"] == 256 and summary["device"] == "cpu"
    log = read_log(run3)
    assert [r["epoch"] for r in log] == ["0", "1", "2"] and tuple(log[0]) == pretrain_stage.LOG_COLUMNS
    assert summary["final_loss"] == pytest.approx(float(log[-1]["loss"]))


def test_short_pretraining_lowers_the_loss_without_collapse(run3):
    log = read_log(run3)
    losses = [float(r["loss"]) for r in log]
    assert losses[-1] < losses[0]
    stds = [float(r["embedding_std"]) for r in log]
    assert min(stds) > 0.01  # collapse would put every record on one point: std ~ 0
    assert all(0 < float(r["teacher_entropy"]) < math.log(256) for r in log)


def test_resumed_run_ends_exactly_where_the_uninterrupted_run_ends(prepared, run3, tmp_path):
    out = tmp_path / "time"
    pretrain_stage.pretrain(prepared, out, stop_after=1, **RUN)
    assert not (out / "backbone.pt").exists() and len(read_log(out)) == 1
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match=r"unfinished run \(.*checkpoint\.pt\); pass --resume .* or remove"):
        pretrain_stage.pretrain(
            prepared, out, **RUN
        )  # the one rule of both stages: no silent restart over a half-done run
    assert (out / "checkpoint.pt").read_bytes() == before and len(read_log(out)) == 1
    pretrain_stage.pretrain(prepared, out, resume=True, **RUN)
    a = torch.load(run3 / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    for part in ("student", "teacher", "loss"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert torch.equal(a["perm_rng"], b["perm_rng"]) and torch.equal(a["view_rng"][0], b["view_rng"][0])
    assert [r["loss"] for r in read_log(run3)] == [r["loss"] for r in read_log(out)]


def test_a_finished_run_is_never_overwritten(prepared, run3):
    before = (run3 / "backbone.pt").stat().st_mtime_ns
    with pytest.raises(UserError, match="finished"):
        pretrain_stage.pretrain(prepared, run3, **RUN)
    assert pretrain_stage.pretrain(prepared, run3, resume=True, **RUN) == run3  # nothing left to do
    with pytest.raises(UserError, match=r"different request: settings\.config\.epochs: 3 -> 5"):
        pretrain_stage.pretrain(
            prepared, run3, resume=True, **{**RUN, "settings": [*SETTINGS, "epochs=5"]}
        )  # schedules span the whole run
    with pytest.raises(UserError, match=r"different request: settings\.transforms: t1 -> tc"):
        pretrain_stage.pretrain(prepared, run3, resume=True, transforms="tc", **RUN)
    assert (run3 / "backbone.pt").stat().st_mtime_ns == before


def test_resume_refuses_a_checkpoint_written_with_other_settings(prepared, run3, tmp_path):
    out = tmp_path / "time"
    out.mkdir()
    shutil.copy(run3 / "checkpoint.pt", out / "checkpoint.pt")  # an unfinished run of RUN
    shutil.copy(run3 / "provenance.json", out / "provenance.json")
    with pytest.raises(UserError, match="different request: seed: 0 -> 1"):
        pretrain_stage.pretrain(prepared, out, resume=True, seed=1, **RUN)
    with pytest.raises(UserError, match="different request: settings.records: 8 -> 4"):
        pretrain_stage.pretrain(prepared, out, resume=True, **{**RUN, "records": 4})
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["checkpoint.pt", "provenance.json"]


def test_spectrogram_pretraining_from_the_command_line_keeps_the_lowest_loss_student(prepared, tmp_path):
    from ecgssl_nb.__main__ import main
    from ecgssl_nb.core.models import load_backbone, se_resnet34

    out = tmp_path / "spec"
    sets = [arg for k, v in {**FAST, "n_local": 2}.items() for arg in ("--set", f"{k}={v}")]
    code = main(
        [
            "pretrain",
            "--modality",
            "spec",
            "--prepared",
            str(prepared),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--records",
            "4",
            "--keep",
            "lowest-loss",
            "--no-progress",
            *sets,
        ]
    )
    assert code == 0
    log = read_log(out)
    best = int(np.argmin([float(r["loss"]) for r in log]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept"] == "lowest-loss" and summary["kept_epoch"] == best == summary["best_epoch"]
    assert summary["transforms"] == "t2" and summary["config"]["n_local"] == 2 and summary["config"]["base_lr"] == 0.5
    saved = torch.load(out / "backbone.pt", weights_only=True)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(saved[k], ck["best_backbone"][k]) for k in saved)
    assert load_backbone(se_resnet34(), out / "backbone.pt") == len(saved)


# --- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"modality": "ecg"}, "--modality"),
        ({"transforms": "t2"}, "--transforms"),  # a spectrogram set for the time modality
        ({"settings": ["epochs=0"]}, "^--set epochs=0: epochs must be an integer >= 1, got 0$"),
        ({"settings": ["batch_size=1"]}, "^--set batch_size=1: batch_size must be an integer >= 2, got 1$"),
        ({"settings": ["batch_size=16"], "records": 8}, "--batch-size"),  # more than the records
        ({"settings": ["keep=best"]}, "^--set keep=best: keep 'best' is not one of final, lowest-loss$"),
        ({"settings": ["max_steps=-1"]}, "^--set max_steps=-1: max_steps must be an integer >= 0, got -1$"),
        ({"settings": "epochs=2"}, "settings must be a list of KEY=VALUE items"),  # one text, not a list
        ({"profile": "huge"}, "--profile"),
        ({"records": 10_000}, "records"),
        ({"seed": -1}, "--seed"),
        ({"device": "cuda:7"}, "--device"),
        ({"settings": ["optimizer=sgd"]}, "optimizer"),
        ({"settings": ["learning_rate=1.0"]}, "learning_rate"),
        ({"settings": ["student_temp=0.0"]}, "student_temp"),
    ],
)
def test_bad_arguments_raise_user_errors_naming_the_parameter(prepared, tmp_path, kwargs, word):
    args = {"modality": "time", "progress": False, **kwargs}
    with pytest.raises(UserError, match=word):
        pretrain_stage.pretrain(prepared, tmp_path / "out", **args)
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_a_folder_that_is_not_prepared_is_refused(tmp_path):
    with pytest.raises(UserError, match="--prepared .* does not exist"):
        pretrain_stage.pretrain(tmp_path / "nowhere", tmp_path / "out", "time")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        UserError, match="--prepared .* not a prepared folder: index.csv, signals.npy, stats.json missing"
    ):
        pretrain_stage.pretrain(tmp_path / "empty", tmp_path / "out", "time")


@pytest.mark.parametrize(
    "args, word",
    [
        (["--modality", "audio"], "--modality 'audio'"),
        (["--modality", "time", "--set", "clip_grad"], "--set 'clip_grad'"),
        (["--modality", "time", "--set", "teacher_momentum_schedule=linear"], "teacher_momentum_schedule"),
    ],
)
def test_cli_reports_bad_arguments_on_one_line_with_status_2(prepared, tmp_path, capsys, args, word):
    from ecgssl_nb.__main__ import main

    code = main(["pretrain", *args, "--prepared", str(prepared), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and word in err


def test_pretraining_draws_on_every_record_of_every_fold_by_default(prepared, tmp_path):
    from ecgssl_nb.data.prepare import load_prepared

    index = load_prepared(prepared).index
    assert index["fold"].nunique() > 1  # the fixture spans several folds ...
    with pytest.raises(UserError, match=f"larger than the {len(index)} records"):  # ... and all are used (B13)
        pretrain_stage.pretrain(
            prepared, tmp_path / "out", "time", settings=[f"batch_size={len(index) + 1}"], progress=False
        )


@pytest.mark.parametrize(
    "kwargs",
    [{"teacher_temp": 0.0}, {"teacher_temp": [0.04, -0.07]}, {"student_temp": 0.0}, {"center_momentum": 1.5}],
)
def test_dino_loss_refuses_a_temperature_or_centre_momentum_that_would_give_nan_losses(kwargs):
    with pytest.raises(UserError, match=r"^DINOLoss: temperatures must be > 0 and center_momentum in \[0, 1\]"):
        DINOLoss(8, **kwargs)
