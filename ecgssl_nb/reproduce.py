"""`python -m ecgssl_nb reproduce`: the whole study in one command, resumable, run by run.

The study is planned, then run: `plan(...)` returns every job as data (a `Job`: the command,
the keyword arguments of its function, what it needs) without writing or running anything;
`run_jobs` runs them, one at a time in this process (one device, one run at a time: the tiny
book build) or as Ray tasks (`cluster`: several runs at once, GPUs, `--address`), each as
itself or as its chapter notebook; `write_tables` makes the tables. Steps, in order:

1. Data. For the tiny profile without --data-dir, the synthetic fixture is written
   (`profile.fixture_records` records; kept when a complete one is there). Then `prepare` runs,
   which does nothing when the folder is already prepared from the same input.
2. Pre-trainings (`pretrain_stage.pretrain`). The main ones, time (t1 views) and spec (t2 views), run only
   for the modalities the chosen ssl- setups need. With the ablation on, the Fig. 3 ones follow:
   time-{none,tc,gn} and spec-{none,tc,fc}, for ssl-t / ssl-s. A finished pre-training (its
   backbone.pt and summary.json, of the same request) is skipped; an interrupted one resumes.
3. Fine-tunings (`finetune.finetune`, protocol "both"): every chosen setup on every chosen fold,
   then the ablation runs. The ablation fine-tunes ssl-t / ssl-s from each ablation backbone; t1
   and t2 are the main ssl-t / ssl-s runs. A run whose result.json exists (same request, its digests intact) is
   skipped; an interrupted one resumes from its checkpoint (see Provenance below). Steps 2
   and 3 run together: each run starts once the runs it needs exist (a scratch fine-tuning at
   once, an ssl- one when its backbones are written). On Ray each fine-tuning holds
   `--gpus-per-run` of a GPU (default 1/`--runs-per-device`, the profile's k) and each
   pre-training `--gpus-per-pretrain` GPUs (DDP inside its task when more than one); a task whose
   worker dies runs again (`--retries`). A failing run does not stop the others: its traceback
   goes to `<run>/error.txt` and it is listed at the end. A run whose pre-training failed is
   reported as blocked.
4. Tables. `tables/table2.csv` holds the 8 setups beside paper Table II, and `tables/table1.csv`
   holds SSL-T, SSL-S and SSL-TSG beside Table I, for both protocols. `tables/fig3.csv` holds the
   transform ablation. All come from `results.load_results` / `aggregate` / `compare_with_paper`.

Smoke mode (`--max-steps N`): the profile's exact settings, but every pre-training and fine-tuning
stops after N optimisation steps, then evaluates and writes every output as usual, marked
`"smoke": true` (summary.json, result.json, tables, manifest); such numbers are never results, and a
smoke study and a full one never share a runs folder. `--protocol paper-exact` fine-tunes on the
nine folds other than the outer one, as the authors trained (paper protocol only): that is the
released recipe's departure B14 (`recipes`), so its runs and tables live below
`OUT/recipes/b14/<profile>/` and never mix with the eight-fold runs.

One run at a time (the notebooks' way in). `ensure_finetune(profile, runs, setup, fold, ...)` and
`ensure_pretrain(profile, runs, modality, ...)` compute exactly one run and whatever it needs and is
missing (the fixture, prepare, the pre-trainings its setup uses), through the same planning code
(`plan`), job specs and provenance rules as the study, skipping finished work; they return a
`Target` (the run's folder, the prepared folder, the resolved profile). A folder that another
process is writing (two folds that need the same missing pre-training) is waited for in its lock
(taken first, then the folder checked again: no look-then-leap), at most `wait_s` (default
`LOCK_WAIT_S`), saying on stderr whom it waits for, then reused; a finished run is read without
its lock, so a finished study can be shown from a read-only folder. Notebooks 03 and 04 call them, so one papermill job per fold is a way
to run the study, on one device or several:

    jupytext --to ipynb -o - notebooks/04_finetune.py | papermill - out/04_ssl-tsg_fold3.ipynb \
        --cwd notebooks -p profile paper -p data /data/challenge2020 -p runs /scratch/runs \
        -p setup ssl-tsg -p fold 3 -p device cuda

As notebooks (`--as-notebooks`): every pre-training and fine-tuning job runs as its chapter
notebook (03 or 04) through papermill (`notebook_jobs`), with the job's parameters and
`study_config` = RUNS/<profile>/jobs/study.json (the resolved profile and seed, so a customised
profile runs the same in this process, as a subprocess and as a notebook). The executed notebook
is kept as `<run folder>/notebook.ipynb`; a finished run without one runs its notebook, which then
only shows it. On Ray each task runs its notebook.

`manifest.json` records what ran, when, with which versions and devices, where the runs went
(`placement`: in this process, or Ray with the resources asked), which node, host and GPU ids ran
each run, when it started and ended, and the wall time of each step and run (s); `wall_s` is the study's total over every call (`call_wall_s` the last
call's), and a run skipped now keeps the wall time measured when it ran. It is rewritten after
every step, so an interrupted study still shows how far it got.
The folder layout is in `paths`.

Provenance. Every run's folder holds `provenance.json` (`provenance`): its request = the resolved
settings, the prepared corpus's digest (and the backbone files' digests for ssl- runs), the seed.
A run counts as finished only when its request equals the one asked now and every output its
digests.json records hashes as written (`Job.output_fault`: a changed, truncated or replaced
backbone.pt or result.json is not finished); otherwise its folder is
moved aside (`<folder>.stale-<time>`, nothing is deleted), the differences are printed and kept
in the manifest (`runs.<name>.replaced`), and it runs again. So only what depends on a change
re-runs: new data re-runs everything; a pre-training setting re-runs that pre-training and the
ssl- fine-tunings of its backbone; a fine-tuning setting re-runs the fine-tunings; `--seed` (the
training seed: initialisation, record order, crops and views of every pre-training and
fine-tuning) re-runs both, while the data (fixture, folds) keep the profile's seed. Jobs get the
resolved settings, never a profile name: in this process as config objects, as subprocesses as
`--config RUNS/<profile>/jobs/<job>.json`, so a customised profile runs the same on one device
or several.
"""

from __future__ import annotations

import argparse
import json
import platform
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import cluster, notebook_jobs, paths, provenance
from .atomic import write_csv_atomic, write_json_atomic, write_text_atomic
from .cluster import Placement
from .config import apply_settings, as_dict, config_from_dict
from .core.errors import UserError, check_int, check_seed
from .core.settings import (
    MODALITIES,
    N_FOLDS,
    SETUPS,
    FinetuneConfig,
    PretrainConfig,
    Profile,
    SettingError,
    check_fold,
    check_modality,
    check_setup,
    get_profile,
    is_ssl,
    parse_folds,
    resolve_device,
    setup_family,
    setup_modalities,
)
from .recipes import STAGES, affected_setups, apply_recipe, expand_recipes, parse_recipe, recipe_spec, stage_runs

__all__ = [
    "reproduce",
    "cli",
    "RunsFailed",
    "parse_setups",
    "parse_devices",
    "write_tables",
    "Job",
    "ensure_pretrain",
    "ensure_finetune",
    "Target",
    "resolve_study",
    "plan",
    "Plan",
    "run_jobs",
    "Placement",
    "write_study_config",
    "read_study_config",
]


class RunsFailed(Exception):
    """Some runs of a study failed (the others finished; tables were written from them).
    `failures` lists (job name, folder, one-line reason); `root` is the study folder."""

    def __init__(self, root: Path, failures: list[tuple[str, str, str]]):
        self.root = root
        self.failures = failures
        lines = "\n".join(f"  {name}: {reason} (see {folder}/error.txt)" for name, folder, reason in failures)
        super().__init__(f"{len(failures)} run(s) failed in {root}:\n{lines}")


# --- arguments ---------------------------------------------------------------------------------


def parse_setups(setups: str | Sequence[str] | None) -> tuple[str, ...]:
    """'all' -> every setup; 't,tsg' or a list -> those, in the paper's order."""
    if setups is None or setups == "all":
        return SETUPS
    items = [s.strip() for s in setups.split(",")] if isinstance(setups, str) else list(setups)
    items = [s for s in items if s]
    if not items:
        raise UserError(f"--setups {setups!r} names no setup; use 'all' or a list like t,tsg,ssl-t")
    for s in items:
        check_setup(s)
    return tuple(s for s in SETUPS if s in items)


def parse_devices(devices: str | Sequence[str] | None, profile: Profile) -> list[str]:
    """'0,1' -> ['cuda:0', 'cuda:1']; 'cpu' -> ['cpu']; 'cpu,cpu' -> two CPU workers; None -> every
    visible GPU for the paper profile (UserError when there is none), the profile's device
    otherwise. Each entry runs one pre-training at a time and `runs_per_device` fine-tunings
    (`run_jobs`)."""
    if devices is None:
        if profile.device.startswith("cuda"):
            n = torch.cuda.device_count()
            if n == 0:
                raise UserError(
                    f"profile {profile.name!r} runs on GPUs but none is visible; pass --devices cpu "
                    f"to run it on the CPU anyway"
                )
            return [f"cuda:{i}" for i in range(n)]
        return [resolve_device(profile.device)]
    items = [d.strip() for d in devices.split(",")] if isinstance(devices, str) else [str(d) for d in devices]
    items = [d for d in items if d]
    if not items:
        raise UserError(f"--devices {devices!r} names no device; use e.g. 0,1 or cpu")
    out = []
    for d in items:
        d = f"cuda:{d}" if d.isdigit() else d
        if (
            d.startswith("cuda:")
            and d[5:].isdigit()
            and torch.cuda.is_available()
            and int(d[5:]) >= torch.cuda.device_count()
        ):
            raise UserError(f"--devices: {d} does not exist ({torch.cuda.device_count()} GPUs visible)")
        out.append(resolve_device(d))
    return out  # a device named twice is two entries: twice the runs on it at a time (e.g. cpu,cpu)


