"""`python -m ecgssl_nb reproduce`: the whole study in one command, resumable, run by run.

Steps, in order:

1. Data. For the tiny profile without --data-dir, the synthetic fixture is written
   (`profile.fixture_records` records; kept when a complete one is there). Then `prepare` runs,
   which does nothing when the folder is already prepared from the same input.
2. Pre-trainings (`selfkd.pretrain`). The main ones, time (t1 views) and spec (t2 views), run only
   for the modalities the chosen ssl- setups need. With the ablation on, the Fig. 3 ones follow:
   time-{none,tc,gn} and spec-{none,tc,fc}, for ssl-t / ssl-s. A finished pre-training (its
   backbone.pt and summary.json, of the same request) is skipped; an interrupted one resumes.
3. Fine-tunings (`finetune.finetune`, protocol "both"): every chosen setup on every chosen fold,
   then the ablation runs. The ablation fine-tunes ssl-t / ssl-s from each ablation backbone; t1
   and t2 are the main ssl-t / ssl-s runs. A run whose result.json exists (same request) is skipped; an
   interrupted one resumes from its checkpoint (see Provenance below). With several devices, each device runs one
   subprocess at a time (`python -m ecgssl_nb finetune ...`) from a shared queue. With one device
   the runs execute in this process. A failing run does not stop the others: its traceback goes
   to `<run>/error.txt` and it is listed at the end. A run whose pre-training failed is reported
   as blocked.
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
(`_plan`), job specs and provenance rules as the study, skipping finished work; they return a
`Target` (the run's folder, the prepared folder, the resolved profile). Notebooks 03 and 04 call
them, so one papermill job per fold is a way to run the study, on one device or several:

    jupytext --to ipynb -o - notebooks/04_finetune.py | papermill - out/04_ssl-tsg_fold3.ipynb \
        --cwd notebooks -p profile paper -p data /data/challenge2020 -p runs /scratch/runs \
        -p setup ssl-tsg -p fold 3 -p device cuda

As notebooks (`--as-notebooks`): every pre-training and fine-tuning job runs as its chapter
notebook (03 or 04) through papermill (`notebook_jobs`), with the job's parameters and
`study_config` = RUNS/<profile>/jobs/study.json (the resolved profile and seed, so a customised
profile runs the same in this process, as a subprocess and as a notebook). The executed notebook
is kept as `<run folder>/notebook.ipynb`; a finished run without one runs its notebook, which then
only shows it. With several devices each worker runs one notebook process at a time.

`manifest.json` records what ran, when, with which versions and devices, and the wall time of
each step. It is rewritten after every step, so an interrupted study still shows how far it got.
The folder layout is in `paths`.

Provenance. Every run's folder holds `provenance.json` (`provenance`): its request = the resolved
settings, the prepared corpus's digest (and the backbone files' digests for ssl- runs), the seed.
A run counts as finished only when its request equals the one asked now; otherwise its folder is
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
import queue
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import notebook_jobs, paths, provenance
from .recipes import STAGES, affected_setups, apply_recipe, expand_recipes, parse_recipe, recipe_spec, stage_runs
from .config import (
    SETUPS,
    N_FOLDS,
    FinetuneConfig,
    PretrainConfig,
    Profile,
    apply_settings,
    as_dict,
    check_fold,
    check_modality,
    check_setup,
    get_profile,
    parse_folds,
    resolve_device,
)
from .errors import UserError

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


def parse_setups(setups) -> tuple[str, ...]:
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


def parse_devices(devices, profile: Profile) -> list[str]:
    """'0,1' -> ['cuda:0', 'cuda:1']; 'cpu' -> ['cpu']; 'cpu,cpu' -> two CPU workers; None -> every
    visible GPU for the paper profile (UserError when there is none), the profile's device
    otherwise. One worker per entry runs one run at a time."""
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
    return out  # a device named twice runs two runs on it at a time (e.g. cpu,cpu)


def _folds(folds, default: tuple) -> tuple[int, ...]:
    if folds is None:
        return tuple(default)
    if isinstance(folds, str):
        return parse_folds(folds)
    out = tuple(check_fold(f) for f in folds)
    if not out:
        raise UserError("--folds names no fold")
    return tuple(dict.fromkeys(out))


# --- jobs --------------------------------------------------------------------------------------


@dataclass
class Job:
    """One unit of work: a pre-training or a fine-tuning, runnable in-process or as a command."""

    kind: str  # "pretrain" or "finetune"
    name: str  # e.g. "finetune ssl-tsg fold 3", "pretrain time-gn"
    folder: Path
    run: Callable[[str], object]  # in-process: run(device)
    argv: Callable[[str], list[str]]  # subprocess: argv(device) after `python -m ecgssl_nb`
    needs: list = field(default_factory=list)  # Jobs that must have succeeded (or been done before)
    status: str = "todo"  # todo, skipped (done before), done, failed, blocked
    reason: str = ""
    wall_s: float = 0.0
    device: str = ""
    request: Callable[[], dict] | None = None  # the provenance request this run must match to be reused
    log: Path | None = None  # subprocess output (default: beside the folder, <folder>.run.log)
    replaced: list = field(default_factory=list)  # why an earlier folder was moved aside (differences)
    notebook: Callable[[str], dict] | None = None  # as a notebook: notebook(device) -> papermill parameters

    @property
    def record(self) -> Path:
        """<folder>/notebook.ipynb: the executed chapter notebook of this run (`--as-notebooks`)."""
        return self.folder / notebook_jobs.NOTEBOOK_RECORD

    def finished_files(self) -> bool:
        if self.kind == "finetune":
            return (self.folder / "result.json").is_file()
        return (self.folder / "backbone.pt").is_file() and (self.folder / "summary.json").is_file()

    def done_before(self) -> bool:
        """Finished earlier with the request asked now. A folder made by another request is not:
        its differences go to `replaced` (the run moves it aside and runs again)."""
        if not self.finished_files():
            return False
        if self.request is None:
            return True
        try:
            rec = provenance.read(self.folder)
            want = self.request()
        except UserError as exc:  # unreadable record, or an input (a backbone) missing
            self.replaced = [str(exc)]
            return False
        if rec is None:
            self.replaced = ["it has no provenance.json"]
            return False
        self.replaced = provenance.differences(rec["request"], want)
        return not self.replaced


def _write_error(folder: Path, text: str) -> None:
    from .results import write_text_atomic

    write_text_atomic(folder / "error.txt", text)


def _drop_own_notes(folder: Path) -> None:
    """Remove the error.txt that a blocked or failed-before-start run left in a folder holding
    nothing else (no provenance.json, no results): our own note, so the run can claim the folder
    instead of moving a note aside."""
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= {"error.txt", provenance.LOCK}:
        (folder / "error.txt").unlink(missing_ok=True)


def _run_inprocess(job: Job, device: str) -> None:
    t0 = time.perf_counter()
    job.device = device
    try:
        job.run(device)
        job.status = "done"
        err = job.folder / "error.txt"
        if err.is_file():
            err.unlink()  # an earlier failure of this run, now fixed
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run must not lose the others
        job.status, job.reason = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        _write_error(job.folder, traceback.format_exc())
    job.wall_s = time.perf_counter() - t0


def _run_subprocess(job: Job, device: str) -> None:
    t0 = time.perf_counter()
    job.device = device
    cmd = [sys.executable, "-m", "ecgssl_nb", *job.argv(device)]
    log = job.log or job.folder.with_name(f"{job.folder.name}.run.log")  # not inside: the run claims its folder
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc == 0:
        job.status = "done"
        err = job.folder / "error.txt"
        if err.is_file():
            err.unlink()
    else:
        tail = log.read_text(errors="replace").splitlines()[-60:]
        last = next((ln for ln in reversed(tail) if ln.strip()), "")
        job.status, job.reason = "failed", f"exit status {rc}: {last.strip()[:300]}"
        job.folder.mkdir(parents=True, exist_ok=True)
        _write_error(job.folder, f"$ {' '.join(cmd)}\nexit status {rc}\n\n" + "\n".join(tail) + "\n")
    job.wall_s = time.perf_counter() - t0


def _run_notebook(job: Job, device: str, subprocess_: bool) -> None:
    """Run `job` as its chapter notebook (`notebook_jobs.CHAPTERS`) through papermill with the job's
    parameters; the executed notebook goes to <folder>/notebook.ipynb (atomically, once it
    succeeded). subprocess_: in a `python -m ecgssl_nb.notebook_jobs` process (several devices)."""
    t0 = time.perf_counter()
    job.device = device
    params = job.notebook(device)
    log = job.log or job.folder.with_name(f"{job.folder.name}.run.log")
    try:
        if subprocess_:
            notebook_jobs.execute_subprocess(job.kind, params, job.record, log)
        else:
            notebook_jobs.execute(job.kind, params, job.record)
        job.status = "done"
        err = job.folder / "error.txt"
        if err.is_file():
            err.unlink()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run must not lose the others
        job.status, job.reason = "failed", f"{type(exc).__name__}: {exc}".strip().splitlines()[-1][:300]
        job.folder.mkdir(parents=True, exist_ok=True)
        _write_error(job.folder, traceback.format_exc())
    job.wall_s = time.perf_counter() - t0


def run_jobs(
    jobs: list[Job],
    devices: list[str],
    progress: bool = True,
    on_update: Callable | None = None,
    as_notebooks: bool = False,
) -> None:
    """Run `jobs` (skipping finished ones; blocking those whose needs failed): in this process
    when there is one device, else one subprocess per device at a time from a shared queue.
    as_notebooks: each job runs as its chapter notebook (`notebook_jobs`), and a finished run without its
    executed notebook runs the notebook (which then only shows the run)."""
    from tqdm.auto import tqdm

    todo = []
    for job in jobs:
        if job.done_before() and not (as_notebooks and not job.record.is_file()):
            job.status = "skipped"
            continue
        _drop_own_notes(job.folder)
        if job.replaced and job.folder.exists():
            print(
                f"reproduce: {job.name}: {job.folder} was made by a different request ({'; '.join(job.replaced[:4])}"
                f"{'; ...' if len(job.replaced) > 4 else ''}); moving it aside and running it again",
                file=sys.stderr,
            )
        todo.append(job)
    if not todo:
        return
    lock = threading.Lock()
    bar = tqdm(total=len(todo), desc=f"{todo[0].kind} runs", unit="run", disable=not progress, file=sys.stderr)

    def blocked(job: Job) -> bool:
        bad = [n.name for n in job.needs if n.status in ("failed", "blocked")]
        if bad:
            job.status, job.reason = "blocked", f"needs {', '.join(bad)}, which failed"
            _write_error(job.folder, f"not run: {job.reason}\n")
            return True
        return False

    def finish(job: Job) -> None:
        with lock:
            bar.update(1)
            bar.set_postfix_str(f"{job.name}: {job.status}")
            if on_update is not None:
                on_update()

    if len(devices) == 1:
        for job in todo:
            if not blocked(job):
                _run_notebook(job, devices[0], False) if as_notebooks else _run_inprocess(job, devices[0])
            finish(job)
    else:
        q: queue.Queue = queue.Queue()
        for job in todo:
            q.put(job)

        def worker(device: str) -> None:
            while True:
                try:
                    job = q.get_nowait()
                except queue.Empty:
                    return
                if not blocked(job):
                    _run_notebook(job, device, True) if as_notebooks else _run_subprocess(job, device)
                finish(job)

        threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    bar.close()


# --- tables ------------------------------------------------------------------------------------


def write_tables(runs: str | Path, profile: str) -> dict[str, Path]:
    """Write tables/table1.csv, table2.csv (ours beside the paper, both protocols) and
    tables/fig3.csv (the transform ablation, both protocols) from the finished runs; a table
    without any finished run is not written. Returns {name: path} of the tables written.
    tables/provenance.json lists every run aggregated (folder, result digest, prepared digest,
    settings fingerprint, code version). Runs of different data or settings are refused
    (UserError naming two of them); folders moved aside (*.stale-*) are never read. Rows of smoke
    runs carry `smoke` = True."""
    import warnings

    from .results import check_one_study, load_results

    written = {}
    ft_root = paths.profile_root(runs, profile) / "finetune"
    ab_root = paths.profile_root(runs, profile) / "ablation" / "finetune"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        main = load_results(ft_root) if ft_root.is_dir() else pd.DataFrame()
        ab = load_results(ab_root) if ab_root.is_dir() else pd.DataFrame()
    if not len(main) and not len(ab):
        return written
    with provenance.lock(paths.tables_dir(runs, profile), what="tables folder"):
        provenance.claim(
            paths.tables_dir(runs, profile),
            _tables_request(runs, profile, [main, ab]),
            force=True,
            what="tables folder",
        )
        check_one_study(pd.concat([f for f in (main, ab) if len(f)]))  # UserError naming two runs that differ
        return _write_tables(runs, profile, main, ab)


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


def _write_tables(runs, profile: str, main: pd.DataFrame, ab: pd.DataFrame) -> dict[str, Path]:
    import warnings

    from .results import METRIC_KEYS, aggregate, compare_with_paper, write_csv_atomic

    written = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if len(main):
            for name, table, keep in (("table2", "II", None), ("table1", "I", ("ssl-t", "ssl-s", "ssl-tsg"))):
                parts = []
                for protocol in sorted(main["protocol"].unique()):
                    agg = aggregate(main, protocol)
                    if keep is not None:
                        agg = agg.loc[[s for s in agg.index if s in keep]]
                    if len(agg):
                        parts.append(compare_with_paper(agg, table))
                if parts:
                    path = paths.table_path(runs, profile, name)
                    write_csv_atomic(path, pd.concat(parts).reset_index())
                    written[name] = path
        rows = []
        if len(ab) or len(main):
            for modality, setup in paths.ABLATION_SETUPS.items():
                full = (
                    main[main["setup"] == setup].assign(run=f"{setup}-{paths.MAIN_TRANSFORMS[modality]}")
                    if len(main)
                    else pd.DataFrame()
                )
                part = ab[ab["run"].str.startswith(f"{setup}-")] if len(ab) else pd.DataFrame()
                both = pd.concat([p for p in (part, full) if len(p)]) if len(part) or len(full) else pd.DataFrame()
                if len(part) == 0 or len(both) == 0:  # no ablation for this modality
                    continue
                for protocol in sorted(both["protocol"].unique()):
                    agg = aggregate(both, protocol, by="run")
                    for run, r in agg.iterrows():
                        transforms = run[len(setup) + 1 :]
                        rows.append(
                            {
                                "modality": modality,
                                "transforms": transforms,
                                "setup": setup,
                                "protocol": protocol,
                                "n_folds": r["n_folds"],
                                "folds": r["folds"],
                                "profile": r["profile"],
                                "data": r["data"],
                                "smoke": r["smoke"],
                                **{f"{m}_mean": r[f"{m}_mean"] for m in METRIC_KEYS},
                                **{f"{m}_std": r[f"{m}_std"] for m in METRIC_KEYS},
                            }
                        )
        if rows:
            order = {
                t: i
                for m in paths.ABLATION_TRANSFORMS
                for i, t in enumerate((*paths.ABLATION_TRANSFORMS[m], paths.MAIN_TRANSFORMS[m]))
            }
            df = pd.DataFrame(rows)
            df["_o"] = df["transforms"].map(order)
            df = df.sort_values(["modality", "protocol", "_o"], ascending=[False, True, True]).drop(columns="_o")
            path = paths.table_path(runs, profile, "fig3")
            write_csv_atomic(path, df.reset_index(drop=True))
            written["fig3"] = path
    return written


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
    from .finetune import package_version

    return {
        "ecgssl_nb": package_version(),
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


def _job_record(job: Job) -> dict:
    rec = {
        "name": job.name,
        "folder": str(job.folder),
        "status": job.status,
        "reason": job.reason,
        "device": job.device,
        "wall_s": round(job.wall_s, 3),
    }
    if job.replaced and job.status != "skipped":
        rec["replaced"] = job.replaced  # why the earlier folder was moved aside
    return rec


def resolve_settings(prof: Profile, items=()) -> tuple[dict[str, PretrainConfig], FinetuneConfig]:
    """The profile's PretrainConfig per modality and FinetuneConfig with `--set` items applied:
    'pretrain.KEY=V' (both modalities), 'pretrain.time.KEY=V', 'finetune.KEY=V', or 'KEY=V' when
    only one of the two configs has KEY. Type-checked (config.apply_settings)."""
    pre_fields = set(PretrainConfig.__dataclass_fields__)
    ft_fields = set(FinetuneConfig.__dataclass_fields__)
    pre_items: dict[str, list[str]] = {m: [] for m in prof.pretrain}
    ft_items: list[str] = []
    for item in items or ():
        key, _, value = str(item).partition("=")
        head, _, rest = key.partition(".")
        if head == "pretrain":
            sub, _, tail = rest.partition(".")
            targets = [sub] if sub in prof.pretrain and tail else list(prof.pretrain)
            for m in targets:
                pre_items[m].append(f"{tail if sub in prof.pretrain and tail else rest}={value}")
            continue
        if head == "finetune":
            ft_items.append(f"{rest}={value}")
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
        if in_pre:
            for m in pre_items:
                pre_items[m].append(str(item))
        else:
            ft_items.append(str(item))
    pre = {m: apply_settings(c, pre_items[m]) for m, c in prof.pretrain.items()}
    return pre, apply_settings(prof.finetune, ft_items)


def _write_job_config(runs: Path, profile: str, name: str, cfg) -> Path:
    from .results import write_json_atomic

    return write_json_atomic(paths.job_file(runs, profile, name, ".json"), as_dict(cfg))


def resolve_study(
    profile: str | Profile = "tiny",
    seed: int | None = None,
    settings=(),
    recipe="corrected",
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
    if isinstance(train_seed, bool) or not isinstance(train_seed, (int, np.integer)) or train_seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {seed!r}")
    return replace(prof, pretrain=pre_cfgs, finetune=ft_cfg), int(train_seed)


def _check_data_dir(prof: Profile, data_dir) -> None:
    if data_dir is None and prof.data != "fixture":
        raise UserError(
            f"--data-dir is required for profile {prof.name!r}: the folder with the PhysioNet/CinC 2020 "
            f"records (`python -m ecgssl_nb download`)"
        )
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")


def reproduce(
    profile: str | Profile = "tiny",
    data_dir: str | Path | None = None,
    out: str | Path = "runs",
    folds=None,
    setups="all",
    devices=None,
    ablation: bool = True,
    progress: bool = True,
    seed: int | None = None,
    settings=(),
    recipe="corrected",
    max_steps: int = 0,
    protocol: str = "paper",
    as_notebooks: bool = False,
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
    chapter notebook through papermill (03 / 04), keeping `<run folder>/notebook.ipynb`. A run is
    skipped only when its folder's provenance request equals the one asked now; a run made by
    another request (other data, settings, seed, recipe or backbone) is moved aside and run
    again, and only what depends on the change re-runs. Calling it again resumes. Raises
    RunsFailed at the end (after the tables and the manifest) when any run failed."""
    t_start = time.perf_counter()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    prof, train_seed = resolve_study(profile, seed, settings, recipe, max_steps, protocol)
    _check_data_dir(prof, data_dir)
    runs_prep, runs_pre, runs_ft = (stage_runs(out, prof.departures, st) for st in STAGES)
    chosen = parse_setups(setups)
    fold_list = _folds(folds, prof.folds)
    if folds is None and prof.finetune.ablation_folds is not None:
        ablation_folds = _folds(prof.finetune.ablation_folds, prof.folds)  # the profile's smaller ablation
    else:
        ablation_folds = fold_list
    device_list = parse_devices(devices, prof)
    out = Path(out)
    root = paths.profile_root(runs_ft, prof.name)
    root.mkdir(parents=True, exist_ok=True)
    with provenance.lock(root, what="runs folder"):  # one study writer at a time (runs lock their own folders)
        return _study(
            prof,
            data_dir,
            out,
            (runs_prep, runs_pre, runs_ft),
            root,
            chosen,
            train_seed,
            fold_list,
            ablation_folds,
            ablation,
            device_list,
            progress,
            settings,
            t_start,
            started_at,
            as_notebooks,
        )


