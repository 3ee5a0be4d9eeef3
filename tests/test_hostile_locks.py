"""Locks and concurrent writers, as a hostile but realistic user meets them (issue 18, causes 1 and
6): a folder's lock lives beside it, so `--force` moving the folder aside neither moves nor frees
it; a finished run is read without its lock (no write access needed); a process that needs a
folder another one is writing takes the lock first and checks again (no look-then-leap), says
whom it waits for, and gives up after a bounded wait naming the holder."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecgssl_nb.study import jobs, paths
from ecgssl_nb import provenance
from ecgssl_nb.study import reproduce as rp
from ecgssl_nb.__main__ import main
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.study.reproduce import RunsFailed, ensure_finetune, reproduce
from ecgssl_nb.stages import finetune as ft

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The tiny profile shrunk to seconds (as tests/test_papermill_jobs.py): 1 pre-training epoch of 2
# views and a 64-wide head, fine-tunings of 1 crop per record and 0 epochs (the initial network).
SMALL_SETTINGS = [
    "pretrain.epochs=1",
    "pretrain.batch_size=16",
    "pretrain.n_local=0",
    "pretrain.out_dim=64",
    "pretrain.warmup_epochs=0",
    "finetune.crops=1",
    "finetune.epochs.t=0",
]


def _finetune_argv(prepared: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--setup", "t", "--fold", "0", "--prepared", str(prepared), "--out", str(out), *extra]


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of every file and folder below `folder`: what a write would change."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def live_forced_finetune(prepared_corpus, tmp_path):
    """`finetune --out ft --epochs 12 --force` in another process, over an `ft` made by another
    request (so --force moves it aside), stopped once it trains: yields (process, ft)."""
    out = tmp_path / "ft"
    out.mkdir()
    provenance.write(out, provenance.request("finetune", {"someone": "else"}, {}, 0))
    (out / "notes.txt").write_text("an earlier run")
    code = (
        "import sys, time\nfrom ecgssl_nb.stages import finetune as ft\nfrom ecgssl_nb.__main__ import main\n"
        "def _train(run):\n    print('training', flush=True)\n    time.sleep(120)\n"
        f"ft._train = _train\nsys.exit(main({_finetune_argv(prepared_corpus, out, '--epochs', '12', '--force')!r}))\n"
    )
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    try:
        assert any(ln.strip() == "training" for ln in iter(first.stdout.readline, ""))  # (after: ft moved aside)
        yield first, out
    finally:
        first.kill()
        first.wait()


def _trained_beside(run) -> dict:
    raise AssertionError(f"a second process trains {run.out} beside the live first one")


def test_a_resume_beside_a_live_forced_finetune_is_refused_naming_it_and_not_suggesting_resume(
    live_forced_finetune, prepared_corpus, monkeypatch, capsys
):
    first, out = live_forced_finetune
    monkeypatch.setattr(ft, "_train", _trained_beside)
    code = main(_finetune_argv(prepared_corpus, out, "--epochs", "12", "--resume", "--no-progress"))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and f"in use by pid {first.pid} on {socket.gethostname()} since" in err
    assert "--resume" not in err


def test_a_force_while_another_process_writes_the_folder_is_refused_and_changes_nothing(
    live_forced_finetune, prepared_corpus, monkeypatch, capsys
):
    first, out = live_forced_finetune
    before, asides = _tree(out), sorted(p.name for p in out.parent.glob("ft.stale-*"))
    monkeypatch.setattr(ft, "_train", _trained_beside)
    code = main(_finetune_argv(prepared_corpus, out, "--epochs", "3", "--force", "--no-progress"))
    assert code == 2 and f"in use by pid {first.pid}" in capsys.readouterr().err
    assert _tree(out) == before and sorted(p.name for p in out.parent.glob("ft.stale-*")) == asides
    assert provenance.read(out)["request"]["settings"]["config"]["epochs"]["t"] == 12  # still the first's


def test_a_folder_where_the_lock_file_goes_is_one_line_naming_it(prepared_corpus, tmp_path, capsys):
    out = tmp_path / "ft"
    (out / ".lock").mkdir(parents=True)  # where the lock lived before (inside the folder)
    (tmp_path / ".ft.lock").mkdir()  # where it lives now (beside it)
    code = main(_finetune_argv(prepared_corpus, out, "--epochs", "0", "--no-progress"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(tmp_path / ".ft.lock") in err and "is a folder" in err
    assert not (out / "provenance.json").exists()


def test_a_lock_folder_left_inside_out_is_neither_a_traceback_nor_a_refusal(prepared_corpus, tmp_path, capsys):
    out = tmp_path / "ft"
    (out / ".lock").mkdir(parents=True)
    assert main(_finetune_argv(prepared_corpus, out, "--epochs", "0", "--no-progress")) == 0
    assert (out / "result.json").is_file()


def test_reusing_a_finished_finetune_writes_nothing(prepared_corpus, tmp_path):
    out = tmp_path / "ft"
    assert main(_finetune_argv(prepared_corpus, out, "--epochs", "0", "--no-progress")) == 0
    before = _tree(tmp_path)
    assert main(_finetune_argv(prepared_corpus, out, "--epochs", "0", "--no-progress")) == 0
    assert _tree(tmp_path) == before  # not even its lock file was opened for writing


@pytest.fixture(scope="module")
def finished_study(fixture_corpus, tmp_path_factory):
    """A finished study (setup t, fold 0) of the small settings, in its own runs folder."""
    runs = tmp_path_factory.mktemp("finished") / "runs"
    kw = dict(data_dir=fixture_corpus, out=runs, setups="t", folds="0", ablation=False, progress=False)
    reproduce("tiny", settings=SMALL_SETTINGS, **kw)
    return runs


def test_showing_a_finished_study_writes_nothing_into_its_runs_folder(finished_study, fixture_corpus):
    before = _tree(finished_study)
    target = ensure_finetune("tiny", finished_study, "t", 0, data=fixture_corpus, settings=SMALL_SETTINGS)
    assert target.statuses == {"finetune t fold 0": "skipped"}
    assert _tree(finished_study) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root from writing")
def test_a_finished_study_in_a_read_only_folder_is_shown(finished_study, fixture_corpus):
    folders = [finished_study, *(p for p in finished_study.rglob("*") if p.is_dir())]
    for p in folders:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        target = ensure_finetune("tiny", finished_study, "t", 0, data=fixture_corpus, settings=SMALL_SETTINGS)
    finally:
        for p in folders:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert target.statuses == {"finetune t fold 0": "skipped"}


def _hold(folder: Path, hold_s: float) -> subprocess.Popen:
    """Another process holding `folder`'s lock for `hold_s` seconds (running once it has it)."""
    code = (
        "import time\nfrom ecgssl_nb import provenance as P\n"
        f"with P.lock({str(folder)!r}):\n    print('locked', flush=True)\n    time.sleep({hold_s})\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_lock_taken_between_the_look_and_the_run_is_waited_for_and_leaves_no_note(
    fixture_corpus, tmp_path, monkeypatch, capsys
):
    """Cause 6's race made certain: another process takes the run's lock just after this one
    decided what to run. The run waits for it, then runs; nothing is written into the folder
    while the other holds it."""
    folder = paths.finetune_dir(tmp_path, "tiny", "t", 0)
    real, holders = rp.run_jobs, []

    def run_jobs(jobs, *a, **k):
        if jobs[0].folder == folder and not holders:
            holders.append(_hold(folder, 1.5))  # the other notebook starts the same run now
        return real(jobs, *a, **k)

    monkeypatch.setattr(rp, "run_jobs", run_jobs)
    try:
        target = ensure_finetune("tiny", tmp_path, "t", 0, data=fixture_corpus, settings=SMALL_SETTINGS)
    finally:
        for h in holders:
            h.kill()
            h.wait()
    assert target.statuses == {"finetune t fold 0": "done"} and (folder / "result.json").is_file()
    assert not (folder / "error.txt").exists()
    assert f"waiting: finetune t fold 0 {folder} is in use by pid {holders[0].pid}" in capsys.readouterr().err