def _folds(folds, default: tuple) -> tuple[int, ...]:
    if folds is None:
        return tuple(default)
    if isinstance(folds, str):
        return parse_folds(folds)
    out = tuple(check_fold(f) for f in folds)
    if not out:
        raise UserError("--folds names no fold")
    return tuple(dict.fromkeys(out))


# --- jobs: one spec, run in this process, as a subprocess or as a notebook ----------------------


_FLAGS = {"prepared_dir": "--prepared"}  # keyword argument -> command-line flag, where the names differ


@dataclass
class Job:
    """One unit of work as data: a `python -m ecgssl_nb` command (`kind`) and the keyword
    arguments of its function (`args`, without the device), so that it runs the same in this
    process (`call`), as a subprocess (`argv`) and as its chapter notebook (`notebook`)."""

    kind: str  # "fixture", "prepare", "pretrain" or "finetune"
    name: str  # e.g. "finetune ssl-tsg fold 3", "pretrain time-gn"
    folder: Path
    args: dict = field(default_factory=dict)  # pretrain_stage.pretrain / finetune.finetune keyword arguments
    needs: list[Job] = field(default_factory=list)  # jobs that must have succeeded (or been done before)
    log: Path | None = None  # subprocess output (default: beside the folder, <folder>.run.log)
    config_file: Path | None = None  # where a subprocess's --config (args["config"]) is written
    notebook: dict | None = None  # papermill parameters of its chapter, without the device
    status: str = "todo"  # todo, skipped (done before), done, failed, blocked
    reason: str = ""
    wall_s: float = 0.0
    device: str = ""
    node: str = ""  # where it ran on Ray: the node id, its host name and the GPU ids Ray gave it
    host: str = ""
    gpu_ids: list[str] = field(default_factory=list)
    started: float = 0.0  # time.time() when it started and ended (0: not run in this call)
    ended: float = 0.0
    replaced: list[str] = field(default_factory=list)  # why an earlier folder was moved aside (differences)
    lock_wait_s: float | None = (
        None  # in this process: wait this long for another writer of the folder (None: LOCK_WAIT_S)
    )

    @property
    def record(self) -> Path:
        """<folder>/notebook.ipynb: the executed chapter notebook of this run (`--as-notebooks`)."""
        return self.folder / notebook_jobs.NOTEBOOK_RECORD

    def finished_files(self) -> bool:
        """The run's outputs and their digests.json (the completion mark) are there."""
        names = ("result.json",) if self.kind == "finetune" else ("backbone.pt", "summary.json")
        return all((self.folder / n).is_file() for n in (*names, provenance.DIGESTS))

    def output_fault(self, want: dict) -> str | None:
        """Why the finished outputs may not be reused for `want` (the full check: every byte
        against digests.json; a fine-tuning's result.json made under `want`), None if they may."""
        if self.kind == "finetune":
            from .stages import finetune as ft  # ~25 ms at import: only when a stage runs

            return ft.finished_fault(self.folder, want)
        from .stages.pretrain import OUTPUTS  # scipy (via prepare): only when a stage runs

        return provenance.digest_fault(self.folder, OUTPUTS, full=True)

    def request(self) -> dict | None:
        """The provenance request this run must match to be reused (read off the prepared folder
        and the backbone files, so only once they exist); None: reused when its files are there."""
        from .prepare import load_prepared  # scipy: only when a stage reads or writes its data

        a = self.args
        if self.kind == "pretrain":
            from .stages.pretrain import pretrain_request  # scipy (via prepare): only when a stage runs

            # The settings that change the result, amp and the global batch among them (in the
            # config); the process count, compile mode, checkpoint cadence and log_every are only
            # recorded, so a finished torchrun backbone is reused (pretrain_stage.pretrain_request).
            digest = load_prepared(a["prepared_dir"]).digest
            return pretrain_request(a["config"], a["modality"], a["transforms"], a["seed"], digest)
        if self.kind != "finetune":
            return None
        from .core import classify  # torch: ~1.3 s at import, only when a stage runs
        from .stages import finetune as ft  # torch: ~1.3 s at import, only when a stage runs

        prep, cfg, setup, fold = load_prepared(a["prepared"]), a["config"], a["setup"], a["fold"]
        n_folds = int(prep.stats.get("n_folds", int(prep.index["fold"].max()) + 1))
        inner = classify.inner_fold(fold, n_folds, cfg.protocol)
        files = ft.resolve_pretrained(setup, a["pretrained"])
        epochs = cfg.epochs[setup_family(setup)]
        return ft.finetune_request(cfg, setup, fold, inner, epochs, cfg.protocol, a["seed"], prep.digest, files)

    def done_before(self) -> bool:
        """Finished earlier with the request asked now. A folder made by another request is not:
        its differences go to `replaced` (the run moves it aside and runs again)."""
        if not self.finished_files():
            return False
        try:
            want = self.request()
            rec = provenance.read(self.folder) if want is not None else None
        except UserError as exc:  # unreadable record, or an input (a backbone) missing
            self.replaced = [str(exc)]
            return False
        if want is None:
            return True
        if rec is None:
            self.replaced = ["it has no provenance.json"]
            return False
        self.replaced = provenance.differences(rec["request"], want)
        fault = None if self.replaced else self.output_fault(want)
        if fault:
            self.replaced = [fault]
        return not self.replaced

    def call(self, device: str) -> object:
        """Run a pre-training or fine-tuning job in this process on `device`."""
        if self.kind == "pretrain":
            from .stages import pretrain as pretrain_stage  # scipy (via prepare): only when a stage runs

            return pretrain_stage.pretrain(**self.args, device=device)
        from .stages import finetune as ft  # ~25 ms at import: only when a stage runs

        return ft.finetune(**self.args, device=device)

    def argv(self, device: str) -> list[str]:
        """The command line after `python -m ecgssl_nb` that runs this job on `device`: each
        keyword argument as its flag, the config written to `config_file` (resolved settings,
        never a profile name), a Profile as --profile and --recipe, a dict as --KEY-<key> items."""
        out = [self.kind]
        on_device = {"device": device} if self.kind in ("pretrain", "finetune") else {}  # (fixture, prepare: none)
        for key, value in {**self.args, **on_device}.items():
            flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
            if key == "progress":
                out.append("--no-progress")  # the output goes to a log
            elif key == "config":
                out += [flag, str(_write_json(self.config_file, as_dict(value)))]
            elif isinstance(value, Profile):
                out += [flag, value.name, "--recipe", recipe_spec(value.departures)]
            elif isinstance(value, dict):
                out += [arg for m, p in value.items() for arg in (f"{flag}-{m}", str(p))]
            elif value is True:
                out.append(flag)
            elif value is not None and value is not False:
                out += [flag, str(value)]
        return out


def _write_json(path: Path, data: dict) -> Path:
    return write_json_atomic(path, data)


def _write_error(folder: Path, text: str) -> None:
    write_text_atomic(folder / "error.txt", text)


def _drop_own_notes(folder: Path) -> None:
    """Remove the error.txt that a blocked or failed-before-start run left in a folder holding
    nothing else (no provenance.json, no results): our own note, so the run can claim the folder
    instead of moving a note aside."""
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= {"error.txt", provenance.LOCK}:
        (folder / "error.txt").unlink(missing_ok=True)


def _succeeded(job: Job) -> None:
    job.status = "done"
    (job.folder / "error.txt").unlink(missing_ok=True)  # an earlier failure of this run, now fixed


def _failed(job: Job, reason: str, text: str | None) -> None:
    """A failing run must not lose the others: its reason and its traceback (error.txt) are kept.
    text None: nothing is written (the folder is another process's, which holds its lock)."""
    job.status, job.reason = "failed", reason[:300]
    if text is not None:
        _note(job, text)


def _note(job: Job, text: str) -> None:
    """`text` as the job's error.txt, written under its folder's lock; a folder that another
    process holds (it is writing that run, e.g. a notebook) is left alone: the reason stays in
    the job, the manifest and RunsFailed."""
    try:
        with provenance.lock(job.folder, what=job.name):
            job.folder.mkdir(parents=True, exist_ok=True)
            _write_error(job.folder, text)
    except UserError:  # Busy, or a lock that cannot be taken (named in the job's reason when it is the cause)
        return


def _log_path(job: Job) -> Path:
    return job.log or job.folder.with_name(f"{job.folder.name}.run.log")  # not inside: the run claims its folder


