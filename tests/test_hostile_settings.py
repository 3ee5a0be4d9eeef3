"""Hostile settings and the failures that named nothing (issue 18, causes 3 and 7).

Cause 3: every setting has a range, declared with its field (`settings._setting`) and checked once,
when the settings object is built, so a bad value is refused on one line naming the key before
any folder is claimed: the corrected run then starts in the same --out. Seeds are 0 <= n < 2**63
in every command that takes one.
Cause 7: papermill's `-p fold abc`, a checkpoint write under a file-size limit, and
`reproduce --as-notebooks` with a relative --out each give one line naming the culprit (or work).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ecgssl_nb import config
from ecgssl_nb.study import notebook_jobs, params, reproduce
from ecgssl_nb.__main__ import main
from ecgssl_nb.config import read_config
from ecgssl_nb.core import settings
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.settings import AugmentConfig, FinetuneConfig, PretrainConfig, Profile, get_profile

ROOT = Path(__file__).resolve().parent.parent
TINY = get_profile("tiny")


def _finetune_argv(prepared: Path, out: Path, *extra: str) -> list[str]:
    """A zero-epoch fine-tuning of setup t on fold 0 (an evaluation: about a second)."""
    return ["finetune", "--setup", "t", "--fold", "0", "--epochs", "0", "--no-progress",
            "--prepared", str(prepared), "--out", str(out), *extra]  # fmt: skip


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- cause 3: one range per setting, declared with it, checked when the settings are built ------


@pytest.mark.parametrize("cls", [AugmentConfig, PretrainConfig, FinetuneConfig, Profile], ids=lambda c: c.__name__)
def test_every_setting_declares_its_meaning_and_its_range_with_its_field(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("what"), f"{cls.__name__}.{f.name} says nothing of what it is"
        assert isinstance(f.metadata.get("range"), settings.Range), f"{cls.__name__}.{f.name} declares no range"
    help_text = config.settings_help(cls)  # the same table serves --help
    assert all(f"  {f.name}: " in help_text or f"  {f.name}." in help_text for f in dataclasses.fields(cls))


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda c: replace(c.finetune, lr=-1.0), "lr"),
        (lambda c: replace(c.finetune, min_lr={"t": -5.0, "s": 1e-6, "tsc": 1e-5, "tsg": 1e-5}), "min_lr.t"),
        (lambda c: replace(c.finetune, min_lr={"t": 0.5, "s": 1e-6, "tsc": 1e-5, "tsg": 1e-5}), "min_lr.t"),
        (lambda c: replace(c.finetune, epochs={"t": 3}), "epochs"),
        (lambda c: replace(c.finetune, threshold_grid=(float("nan"),)), "threshold_grid"),
        (lambda c: replace(c.finetune, ablation_folds=(12,)), "ablation_folds"),
        (lambda c: replace(c.pretrain["time"], teacher_momentum=float("nan")), "teacher_momentum"),
        (lambda c: replace(c.pretrain["time"], out_dim=True), "out_dim"),
        (lambda c: replace(c, seed=2**64), "seed"),
        (lambda c: replace(c, folds=()), "folds"),
    ],
)
def test_settings_out_of_range_are_refused_when_built_so_no_way_in_skips_the_check(change, key):
    with pytest.raises(UserError) as e:
        change(TINY)
    assert str(e.value).startswith(f"{key} ") and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "item, key",
    [
        ("lr=-1", "lr"),
        ("batch_records.t=0", "batch_records.t"),
        ("epochs={}", "epochs"),
        ("threshold_grid=[NaN]", "threshold_grid"),
        ('threshold_grid=["a","b"]', "threshold_grid"),
        ("min_lr.t=-5", "min_lr.t"),
    ],
)
def test_a_bad_set_value_is_refused_on_one_line_and_the_corrected_run_then_starts_in_the_same_out(
    prepared_corpus, tmp_path, capsys, item, key
):
    out = tmp_path / "ft"
    assert main(_finetune_argv(prepared_corpus, out, "--set", item)) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: --set {item}: {key} ") and "must" in line
    assert not out.exists()  # nothing written, nothing claimed
    assert main(_finetune_argv(prepared_corpus, out)) == 0  # the corrected run is not refused
    assert (out / "result.json").is_file()


@pytest.mark.parametrize(
    "field, value, key",
    [("lr", float("nan"), "lr"), ("epochs", {"t": "3", "s": 3, "tsc": 3, "tsg": 3}, "epochs.t")],
)
def test_a_config_file_with_a_nan_or_a_text_number_names_the_file_and_the_key(tmp_path, field, value, key):
    path = tmp_path / "ft.json"
    path.write_text(json.dumps(config.as_dict(TINY.finetune) | {field: value}))  # json writes NaN as NaN
    with pytest.raises(UserError, match=rf"^--config {path}: {key} must be ") as e:
        read_config(FinetuneConfig, path)
    assert "\n" not in str(e.value)


def test_a_config_file_with_a_bad_value_leaves_the_out_folder_unclaimed(prepared_corpus, tmp_path, capsys):
    path, out = tmp_path / "ft.json", tmp_path / "ft"
    path.write_text(json.dumps(config.as_dict(TINY.finetune) | {"lr": float("nan")}))
    assert main(_finetune_argv(prepared_corpus, out, "--config", str(path))) == 2
    assert f"--config {path}: lr must be" in _one_line(capsys.readouterr().err)
    assert not out.exists()
    assert main(_finetune_argv(prepared_corpus, out)) == 0


def test_reproduce_set_names_the_key_as_written_and_plans_nothing(tmp_path, capsys, monkeypatch):
    def planned(*a, **k):
        raise AssertionError("reproduce planned a study with a bad setting")

    monkeypatch.setattr(reproduce, "plan", planned)
    with pytest.raises(UserError, match=r"^--set finetune\.epochs\.t=-1: finetune\.epochs\.t must be an integer >= 0"):
        reproduce.resolve_study("tiny", settings=["finetune.epochs.t=-1"])
    with pytest.raises(UserError, match=r"^--set pretrain\.time\.student_temp=0: pretrain\.time\.student_temp must"):
        reproduce.resolve_study("tiny", settings=["pretrain.time.student_temp=0"])
    out = tmp_path / "runs"
    assert main(["reproduce", "--out", str(out), "--no-progress", "--set", "finetune.epochs.t=-1"]) == 2
    assert "--set finetune.epochs.t=-1: finetune.epochs.t" in _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_seeds_are_zero_to_two_to_the_63_the_range_torch_and_the_results_tables_hold():
    from ecgssl_nb.core.errors import check_seed

    assert check_seed("--seed", 2**63 - 1) == 2**63 - 1
    for bad in (2**63, 2**64, -1, True, 1.0):
        with pytest.raises(UserError, match=r"^--seed must be an integer 0 <= n < 2\*\*63"):
            check_seed("--seed", bad)


def test_a_seed_beyond_64_bits_is_refused_by_every_command_before_anything_is_written(
    fixture_corpus, prepared_corpus, tmp_path, capsys, monkeypatch
):
    big = str(2**64)
    for argv, out in (
        (["fixture", "--records", "24"], tmp_path / "fx"),
        (["prepare", "--data-dir", str(fixture_corpus), "--workers", "1"], tmp_path / "prep"),
    ):
        assert main([*argv, "--out", str(out), "--seed", big]) == 2
        assert "seed must be an integer 0 <= n < 2**63" in _one_line(capsys.readouterr().err)
        assert not out.exists()
    out = tmp_path / "ft"
    assert main(_finetune_argv(prepared_corpus, out, "--seed", big)) == 2
    assert "--seed must be an integer 0 <= n < 2**63" in _one_line(capsys.readouterr().err)
    assert not out.exists()
    pre = tmp_path / "pre"
    argv = ["pretrain", "--modality", "time", "--prepared", str(prepared_corpus), "--out", str(pre), "--seed", big]
    assert main([*argv, "--no-progress"]) == 2
    assert "--seed must be" in _one_line(capsys.readouterr().err)
    assert not pre.exists()
    monkeypatch.setattr(reproduce, "plan", lambda *a, **k: pytest.fail("reproduce planned with a bad seed"))
    runs = tmp_path / "runs"
    assert main(["reproduce", "--out", str(runs), "--no-progress", "--seed", big]) == 2
    assert "--seed must be" in _one_line(capsys.readouterr().err)
    assert not runs.exists()
    with pytest.raises(UserError, match="seed"):  # a notebook's seed (papermill -p seed ...)
        params.resolve({"seed": 2**64}, environ={})


# --- cause 7: one line naming the parameter, the file, or a path that works ------------------------


@pytest.mark.parametrize("value", ["abc", 1.5, True])
def test_a_papermill_fold_that_is_not_an_integer_is_one_line_naming_the_parameter(value):
    with pytest.raises(UserError, match=rf"^parameter fold={value!r} is not an integer$"):
        params.resolve({"fold": value}, environ={})
    assert params.resolve({"fold": "3"}, environ={}) == {"fold": 3}  # papermill's text of a number


_FSIZE_SCRIPT = """
import resource, signal, sys, torch
from ecgssl_nb import checkpoint
from ecgssl_nb.atomic import WriteError
path = sys.argv[1]
checkpoint.save(path, {"run": {"epoch": 0}})  # the last good checkpoint, a few hundred bytes
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process at the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
try:
    checkpoint.save(path, {"run": {"epoch": 1}, "w": torch.zeros(10_000)})
