"""The pre-training GPU path, checked on the CPU (issue 15): a steady-state step with its batch
preparation never blocks the host, the forward half compiles to one graph that agrees with eager,
the head's last layer and the loss stay in fp32 under bf16 autocast, checkpoints follow their
cadence and still resume bit for bit, and the multi-GPU recipe (torchrun, then `reproduce`) works.

How syncs are counted: `ecgssl_nb.syncs.count_ops`, a TorchDispatchMode that sees every aten call
and flags those that block the host on CUDA (`.item()`/`bool()`/`float()` of a tensor, `nonzero`,
boolean-mask indexing, `repeat_interleave` without `output_size`, ...). The same code reaches the
dispatcher with the same operators on the CPU, so counting here counts what CUDA would wait for.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ecgssl_nb.study import reproduce
from ecgssl_nb.core import dino
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.models import use_fast_cuda_math
from ecgssl_nb.core.settings import get_profile
from ecgssl_nb.core.windows import Corpus
from ecgssl_nb.stages import pretrain as pretrain_stage
from ecgssl_nb.syncs import count_ops

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SMALL = dict(batch_size=4, out_dim=256, epochs=2, n_local=2, warmup_epochs=0)
TRANSFORMS = {"time": "t1", "spec": "t2"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from ecgssl_nb.data.fixture import make_fixture
    from ecgssl_nb.data.prepare import prepare

    root = tmp_path_factory.mktemp("gpu_path")
    make_fixture(root / "fixture", n_records=24, seed=0)
    return prepare(root / "fixture", root / "prepared", workers=1, progress=False)


def one_run(prepared_dir, modality: str, **changes):
    """A resolved single-process run with its corpus, schedules, state and lead statistics."""
    from ecgssl_nb.data.prepare import load_prepared

    prep = load_prepared(prepared_dir)
    cfg = replace(get_profile("tiny").pretrain[modality], **{**SMALL, **changes})
    run = pretrain_stage.Run(cfg, prep, Path(prepared_dir).parent / "unused", modality, TRANSFORMS[modality], 0, None, None,
                     "tiny", "cpu", False, False, None, False, time.perf_counter())  # fmt: skip
    corpus = Corpus.from_prepared(prep, device="cpu")
    sched = dino.make_schedules(cfg, len(corpus), 1)
    st = pretrain_stage.build_state(run, sched)
    mean, std = (torch.as_tensor(np.asarray(v), dtype=torch.float32) for v in (prep.mean, prep.std))
    return run, corpus, sched, st, mean, std


def one_step(run, st, sched, corpus, mean, std, perm, i: int) -> torch.Tensor:
    """Step i of epoch st.epoch as `train_one_epoch` runs it: its views, one `dino.train_step`;
    (loss, teacher entropy, embedding std) as a (3,) device tensor."""
    cfg, it = run.cfg, st.epoch * sched.steps + i
    views = pretrain_stage.batch_views(run, st, corpus, mean, std, perm, i)
    stats = dino.train_step(st.model, st.teacher, st.loss_fn, st.optimizer, views, st.epoch, float(sched.lr[it]),
                            float(sched.wd[it]), float(sched.momentum[it]), cfg.clip_grad,
                            cfg.freeze_last_layer_epochs, run.amp, forward=st.forward)  # fmt: skip
    return torch.stack([stats["loss"], stats["teacher_entropy"], stats["embedding_std"]])


# --- 1. no host-device synchronisation in steady state --------------------------------------------


@pytest.mark.parametrize("modality", ["time", "spec"])
def test_pretraining_steps_make_no_host_device_synchronisation_in_steady_state(prepared, modality):
    run, corpus, sched, st, mean, std = one_run(prepared, modality)
    pretrain_stage.train_one_epoch(run, st, replace(sched, limit=1), corpus, mean, std)  # warm-up (optimiser state)
    # A whole epoch of 1 step and one of 3: the per-epoch reads (the sums, once) are the same, so
    # any difference is what the 2 extra steps synchronise.
    with count_ops() as one:
        pretrain_stage.train_one_epoch(run, st, replace(sched, limit=1), corpus, mean, std)
    with count_ops() as three:
        pretrain_stage.train_one_epoch(run, st, replace(sched, limit=3), corpus, mean, std)
    assert three.n_syncs == one.n_syncs, f"2 steps added {three.n_syncs - one.n_syncs} syncs: {three.syncs}"
    assert one.n_syncs <= 2, one.syncs  # the epoch's reads: its sums, once
    # And one step on its own, batch preparation included (windows, views, forward, loss with its
    # mask-free pair mean and centre, backward, fused AdamW, EMA): not one sync.
    perm = torch.randperm(len(corpus), generator=st.perm_gen)
    with count_ops() as step:
        one_step(run, st, sched, corpus, mean, std, perm, 1)
    assert step.n_syncs == 0, step.syncs
    assert step.n_calls > 100  # the counter saw the step


def test_a_non_finite_loss_still_stops_the_run_with_one_clear_error(prepared):
    run, corpus, sched, st, mean, std = one_run(prepared, "time", log_every=1)
    with torch.no_grad():
        st.student.head.mlp[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"DINO loss is nan at epoch 0 \(within its first 1 steps\)"):
        pretrain_stage.train_one_epoch(run, st, replace(sched, limit=3), corpus, mean, std)


# --- 2. compiled: one graph, within a stated tolerance of eager ---------------------------------

# Compiled and eager runs of the same steps from the same state agree to this relative tolerance
# on the step figures (loss, teacher entropy, embedding std): float32 kernels fused differently
# round differently, by about 1e-6 on the first step; the steps after it compound that through Adam.
COMPILED_RTOL = 1e-3


def compiled_against_eager(prepared, modality: str, backend: str) -> tuple[list, list]:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    figures = []
    for forward in (dino.forward_loss, dino.CompiledForward("default", fullgraph=True, backend=backend)):
        run, corpus, sched, st, mean, std = one_run(prepared, modality)
        st.forward = forward
        perm = torch.randperm(len(corpus), generator=st.perm_gen)
        figures.append([one_step(run, st, sched, corpus, mean, std, perm, i) for i in range(3)])
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1  # one graph, compiled once for the 3 steps
    return figures[0], figures[1]


@pytest.mark.slow  # about 4 minutes on one CPU core: inductor compiles the paper's backbone
def test_compiled_time_step_is_one_graph_and_matches_eager_within_the_stated_tolerance(prepared):
    eager, compiled = compiled_against_eager(prepared, "time", "inductor")
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=COMPILED_RTOL, atol=1e-6)


@pytest.mark.slow  # about 30 s: the graph capture (Dynamo + AOT autograd) without inductor's C++ build
def test_compiled_spec_step_is_one_graph_without_graph_breaks(prepared):
    eager, compiled = compiled_against_eager(prepared, "spec", "aot_eager")
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=COMPILED_RTOL, atol=1e-6)


# --- 3. precision ---------------------------------------------------------------------------------


def test_head_last_layer_and_loss_run_in_fp32_under_bf16_autocast():
    # CPU autocast in bf16 stands in for CUDA's: the MLP runs in bf16, the last layer, the
    # centring and the loss in fp32 (the logits are sharpened at tau = 0.04).
    head = dino.DINOHead(64, out_dim=32, hidden=64, bottleneck=16)
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    loss_fn = dino.DINOLoss(32, n_global=2)
    s, t = torch.randn(4, 2, 32), torch.randn(2, 2, 32)
    want = dino.DINOLoss(32, n_global=2)(s, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, z = head(x, return_embedding=True)
        assert head.mlp(x).dtype == torch.bfloat16  # autocast is on for the rest of the head
        loss = loss_fn(s.bfloat16(), t.bfloat16().float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, head.last_layer(z.float()), rtol=0, atol=0)
    assert loss.dtype == torch.float32 and loss_fn.center.dtype == torch.float32
    torch.testing.assert_close(loss, want, rtol=1e-2, atol=0)  # only the bf16 student input differs


def test_cuda_runs_turn_on_tf32_and_cudnn_benchmark():
    # torch's new TF32 API (fp32_precision); mixing it with the legacy allow_tf32 flags is an error
    flags = (
        (torch.backends.cuda.matmul, "fp32_precision", "ieee", "tf32"),
        (torch.backends.cudnn.conv, "fp32_precision", "ieee", "tf32"),
        (torch.backends.cudnn, "benchmark", False, True),
    )
    before = [getattr(obj, name) for obj, name, _, _ in flags]
    try:
        for obj, name, off, _ in flags:
            setattr(obj, name, off)
        use_fast_cuda_math("cpu")
        assert [getattr(obj, name) for obj, name, _, _ in flags] == [off for *_, off, _ in flags]  # CPU: untouched
        use_fast_cuda_math("cuda:0")
        assert [getattr(obj, name) for obj, name, _, _ in flags] == [on for *_, on in flags]
    finally:
        for (obj, name, _, _), value in zip(flags, before):
            setattr(obj, name, value)


# --- 4. checkpoint cadence ------------------------------------------------------------------------

FAST = {"out_dim": 64, "n_local": 2, "base_lr": 0.5, "warmup_epochs": 0, "checkpoint_epochs": 2}
CADENCE = dict(modality="time", records=8, progress=False)
CADENCE["settings"] = ["epochs=3", "batch_size=4", *(f"{k}={v}" for k, v in FAST.items())]


def test_checkpoints_every_2_epochs_and_a_killed_run_resumes_bit_identically(prepared, tmp_path, monkeypatch):
    whole = pretrain_stage.pretrain(prepared, tmp_path / "whole", **CADENCE)
    real = pretrain_stage.train_one_epoch

    def killed_in_epoch(epoch):
        def one_epoch(run, st, *args):
            if st.epoch == epoch:
                raise KeyboardInterrupt  # as a killed process: nothing after this epoch's start runs
            return real(run, st, *args)

        return one_epoch

    out = tmp_path / "killed"
    monkeypatch.setattr(pretrain_stage, "train_one_epoch", killed_in_epoch(1))
    with pytest.raises(KeyboardInterrupt):
        pretrain_stage.pretrain(prepared, out, **CADENCE)
    assert not (out / "checkpoint.pt").exists() and not (out / "log.csv").exists()  # epoch 0: not due
    monkeypatch.setattr(pretrain_stage, "train_one_epoch", killed_in_epoch(2))
    with pytest.raises(KeyboardInterrupt):
        pretrain_stage.pretrain(prepared, out, resume=True, **CADENCE)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 2 and len((out / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs
    monkeypatch.setattr(pretrain_stage, "train_one_epoch", real)
    pretrain_stage.pretrain(prepared, out, resume=True, **CADENCE)
    a, b = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (whole, out))
    assert a["epoch"] == b["epoch"] == 3  # the last epoch is always written
    for part in ("student", "teacher", "loss"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    epoch_and_loss = [[r.split(",")[:2] for r in (p / "log.csv").read_text().splitlines()] for p in (whole, out)]
    assert epoch_and_loss[0] == epoch_and_loss[1] and len(epoch_and_loss[0]) == 4  # header + 3 epochs


# --- 6. the multi-GPU recipe --------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_pretrain_without_device_uses_the_profiles_device(prepared, tmp_path):
    # The paper profile names cuda: without --device the stage must use it (here: refuse, as this
    # machine has none) rather than train the paper's settings on the CPU.
    with pytest.raises(UserError, match="CUDA is not available"):
        pretrain_stage.cli(
            ["--modality", "time", "--profile", "paper", "--prepared", str(prepared), "--out", str(tmp_path / "o")]
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_torchrun(rank: int, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)


def _pretrain_rank(rank: int, world: int, port: int, kwargs: dict) -> None:
    _as_torchrun(rank, world, port)
    pretrain_stage.pretrain(**kwargs)


def _claim_rank(rank: int, world: int, port: int, kwargs: dict, report: str) -> None:
    _as_torchrun(rank, world, port)
    try:
        pretrain_stage.pretrain(**kwargs)
        Path(report, f"rank{rank}").write_text("no error")
    except UserError as exc:
        Path(report, f"rank{rank}").write_text(str(exc))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow  # about 30 s: two processes pre-train the paper's backbone for 2 steps
def test_a_torchrun_backbone_is_reused_by_reproduce_not_moved_aside(prepared_corpus, tmp_path):
    tiny = get_profile("tiny")
    small = replace(tiny.pretrain["time"], epochs=1, batch_size=8, out_dim=64, n_local=2, max_steps=2)
    prof = replace(tiny, pretrain={"time": small, "spec": small})
    job = reproduce.plan(prof, 0, tmp_path / "runs", setups=("ssl-t",), ablation=False).main_pre["time"]
    shutil.copytree(prepared_corpus, job.args["prepared_dir"])
    kwargs = {k: v for k, v in job.args.items() if k not in ("resume", "force")} | {"progress": False}
    mp.spawn(_pretrain_rank, args=(2, _free_port(), kwargs), nprocs=2, join=True)  # torchrun, gloo
    assert (job.folder / "backbone.pt").is_file()
    again = reproduce.plan(prof, 0, tmp_path / "runs", setups=("ssl-t",), ablation=False).main_pre["time"]
    assert again.done_before(), again.replaced  # reused: nothing to move aside
    rec = json.loads((job.folder / "provenance.json").read_text())
    assert rec["recorded"]["world_size"] == 2  # recorded, not matched


@pytest.mark.slow  # about 15 s: two processes start, rank 0 fails, both end
def test_a_rank_0_failure_while_claiming_ends_every_rank_with_one_line(prepared, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's folder")  # rank 0 refuses to claim it
    report = tmp_path / "report"
    report.mkdir()
    kwargs = dict(prepared_dir=prepared, out=out, modality="time", records=8, progress=False)
    kwargs["settings"] = ["epochs=1", "batch_size=4"]
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_claim_rank, args=(r, 2, port, kwargs, str(report))) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)  # not the process group's 30-minute timeout
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank was still waiting after rank 0 failed"
    r0, r1 = ((report / f"rank{r}").read_text() for r in (0, 1))
    assert "holds files but no provenance.json" in r0 and "\n" not in r0
    assert r1.startswith(f"pretrain: rank 0 could not claim {out}:") and "holds files but no provenance" in r1