def _run_inprocess(job: Job, device: str) -> None:
    """Run `job` here under its folder's lock, taken first and waited for (another process, e.g. a
    notebook, may be writing it), then checked again: what that process finished is skipped."""
    wait_s = LOCK_WAIT_S if job.lock_wait_s is None else job.lock_wait_s
    try:
        with provenance.lock(job.folder, what=job.name, wait_s=wait_s, lend=True):  # the stage's own lock: lent
            told = list(job.replaced)
            if job.done_before():
                job.status = "skipped"
                return
            if job.replaced != told:  # judged only now (a job it needs ran in this study)
                _say_replaced(job)
            job.call(device)
    except KeyboardInterrupt:
        raise
    except provenance.Busy as exc:  # never got the folder: leave nothing in it
        return _failed(job, f"{type(exc).__name__}: {exc}", None)
    except Exception as exc:
        return _failed(job, f"{type(exc).__name__}: {exc}".splitlines()[0], traceback.format_exc())
    _succeeded(job)


def _run_notebook(job: Job, device: str, in_child: bool) -> None:
    """Run `job` as its chapter notebook (`notebook_jobs.CHAPTERS`) through papermill with the job's
    parameters; the executed notebook goes to <folder>/notebook.ipynb (atomically, once it
    succeeded). in_child: in a `python -m ecgssl_nb.notebook_jobs` process (several devices)."""
    params = {**job.notebook, "device": device}
    try:
        if in_child:
            notebook_jobs.execute_subprocess(job.kind, params, job.record, _log_path(job))
        else:
            notebook_jobs.execute(job.kind, params, job.record)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return _failed(job, f"{type(exc).__name__}: {exc}".strip().splitlines()[-1], traceback.format_exc())
    _succeeded(job)


def _run_one(job: Job, device: str, as_notebooks: bool) -> None:
    """Run one job on `device` in this process (as_notebooks: as its chapter notebook)."""
    t0, job.started = time.perf_counter(), time.time()
    job.device = device
    if as_notebooks:
        _run_notebook(job, device, False)
    else:
        _run_inprocess(job, device)
    job.wall_s, job.ended = time.perf_counter() - t0, time.time()


def _pending(jobs: list[Job], as_notebooks: bool) -> list[Job]:
    """The jobs to run: those not finished before with the request asked now (as notebooks: also
    a finished one without its executed notebook). The others are marked skipped. A job that
    needs one that runs now is not judged here: its request holds that job's output digests, so
    it is checked when it starts (`_run_inprocess`), once the new outputs exist."""
    todo: list[Job] = []
    for job in jobs:
        waits = any(any(n is t for t in todo) for n in job.needs)
        if not waits and job.done_before() and not (as_notebooks and not job.record.is_file()):
            job.status = "skipped"
            continue
        _drop_own_notes(job.folder)
        _say_replaced(job)
        todo.append(job)
    return todo


def _say_replaced(job: Job) -> None:
    """Say on stderr why `job`'s folder cannot be reused (it runs again; what it holds is moved aside)."""
    if job.replaced and job.folder.exists():
        shown = "; ".join(job.replaced[:4]) + ("; ..." if len(job.replaced) > 4 else "")
        print(
            f"reproduce: {job.name}: {job.folder} cannot be reused ({shown}); running it again "
            f"(what it holds is moved aside)",
            file=sys.stderr,
        )


def _blocked(job: Job) -> bool:
    """Mark `job` blocked (with a note in its folder) when a job it needs failed or was blocked."""
    bad = [n.name for n in job.needs if n.status in ("failed", "blocked")]
    if bad:
        job.status, job.reason = "blocked", f"needs {', '.join(bad)}, which failed"
        _note(job, f"not run: {job.reason}\n")
    return bool(bad)


class _Bar:
    """One progress bar over the study's runs: done (or found finished), in flight and failed,
    by kind; calls `on_update` after each run (reproduce rewrites its manifest)."""

    def __init__(self, todo: list[Job], progress: bool, on_update: Callable[[], None] | None):
        from tqdm.auto import tqdm

        self.todo, self.on_update = todo, on_update
        self.bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress, file=sys.stderr)

    def done(self, job: Job) -> None:
        self.bar.update(1)
        ended = {"done", "skipped", "failed", "blocked"}
        parts = []
        for kind in ("pretrain", "finetune"):
            mine = [j for j in self.todo if j.kind == kind]
            if mine:
                n_ok = sum(j.status in ("done", "skipped") for j in mine)
                parts.append(f"{kind} {n_ok}/{len(mine)}")
        ready = [j for j in self.todo if j.status not in ended and all(n.status in ended for n in j.needs)]
        failed = sum(j.status in ("failed", "blocked") for j in self.todo)
        self.bar.set_postfix_str(f"{', '.join(parts)}; {len(ready)} running or queued, {failed} failed")
        if self.on_update is not None:
            self.on_update()


def run_jobs(
    jobs: list[Job],
    device: str = "cpu",
    place: Placement | None = None,
    progress: bool = True,
    on_update: Callable[[], None] | None = None,
    as_notebooks: bool = False,
) -> None:
    """Run `jobs` (needs first; finished ones skipped, those whose needs failed blocked): one at a
    time in this process on `device` when `place` is None, else as Ray tasks placed by `place`
    (`cluster`), each starting once the jobs it needs succeeded. as_notebooks: each job runs as its
    chapter notebook (`notebook_jobs`), and a finished run without its executed notebook runs the
    notebook (which then only shows the run)."""
    todo = _pending(jobs, as_notebooks)
    if not todo:
        return
    bar = _Bar(todo, progress, on_update)
    try:
        if place is None:
            for job in todo:
                if not _blocked(job):
                    _run_one(job, device, as_notebooks)
                bar.done(job)
        else:
            with cluster.connect(place):
                cluster.run(todo, place, Path.cwd(), as_notebooks, bar.done)
    finally:
        bar.bar.close()


# --- tables ------------------------------------------------------------------------------------


def write_tables(runs: str | Path, profile: str) -> dict[str, Path]:
    """Write tables/table1.csv, table2.csv (ours beside the paper, both protocols) and
    tables/fig3.csv (the transform ablation, both protocols) from the finished runs; a table
    without any finished run is not written. Returns {name: path} of the tables written.
    tables/provenance.json lists every run aggregated (folder, result digest, prepared digest,
    settings fingerprint, code version). Runs of different data or settings are refused
    (UserError naming two of them); folders moved aside (*.stale-*) are never read. Rows of smoke
    runs carry `smoke` = True. Every table is computed before the tables folder is touched, so a
    refusal leaves the tables written before as they were."""
    import warnings

    from .analysis.results import check_one_study, load_results  # pandas tables: ~10 ms at import

    written = {}
    ft_root = paths.profile_root(runs, profile) / "finetune"
    ab_root = paths.profile_root(runs, profile) / "ablation" / "finetune"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        main = load_results(ft_root) if ft_root.is_dir() else pd.DataFrame()
        ab = load_results(ab_root) if ab_root.is_dir() else pd.DataFrame()
    if not len(main) and not len(ab):
        return written
    check_one_study(pd.concat([f for f in (main, ab) if len(f)]))  # UserError naming two runs that differ
    tables = _tables(main, ab)  # every other refusal (aggregate's) also comes before anything moves
    with provenance.lock(paths.tables_dir(runs, profile), what="tables folder", wait_s=600):  # another driver
        provenance.claim(
            paths.tables_dir(runs, profile),
            _tables_request(runs, profile, [main, ab]),
            force=True,
            what="tables folder",
        )
        return _write_tables(runs, profile, tables)


def _tables_request(runs, profile: str, frames: list[pd.DataFrame]) -> dict:
    """The tables' provenance: every run they aggregate (its folder, result.json digest, prepared
    digest, settings fingerprint and code version). Tables are rebuilt on every call; a folder
    of tables made from other runs is moved aside first."""
    root = paths.profile_root(runs, profile)
    df = pd.concat([f for f in frames if len(f)]).drop_duplicates("path")
    made = {}
    for _, r in df.iterrows():
        rel = str(Path(r["path"]).parent.relative_to(root))
        made[rel] = {
            "result_sha256": provenance.sha256_file(r["path"]),
            **{k: r[k] if isinstance(r[k], str) else None for k in ("digest", "settings_id", "code_version")},
        }
    digests = sorted({str(d) for d in df["digest"] if isinstance(d, str)})
    seeds = sorted({int(x) for x in df["seed"] if x is not None and x == x})
    return provenance.request(
        "tables",
        {"profile": profile, "runs": made},
        {"prepared": ",".join(digests)},
        seeds[0] if len(seeds) == 1 else -1,
    )