except WriteError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def test_a_checkpoint_write_under_a_file_size_limit_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, str(path)], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr
    line = _one_line(done.stderr)
    assert line.startswith(f"error: cannot write {path}: File too large"), line
    assert "unexpected pos" not in line
    from ecgssl_nb import provenance

    assert provenance.load_checkpoint(path)["run"] == {"epoch": 0}  # the old checkpoint is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary file left


def test_the_cli_prints_a_refused_write_on_one_line_naming_the_file(monkeypatch, capsys):
    from ecgssl_nb import atomic
    from ecgssl_nb.data import fixture

    def refused(argv):
        raise atomic.WriteError(27, "File too large", "runs/x/checkpoint.pt")  # what atomic_write raises

    monkeypatch.setattr(fixture, "cli", refused)
    assert main(["fixture"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == "error: cannot write runs/x/checkpoint.pt: File too large (errno 27); the file is left as it was"


def test_reproduce_as_notebooks_hands_every_notebook_absolute_paths_when_out_is_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prof, seed = reproduce.resolve_study("tiny")
    jobs = reproduce.plan(prof, seed, "runs", None, ("t", "ssl-t"), (0,), (0,), False)
    nb_jobs = [j for j in jobs.pre_jobs + jobs.ft_jobs if j.notebook]
    assert nb_jobs
    for job in nb_jobs:
        for name in ("runs", "data", "samples", "study_config"):
            value = job.notebook.get(name)
            assert not value or Path(value).is_absolute(), f"{job.name}: {name}={value!r} is relative"
        assert Path(job.notebook["study_config"]) == tmp_path / "runs" / "tiny" / "jobs" / "study.json"


def test_a_notebook_job_given_relative_paths_runs_its_kernel_with_absolute_ones(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    seen = {}

    def fake_execute(nb, output, parameters, cwd, **kw):
        seen.update(parameters=parameters, cwd=cwd)
        Path(output).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.chdir(tmp_path)
    given = {"runs": "runs", "data": "", "study_config": "runs/tiny/jobs/study.json", "fold": 0}
    notebook_jobs.execute("finetune", given, "runs/tiny/ft/notebook.ipynb")
    assert seen["cwd"] == str(notebook_jobs.NOTEBOOK_DIR)
    assert seen["parameters"] == {
        "runs": str(tmp_path / "runs"),
        "data": "",
        "study_config": str(tmp_path / "runs/tiny/jobs/study.json"),
        "fold": 0,
    }
    assert (tmp_path / "runs/tiny/ft/notebook.ipynb").is_file()


def test_the_book_shows_each_view_setting_with_the_range_that_checks_it():
    from ecgssl_nb.analysis import dataset

    got = dataset.augment_settings()
    assert got.at["augment.time_global_scale", "range"] == "a pair (lo, hi) with 0.0 < lo <= hi <= 1.0"
    assert got.at["augment.time_cutout_mode", "range"] == "one of per_lead, paper"
