"""Multi-process pre-training on the CPU (gloo, 2 processes started like torchrun: RANK,
WORLD_SIZE, MASTER_ADDR/PORT in the environment): the centre is the mean over all processes'
teacher outputs, ranks train on distinct records and end with identical weights."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ecgssl_nb.core import dino
from ecgssl_nb.stages import pretrain as pretrain_stage

FAST = {"out_dim": 64, "n_local": 2, "base_lr": 0.5, "warmup_epochs": 0}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_env(rank: int, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)


def _centre_check(rank: int) -> dict:
    """One centre update with unequal batches per rank: the mean is over rows, not of the means."""
    rows = 3 if rank == 0 else 1
    t = torch.arange(2 * rows * 4, dtype=torch.float32).reshape(2, rows, 4) + 100 * rank  # (G, B_rank, 4)
    loss_fn = dino.DINOLoss(4, center_momentum=0.9)
    loss_fn.center.fill_(1.0)
    loss_fn.update_center(t)
    return {"t": t, "center": loss_fn.center.clone()}


def _worker(rank: int, world: int, port: int, prepared: str, out: str, dump: str) -> None:
    _torchrun_env(rank, world, port)
    dist.init_process_group("gloo")  # pretrain also runs inside a group someone else started
    try:
        result = {"centre_check": _centre_check(rank), **_pretrain(prepared, out)}
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(dump, f"rank{rank}.pt"))


def _pretrain(prepared: str, out: str) -> dict:
    seen = {"rec": [], "centre": [], "loss": []}
    real_views, real_step, real_update = (
        pretrain_stage.make_views,
        pretrain_stage.train_step,
        dino.DINOLoss.update_center,
    )

    def views_spy(corpus, rec, *args, **kwargs):
        seen["rec"].append(rec.clone())
        return real_views(corpus, rec, *args, **kwargs)

    def step_spy(student, teacher, loss_fn, *args, **kwargs):
        seen.update(student=student, teacher=teacher, loss_fn=loss_fn)
        stats = real_step(student, teacher, loss_fn, *args, **kwargs)
        seen["loss"].append(stats["loss"].item())
        return stats

    def update_spy(self, teacher_out):
        before = self.center.clone()
        real_update(self, teacher_out)
        seen["centre"].append((teacher_out.detach().clone(), before, self.center.clone()))

    pretrain_stage.make_views, pretrain_stage.train_step = views_spy, step_spy  # what the stage calls
    dino.DINOLoss.update_center = update_spy
    settings = ["epochs=1", "batch_size=4", *(f"{k}={v}" for k, v in FAST.items())]
    pretrain_stage.pretrain(prepared, out, "time", records=8, progress=False, settings=settings)
    assert dist.is_initialized()  # pretrain left the caller's group alone
    student = dino._unwrap(seen["student"])
    return {
        "student": student.state_dict(),
        "teacher": seen["teacher"].state_dict(),
        "centre": seen["loss_fn"].center,
        "rec": seen["rec"],
        "updates": seen["centre"],
        "loss": seen["loss"],
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from ecgssl_nb.data.fixture import make_fixture
    from ecgssl_nb.data.prepare import prepare

    root = tmp_path_factory.mktemp("ddp")
    make_fixture(root / "fixture", n_records=12, seed=1)
    return prepare(root / "fixture", root / "prepared", workers=1, progress=False)


def test_two_processes_share_the_centre_train_on_distinct_records_and_end_identical(prepared, tmp_path):
    out, dump = tmp_path / "out", tmp_path / "dump"
    dump.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(prepared), str(out), str(dump)), nprocs=2, join=True)
    r0, r1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    # The centre update on its own, with 3 rows on rank 0 and 1 on rank 1.
    c0, c1 = r0["centre_check"], r1["centre_check"]
    rows = torch.cat([c0["t"].reshape(-1, 4), c1["t"].reshape(-1, 4)])  # (8, 4) teacher rows of both ranks
    want = 0.9 * torch.ones(1, 4) + 0.1 * rows.mean(0, keepdim=True)
    torch.testing.assert_close(c0["center"], want)
    torch.testing.assert_close(c1["center"], want)

    # Records: 8 records, a global batch of 4 (2 per rank) per step, 2 steps; every record once, on one rank.
    seen0, seen1 = torch.cat(r0["rec"]).tolist(), torch.cat(r1["rec"]).tolist()
    assert len(r0["rec"]) == len(r1["rec"]) == 2
    assert not set(seen0) & set(seen1) and sorted(seen0 + seen1) == list(range(8))

    # DDP keeps the students identical; the EMA teachers and the centres follow.
    for part in ("student", "teacher"):
        assert all(torch.equal(r0[part][k], r1[part][k]) for k in r0[part]), part
    assert torch.equal(r0["centre"], r1["centre"])
    init = dino.build_student("time", FAST["out_dim"], seed=0).state_dict()
    assert not torch.equal(r0["student"]["head.mlp.0.weight"], init["head.mlp.0.weight"])

    # Each centre update used the teacher rows of BOTH ranks (different records, different outputs).
    for (t0, before0, after0), (t1, _, after1) in zip(r0["updates"], r1["updates"]):
        assert not torch.equal(t0, t1)
        rows = torch.cat([t0.reshape(-1, t0.shape[-1]), t1.reshape(-1, t1.shape[-1])])
        want = 0.9 * before0 + 0.1 * rows.mean(0, keepdim=True)
        torch.testing.assert_close(after0, want)
        assert torch.equal(after0, after1)

    # Only rank 0 wrote the run's files, and its backbone is the (shared) student's.
    assert sorted(p.name for p in out.iterdir()) == [  # (its lock lives beside it)
        "backbone.pt",
        "checkpoint.pt",
        "digests.json",
        "log.csv",
        "provenance.json",
        "summary.json",
    ]
    logged = float((out / "log.csv").read_text().splitlines()[1].split(",")[1])
    assert logged == pytest.approx(sum(r0["loss"] + r1["loss"]) / 4, rel=1e-6)  # both ranks' steps
    saved = torch.load(out / "backbone.pt", weights_only=True)
    assert all(torch.equal(saved[k], r0["student"]["backbone." + k]) for k in saved)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["run"]["world_size"] == 2 and len(ck["view_rng"]) == 2
    assert not torch.equal(ck["view_rng"][0], ck["view_rng"][1])  # each rank draws its own views