# --- planning: one source for the jobs of a study and of a single target -------------------------


@dataclass
class Plan:
    """The data and the jobs of a study: the prepared folder (made), the pre-training jobs (main
    per modality, ablation per (modality, transforms)) and the fine-tuning jobs, not yet run."""

    prep_dir: Path
    prepared: object
    data_kind: str
    main_pre: dict
    ablation_pre: dict
    ft_jobs: list

    @property
    def pre_jobs(self) -> list[Job]:
        return list(self.main_pre.values()) + list(self.ablation_pre.values())


def _needs_modality(setup: str, m: str) -> bool:
    """An ssl- setup fine-tunes from the main pre-training of modality m."""
    return setup.startswith("ssl-") and (
        m == "time" and setup[4:] in ("t", "tsc", "tsg") or m == "spec" and setup[4:] in ("s", "tsc", "tsg")
    )


def _data(
    prof: Profile, out: Path, data_dir, runs_prep: Path, progress: bool, step: Callable[[str, Callable], object]
) -> tuple[Path, object, str]:
    """Step 1: the fixture (tiny without data, a complete one kept), then `prepare` (nothing to do
    when the folder is prepared from the same input). Returns (prepared folder, Prepared, kind)."""
    from .prepare import load_prepared, prepare

    prep_dir = paths.prepared_dir(runs_prep, prof.name)
    if data_dir is None and prof.data != "fixture":  # ensure_* without records: the prepared folder as it is
        try:
            prepared = load_prepared(prep_dir)
        except UserError as exc:
            raise UserError(f"data is required for profile {prof.name!r} to prepare the records ({exc})") from None
        from .finetune import infer_data_kind

        return prep_dir, prepared, infer_data_kind(prepared)
    if data_dir is None:
        fx = paths.fixture_dir(out, prof.name)

        def make() -> Path:
            from .fixture import FIXTURE_VERSION, MARKER, make_fixture

            try:  # a complete fixture of this size, seed and version is kept
                meta = json.loads((fx / MARKER).read_text())
                if meta.get("complete") and (meta.get("n_records"), meta.get("seed"), meta.get("version")) == (
                    prof.fixture_records,
                    prof.seed,
                    FIXTURE_VERSION,
                ):
                    return fx
            except (OSError, ValueError):
                pass
            return make_fixture(fx, n_records=prof.fixture_records, seed=prof.seed)

        data_dir = step("fixture", make)
        data_kind = "fixture"
    else:
        data_kind = None  # inferred by finetune from the prepared folder
    # force: a prepared folder made from other data or settings is moved aside, not reused
    step(
        "prepare",
        lambda: prepare(data_dir, prep_dir, workers=prof.workers, progress=progress, force=True, leads=prof.leads),
    )
    prepared = load_prepared(prep_dir)
    if data_kind is None:
        from .finetune import infer_data_kind

        data_kind = infer_data_kind(prepared)
    return prep_dir, prepared, data_kind