def _tables(main: pd.DataFrame, ab: pd.DataFrame) -> dict[str, pd.DataFrame | None]:
    """table1, table2 and fig3 as frames (None: no run for it); UserError if the runs may not be
    aggregated."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {**(_paper_tables(main) if len(main) else {}), "fig3": _fig3_table(main, ab)}


def _write_tables(runs, profile: str, tables: dict[str, pd.DataFrame | None]) -> dict[str, Path]:
    return {
        name: write_csv_atomic(paths.table_path(runs, profile, name), df)
        for name, df in tables.items()
        if df is not None
    }


def _paper_tables(main: pd.DataFrame) -> dict[str, pd.DataFrame | None]:
    """table2 (every setup beside paper Table II) and table1 (SSL-T, SSL-S, SSL-TSG beside Table I),
    one block per protocol; None for a table without any run."""
    from .analysis.results import aggregate, compare_with_paper  # pandas tables: ~10 ms at import

    tables = {}
    for name, table, keep in (("table2", "II", None), ("table1", "I", ("ssl-t", "ssl-s", "ssl-tsg"))):
        parts = []
        for protocol in sorted(main["protocol"].unique()):
            agg = aggregate(main, protocol)
            if keep is not None:
                agg = agg.loc[[s for s in agg.index if s in keep]]
            if len(agg):
                parts.append(compare_with_paper(agg, table))
        tables[name] = pd.concat(parts).reset_index() if parts else None
    return tables


def _fig3_table(main: pd.DataFrame, ab: pd.DataFrame) -> pd.DataFrame | None:
    """Fig. 3: per modality, protocol and view set (the ablation runs, and the main ssl-t / ssl-s
    runs on the same folds as t1 / t2), mean and std over folds of every metric; None without
    ablation runs."""
    rows = []
    for modality, setup in paths.ABLATION_SETUPS.items():
        part = ab[ab["run"].str.startswith(f"{setup}-")] if len(ab) else pd.DataFrame()
        if len(part) == 0:  # no ablation for this modality
            continue
        # the full view set (t1 / t2) on the folds the ablation ran, so every bar compares like with like
        same = (main["setup"] == setup) & main["fold"].isin(part["fold"]) if len(main) else None
        full = main[same].assign(run=f"{setup}-{paths.MAIN_TRANSFORMS[modality]}") if len(main) else main
        rows += _fig3_rows(modality, setup, pd.concat([p for p in (part, full) if len(p)]))
    if not rows:
        return None
    order = {t: i for m, ts in paths.ABLATION_TRANSFORMS.items() for i, t in enumerate((*ts, paths.MAIN_TRANSFORMS[m]))}
    df = pd.DataFrame(rows)
    df["_o"] = df["transforms"].map(order)
    df = df.sort_values(["modality", "protocol", "_o"], ascending=[False, True, True]).drop(columns="_o")
    return df.reset_index(drop=True)


def _fig3_rows(modality: str, setup: str, both: pd.DataFrame) -> list[dict]:
    from .analysis.results import METRIC_KEYS, aggregate  # pandas tables: ~10 ms at import

    rows = []
    for protocol in sorted(both["protocol"].unique()):
        for run, r in aggregate(both, protocol, by="run").iterrows():
            row = {"modality": modality, "transforms": run[len(setup) + 1 :], "setup": setup, "protocol": protocol}
            row |= {k: r[k] for k in ("n_folds", "folds", "profile", "data", "smoke")}
            row |= {f"{m}_mean": r[f"{m}_mean"] for m in METRIC_KEYS} | {f"{m}_std": r[f"{m}_std"] for m in METRIC_KEYS}
            rows.append(row)
    return rows


# --- the study ---------------------------------------------------------------------------------


REPRODUCE_PROTOCOLS = ("paper", "paper-exact")


def _check_protocol(protocol: str) -> str:
    """'paper': 8 training folds, paper and honest protocols; 'paper-exact': 9 training folds as
    the authors trained, paper protocol only (the B14 departure, runs below OUT/recipes/b14/)."""
    if protocol not in REPRODUCE_PROTOCOLS:
        raise UserError(f"--protocol {protocol!r} is not a protocol; choose one of {', '.join(REPRODUCE_PROTOCOLS)}")
    return protocol


def _check_max_steps(max_steps) -> int:
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 0:
        raise UserError(f"--max-steps must be an integer >= 0 (0 = full run), got {max_steps!r}")
    return int(max_steps)


def _check_same_smoke(mpath: Path, max_steps: int) -> None:
    """A smoke study and a full one never share a runs folder (neither may reuse the other's runs)."""
    try:
        before = json.loads(mpath.read_text()) if mpath.exists() else None
    except (OSError, ValueError):
        return
    if before is not None and bool(before.get("smoke", False)) != bool(max_steps):
        was = "a smoke study (--max-steps)" if before.get("smoke") else "a full study"
        raise UserError(
            f"--out: {mpath.parent} holds {was}; run {'a full' if not max_steps else 'a smoke'} study "
            f"in another --out folder"
        )


def _versions() -> dict:

    return {
        "ecgssl_nb": provenance.package_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
    }


def _device_names(devices: list[str]) -> dict:
    out = {}
    for d in devices:
        if d.startswith("cuda") and torch.cuda.is_available():
            out[d] = torch.cuda.get_device_name(torch.device(d))
        else:
            out[d] = platform.processor() or platform.machine() or "cpu"
    return out


def resolve_settings(prof: Profile, items: Sequence[str] = ()) -> tuple[dict[str, PretrainConfig], FinetuneConfig]:
    """The profile's PretrainConfig per modality and FinetuneConfig with `--set` items applied:
    'pretrain.KEY=V' (both modalities), 'pretrain.time.KEY=V', 'finetune.KEY=V', or 'KEY=V' when
    only one of the two configs has KEY. Type-checked (config.apply_settings)."""
    pre_fields = set(PretrainConfig.__dataclass_fields__)
    ft_fields = set(FinetuneConfig.__dataclass_fields__)
    pre_items: dict[str, list[tuple[str, str]]] = {m: [] for m in prof.pretrain}  # (item, as written)
    ft_items: list[tuple[str, str]] = []
    for item in map(str, items or ()):
        key, _, value = item.partition("=")
        head, _, rest = key.partition(".")
        if head == "pretrain":
            sub, _, tail = rest.partition(".")
            targets = [sub] if sub in prof.pretrain and tail else list(prof.pretrain)
            for m in targets:
                pre_items[m].append((f"{tail if sub in prof.pretrain and tail else rest}={value}", item))
            continue
        if head == "finetune":
            ft_items.append((f"{rest}={value}", item))
            continue
        in_pre, in_ft = head in pre_fields, head in ft_fields
        if in_pre and in_ft:
            raise UserError(
                f"--set {item}: {head!r} is a setting of both pre-training and fine-tuning; write "
                f"pretrain.{key}=... or finetune.{key}=..."
            )
        if not in_pre and not in_ft:
            raise UserError(
                f"--set {item}: {head!r} is not a setting (PretrainConfig: {', '.join(sorted(pre_fields))}; "
                f"FinetuneConfig: {', '.join(sorted(ft_fields))})"
            )
        for m in pre_items if in_pre else ():
            pre_items[m].append((item, item))
        if in_ft:
            ft_items.append((item, item))

    def _apply(cfg, pairs: list[tuple[str, str]]):
        return apply_settings(cfg, [i for i, _ in pairs], [w for _, w in pairs])  # messages name what was written

    return {m: _apply(c, pre_items[m]) for m, c in prof.pretrain.items()}, _apply(prof.finetune, ft_items)


def resolve_study(
    profile: str | Profile = "tiny",
    seed: int | None = None,
    settings: Sequence[str] = (),
    recipe: str | Sequence[str] = "corrected",
    max_steps: int = 0,
    protocol: str = "paper",
) -> tuple[Profile, int]:
    """The resolved request of a study: the profile with the recipe's departures, the `--set`
    items and the smoke limit applied to its configs (`prof.pretrain`, `prof.finetune` are then
    exactly what every job runs), and the training seed. `reproduce` and `ensure_*` share it."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise UserError(f"--profile must be a profile name, got {type(profile).__name__}")
    protocol, max_steps = _check_protocol(protocol), _check_max_steps(max_steps)
    if protocol == "paper-exact":  # the authors' nine training folds are the released recipe's B14
        recipe = tuple(sorted(set(parse_recipe(recipe)) | {"B14"}))
    prof = apply_recipe(prof, recipe)
    pre_cfgs, ft_cfg = resolve_settings(prof, settings)
    if max_steps:  # a smoke run: a setting like any other, so provenance never mixes it with a full run
        pre_cfgs = {m: replace(c, max_steps=max_steps) for m, c in pre_cfgs.items()}
        ft_cfg = replace(ft_cfg, max_steps=max_steps)
    train_seed = prof.seed if seed is None else seed
    return replace(prof, pretrain=pre_cfgs, finetune=ft_cfg), check_seed("--seed", train_seed)


def _check_data_dir(prof: Profile, data_dir) -> None:
    if data_dir is None and prof.data != "fixture":
        raise UserError(
            f"--data-dir is required for profile {prof.name!r}: the folder with the PhysioNet/CinC 2020 "
            f"records (`python -m ecgssl_nb download`)"
        )
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")


# --- planning: the jobs of a study, as data (nothing is written or run) ----------------------------


@dataclass
class Plan:
    """Every job of a study, not run: the data (the fixture when one is made, then prepare), the
    main pre-training of each modality the ssl- setups read, the Fig. 3 pre-trainings per
    (modality, transforms), and the fine-tunings (every setup on every fold, then the ablation)."""

    data: list[Job]
    main_pre: dict[str, Job]
    ablation_pre: dict[tuple[str, str], Job]
    ft_jobs: list[Job]
    data_kind: str | None  # 'fixture' when the plan makes the fixture; else inferred from the prepared folder

    @property
    def prep_dir(self) -> Path:
        return self.data[-1].folder

    @property
    def pre_jobs(self) -> list[Job]:
        return list(self.main_pre.values()) + list(self.ablation_pre.values())


@dataclass(frozen=True)
class _Context:
    """What every job of one plan shares: the resolved study and its folders."""

    prof: Profile
    seed: int
    out: Path
    data_dir: Path | None
    runs_pre: Path
    runs_ft: Path
    prep_dir: Path
    data_kind: str | None
    progress: bool

    def notebook(self, **extra) -> dict:
        """A job's papermill parameters: the resolved study travels in study.json (written by
        `reproduce --as-notebooks`), so a customised profile runs the same as a notebook. Every
        path is absolute: the kernel runs in notebooks/, not in this process's folder."""
        study = paths.job_file(self.runs_ft, self.prof.name, STUDY_CONFIG, ".json")
        data = str(Path(self.data_dir).resolve()) if self.data_dir else ""
        base = {"profile": self.prof.name, "runs": str(self.out.resolve()), "data": data, "seed": self.seed}
        return {
            **base,
            "recipe": "corrected",
            "settings": "",
            "max_steps": 0,
            **extra,
            "study_config": str(study.resolve()),
        }