@pytest.mark.slow  # a local Ray cluster and a child process
def test_a_ray_task_waits_for_the_process_that_holds_its_folder_then_runs_and_leaves_no_note(prepared_corpus, tmp_path):
    folder = tmp_path / "t-fold0"
    job = rp.Job("finetune", "finetune t fold 0", folder, {"setup": "t", "fold": 0, "prepared": prepared_corpus})
    job.args |= {"out": folder, "settings": ["epochs.t=0"], "progress": False}
    holder = _hold(folder, 15)  # e.g. another driver or a notebook computing this run
    try:
        rp.run_jobs([job], "cpu", rp.Placement(local_cpus=2), progress=False)  # on Ray: a child process
    finally:
        holder.kill()
        holder.wait()
    assert job.status == "done" and (folder / "result.json").is_file()
    assert f"is in use by pid {holder.pid}" in jobs.log_path(job).read_text()  # it said whom it waited for
    assert not (folder / "error.txt").exists()


def test_a_wait_says_whom_it_waits_for_then_says_it_again_and_ends_when_the_holder_does(tmp_path, capsys):
    holder = _hold(tmp_path / "run", 1.2)
    try:
        t0 = time.monotonic()
        with provenance.lock(tmp_path / "run", wait_s=30, tell_every_s=0.4):
            waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert waited < 20 and err.count(f"in use by pid {holder.pid}") >= 2
    assert err.startswith("waiting: ") and "still waiting (" in err and "(for at most 30 s)" in err


