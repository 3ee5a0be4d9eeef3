"""The fine-tuning GPU path, checked on the CPU (issue: the GPU path at the physical limit).

How syncs are counted: `ecgssl_nb.syncs.count_ops`, a TorchDispatchMode that sees every aten call
and flags the ones that block the host on CUDA (`.item()`/`bool()`/`int()` of a tensor, `nonzero`,
boolean-mask indexing, `repeat_interleave` without output_size, ...). The same Python code issues
the same aten calls on either device, so a count of 0 on the CPU is a count of 0 on CUDA. A
steady-state step is counted as a difference: an epoch cut at 3 steps minus one cut at 2 steps,
both after a warm-up epoch (the optimiser's state exists, the evaluation index is built), so the
once-per-epoch work (the shuffle, the one read of the epoch's loss) cancels out. The count also
pins that no step builds a tensor from host data (`aten.lift_fresh`: a constant copied to the
device every call). The compiled step is checked apart (a dispatch mode turns torch.compile off).
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ecgssl_nb import checkpoint, provenance
from ecgssl_nb.core import classify
from ecgssl_nb.core.models import build_model
from ecgssl_nb.core.settings import get_profile
from ecgssl_nb.core.transforms import spectrogram
from ecgssl_nb.stages import finetune as ft
from ecgssl_nb.syncs import count_ops
from ecgssl_nb.writer import Writer, host_copy

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = get_profile("tiny")
FAST = replace(  # 4 records x 1 crop per step: the cheapest steps that still have a BatchNorm batch
    TINY,
    finetune=replace(
        TINY.finetune,
        crops=1,
        epochs={f: 1 for f in ("t", "s", "tsc", "tsg")},
        batch_records={f: 4 for f in ("t", "s", "tsc", "tsg")},
    ),
)


def _trainer(setup, prepared, tmp_path, **cfg):
    run = ft._resolve(setup, 0, prepared, tmp_path / setup, None, FAST, replace(FAST.finetune, **cfg), (), "cpu", 0,
                      False, False, None)  # fmt: skip
    return run, ft.build_trainer(run), classify.load_data(run.prep, run.split, run.device)


def _epoch_ops(run, tr, data, steps: int):
    with count_ops() as c:
        classify.train_one_epoch(
            tr, data, replace(run.cfg, max_steps=steps), run.batch_records, 1, log=lambda s, x: None
        )
    return c


@pytest.mark.parametrize("setup", ["t", "s", "tsg"])
def test_a_steady_state_training_step_with_its_batch_preparation_makes_no_sync(setup, prepared_corpus, tmp_path):
    run, tr, data = _trainer(setup, prepared_corpus, tmp_path)
    _epoch_ops(run, tr, data, 1)  # warm-up: Adam's state, BatchNorm's first batch
    two, three = _epoch_ops(run, tr, data, 2), _epoch_ops(run, tr, data, 3)
    step = three.calls - two.calls  # the aten calls of one step (crops, labels, inputs, forward, backward, Adam)
    assert sum(step.values()) > 100 and step["aten._fused_adam_"] == 1
    assert three.syncs - two.syncs == {}, three.syncs - two.syncs
    assert step["aten.lift_fresh"] == 0  # no constant built from host data per step
    assert two.n_syncs == 1 and two.syncs["aten._local_scalar_dense"] == 1  # the epoch's loss, read once


def test_log_every_reads_the_running_loss_once_per_that_many_steps(prepared_corpus, tmp_path):
    run, tr, data = _trainer("t", prepared_corpus, tmp_path, log_every=1)
    _epoch_ops(run, tr, data, 1)
    two, three = _epoch_ops(run, tr, data, 2), _epoch_ops(run, tr, data, 3)
    assert three.n_syncs - two.n_syncs == 1 and two.n_syncs == 3  # 2 logged steps + the epoch's read


@pytest.mark.parametrize("setup", ["t", "tsg"])
def test_evaluation_makes_no_sync_in_its_loop_over_the_validation_windows(setup, prepared_corpus, tmp_path):
    run, tr, data = _trainer(setup, prepared_corpus, tmp_path)
    kw = dict(batch_windows=16, stride=run.cfg.val_stride, spec_mean=data.spec_mean)
    first, _ = classify.predict(tr.model, data.outer, data.mean, data.std, **kw)  # warm-up: builds the window index
    with count_ops() as c:
        again, gate = classify.predict(tr.model, data.outer, data.mean, data.std, **kw)
    n_batches = -(-int(data.outer._all_windows(250, run.cfg.val_stride)[2].sum()) // 16)
    assert n_batches > 3 and c.calls["aten.index_add_"] == n_batches * (1 if gate is None else 2)
    assert c.n_syncs == 0, c.syncs
    assert c.calls["aten.lift_fresh"] == 0 and c.calls["aten.repeat_interleave"] == 0
    np.testing.assert_array_equal(first, again)


def test_step_inputs_give_the_transforms_spectrogram_bit_for_bit():
    x = torch.randn(6, 12, 250, generator=torch.Generator().manual_seed(0))
    model = build_model("tsg")
    x_time, x_spec = classify.model_inputs(model, x, torch.zeros(12), torch.ones(12), classify.spec_lead_mean("cpu"))
    assert torch.equal(x_spec, spectrogram(x))
    assert torch.equal(x_time, x / (1 + 1e-8))


def test_epoch_plan_has_one_shape_and_sees_every_record_once_filling_the_last_step_from_the_shuffle():
    plan = classify.epoch_plan(10, 4, torch.Generator().manual_seed(0))
    assert plan.shape == (3, 4)  # static: the last step has 4 records too
    flat = plan.reshape(-1)
    assert sorted(flat[:10].tolist()) == list(range(10)) and flat[10:].tolist() == flat[:2].tolist()
    assert classify.epoch_plan(3, 8, torch.Generator()).shape == (1, 3)  # fewer records than a batch: one step of all
    again = classify.epoch_plan(10, 4, torch.Generator().manual_seed(0))
    assert torch.equal(plan, again) and classify.steps_per_epoch(10, 4) == 3


# --- checkpoints ---------------------------------------------------------------------------------


def test_checkpoint_cadence_follows_the_epochs_and_minutes_settings():
    cfg = TINY.finetune
    assert [checkpoint.checkpoint_due(cfg, e, 0.0) for e in (1, 2, 3)] == [True, True, True]  # default: every epoch
    two = replace(cfg, checkpoint_epochs=2)
    assert [checkpoint.checkpoint_due(two, e, 0.0) for e in (1, 2, 3, 4)] == [False, True, False, True]
    by_time = replace(cfg, checkpoint_epochs=0, checkpoint_minutes=5.0)
    assert not checkpoint.checkpoint_due(by_time, 1, 4.9) and checkpoint.checkpoint_due(by_time, 1, 5.0)


def test_host_copy_is_a_snapshot_that_later_in_place_updates_do_not_reach():
    w = torch.zeros(3)
    snap = host_copy({"model": {"w": w}, "history": [{"epoch": 1}], "n": 2})
    w += 1
    assert torch.equal(snap["model"]["w"], torch.zeros(3)) and snap["history"] == [{"epoch": 1}] and snap["n"] == 2


def test_writer_runs_one_job_at_a_time_in_order_and_raises_a_failed_jobs_error_at_the_next_wait():
    done, writer = [], Writer()

    def slow(tag):
        def job():
            time.sleep(0.05)
            done.append(tag)

        return job

    writer.submit(slow(1))
    assert writer.busy
    writer.submit(slow(2))  # waits for job 1 first: one in flight
    assert done == [1]
    writer.wait()
    assert done == [1, 2] and not writer.busy

    def fails():
        raise KeyboardInterrupt("killed while writing")

    writer.submit(fails)
    with pytest.raises(KeyboardInterrupt, match="killed while writing"):
        writer.wait()
    writer.wait()  # the error is raised once


def test_a_writer_interrupted_while_waiting_still_drains_the_write_in_flight(monkeypatch):
    # Ctrl-C while `submit` waits for the previous job: Checkpoints.__exit__ then drains, and that
    # must wait for the write still running (the stage's lock is released after it).
    from ecgssl_nb import writer as writer_module

    release, done, writer = threading.Event(), [], Writer()
    writer.submit(lambda: (release.wait(5), done.append("written")))
    real_wait, calls = writer_module.futures.wait, []

    def interrupted_once(fs, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_wait(fs, *args, **kwargs)

    monkeypatch.setattr(writer_module.futures, "wait", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        writer.submit(lambda: None)
    assert writer.busy  # the job in flight is not forgotten
    release.set()
    writer.drain()
    assert done == ["written"] and not writer.busy


CADENCE = replace(  # 97 training records, 4 steps of 32 per epoch, a checkpoint after every 2nd epoch
    TINY,
    finetune=replace(
        TINY.finetune,
        crops=1,
        epochs={f: 3 for f in ("t", "s", "tsc", "tsg")},
        batch_records={f: 32 for f in ("t", "s", "tsc", "tsg")},
        checkpoint_epochs=2,
    ),
)


@pytest.mark.slow  # 3 + 3 + 1 epochs of t: ~15 s on 2 busy cores
def test_checkpoints_every_second_epoch_keep_the_log_at_the_checkpoint_and_resume_bit_identically(
    prepared_corpus, tmp_path, monkeypatch
):
    def run(out, **kw):
        return ft.finetune("t", 0, prepared_corpus, out, profile=CADENCE, progress=False, **kw)

    whole = run(tmp_path / "whole")
    real, calls = classify.train_step, {"n": 0}

    def dies_in_epoch_three(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:  # epoch 3, step 1
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(classify, "train_step", dies_in_epoch_three)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run(out)
    assert provenance.load_checkpoint(out / checkpoint.NAME)["epoch"] == 2  # none after epoch 1
    assert list(pd.read_csv(out / "log.csv")["epoch"]) == [1, 2]  # the log is where the checkpoint is
    monkeypatch.setattr(classify, "train_step", real)
    resumed = run(out, resume=True)
    for key in ("metrics", "per_class", "thresholds", "selection"):
        assert resumed[key] == whole[key], key
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in whole["history"]]
    assert list(pd.read_csv(out / "log.csv")["epoch"]) == [1, 2, 3]


# --- the compiled step ---------------------------------------------------------------------------

# Compiled against eager on the CPU in fp32, from the same weights and batches: every gradient of
# the first step within atol 1e-6 + rtol 1e-4, and the loss of each of 2 steps within rtol 1e-5.
# Parameters are not compared: Adam divides by sqrt(v), so on gradients that are 0 in exact
# arithmetic (the conv biases in front of a BatchNorm, ~1e-9 here) it turns rounding noise into
# lr-sized steps of either sign.
LOSS_RTOL, GRAD_ATOL, GRAD_RTOL = 1e-5, 1e-6, 1e-4


@pytest.mark.slow  # compiling t with inductor ~30 s, tsg traced with aot_eager ~20 s (2 busy cores)
@pytest.mark.parametrize("setup, backend", [("t", "inductor"), ("tsg", "aot_eager")])
def test_the_training_step_compiles_with_fullgraph_and_matches_eager_within_tolerance(setup, backend):
    """fullgraph=True makes any graph break an error, so a step that runs proves there is none.
    tsg is traced with the aot_eager backend (dynamo's graph and AOTAutograd's backward, without
    inductor's code generation, which takes minutes for the SE-ResNet on 2 CPU cores). With
    inductor, t's gradients also pin the ceil_mode average-pool workaround (`HalvingAvgPool1d`)."""
    torch.manual_seed(0)
    eager_model = build_model(setup).train()
    compiled_model = copy.deepcopy(eager_model)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 12, 250, generator=gen), torch.rand(8, 24, generator=gen).round()) for _ in range(2)]
    scale = (torch.zeros(12), torch.ones(12))
    losses, grads = {}, {}
    for name, model, loss_fn in (
        ("eager", eager_model, classify.step_loss),
        ("compiled", compiled_model, classify.make_step_loss("default", backend=backend)),
    ):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        losses[name] = []
        for x, y in batches:
            loss = classify.train_step(
                model, opt, x, y, *scale, spec_mean=classify.spec_lead_mean("cpu"), loss_fn=loss_fn
            )
            losses[name].append(loss.item())
            grads.setdefault(name, {n: p.grad.clone() for n, p in model.named_parameters()})  # the first step's
    np.testing.assert_allclose(losses["compiled"], losses["eager"], rtol=LOSS_RTOL)
    for name, g in grads["eager"].items():
        torch.testing.assert_close(grads["compiled"][name], g, atol=GRAD_ATOL, rtol=GRAD_RTOL, msg=name)