def plan(
    prof: Profile,
    seed: int,
    out: str | Path,
    data_dir: str | Path | None = None,
    setups: tuple[str, ...] = SETUPS,
    folds: tuple[int, ...] | None = None,
    ablation_folds: tuple[int, ...] | None = None,
    ablation: bool = True,
    progress: bool = False,
) -> Plan:
    """The jobs of the study of `prof` (resolved, as `resolve_study` returns it) with training
    seed `seed` into the runs folder `out`, without writing or running anything. data_dir: the
    records (None: the synthetic fixture for a fixture profile, else the prepared folder as it
    is); folds / ablation_folds: the outer folds of the main / Fig. 3 fine-tunings (default the
    profile's). Each job runs with the resolved settings of `prof`."""
    out = Path(out)
    runs_prep, runs_pre, runs_ft = (stage_runs(out, prof.departures, st) for st in STAGES)
    prep_dir = paths.prepared_dir(runs_prep, prof.name)
    data = _data_jobs(prof, out, data_dir, prep_dir, progress)
    kind = "fixture" if data[0].kind == "fixture" else None
    c = _Context(prof, seed, out, data_dir, runs_pre, runs_ft, prep_dir, kind, progress)
    folds, default_ablation_folds = _fold_lists(prof, folds)
    ablation_folds = default_ablation_folds if ablation_folds is None else tuple(ablation_folds)
    used = [m for m in MODALITIES if any(is_ssl(s) and m in setup_modalities(s) for s in setups)]
    main_pre = {m: _pretrain_job(c, m, paths.MAIN_TRANSFORMS[m], ablated=False) for m in used}
    ablated = [m for m in MODALITIES if ablation and paths.ABLATION_SETUPS[m] in setups]
    ablation_pre = {
        (m, tr): _pretrain_job(c, m, tr, ablated=True) for m in ablated for tr in paths.ABLATION_TRANSFORMS[m]
    }
    ft_jobs = [_main_finetune_job(c, s, k, main_pre) for k in folds for s in setups]
    for k in ablation_folds:
        ft_jobs += [_ablation_finetune_job(c, m, tr, k, ablation_pre[(m, tr)]) for m, tr in ablation_pre]
    return Plan(data, main_pre, ablation_pre, ft_jobs, kind)


def _data_jobs(prof: Profile, out: Path, data_dir, prep_dir: Path, progress: bool) -> list[Job]:
    """Step 1: the fixture (a fixture profile without data), then `prepare` (force: a folder
    prepared from other data or settings is moved aside). A real-data profile without data: a
    prepare job without `data_dir`, which only checks the prepared folder (ensure_* shows it)."""
    if data_dir is None and prof.data != "fixture":
        return [Job("prepare", "prepare", prep_dir, {"data_dir": None, "out": prep_dir})]
    jobs = []
    if data_dir is None:
        fx = paths.fixture_dir(out, prof.name)
        jobs.append(Job("fixture", "fixture", fx, {"out": fx, "n_records": prof.fixture_records, "seed": prof.seed}))
        data_dir = fx
    args = {"data_dir": data_dir, "out": prep_dir, "workers": prof.workers, "progress": progress, "force": True}
    return [*jobs, Job("prepare", "prepare", prep_dir, {**args, "leads": prof.leads}, needs=list(jobs))]


def _pretrain_job(c: _Context, modality: str, transforms: str, ablated: bool) -> Job:
    """A pre-training: the main one of `modality` (t1 / t2 views) or a Fig. 3 one (`ablated`)."""
    name = f"pretrain {modality}-{transforms}" if ablated else f"pretrain {modality}"
    if ablated:
        folder = paths.ablation_pretrain_dir(c.runs_pre, c.prof.name, modality, transforms)
    else:
        folder = paths.pretrain_run_dir(c.runs_pre, c.prof.name, modality)
    args = {"prepared_dir": c.prep_dir, "out": folder, "modality": modality, "profile": c.prof.name}
    args |= {"config": c.prof.pretrain[modality], "transforms": transforms, "seed": c.seed}  # recipe applied
    args |= {"resume": True, "force": True, "progress": c.progress}
    notebook = c.notebook(modality=modality, transforms=transforms if ablated else "")
    return _job("pretrain", name, folder, args, [], c.runs_pre, c.prof.name, notebook)


def _finetune_job(
    c: _Context, name: str, folder: Path, setup: str, fold: int, pretrained, needs: list[Job], transforms: str = ""
) -> Job:
    args = {"setup": setup, "fold": int(fold), "prepared": c.prep_dir, "out": folder, "pretrained": pretrained}
    args |= {"profile": c.prof, "config": c.prof.finetune, "seed": c.seed, "data_kind": c.data_kind}
    args |= {"resume": True, "force": True, "protocol": None, "progress": c.progress}
    notebook = c.notebook(setup=setup, fold=int(fold), transforms=transforms)
    return _job("finetune", name, folder, args, needs, c.runs_ft, c.prof.name, notebook)


def _job(
    kind: str, name: str, folder: Path, args: dict, needs: list[Job], runs: Path, profile: str, notebook: dict
) -> Job:
    """A pre-training or fine-tuning job, its log and --config file in RUNS/<profile>/jobs/."""
    log, config = (paths.job_file(runs, profile, name, ext) for ext in (".log", ".json"))
    return Job(kind, name, folder, args, needs, log=log, config_file=config, notebook=notebook)


def _main_finetune_job(c: _Context, setup: str, fold: int, main_pre: dict[str, Job]) -> Job:
    """`setup` on outer `fold`; an ssl- setup reads the main pre-trainings of its modalities."""
    folder = paths.finetune_dir(c.runs_ft, c.prof.name, setup, fold)
    ssl = is_ssl(setup)
    needs = [main_pre[m] for m in setup_modalities(setup)] if ssl else []
    pretrained = paths.pretrain_dir(c.runs_pre, c.prof.name) if ssl else None
    return _finetune_job(c, f"finetune {setup} fold {fold}", folder, setup, fold, pretrained, needs)


def _ablation_finetune_job(c: _Context, modality: str, transforms: str, fold: int, pre: Job) -> Job:
    """Fig. 3: ssl-t / ssl-s on outer `fold` from the backbone of the ablation pre-training `pre`."""
    setup = paths.ABLATION_SETUPS[modality]
    folder = paths.ablation_finetune_dir(c.runs_ft, c.prof.name, modality, transforms, fold)
    name = f"ablation {setup}-{transforms} fold {fold}"
    return _finetune_job(c, name, folder, setup, fold, {modality: pre.folder / "backbone.pt"}, [pre], transforms)


def _make_data(job: Job, profile: str, wait_s: float = 0.0) -> Path:
    """Run a data job in this process: the fixture (a complete one of the same size, seed and
    version is kept), `prepare` (nothing to do when prepared from the same input), or, without
    records, check the prepared folder (UserError naming the profile when it is not usable).
    Another process writing the same folder is waited for at most `wait_s` seconds."""
    from .prepare import load_prepared, prepare  # scipy: only when a stage reads or writes its data

    if job.kind == "fixture":
        return _make_fixture(**job.args, wait_s=wait_s)
    if job.args["data_dir"] is not None:
        return prepare(**job.args, wait_s=wait_s)
    try:
        return load_prepared(job.folder).path
    except UserError as exc:
        raise UserError(f"data is required for profile {profile!r} to prepare the records ({exc})") from None


def _make_fixture(out: Path, n_records: int, seed: int, wait_s: float = 0.0) -> Path:
    """The fixture in `out`: a complete one of this size, seed and version is read as it is (no
    lock); else it is made under the folder's lock, checked again once the lock is held."""
    from .fixture import make_fixture  # scipy: only when the fixture is made

    if _fixture_done(out, n_records, seed):
        return out
    with provenance.lock(out, what="fixture", wait_s=wait_s):
        if _fixture_done(out, n_records, seed):  # made meanwhile by the process waited for
            return out
        return make_fixture(out, n_records=n_records, seed=seed)


def _fixture_done(out: Path, n_records: int, seed: int) -> bool:
    from .fixture import FIXTURE_VERSION, MARKER

    try:
        meta = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("complete")) and (meta.get("n_records"), meta.get("seed"), meta.get("version")) == (
        n_records,
        seed,
        FIXTURE_VERSION,
    )


# --- the study: plan, run, tables, manifest ------------------------------------------------------


def _fold_lists(prof: Profile, folds) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(outer folds of the main fine-tunings, of the Fig. 3 ones): `folds` for both, or by default
    the profile's folds and its smaller ablation folds."""
    fold_list = _folds(folds, prof.folds)
    if folds is None and prof.finetune.ablation_folds is not None:
        return fold_list, _folds(prof.finetune.ablation_folds, prof.folds)
    return fold_list, fold_list