def test_a_bounded_wait_gives_up_naming_the_holder_and_leaves_the_folder_alone(fixture_corpus, tmp_path, capsys):
    folder = paths.finetune_dir(tmp_path, "tiny", "t", 0)
    holder = _hold(folder, 60)
    try:
        t0 = time.monotonic()
        with pytest.raises(RunsFailed, match=rf"in use by pid {holder.pid}.*gave up after waiting"):
            ensure_finetune("tiny", tmp_path, "t", 0, data=fixture_corpus, settings=SMALL_SETTINGS, wait_s=0.5)
        assert time.monotonic() - t0 < 30
    finally:
        holder.kill()
        holder.wait()
    assert not folder.exists()  # no error.txt written into a folder another process holds
    assert "waiting: finetune t fold 0" in capsys.readouterr().err  # said, though progress is off


def test_ensure_finetune_wait_must_be_seconds(fixture_corpus, tmp_path):
    for bad in (-1, float("nan"), "5", True):
        with pytest.raises(UserError, match="wait_s must be a number of seconds >= 0"):
            ensure_finetune("tiny", tmp_path, "t", 0, data=fixture_corpus, wait_s=bad)


_NOTEBOOK = """
import json, os, sys, time
from pathlib import Path
from ecgssl_nb.study.reproduce import ensure_finetune
runs, data, fold, settings = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
Path(runs, f"ready{fold}").touch()
while not all(Path(runs, f"ready{k}").exists() for k in (0, 1)):  # start together
    time.sleep(0.01)
t = ensure_finetune("tiny", runs, "ssl-t", fold, data=data, settings=settings, max_steps=1)
print(json.dumps(t.statuses))
"""


@pytest.mark.slow
def test_two_notebooks_started_together_share_prepare_and_the_pretraining_and_both_finish(fixture_corpus, tmp_path):
    """Two `ensure_finetune` calls (ssl-t folds 0 and 1) in two processes started together: one
    prepares and pre-trains, the other waits for it saying so, reuses both, and no folder gets
    the other's error.txt."""
    settings = json.dumps(SMALL_SETTINGS)
    cmd = [sys.executable, "-c", _NOTEBOOK, str(tmp_path), str(fixture_corpus)]
    procs = [
        subprocess.Popen([*cmd, str(k), settings], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        for k in (0, 1)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    statuses = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(s["pretrain time"] for s in statuses) == ["done", "skipped"]
    assert [s[f"finetune ssl-t fold {k}"] for k, s in enumerate(statuses)] == ["done", "done"]
    waits = [(k, err) for k, (_, err) in enumerate(outs) if "waiting: " in err]
    assert waits and all(f"in use by pid {procs[1 - k].pid}" in err for k, err in waits)
    assert not list(tmp_path.rglob("error.txt"))
    for k in (0, 1):
        assert (paths.finetune_dir(tmp_path, "tiny", "ssl-t", k) / "result.json").is_file()
