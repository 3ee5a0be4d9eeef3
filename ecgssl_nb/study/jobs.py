"""One run of the study as data (`Job`), and running it: in this process or as its chapter notebook.

`reproduce` plans the jobs and runs them one at a time here; `cluster` runs each one in a Ray
task's child process through the same `run_inprocess` / `run_notebook`. A failing run never
stops the others: its reason stays on the job, its traceback goes to `<run>/error.txt`.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import notebook_jobs
from .. import provenance
from ..atomic import write_json, write_text_atomic
from ..config import as_dict
from ..core.errors import UserError
from ..core.settings import Profile, setup_family
from .recipes import recipe_label

LOCK_WAIT_S = 2 * 24 * 3600.0  # the longest a run waits for another process that holds a folder it needs (s)
_FLAGS = {"prepared_dir": "--prepared"}  # keyword argument -> command-line flag, where the names differ
ENDED = ("done", "skipped", "failed", "blocked")


@dataclass
class Job:
    """One unit of work: a `python -m ecgssl_nb` command (`kind`) and the keyword arguments of
    its function (`args`, without the device), so that it runs the same in this process
    (`call`), as a subprocess (`argv`) and as its chapter notebook (`notebook`)."""

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
    lock_wait_s: float | None = None  # wait this long for another writer of the folder (None: LOCK_WAIT_S)

    @property
    def record(self) -> Path:
        """<folder>/notebook.ipynb: the executed chapter notebook of this run (`--as-notebooks`)."""
        return self.folder / notebook_jobs.NOTEBOOK_RECORD

    def finished_files(self) -> bool:
        """The run's outputs and their digests.json (the completion mark) are there."""
        names = ("result.json",) if self.kind == "finetune" else ("backbone.pt", "summary.json")
        return all((self.folder / n).is_file() for n in (*names, provenance.DIGESTS))

    def output_fault(self, want: dict) -> str | None:
        """Why the finished outputs may not be reused for `want` (every byte against
        digests.json; a fine-tuning's result.json made under `want`), None if they may."""
        if self.kind == "finetune":
            from ..stages import finetune as ft  # ~25 ms at import: only when a stage runs

            return ft.finished_fault(self.folder, want)
        from ..stages.pretrain import OUTPUTS  # scipy (via prepare): only when a stage runs

        return provenance.digest_fault(self.folder, OUTPUTS, full=True)

    def request(self) -> dict:
        """The provenance request this pre-training or fine-tuning must match to be reused (read
        off the prepared folder and the backbone files, so only once they exist)."""
        from ..data.prepare import load_prepared  # scipy: only when a stage reads or writes its data

        a = self.args
        if self.kind == "pretrain":
            from ..stages.pretrain import pretrain_request  # scipy (via prepare): only when a stage runs

            # only what changes the result; the process count, compile mode, cadences are recorded only
            digest = load_prepared(a["prepared_dir"]).digest
            return pretrain_request(a["config"], a["modality"], a["transforms"], a["seed"], digest)
        from ..core import classify  # torch: ~1.3 s at import, only when a stage runs
        from ..stages import finetune as ft  # torch: ~1.3 s at import, only when a stage runs

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
            want, rec = self.request(), provenance.read(self.folder)
        except UserError as exc:  # unreadable record, or an input (a backbone) missing
            self.replaced = [str(exc)]
            return False
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
            from ..stages import pretrain as pretrain_stage  # scipy (via prepare): only when a stage runs

            return pretrain_stage.pretrain(**self.args, device=device)
        from ..stages import finetune as ft  # ~25 ms at import: only when a stage runs

        return ft.finetune(**self.args, device=device)

    def argv(self, device: str) -> list[str]:
        """The command line after `python -m ecgssl_nb` that runs this job on `device`: the config
        written to `config_file` (resolved settings, never a profile name), a Profile as
        --profile and --recipe, a dict as --KEY-<key> items."""
        out = [self.kind]
        on_device = {"device": device} if self.kind in ("pretrain", "finetune") else {}  # (fixture, prepare: none)
        for key, value in {**self.args, **on_device}.items():
            flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
            if key == "progress":
                out.append("--no-progress")  # the output goes to a log
            elif key == "config":
                out += [flag, str(write_json(self.config_file, as_dict(value), ensure_ascii=False))]
            elif isinstance(value, Profile):
                out += [flag, value.name, "--recipe", recipe_label(value.departures)]
            elif isinstance(value, dict):
                out += [arg for m, p in value.items() for arg in (f"{flag}-{m}", str(p))]
            elif value is True:
                out.append(flag)
            elif value is not None and value is not False:
                out += [flag, str(value)]
        return out


