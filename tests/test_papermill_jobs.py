"""Notebooks as the unit of work: `reproduce.ensure_pretrain` / `ensure_finetune` compute one run
and what it needs through reproduce's own planning (skipping finished work), the documented
papermill command runs one fold end to end and resumes after a kill, and
`reproduce --as-notebooks` keeps one executed notebook per run beside its results."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ecgssl_nb.study import notebook_jobs, paths
from ecgssl_nb import provenance
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.settings import get_profile
from ecgssl_nb.data.fixture import make_fixture
from ecgssl_nb.study.recipes import apply_recipe
from ecgssl_nb.study.reproduce import (
    Job,
    RunsFailed,
    ensure_finetune,
    ensure_pretrain,
    read_study_config,
    reproduce,
    Placement,
    run_jobs,
    write_study_config,
)
from ecgssl_nb.stages import pretrain as pretrain_stage

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parent.parent
TINY = get_profile("tiny")
# The tiny profile shrunk to seconds: 1 pre-training epoch of 2 views and a 64-wide head,
# fine-tunings of 1 crop per record and 1 epoch (3 for t: a checkpoint to kill after).
SMALL_SETTINGS = [
    "pretrain.epochs=1",
    "pretrain.batch_size=16",
    "pretrain.n_local=0",
    "pretrain.out_dim=64",
    "pretrain.warmup_epochs=0",
    "finetune.crops=1",
    "finetune.epochs.t=1",
    "finetune.epochs.s=1",
]
SMALL_PRE = replace(TINY.pretrain["time"], epochs=1, batch_size=16, n_local=0, out_dim=64, warmup_epochs=0)
SMALL = replace(
    TINY,
    pretrain={"time": SMALL_PRE, "spec": SMALL_PRE},
    finetune=replace(TINY.finetune, crops=1, epochs={f: 1 for f in ("t", "s", "tsc", "tsg")}),
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_fixture(tmp_path_factory.mktemp("pm") / "fixture", n_records=60, seed=0)


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_ensure_finetune_computes_prepare_and_its_pretraining_once_with_reproduces_own_folders(data_dir, tmp_path):
    kw = dict(data=data_dir, device="cpu", settings=SMALL_SETTINGS)
    first = ensure_finetune("tiny", tmp_path, "ssl-t", 0, **kw)
    assert first.statuses == {"pretrain time": "done", "finetune ssl-t fold 0": "done"}  # spec is not needed
    assert first.folder == paths.finetune_dir(tmp_path, "tiny", "ssl-t", 0)
    assert (first.folder / "result.json").is_file() and (first.prepared / "signals.npy").is_file()
    assert not paths.pretrain_run_dir(tmp_path, "tiny", "spec").exists()
    stamp = (first.folder / "result.json").stat().st_mtime_ns
    again = ensure_finetune("tiny", tmp_path, "ssl-t", 0, **kw)
    assert again.statuses == {"pretrain time": "skipped", "finetune ssl-t fold 0": "skipped"}
    assert (first.folder / "result.json").stat().st_mtime_ns == stamp
    assert ensure_pretrain("tiny", tmp_path, "time", **kw).statuses == {"pretrain time": "skipped"}
    # one source of truth: reproduce plans the same runs with the same requests, so it skips them
    root = reproduce(
        "tiny",
        data_dir=data_dir,
        out=tmp_path,
        setups="ssl-t",
        folds="0",
        ablation=False,
        progress=False,
        settings=SMALL_SETTINGS,
    )
    assert json.loads((root / "manifest.json").read_text())["counts"] == {
        "done": 0,
        "skipped": 2,
        "failed": 0,
        "blocked": 0,
    }
    # another setting re-runs the fine-tuning only (the pre-training's request is unchanged)
    changed = ensure_finetune(
        "tiny",
        tmp_path,
        "ssl-t",
        0,
        data=data_dir,
        device="cpu",
        settings=";".join(SMALL_SETTINGS + ["finetune.lr=2e-3"]),
    )
    assert changed.statuses == {"pretrain time": "skipped", "finetune ssl-t fold 0": "done"}


def test_ensure_finetune_raises_naming_the_pretraining_that_failed(data_dir, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("pre-training diverged")

    monkeypatch.setattr(pretrain_stage, "pretrain", broken)
    with pytest.raises(RunsFailed) as err:
        ensure_finetune("tiny", tmp_path, "ssl-t", 0, data=data_dir, device="cpu", settings=SMALL_SETTINGS)
    assert [f[0] for f in err.value.failures] == ["pretrain time", "finetune ssl-t fold 0"]
    assert err.value.failures[0][2] == "RuntimeError: pre-training diverged"
    assert err.value.failures[1][2].startswith("needs pretrain time")
    assert not (paths.finetune_dir(tmp_path, "tiny", "ssl-t", 0) / "result.json").exists()


def test_study_config_carries_a_customised_profile_and_refuses_settings_beside_it(tmp_path):
    prof = replace(apply_recipe(SMALL, "B7"), folds=(0, 3))
    path = write_study_config(tmp_path, prof, 5)
    assert path == tmp_path / "tiny" / "jobs" / "study.json"
    assert read_study_config(path) == (prof, 5)
    with pytest.raises(UserError, match="holds the resolved settings"):
        ensure_finetune("tiny", tmp_path, "t", 0, config=path, settings="finetune.lr=1")
    with pytest.raises(UserError, match="profile 'paper' differs"):
        ensure_finetune("paper", tmp_path, "t", 0, config=path)
    with pytest.raises(UserError, match="seed 1 differs from the seed 5"):
        ensure_finetune("tiny", tmp_path, "t", 0, config=path, seed=1)
    path.write_text('{"profile": {"name": "tiny"}}')
    with pytest.raises(UserError, match="not a study settings file"):
        read_study_config(path)
    with pytest.raises(UserError, match="only ssl-t and ssl-s have ablation runs"):
        ensure_finetune("tiny", tmp_path, "t", 0, transforms="gn")


def _papermill_fold(runs: Path, data_dir: Path, out: Path, settings: list[str]) -> str:
    """The documented command: jupytext to ipynb on stdout, piped into papermill with -p values."""
    return (
        f"{shlex.quote(_bin('jupytext'))} --to ipynb -o - notebooks/04_finetune.py | "
        f"{shlex.quote(_bin('papermill'))} - {shlex.quote(str(out))} --cwd notebooks --no-progress-bar "
        f"-p profile tiny -p data {shlex.quote(str(data_dir))} -p runs {shlex.quote(str(runs))} "
        f"-p setup ssl-t -p fold 0 -p device cpu -p settings {shlex.quote(';'.join(settings))}"
    )


@pytest.mark.slow
def test_papermill_fold_computes_what_is_missing_resumes_after_a_kill_and_then_skips_everything(data_dir, tmp_path):
    runs = tmp_path / "runs"
    settings = [s for s in SMALL_SETTINGS if not s.startswith("finetune.epochs.t")] + ["finetune.epochs.t=4"]
    cmd = _papermill_fold(runs, data_dir, tmp_path / "out" / "04_ssl-t_fold0.ipynb", settings)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run_dir = paths.finetune_dir(runs, "tiny", "ssl-t", 0)
    backbone = paths.pretrain_run_dir(runs, "tiny", "time") / "backbone.pt"
    (tmp_path / "out").mkdir()

    # 1. kill papermill and its kernel once the pre-training is finished and the fine-tuning checkpointed
    with open(tmp_path / "killed.log", "w") as fh:
        proc = subprocess.Popen(
            ["bash", "-c", cmd], cwd=ROOT, env=env, start_new_session=True, stdout=fh, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoint.pt").is_file():
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert not (run_dir / "result.json").exists(), "killed before the run finished"
    assert backbone.is_file() and (runs / "tiny" / "prepared" / "signals.npy").is_file()
    killed_log = pd.read_csv(run_dir / "log.csv")
    # the log is written after the checkpoint: it never shows an epoch that the resume runs again
    assert len(killed_log) <= provenance.load_checkpoint(run_dir / "checkpoint.pt")["epoch"]
    backbone_stamp = backbone.stat().st_mtime_ns

    # 2. the same command resumes: the pre-training is reused, the fine-tuning goes on from its checkpoint
    subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert backbone.stat().st_mtime_ns == backbone_stamp
    log = pd.read_csv(run_dir / "log.csv")
    assert len(log) == 4
    pd.testing.assert_frame_equal(log.iloc[: len(killed_log)], killed_log)  # epochs before the kill kept, not re-run
    result = (run_dir / "result.json").read_bytes()
    assert json.loads(result)["setup"] == "ssl-t" and not (run_dir / "checkpoint.pt").exists()
    executed = nbformat.read(tmp_path / "out" / "04_ssl-t_fold0.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["fold"] == 0
    assert not [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]

    # 3. once more: everything is finished, nothing is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "result.json", run_dir / "provenance.json", backbone)}
    subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert (run_dir / "result.json").read_bytes() == result
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _requests(root: Path) -> dict:
    return {
        str(p.parent.relative_to(root)): provenance.read(p.parent)["request"]
        for p in sorted(root.rglob("provenance.json"))
        if p.parent.name not in ("tables", "prepared")
    }


@pytest.mark.slow
def test_reproduce_as_notebooks_keeps_one_executed_notebook_per_run_and_matches_the_in_process_study(
    data_dir, tmp_path
):
    kw = dict(data_dir=data_dir, setups="t,ssl-t", folds="0", ablation=False, progress=False, devices="cpu")
    nb_root = reproduce(SMALL, out=tmp_path / "nb", as_notebooks=True, **kw)
    runs = [
        nb_root / "pretrain" / "time",
        nb_root / "finetune" / "t" / "fold0",
        nb_root / "finetune" / "ssl-t" / "fold0",
    ]
    for run in runs:
        executed = nbformat.read(run / notebook_jobs.NOTEBOOK_RECORD, as_version=4)
        given = executed.metadata.papermill.parameters
        assert given["study_config"] == str(nb_root / "jobs" / "study.json") and given["device"] == "cpu"
        assert not [
            o
            for c in executed.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.get("output_type") == "error"
        ]
    assert not list(tmp_path.rglob("*.partial.ipynb")) and not list((ROOT / "notebooks").glob("*.ipynb"))

    in_root = reproduce(SMALL, out=tmp_path / "inproc", **kw)
    # the customised profile reached the notebooks: every run was asked exactly what the in-process study asked
    nb_req, in_req = _requests(nb_root), _requests(in_root)
    assert set(nb_req) == set(in_req) == {"pretrain/time", "finetune/t/fold0", "finetune/ssl-t/fold0"}
    for name in ("pretrain/time", "finetune/t/fold0"):
        assert nb_req[name] == in_req[name]
    assert nb_req["finetune/ssl-t/fold0"]["settings"] == in_req["finetune/ssl-t/fold0"]["settings"]
    for table in ("table1", "table2"):
        a, b = (pd.read_csv(r / "tables" / f"{table}.csv") for r in (nb_root, in_root))
        assert list(a.columns) == list(b.columns)
        assert a[["setting", "protocol"]].equals(b[["setting", "protocol"]])

    again = reproduce(SMALL, out=tmp_path / "nb", as_notebooks=True, **kw)
    counts = json.loads((again / "manifest.json").read_text())["counts"]
    assert counts == {"done": 0, "skipped": 3, "failed": 0, "blocked": 0}


def test_chapter_notebooks_declare_every_parameter_a_job_passes_and_unknown_ones_are_refused(tmp_path):
    import jupytext

    job = {"profile", "runs", "data", "seed", "device", "study_config", "transforms"}
    pre = notebook_jobs.declared_parameters(jupytext.read(notebook_jobs.chapter("pretrain")))
    ft = notebook_jobs.declared_parameters(jupytext.read(notebook_jobs.chapter("finetune")))
    assert job | {"modality"} <= pre and job | {"setup", "fold"} <= ft
    with pytest.raises(UserError, match="04_finetune.py has no parameter config"):
        notebook_jobs.execute("finetune", {"config": "x.json", "fold": 0}, tmp_path / "run" / "notebook.ipynb")
    assert not list(tmp_path.rglob("*.ipynb"))


def test_a_real_data_profile_shows_its_finished_runs_without_the_records_and_needs_them_to_prepare(data_dir, tmp_path):
    kw = dict(device="cpu", settings=SMALL_SETTINGS)
    with pytest.raises(UserError, match="data is required for profile 'samples'"):
        ensure_finetune("samples", tmp_path, "t", 0, **kw)
    made = ensure_finetune("samples", tmp_path, "t", 0, data=data_dir, **kw)
    assert made.statuses == {"finetune t fold 0": "done"}
    shown = ensure_finetune("samples", tmp_path, "t", 0, **kw)  # no records: the prepared folder as it is
    assert shown.statuses == {"finetune t fold 0": "skipped"} and shown.folder == made.folder


def test_several_devices_run_each_notebook_job_in_its_own_process_and_keep_its_failure(tmp_path):
    job = Job("finetune", "finetune t fold 0", tmp_path / "run", notebook={"config": "x.json"})
    run_jobs([job], "cpu", Placement(local_cpus=2), progress=False, as_notebooks=True)
    assert job.status == "failed" and job.device == "cpu"
    assert "04_finetune.py has no parameter config" in job.reason
    assert "04_finetune.py has no parameter config" in (tmp_path / "run" / "error.txt").read_text()
    assert (
        "-m ecgssl_nb.study.notebook_jobs finetune" in (tmp_path / "run.run.log").read_text()
    )  # a child process ran it
    assert not (tmp_path / "run" / notebook_jobs.NOTEBOOK_RECORD).exists()