def reproduce(
    profile: str | Profile = "tiny",
    data_dir: str | Path | None = None,
    out: str | Path = "runs",
    folds: str | Sequence[int] | None = None,
    setups: str | Sequence[str] = "all",
    devices: str | Sequence[str] | None = None,
    ablation: bool = True,
    progress: bool = True,
    seed: int | None = None,
    settings: Sequence[str] = (),
    recipe: str | Sequence[str] = "corrected",
    max_steps: int = 0,
    protocol: str = "paper",
    as_notebooks: bool = False,
    runs_per_device: int | None = None,
    address: str | None = None,
    gpus_per_run: float | None = None,
    cpus_per_run: float = 1.0,
    retries: int = cluster.RETRIES,
    gpus_per_pretrain: int = 1,
) -> Path:
    """Run the study of `profile` into OUT/<profile>/ (see the module docstring); returns that
    folder. folds: '0-9', '0,3' or a list (default the profile's); setups: 'all', 't,tsg' or a
    list; devices: '0,1', 'cpu' or a list (default: every visible GPU for the paper profile, the
    profile's device otherwise). seed: the training seed of every pre-training and fine-tuning
    (default the profile's); the data (fixture, folds) keep the profile's seed, so runs of two
    seeds are scored on the same folds. settings: `--set` items applied to the profile's configs
    ('pretrain.clip_grad=3', 'finetune.lr=1e-3', or unprefixed when only one config has the key).
    recipe: "corrected" (default), "released" or a set of released departures (see `recipes`); a
    recipe other than corrected runs below OUT/recipes/<label>/, sharing the stages it does not
    change. max_steps > 0: a smoke run of the profile's exact settings, every stage stopped after
    that many optimisation steps and marked smoke everywhere. protocol: "paper" (default) or
    "paper-exact" (nine training folds as the authors trained: the recipe's B14 departure, so its
    runs live below OUT/recipes/b14/). as_notebooks: run each pre-training and fine-tuning as its
    chapter notebook through papermill (03 / 04), keeping `<run folder>/notebook.ipynb`.
    runs_per_device: fine-tunings at once on each GPU (default the profile's `runs_per_device`,
    so gpus_per_run defaults to 1/k; pre-trainings keep a whole GPU). address: the Ray cluster to
    run on (default RAY_ADDRESS; else a local one when the study runs several jobs at once or on
    GPUs, and in this process when it runs one job at a time on one device); gpus_per_run: each
    fine-tuning's GPU share; gpus_per_pretrain: a pre-training's GPUs (more than 1: DDP inside its
    task, one process per GPU as torchrun starts them); cpus_per_run: CPU threads per job;
    retries: how often a job whose worker died runs again (`cluster`). None of these changes a result, so they are recorded in
    the manifest, not in the runs' provenance. Several calls on one runs folder share its work:
    each run is claimed by one of them (its folder's lock), the others wait for it. A run is
    skipped only when its folder's provenance request equals the one asked now; a run made by
    another request (other data, settings, seed, recipe or backbone) is moved aside and run
    again, and only what depends on the change re-runs. Calling it again resumes. Raises
    RunsFailed at the end (after the tables and the manifest) when any run failed."""
    t_start, started_at = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    prof, train_seed = resolve_study(profile, seed, settings, recipe, max_steps, protocol)
    if runs_per_device is not None:
        prof = replace(prof, runs_per_device=check_int("--runs-per-device", runs_per_device, 1))
    _check_data_dir(prof, data_dir)
    chosen = parse_setups(setups)
    fold_list, ablation_folds = _fold_lists(prof, folds)
    device_list = parse_devices(devices, prof) if not (address or os.environ.get("RAY_ADDRESS")) else ["ray"]
    place = _placement(prof, device_list, address, (gpus_per_run, gpus_per_pretrain, cpus_per_run), retries)
    jobs = plan(prof, train_seed, out, data_dir, chosen, fold_list, ablation_folds, ablation, progress)
    runs_ft = stage_runs(out, prof.departures, "finetune")
    root = paths.profile_root(runs_ft, prof.name)
    root.mkdir(
        parents=True, exist_ok=True
    )  # no study-wide lock: other drivers share the runs (each run locks its folder)
    head = {"started": started_at, "data_dir": str(data_dir) if data_dir is not None else None}
    head |= {"folds": list(fold_list), "ablation_folds": list(ablation_folds) if ablation else []}
    head |= {"setups": list(chosen), "ablation": bool(ablation), "as_notebooks": bool(as_notebooks)}
    head["placement"] = _placement_record(place, device_list)
    manifest = _Manifest(paths.manifest_path(runs_ft, prof.name), prof, train_seed, device_list, settings, head)
    _study(jobs, prof, train_seed, runs_ft, manifest, device_list[0], place, progress, as_notebooks)
    failures = manifest.finish(jobs.pre_jobs + jobs.ft_jobs, time.perf_counter() - t_start, progress)
    if failures:
        raise RunsFailed(root, failures)
    return root


def _placement(prof: Profile, devices: list[str], address, shares: tuple, retries) -> Placement | None:
    """Where the study's runs go: None (one at a time in this process: one CPU device, one run per
    device, no cluster asked) or the Ray placement: GPUs when the devices (or --gpus-per-run) say
    so, each fine-tuning 1/runs_per_device of one by default, a pre-training `gpus_per_pretrain`
    whole ones. shares: (gpus_per_run, gpus_per_pretrain, cpus_per_run) as asked."""
    gpus_per_run, gpus_per_pretrain, cpus_per_run = shares
    k = prof.runs_per_device
    retries = check_int("--retries", retries, 0)
    n_pre = check_int("--gpus-per-pretrain", gpus_per_pretrain, 1)
    cpus = cluster.check_share("--cpus-per-run", cpus_per_run, 1024)
    gpu = (
        any(d.startswith("cuda") for d in devices)
        or bool(gpus_per_run)
        or n_pre > 1
        or (devices == ["ray"] and prof.device != "cpu")
    )
    share = cluster.check_share("--gpus-per-run", gpus_per_run if gpus_per_run else 1 / k, 1) if gpu else 0.0
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None and not gpu and len(devices) == 1 and k == 1:
        return None  # the tiny book build: no cluster, as fast as before
    place = Placement(address, share, float(n_pre) if gpu else 0.0, cpus, retries)
    if address is not None:
        return place
    cuda = [d for d in devices if d.startswith("cuda")]
    if cuda:  # a local cluster over the GPUs named (--devices 0,1), all visible ones by default
        ids = [d.partition(":")[2] or "0" for d in cuda]
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(dict.fromkeys(ids))
        return replace(place, local_gpus=len(set(ids)), local_cpus=os.cpu_count())
    if gpu:
        raise UserError(
            f"--gpus-per-run {gpus_per_run:g}: no GPU among --devices {','.join(devices)}; name GPUs "
            f"(--devices 0,1) or a Ray cluster that has them (--address)"
        )
    n = len(devices) * k  # CPU: the runs asked to run at once (--devices cpu,cpu, --runs-per-device)
    return replace(place, local_cpus=max(1, int(n * cpus)), local_gpus=0)


def _placement_record(place: Placement | None, devices: list[str]) -> dict:
    """The manifest's record of where the runs went (in this process, a local or a joined cluster)."""
    if place is None:
        return {"engine": "in-process", "device": devices[0]}
    from dataclasses import asdict

    return {"engine": "ray", **asdict(place)}


def _study(
    p: Plan,
    prof: Profile,
    seed: int,
    runs_ft: Path,
    manifest: _Manifest,
    device: str,
    place: Placement | None,
    progress: bool,
    as_notebooks: bool,
) -> None:
    """`reproduce` once its arguments are checked: data (step 1), the pre-trainings and
    fine-tunings together (2, 3: each run starts once the runs it needs exist), tables (4), the
    manifest rewritten after each step and run."""
    from .prepare import load_prepared  # scipy: only when a stage reads or writes its data
    from .stages.finetune import infer_data_kind  # ~25 ms at import: only when a stage runs

    for job in p.data:
        manifest.step(job.kind, partial(_make_data, job, prof.name, LOCK_WAIT_S), progress)
    prepared = load_prepared(p.prep_dir)
    manifest.data |= {"data_kind": p.data_kind or infer_data_kind(prepared), "n_records": len(prepared.index)}
    if as_notebooks:  # the resolved study that every notebook job reads (`study_config`)
        write_study_config(runs_ft, prof, seed)
    runs = p.pre_jobs + p.ft_jobs
    update = partial(manifest.record_runs, runs)
    manifest.step("runs", partial(run_jobs, runs, device, place, progress, update, as_notebooks), progress)
    update()
    try:  # refused, naming the runs, if the finished runs mix data or settings
        tables = manifest.step("tables", partial(write_tables, runs_ft, prof.name), progress)
    except UserError as exc:
        manifest.data["tables_error"] = str(exc)
        manifest.save()
        raise
    manifest.data["tables"] = {k: str(v) for k, v in tables.items()}