def log_path(job: Job) -> Path:
    """The job's subprocess output: `job.log`, else <folder>.run.log (not inside: the run claims its folder)."""
    return job.log or job.folder.with_name(f"{job.folder.name}.run.log")


def succeeded(job: Job) -> None:
    job.status = "done"
    (job.folder / "error.txt").unlink(missing_ok=True)  # an earlier failure of this run, now fixed


def failed(job: Job, reason: str, text: str | None) -> None:
    """Mark `job` failed with `reason`; `text` goes to its error.txt (None: nothing is written,
    the folder is another process's, which holds its lock)."""
    job.status, job.reason = "failed", reason[:300]
    if text is not None:
        note(job, text)


def note(job: Job, text: str) -> None:
    """`text` as the job's error.txt, written under its folder's lock; a folder that another
    process holds is left alone (the reason stays in the job, the manifest and RunsFailed)."""
    try:
        with provenance.lock(job.folder, what=job.name):
            job.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(job.folder / "error.txt", text)
    except UserError:  # Busy, or a lock that cannot be taken (named in the job's reason when it is the cause)
        return


def blocked_reason(bad: list[str]) -> str:
    return f"needs {', '.join(bad)}, which failed"


def blocked(job: Job) -> bool:
    """Mark `job` blocked (with a note in its folder) when a job it needs failed or was blocked."""
    bad = [n.name for n in job.needs if n.status in ("failed", "blocked")]
    if bad:
        job.status, job.reason = "blocked", blocked_reason(bad)
        note(job, f"not run: {job.reason}\n")
    return bool(bad)


def drop_own_notes(folder: Path) -> None:
    """Remove the error.txt that a blocked or failed-before-start run left in a folder holding
    nothing else, so the run can claim the folder instead of moving a note aside."""
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= {"error.txt", provenance.LOCK}:
        (folder / "error.txt").unlink(missing_ok=True)


def say_replaced(job: Job) -> None:
    """Say on stderr why `job`'s folder cannot be reused (it runs again; what it holds is moved aside)."""
    if job.replaced and job.folder.exists():
        shown = "; ".join(job.replaced[:4]) + ("; ..." if len(job.replaced) > 4 else "")
        print(
            f"reproduce: {job.name}: {job.folder} cannot be reused ({shown}); running it again "
            f"(what it holds is moved aside)",
            file=sys.stderr,
        )


def run_inprocess(job: Job, device: str) -> None:
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
                say_replaced(job)
            job.call(device)
    except provenance.Busy as exc:  # never got the folder: leave nothing in it
        return failed(job, f"{type(exc).__name__}: {exc}", None)
    except Exception as exc:  # (not KeyboardInterrupt: Ctrl-C stops the study)
        return failed(job, f"{type(exc).__name__}: {exc}".splitlines()[0], traceback.format_exc())
    succeeded(job)


def run_notebook(job: Job, device: str, in_child: bool) -> None:
    """Run `job` as its chapter notebook (`notebook_jobs`) with the job's parameters, keeping it
    as <folder>/notebook.ipynb. in_child: in a `python -m ecgssl_nb.study.notebook_jobs` process."""
    params = {**job.notebook, "device": device}
    try:
        if in_child:
            notebook_jobs.execute_subprocess(job.kind, params, job.record, log_path(job))
        else:
            notebook_jobs.execute(job.kind, params, job.record)
    except Exception as exc:
        return failed(job, f"{type(exc).__name__}: {exc}".strip().splitlines()[-1], traceback.format_exc())
    succeeded(job)