def test_an_unknown_compile_mode_is_refused_naming_the_setting():
    with pytest.raises(ft.UserError, match="compile 'max' must be one of off, default, reduce-overhead"):
        classify.make_step_loss("max")


@pytest.mark.slow  # one small compile, ~5 s
def test_the_shortcut_pool_is_ceil_mode_average_pooling_and_compiles_to_the_same_gradient():
    from ecgssl_nb.core.backbones import HalvingAvgPool1d

    ref, pool = torch.nn.AvgPool1d(2, stride=2, ceil_mode=True), HalvingAvgPool1d()
    x = torch.randn(2, 3, 63, requires_grad=True)  # odd: the last sample is a window of its own
    w = torch.randn(2, 3, 32)
    (want,) = torch.autograd.grad((ref(x) * w).sum(), x)
    (got,) = torch.autograd.grad((pool(x) * w).sum(), x)
    assert torch.equal(pool(x), ref(x)) and torch.equal(got, want)  # eager: bit for bit
    (compiled,) = torch.autograd.grad(torch.compile(lambda v: (pool(v) * w).sum(), fullgraph=True)(x), x)
    torch.testing.assert_close(compiled, want)  # Inductor on nn.AvgPool1d(ceil_mode) gives 1/2 of it


@pytest.mark.slow  # two 1-epoch runs of t, one compiled with inductor: ~50 s on 2 busy cores
def test_a_compiled_finetune_runs_end_to_end_and_its_training_loss_matches_eager(prepared_corpus, tmp_path):
    prof = replace(FAST, finetune=replace(FAST.finetune, batch_records={f: 32 for f in ("t", "s", "tsc", "tsg")}))
    runs = {}
    for mode in ("off", "reduce-overhead"):  # on the CPU, "reduce-overhead" compiles as "default"
        cfg = replace(prof.finetune, compile=mode)
        runs[mode] = ft.finetune("t", 0, prepared_corpus, tmp_path / mode, profile=prof, config=cfg, progress=False)
    assert runs["reduce-overhead"]["config"]["compile"] == "reduce-overhead"
    eager, compiled = (runs[m]["history"][0]["train_loss"] for m in ("off", "reduce-overhead"))
    assert compiled == pytest.approx(eager, rel=1e-3)  # 4 Adam steps: rounding noise, not a different step


def test_how_a_run_is_executed_is_recorded_but_never_matched_for_reuse():
    # compile mode, checkpoint cadence and log_every change when files are written and how the step
    # runs, not what it computes: the same request (so a finished run is reused, a checkpoint resumed)
    cfg = get_profile("tiny").finetune
    other = replace(cfg, compile="default", checkpoint_epochs=3, checkpoint_minutes=5.0, log_every=7)
    args = ("t", 0, 1, 3, "both", 0, "digest")
    assert ft.finetune_request(cfg, *args) == ft.finetune_request(other, *args)
    assert ft.finetune_request(cfg, *args) != ft.finetune_request(replace(cfg, lr=cfg.lr / 2), *args)