def _plan(
    prof: Profile,
    train_seed: int,
    out: Path,
    data_dir,
    stage_roots: tuple,
    chosen,
    fold_list,
    ablation_folds,
    ablation: bool,
    progress: bool,
    step: Callable[[str, Callable], object] | None = None,
) -> Plan:
    """Make the data (step 1), then build every job of the study (steps 2 and 3) without running
    any. Each job runs in this process (`run`), as a subprocess (`argv`) or as its chapter notebook
    (`notebook`), always with the resolved settings of `prof`."""
    from . import finetune as ft
    from . import selfkd

    runs_prep, runs_pre, runs_ft = stage_roots
    step = step or (lambda name, fn: fn())
    prep_dir, prepared, data_kind = _data(prof, out, data_dir, runs_prep, progress, step)
    n_folds = int(prepared.stats.get("n_folds", int(prepared.index["fold"].max()) + 1))
    pre_cfgs, ft_cfg = prof.pretrain, prof.finetune
    base = {
        "profile": prof.name,
        "runs": str(out.resolve()),
        "data": str(Path(data_dir).resolve()) if data_dir else "",
        "seed": train_seed,
        "recipe": "corrected",
        "settings": "",
        "max_steps": 0,
    }  # all in study_config

    def notebook_params(name: str, **extra) -> Callable[[str], dict]:
        def params(device: str) -> dict:  # the resolved study travels in a file: a custom profile runs the same
            return {
                **base,
                **extra,
                "device": device,
                "study_config": str(write_study_config(runs_ft, prof, train_seed)),
            }

        return params

    def pretrain_job(modality: str, transforms: str, folder: Path, name: str, ablated: bool) -> Job:
        cfg = pre_cfgs[modality]  # the recipe's departures are already in it (recipes.apply_recipe)

        def run(device: str):
            return selfkd.pretrain(
                prep_dir,
                folder,
                modality,
                profile=prof.name,
                config=cfg,
                device=device,
                transforms=transforms,
                seed=train_seed,
                resume=True,
                force=True,
                progress=progress,
            )

        def argv(device: str) -> list[str]:  # the resolved settings travel in a file, not as a profile name
            config = _write_job_config(runs_pre, prof.name, name, cfg)
            return [
                "pretrain",
                "--modality",
                modality,
                "--prepared",
                str(prep_dir),
                "--out",
                str(folder),
                "--profile",
                prof.name,
                "--config",
                str(config),
                "--device",
                device,
                "--transforms",
                transforms,
                "--seed",
                str(train_seed),
                "--resume",
                "--force",
                "--no-progress",
            ]

        def request() -> dict:
            return selfkd.pretrain_request(cfg, modality, transforms, train_seed, prepared.digest)

        return Job(
            "pretrain",
            name,
            folder,
            run,
            argv,
            request=request,
            log=paths.job_file(runs_pre, prof.name, name, ".log"),
            notebook=notebook_params(name, modality=modality, transforms=transforms if ablated else ""),
        )

    needs_mod = {m: any(_needs_modality(s, m) for s in chosen) for m in ("time", "spec")}
    main_pre: dict[str, Job] = {}
    ablation_pre: dict[tuple[str, str], Job] = {}
    for m in ("time", "spec"):
        if needs_mod[m]:
            main_pre[m] = pretrain_job(
                m, paths.MAIN_TRANSFORMS[m], paths.pretrain_run_dir(runs_pre, prof.name, m), f"pretrain {m}", False
            )
    ablated = [m for m in ("time", "spec") if ablation and paths.ABLATION_SETUPS[m] in chosen]
    for m in ablated:
        for tr in paths.ABLATION_TRANSFORMS[m]:
            ablation_pre[(m, tr)] = pretrain_job(
                m, tr, paths.ablation_pretrain_dir(runs_pre, prof.name, m, tr), f"pretrain {m}-{tr}", True
            )

    def finetune_job(
        setup: str, fold: int, folder: Path, name: str, pretrained, needs: list[Job], transforms: str = ""
    ) -> Job:
        def run(device: str):
            return ft.finetune(
                setup,
                fold,
                prepared,
                folder,
                pretrained=pretrained,
                profile=prof,
                device=device,
                seed=train_seed,
                resume=True,
                protocol=None,
                progress=progress,
                data_kind=data_kind,
                config=ft_cfg,
                force=True,
            )

        def argv(device: str) -> list[str]:  # the resolved settings travel in a file, not as a profile name
            config = _write_job_config(runs_ft, prof.name, name, ft_cfg)
            a = [
                "finetune",
                "--setup",
                setup,
                "--fold",
                str(fold),
                "--prepared",
                str(prep_dir),
                "--out",
                str(folder),
                "--profile",
                prof.name,
                "--config",
                str(config),
                "--device",
                device,
                "--seed",
                str(train_seed),
                "--resume",
                "--force",
                "--data-kind",
                data_kind,
                "--no-progress",
                "--recipe",
                recipe_spec(prof.departures),
            ]
            if isinstance(pretrained, dict):
                for m, p in pretrained.items():
                    a += [f"--pretrained-{m}", str(p)]
            elif pretrained is not None:
                a += ["--pretrained", str(pretrained)]
            return a

        def request() -> dict:
            family = setup.removeprefix("ssl-")
            files = ft.resolve_pretrained(setup, pretrained)
            inner = ft.inner_fold(fold, n_folds, ft_cfg.protocol)
            return ft.finetune_request(
                ft_cfg, setup, fold, inner, ft_cfg.epochs[family], ft_cfg.protocol, train_seed, prepared.digest, files
            )

        return Job(
            "finetune",
            name,
            folder,
            run,
            argv,
            needs=needs,
            request=request,
            log=paths.job_file(runs_ft, prof.name, name, ".log"),
            notebook=notebook_params(name, setup=setup, fold=int(fold), transforms=transforms),
        )

    ft_jobs: list[Job] = []
    pre_dir = paths.pretrain_dir(runs_pre, prof.name)
    for fold in fold_list:
        for setup in chosen:
            ssl = setup.startswith("ssl-")
            needs = [main_pre[m] for m in ("time", "spec") if m in main_pre and _needs_modality(setup, m)]
            ft_jobs.append(
                finetune_job(
                    setup,
                    fold,
                    paths.finetune_dir(runs_ft, prof.name, setup, fold),
                    f"finetune {setup} fold {fold}",
                    pre_dir if ssl else None,
                    needs,
                )
            )
    for fold in ablation_folds:
        for m in ablated:
            setup = paths.ABLATION_SETUPS[m]
            for tr in paths.ABLATION_TRANSFORMS[m]:
                backbone = paths.ablation_pretrain_dir(runs_pre, prof.name, m, tr) / "backbone.pt"
                ft_jobs.append(
                    finetune_job(
                        setup,
                        fold,
                        paths.ablation_finetune_dir(runs_ft, prof.name, m, tr, fold),
                        f"ablation {setup}-{tr} fold {fold}",
                        {m: backbone},
                        [ablation_pre[(m, tr)]],
                        tr,
                    )
                )
    return Plan(prep_dir, prepared, data_kind, main_pre, ablation_pre, ft_jobs)