class _Manifest:
    """RUNS/<profile>/manifest.json: what ran, when, with which versions, devices and settings,
    where each run ran and the wall time of each step and run; rewritten after every step and
    run, so an interrupted study still shows how far it got. Several drivers share it: each save
    merges, under the manifest's lock, what the others recorded (a run another driver did keeps
    its record here, and `drivers` holds each driver's counts). Runs skipped now keep the wall
    time measured when they ran, and `wall_s` adds this call's time to the earlier calls'."""

    def __init__(self, path: Path, prof: Profile, seed: int, devices: list[str], settings, head: dict):
        self.path = path
        earlier = self._read()
        _check_same_smoke(path, prof.finetune.max_steps)
        self.earlier_runs = earlier.get("runs", {})
        self.earlier_wall_s = float(earlier.get("wall_s") or 0.0)
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        pre = {m: as_dict(c) for m, c in prof.pretrain.items()}
        self.data = {"profile": prof.name, **head, "finished": None, "command": sys.argv}
        self.data |= {"devices": devices, "device_names": _device_names(devices), "versions": _versions()}
        self.data["runs_per_device"] = {"pretrain": 1, "finetune": prof.runs_per_device}  # at once per GPU
        self.data |= {"code_version": provenance.code_version(), "seed": seed}
        self.data["settings"] = {"pretrain": pre, "finetune": as_dict(prof.finetune), "set": list(settings)}
        self.data |= {
            "steps": {},
            "runs": {},
            "failures": [],
            "recipe": prof.recipe,
            "departures": list(prof.departures),
        }
        ft = prof.finetune
        self.data |= {"smoke": bool(ft.max_steps), "max_steps": ft.max_steps, "protocol": ft.protocol}

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text()) if self.path.exists() else {}
        except (OSError, ValueError):
            return {}

    def save(self) -> None:
        """Write the manifest, merged with what another driver wrote meanwhile (under its lock)."""
        with provenance.lock(self.path, what="manifest", wait_s=600):
            theirs = self._read()
            for name, rec in (theirs.get("runs") or {}).items():
                ours = self.data["runs"].get(name)
                new = rec != self.earlier_runs.get(name)  # written by another driver since this one started
                if ours is None or (new and ours["status"] in ("todo", "skipped") and rec.get("status") == "done"):
                    self.data["runs"][name] = rec  # recorded by the driver that ran it
            self.data["drivers"] = {**(theirs.get("drivers") or {}), **self.data.get("drivers", {})}
            _write_json(self.path, self.data)

    def step(self, name: str, fn: Callable[[], object], progress: bool) -> object:
        """Run one step of the study, recording its wall time (s)."""
        t0 = time.perf_counter()
        if progress:
            print(f"reproduce [{self.data['profile']}]: {name} ...", file=sys.stderr)
        result = fn()
        self.data["steps"][name] = {"wall_s": round(time.perf_counter() - t0, 3)}
        self.save()
        return result

    def record_runs(self, jobs: list[Job]) -> None:
        for job in jobs:
            rec = {"name": job.name, "folder": str(job.folder), "status": job.status, "reason": job.reason}
            rec |= {"device": job.device, "wall_s": round(job.wall_s, 3), "driver": self.driver}
            rec |= {"node": job.node, "host": job.host, "gpu_ids": job.gpu_ids} if job.node else {}
            if job.started:
                rec |= {"started": _stamp(job.started), "ended": _stamp(job.ended)}
                rec |= {"started_s": round(job.started, 3), "ended_s": round(job.ended, 3)}
            if job.replaced and job.status != "skipped":
                rec["replaced"] = job.replaced  # why the earlier folder was moved aside
            before = self.earlier_runs.get(job.name) or {}
            if job.status == "skipped" and before.get("wall_s"):
                rec = {**before, "status": "skipped", "reason": before.get("reason") or "finished earlier"}
            self.data["runs"][job.name] = rec
        self.save()

    def finish(self, jobs: list[Job], call_wall_s: float, progress: bool) -> list[tuple[str, str, str]]:
        """Counts, failures and wall times; returns the failures (name, folder, reason)."""
        failures = [(j.name, str(j.folder), j.reason) for j in jobs if j.status in ("failed", "blocked")]
        counts = {s: sum(j.status == s for j in jobs) for s in ("done", "skipped", "failed", "blocked")}
        self.data["failures"] = [{"name": n, "folder": f, "reason": r} for n, f, r in failures]
        self.data |= {"counts": counts, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.data["drivers"] = {self.driver: counts}
        self.data |= {"call_wall_s": round(call_wall_s, 3), "wall_s": round(self.earlier_wall_s + call_wall_s, 3)}
        self.save()
        if progress:
            tables = ", ".join(self.data.get("tables", {}).values()) or "none"
            print(
                f"reproduce [{self.data['profile']}]: {counts['done']} runs done, {counts['skipped']} already "
                f"finished, {counts['failed']} failed, {counts['blocked']} blocked in {call_wall_s:.0f} s; "
                f"tables: {tables}",
                file=sys.stderr,
            )
        return failures


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


# --- one target: a single run and whatever it needs (the notebooks' way in) ---------------------


STUDY_CONFIG = "study"  # RUNS/<profile>/jobs/study.json: the resolved study a notebook job runs


def write_study_config(runs: str | Path, prof: Profile, seed: int) -> Path:
    """RUNS/<profile>/jobs/study.json: the resolved profile (recipe, `--set` items and smoke limit
    applied) and the training seed, so that a job run as a notebook (`config` parameter) plans
    exactly the runs `reproduce` planned, even for a customised profile."""
    return write_json_atomic(
        paths.job_file(runs, prof.name, STUDY_CONFIG, ".json"), {"profile": as_dict(prof), "seed": int(seed)}
    )


def read_study_config(path: str | Path) -> tuple[Profile, int]:
    """(resolved Profile, training seed) from a file of `write_study_config`; UserError naming
    the file when it is unreadable or holds unknown settings."""
    src = f"config {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        d, seed = dict(data["profile"]), check_seed(f"{src}: seed", data["seed"])
        d["pretrain"] = {m: config_from_dict(PretrainConfig, c, src) for m, c in d["pretrain"].items()}
        d["finetune"] = config_from_dict(FinetuneConfig, d["finetune"], src)
        d["folds"], d["departures"] = tuple(d["folds"]), tuple(d["departures"])
        return Profile(**d), seed
    except SettingError as exc:  # a profile field out of its range
        raise UserError(f"{src}: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{src}: not a study settings file written by reproduce ({type(exc).__name__}: {exc})"
        ) from None


def _target_study(profile, seed, settings, recipe, max_steps, config) -> tuple[Profile, int]:
    """The resolved study of an `ensure_*` call: from `config` (a study.json) or like `reproduce`."""
    if isinstance(settings, str):  # notebook parameter: 'pretrain.epochs=1; finetune.lr=1e-3'
        settings = [s.strip() for s in settings.split(";") if s.strip()]
    if not config:
        return resolve_study(profile, seed, settings, recipe, max_steps)
    if settings or max_steps or parse_recipe(recipe):
        raise UserError(
            f"config {config} holds the resolved settings; give settings, recipe and max_steps to the "
            f"reproduce call that wrote it, not beside it"
        )
    prof, file_seed = read_study_config(config)
    name = profile.name if isinstance(profile, Profile) else profile
    if name is not None and name != prof.name:
        raise UserError(f"profile {name!r} differs from the profile {prof.name!r} of config {config}")
    if seed is not None and int(seed) != file_seed:
        raise UserError(f"seed {seed} differs from the seed {file_seed} of config {config}")
    return prof, file_seed


@dataclass
class Target:
    """What `ensure_pretrain` / `ensure_finetune` made or found: the run's folder, the prepared
    corpus and the main pre-training folders (`--pretrained` of the ssl- setups), the resolved
    profile and seed, and the status of each job involved (skipped = finished earlier)."""

    folder: Path
    prepared: Path
    pretrain: Path
    profile: Profile
    seed: int
    statuses: dict[str, str]  # job name -> done, skipped, failed or blocked


LOCK_WAIT_S = 2 * 24 * 3600.0  # the longest a run waits for another process that holds a folder it needs (s)


def _run_target(
    p: Plan, name: str, prof: Profile, seed: int, runs, data, device, progress: bool, wait_s: float | None
) -> Target:
    """Make the data, then run the job called `name` and the jobs it needs in this process,
    skipping finished ones (read without their locks) and waiting at most `wait_s` seconds
    (default LOCK_WAIT_S) for a folder that another process is writing (e.g. the pre-training two
    papermill folds need): the lock is taken first, then the run is checked again, so what the
    other process finished is skipped. RunsFailed when it or a job it needs failed."""
    wait_s = _check_wait(wait_s)
    if data is not None:  # without data a real-data profile uses its prepared folder as it is
        _check_data_dir(prof, data)
    device = parse_devices(device or None, prof)[0]
    for job in p.data:
        _make_data(job, prof.name, wait_s)
    target = next(j for j in p.pre_jobs + p.ft_jobs if j.name == name)
    todo = [*target.needs, target]
    for job in todo:
        job.lock_wait_s = wait_s
        run_jobs([job], device, None, progress)
    bad = [(j.name, str(j.folder), j.reason) for j in todo if j.status in ("failed", "blocked")]
    if bad:
        raise RunsFailed(paths.profile_root(stage_runs(runs, prof.departures, "finetune"), prof.name), bad)
    pre_dir = paths.pretrain_dir(stage_runs(runs, prof.departures, "pretrain"), prof.name)
    return Target(target.folder, p.prep_dir, pre_dir, prof, seed, {j.name: j.status for j in todo})


def _check_wait(wait_s: float | None) -> float:
    """`wait_s` of `ensure_*` in seconds: None -> LOCK_WAIT_S; else a finite number >= 0."""
    if wait_s is None:
        return LOCK_WAIT_S
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not 0 <= wait_s < float("inf"):
        raise UserError(f"wait_s must be a number of seconds >= 0, got {wait_s!r}")
    return float(wait_s)


def ensure_pretrain(
    profile: str | Profile | None = "tiny",
    runs: str | Path = "runs",
    modality: str = "time",
    data: str | Path | None = None,
    device: str | None = None,
    seed: int | None = None,
    settings: str | Sequence[str] = (),
    recipe: str | Sequence[str] = "corrected",
    max_steps: int = 0,
    transforms: str | None = None,
    config: str | Path | None = None,
    progress: bool = False,
    wait_s: float | None = None,
) -> Target:
    """Compute one pre-training of a study into RUNS (the layout of `paths`) and whatever it needs
    and is missing (the fixture when a tiny profile has no data, `prepare`; a real-data profile
    without `data` uses its prepared folder as it is, to show finished runs), skipping finished
    work under the provenance rules of `reproduce`; returns its `Target`. modality: time or spec;
    transforms: None (the main pre-training, t1 / t2) or an ablation view set of Fig. 3. The study
    is `profile` with `seed`, `settings` (`--set` items, or one string of them separated by ';'),
    `recipe` and `max_steps` as in `reproduce`, or the resolved study in `config` (the study.json
    that `reproduce --as-notebooks` hands its notebooks). device: e.g. cpu, cuda, cuda:1. wait_s:
    how long to wait for another process writing a folder this run needs (default LOCK_WAIT_S,
    48 h: another notebook's pre-training), saying on stderr whom it waits for; then RunsFailed
    naming the holder."""
    check_modality(modality)
    tr = None if transforms in (None, "", paths.MAIN_TRANSFORMS[modality]) else transforms
    if tr is not None:
        paths.ablation_pretrain_dir(runs, "x", modality, tr)  # UserError for an unknown view set
    prof, train_seed = _target_study(profile, seed, settings, recipe, max_steps, config)
    setups = (paths.ABLATION_SETUPS[modality],)  # ssl-t needs the time pre-training, ssl-s the spec one
    p = plan(prof, train_seed, runs, data or None, setups, (0,), (0,), tr is not None, progress)
    name = f"pretrain {modality}" if tr is None else f"pretrain {modality}-{tr}"
    return _run_target(p, name, prof, train_seed, runs, data or None, device, progress, wait_s)


def ensure_finetune(
    profile: str | Profile | None = "tiny",
    runs: str | Path = "runs",
    setup: str = "ssl-tsg",
    fold: int = 0,
    data: str | Path | None = None,
    device: str | None = None,
    seed: int | None = None,
    settings: str | Sequence[str] = (),
    recipe: str | Sequence[str] = "corrected",
    max_steps: int = 0,
    transforms: str | None = None,
    config: str | Path | None = None,
    progress: bool = False,
    wait_s: float | None = None,
) -> Target:
    """Compute one fine-tuning run (setup on outer fold) and whatever it needs and is missing:
    the fixture (tiny profile without data), `prepare`, the pre-trainings its setup uses; finished
    work is skipped, an interrupted run resumes. transforms: None for the main run, or an ablation
    view set (setup ssl-t or ssl-s, Fig. 3). Other arguments as `ensure_pretrain`. Returns the run's
    `Target` (RunsFailed when it or a pre-training it needs failed)."""
    check_setup(setup)
    fold = check_fold(fold)
    tr = transforms or None
    if tr is not None:
        m = next((m for m, s in paths.ABLATION_SETUPS.items() if s == setup), None)
        if m is None:
            raise UserError(
                f"transforms {tr!r}: only {' and '.join(paths.ABLATION_SETUPS.values())} have ablation runs"
            )
        paths.ablation_finetune_dir(runs, "x", m, tr, fold)  # UserError for an unknown view set
    prof, train_seed = _target_study(profile, seed, settings, recipe, max_steps, config)
    p = plan(prof, train_seed, runs, data or None, (setup,), (fold,), (fold,), tr is not None, progress)
    name = f"finetune {setup} fold {fold}" if tr is None else f"ablation {setup}-{tr} fold {fold}"
    return _run_target(p, name, prof, train_seed, runs, data or None, device, progress, wait_s)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ecgssl_nb reproduce",
        description="Run the whole study (prepare, pre-train, fine-tune every setup on every "
        "fold, ablation, tables), skipping finished work.",
    )
    p.add_argument("--profile", default="tiny", help="tiny (synthetic fixture, CPU; default) or paper")
    p.add_argument(
        "--data-dir",
        default=None,
        help="the Challenge records (required for --profile paper; default for tiny: the synthetic fixture)",
    )
    p.add_argument("--out", default="runs", help="runs folder; the study goes to OUT/<profile>/ (default runs)")
    p.add_argument("--folds", default=None, help=f"outer folds, e.g. 0-{N_FOLDS - 1} or 0,3 (default: the profile's)")
    p.add_argument("--setups", default="all", help=f"all (default) or a list like t,tsg,ssl-t from {', '.join(SETUPS)}")
    p.add_argument(
        "--devices",
        default=None,
        help="GPU numbers like 0,1 for a local Ray cluster over them, or cpu; cpu,cpu: two runs at once "
        "(default: all visible GPUs for paper, cpu for tiny: one run at a time in this process)",
    )
    p.add_argument(
        "--runs-per-device",
        type=int,
        default=None,
        metavar="K",
        help="fine-tunings at once on each device (default: the profile's, 1 for tiny; for paper an "
        "estimate of what fits an 80 GB GPU, see the Reproduce chapter); --gpus-per-run defaults to 1/K",
    )
    _cluster_arguments(p)
    p.add_argument("--no-ablation", action="store_true", help="skip the Fig. 3 transform ablation")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="training seed of every pre-training and fine-tuning "
        "(default: the profile's; the folds keep the profile's)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, type-checked: pretrain.KEY=V, pretrain.time.KEY=V, finetune.KEY=V, or "
        "KEY=V when only one config has KEY (repeatable); runs made with other settings re-run",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="smoke run: the profile's exact settings, but every stage stops after N optimisation "
        "steps; outputs are marked smoke and are never results (default 0: full run)",
    )
    p.add_argument(
        "--protocol",
        default="paper",
        choices=REPRODUCE_PROTOCOLS,
        help="paper (default): 8 training folds, paper + honest protocols; paper-exact: 9 training "
        "folds as the authors trained, paper protocol only (the B14 departure: runs and tables "
        "below OUT/recipes/b14/)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--as-notebooks",
        action="store_true",
        help="run each pre-training and fine-tuning as its chapter notebook through papermill "
        "(03_selfkd, 04_finetune), keeping the executed notebook as <run folder>/notebook.ipynb",
    )
    p.add_argument(
        "--recipe",
        action="append",
        default=None,
        help="corrected (default), released, departures like B6,B14, released-B7 (one fix), each (every "
        "departure alone) or each-fix; repeat to run several side by side. Only the corrected "
        "recipe runs the Fig. 3 ablation, and each other recipe only the setups it changes",
    )
    return p


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the study on Ray (`cluster`): where, with what, how often again."""
    p.add_argument("--address", default=None, help="run on this Ray cluster, e.g. 10.0.0.1:6379 (default RAY_ADDRESS)")
    p.add_argument("--gpus-per-run", type=float, default=None, help="a fine-tuning's GPU share on Ray, 1 or 1/k")
    p.add_argument(
        "--gpus-per-pretrain",
        type=int,
        default=1,
        metavar="N",
        help="GPUs of each pre-training on Ray (default 1; N > 1: DDP inside its task, one process per GPU)",
    )
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="CPU threads per run on Ray (default 1)")
    p.add_argument("--retries", type=int, default=cluster.RETRIES, help="reruns of a run whose worker or node died")


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb reproduce --profile P [--data-dir D] [--out O] [--folds F] ...`: each
    recipe asked runs its study (only the setups it changes); exit status 1 when a run failed."""
    a = _parser().parse_args(argv)
    failed = False
    for recipe in expand_recipes(a.recipe or ["corrected"]):
        setups = affected_setups(recipe, parse_setups(a.setups))  # the others would repeat corrected runs
        if not setups:
            continue
        kw = {"data_dir": a.data_dir, "out": a.out, "folds": a.folds, "setups": setups, "devices": a.devices}
        kw |= {
            "ablation": not a.no_ablation and not recipe,
            "progress": not a.no_progress,
            "seed": a.seed,
        }  # Fig. 3: corrected only
        kw |= {"settings": a.set, "recipe": recipe, "max_steps": a.max_steps, "protocol": a.protocol}
        kw |= {"runs_per_device": a.runs_per_device, "address": a.address, "gpus_per_run": a.gpus_per_run}
        kw |= {"cpus_per_run": a.cpus_per_run, "retries": a.retries, "gpus_per_pretrain": a.gpus_per_pretrain}
        try:
            root = reproduce(a.profile, **kw, as_notebooks=a.as_notebooks)
        except RunsFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"reproduce: finished; results, tables and manifest in {root}")
    return 1 if failed else 0