def _study(
    prof: Profile,
    data_dir,
    out: Path,
    stage_roots: tuple,
    root: Path,
    chosen,
    train_seed: int,
    fold_list,
    ablation_folds,
    ablation: bool,
    device_list: list[str],
    progress: bool,
    settings,
    t_start: float,
    started_at: str,
    as_notebooks: bool = False,
) -> Path:
    """`reproduce` once its arguments are checked and OUT/<profile> is locked: data, pre-trainings,
    fine-tunings, tables, manifest. stage_roots: the runs folders of the prepare, pretrain and
    finetune stages (all OUT for the corrected recipe; see `recipes.stage_runs`)."""
    runs_ft = stage_roots[2]
    pre_cfgs, ft_cfg = prof.pretrain, prof.finetune
    from .results import write_json_atomic

    manifest = {
        "profile": prof.name,
        "started": started_at,
        "finished": None,
        "command": sys.argv,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "folds": list(fold_list),
        "ablation_folds": list(ablation_folds) if ablation else [],
        "setups": list(chosen),
        "ablation": bool(ablation),
        "devices": device_list,
        "device_names": _device_names(device_list),
        "versions": _versions(),
        "code_version": provenance.code_version(),
        "seed": train_seed,
        "settings": {
            "pretrain": {m: as_dict(c) for m, c in pre_cfgs.items()},
            "finetune": as_dict(ft_cfg),
            "set": list(settings),
        },
        "steps": {},
        "runs": {},
        "failures": [],
        "recipe": prof.recipe,
        "departures": list(prof.departures),
        "smoke": bool(ft_cfg.max_steps),
        "max_steps": ft_cfg.max_steps,
        "protocol": ft_cfg.protocol,
        "as_notebooks": bool(as_notebooks),
    }
    mpath = paths.manifest_path(runs_ft, prof.name)
    # runs skipped now keep the wall time an earlier call measured for them
    try:
        earlier = json.loads(mpath.read_text()).get("runs", {}) if mpath.exists() else {}
    except (OSError, ValueError):
        earlier = {}
    _check_same_smoke(mpath, ft_cfg.max_steps)

    def save_manifest() -> None:
        write_json_atomic(mpath, manifest)

    def step(name: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        if progress:
            print(f"reproduce [{prof.name}]: {name} ...", file=sys.stderr)
        result = fn()
        manifest["steps"][name] = {"wall_s": round(time.perf_counter() - t0, 3)}
        save_manifest()
        return result

    # 1. data, and the jobs of steps 2 and 3
    plan = _plan(
        prof, train_seed, out, data_dir, stage_roots, chosen, fold_list, ablation_folds, ablation, progress, step
    )
    manifest["data_kind"] = plan.data_kind
    manifest["n_records"] = len(plan.prepared.index)
    pre_jobs, ft_jobs = plan.pre_jobs, plan.ft_jobs

    def record_runs(jobs: list[Job]) -> Callable[[], None]:
        def update() -> None:
            for j in jobs:
                rec = _job_record(j)
                before = earlier.get(j.name) or {}
                if j.status == "skipped" and before.get("wall_s"):
                    rec["wall_s"] = before["wall_s"]  # measured when it ran
                    rec["reason"] = rec["reason"] or "finished earlier"
                manifest["runs"][j.name] = rec
            save_manifest()

        return update

    # 2. pre-trainings
    if pre_jobs:
        step("pretrain", lambda: run_jobs(pre_jobs, device_list, progress, record_runs(pre_jobs), as_notebooks))
        record_runs(pre_jobs)()

    # 3. fine-tunings
    all_jobs = pre_jobs + ft_jobs
    step("finetune", lambda: run_jobs(ft_jobs, device_list, progress, record_runs(all_jobs), as_notebooks))
    record_runs(all_jobs)()

    # 4. tables (refused, naming the runs, if the finished runs mix data or settings)
    try:
        tables = step("tables", lambda: write_tables(runs_ft, prof.name))
    except UserError as exc:
        manifest["tables_error"] = str(exc)
        save_manifest()
        raise
    manifest["tables"] = {k: str(v) for k, v in tables.items()}
    failures = [(j.name, str(j.folder), j.reason) for j in all_jobs if j.status in ("failed", "blocked")]
    manifest["failures"] = [{"name": n, "folder": f, "reason": r} for n, f, r in failures]
    manifest["counts"] = {s: sum(j.status == s for j in all_jobs) for s in ("done", "skipped", "failed", "blocked")}
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["wall_s"] = round(time.perf_counter() - t_start, 3)
    save_manifest()
    if progress:
        c = manifest["counts"]
        print(
            f"reproduce [{prof.name}]: {c['done']} runs done, {c['skipped']} already finished, "
            f"{c['failed']} failed, {c['blocked']} blocked in {manifest['wall_s']:.0f} s; tables: "
            f"{', '.join(str(p) for p in tables.values()) or 'none'}",
            file=sys.stderr,
        )
    if failures:
        raise RunsFailed(root, failures)
    return root


# --- one target: a single run and whatever it needs (the notebooks' way in) ---------------------


STUDY_CONFIG = "study"  # RUNS/<profile>/jobs/study.json: the resolved study a notebook job runs


def write_study_config(runs: Path, prof: Profile, seed: int) -> Path:
    """RUNS/<profile>/jobs/study.json: the resolved profile (recipe, `--set` items and smoke limit
    applied) and the training seed, so that a job run as a notebook (`config` parameter) plans
    exactly the runs `reproduce` planned, even for a customised profile."""
    from .results import write_json_atomic

    return write_json_atomic(
        paths.job_file(runs, prof.name, STUDY_CONFIG, ".json"), {"profile": as_dict(prof), "seed": int(seed)}
    )


def read_study_config(path: str | Path) -> tuple[Profile, int]:
    """(resolved Profile, training seed) from a file of `write_study_config`; UserError naming
    the file when it is unreadable or holds unknown settings."""
    from .config import config_from_dict

    src = f"config {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        d, seed = dict(data["profile"]), int(data["seed"])
        d["pretrain"] = {m: config_from_dict(PretrainConfig, c, src) for m, c in d["pretrain"].items()}
        d["finetune"] = config_from_dict(FinetuneConfig, d["finetune"], src)
        d["folds"], d["departures"] = tuple(d["folds"]), tuple(d["departures"])
        return Profile(**d), seed
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
    statuses: dict


def _ensure(
    folder_of,
    profile,
    runs,
    data,
    device,
    seed,
    settings,
    recipe,
    max_steps,
    config,
    progress,
    chosen,
    folds,
    ablation: bool,
) -> Target:
    """Plan the study restricted to `chosen` setups on `folds` (the planning code of `reproduce`),
    then run the job whose folder is `folder_of(prof, stage_roots)` and the jobs it needs, skipping
    finished ones. RunsFailed when the target (or what it needs) failed."""
    prof, train_seed = _target_study(profile, seed, settings, recipe, max_steps, config)
    data = data or None
    if data is not None:  # without data a real-data profile uses its prepared folder as it is (see _data)
        _check_data_dir(prof, data)
    stage_roots = tuple(stage_runs(runs, prof.departures, st) for st in STAGES)
    device = parse_devices(device, prof)[0] if device else parse_devices(None, prof)[0]
    plan = _plan(prof, train_seed, Path(runs), data, stage_roots, chosen, folds, folds, ablation, progress)
    want = folder_of(prof, stage_roots)
    target = next(j for j in plan.pre_jobs + plan.ft_jobs if j.folder == want)
    todo = [*target.needs, target]
    run_jobs(todo, [device], progress)
    bad = [(j.name, str(j.folder), j.reason) for j in todo if j.status in ("failed", "blocked")]
    if bad:
        raise RunsFailed(paths.profile_root(stage_roots[2], prof.name), bad)
    return Target(
        target.folder,
        plan.prep_dir,
        paths.pretrain_dir(stage_roots[1], prof.name),
        prof,
        train_seed,
        {j.name: j.status for j in todo},
    )


def ensure_pretrain(
    profile: str | Profile | None = "tiny",
    runs: str | Path = "runs",
    modality: str = "time",
    data: str | Path | None = None,
    device: str | None = None,
    seed: int | None = None,
    settings=(),
    recipe="corrected",
    max_steps: int = 0,
    transforms: str | None = None,
    config=None,
    progress: bool = False,
) -> Target:
    """Compute one pre-training of a study into RUNS (the layout of `paths`) and whatever it needs
    and is missing (the fixture when a tiny profile has no data, `prepare`; a real-data profile
    without `data` uses its prepared folder as it is, to show finished runs), skipping finished
    work under the provenance rules of `reproduce`; returns its `Target`. modality: time or spec;
    transforms: None (the main pre-training, t1 / t2) or an ablation view set of Fig. 3. The study
    is `profile` with `seed`, `settings` (`--set` items, or one string of them separated by ';'),
    `recipe` and `max_steps` as in `reproduce`, or the resolved study in `config` (the study.json
    that `reproduce --as-notebooks` hands its notebooks). device: e.g. cpu, cuda, cuda:1."""
    check_modality(modality)
    tr = None if transforms in (None, "", paths.MAIN_TRANSFORMS[modality]) else transforms
    setup = paths.ABLATION_SETUPS[modality]  # ssl-t needs the time pre-training, ssl-s the spec one

    def folder_of(prof: Profile, roots: tuple) -> Path:
        if tr is None:
            return paths.pretrain_run_dir(roots[1], prof.name, modality)
        return paths.ablation_pretrain_dir(roots[1], prof.name, modality, tr)

    if tr is not None:
        paths.ablation_pretrain_dir(runs, "x", modality, tr)  # UserError for an unknown view set
    return _ensure(
        folder_of,
        profile,
        runs,
        data,
        device,
        seed,
        settings,
        recipe,
        max_steps,
        config,
        progress,
        (setup,),
        (0,),
        tr is not None,
    )


def ensure_finetune(
    profile: str | Profile | None = "tiny",
    runs: str | Path = "runs",
    setup: str = "ssl-tsg",
    fold: int = 0,
    data: str | Path | None = None,
    device: str | None = None,
    seed: int | None = None,
    settings=(),
    recipe="corrected",
    max_steps: int = 0,
    transforms: str | None = None,
    config=None,
    progress: bool = False,
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

    def folder_of(prof: Profile, roots: tuple) -> Path:
        if tr is None:
            return paths.finetune_dir(roots[2], prof.name, setup, fold)
        return paths.ablation_finetune_dir(roots[2], prof.name, m, tr, fold)

    return _ensure(
        folder_of,
        profile,
        runs,
        data,
        device,
        seed,
        settings,
        recipe,
        max_steps,
        config,
        progress,
        (setup,),
        (fold,),
        tr is not None,
    )


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb reproduce --profile P [--data-dir D] [--out O] [--folds F] ...`."""
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
        help="GPU numbers like 0,1 (one run per GPU at a time), or cpu "
        "(default: all visible GPUs for paper, cpu for tiny)",
    )
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
    a = p.parse_args(argv)
    failed = False
    for recipe in expand_recipes(a.recipe or ["corrected"]):
        setups = affected_setups(recipe, parse_setups(a.setups))  # the others would repeat corrected runs
        if not setups:
            continue
        try:
            root = reproduce(
                a.profile,
                data_dir=a.data_dir,
                out=a.out,
                folds=a.folds,
                setups=setups,
                devices=a.devices,
                ablation=not a.no_ablation and not recipe,  # Fig. 3: corrected only
                progress=not a.no_progress,
                seed=a.seed,
                settings=a.set,
                recipe=recipe,
                max_steps=a.max_steps,
                protocol=a.protocol,
                as_notebooks=a.as_notebooks,
            )
        except RunsFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"reproduce: finished; results, tables and manifest in {root}")
    return 1 if failed else 0
