"""The study's jobs as Ray tasks: on this machine's cores and GPUs, or on a cluster (`--address`).

Each `jobs.Job` becomes one Ray task that depends only on the jobs it needs and asks for its
`Placement` share (a fine-tuning `gpus_per_run`: 1/k packs k on one GPU; a pre-training
`gpus_per_pretrain`, DDP inside its task when more than 1). The task runs the job in a child
process (`python -m ecgssl_nb.study.cluster`) through `jobs.run_inprocess`, as `reproduce` does in its
own process, and returns where (node, host, GPU ids) and when it ran. A task whose worker dies
is retried `retries` times (the run resumes from its checkpoint); Ctrl-C cancels every task.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .. import provenance
from ..core.errors import UserError
from ..core.settings import resolve_device
from .jobs import LOCK_WAIT_S, Job, blocked_reason, failed, log_path, note, run_inprocess, run_notebook, succeeded

__all__ = ["Placement", "check_share", "connect", "run", "RETRIES"]

RETRIES = 2  # default: how often a task whose worker died runs again
OBJECT_STORE_BYTES = 512 * 2**20  # a local cluster's object store: the tasks pass only small records


@dataclass(frozen=True)
class Placement:
    """Where and with what the tasks run: the cluster (`address`; None: a local one with
    `local_cpus` CPUs and `local_gpus` GPUs), each task's resources, and the retries."""

    address: str | None = None
    gpus_per_run: float = 0.0  # a fine-tuning's share of a GPU (0: CPU only)
    gpus_per_pretrain: float = 0.0  # a pre-training's GPUs (1 on a GPU study)
    cpus_per_run: float = 1.0  # CPU threads of each task
    retries: int = RETRIES
    local_cpus: int | None = None
    local_gpus: int | None = None

    def resources(self, kind: str) -> dict:
        """The Ray resources of one job of `kind` (pretrain or finetune)."""
        gpus = self.gpus_per_pretrain if kind == "pretrain" else self.gpus_per_run
        return {"num_cpus": self.cpus_per_run, "num_gpus": gpus}


def check_share(flag: str, value: float, most: float) -> float:
    """A resource share such as --gpus-per-run: a number > 0 and <= `most`; a share below 1 must
    divide 1 (k runs per GPU), as Ray requires."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= most:
        raise UserError(f"{flag} must be a number > 0 and <= {most:g}, got {value!r}")
    if value < 1 and abs(round(1 / value) * value - 1) > 1e-9:
        raise UserError(f"{flag} {value:g}: a share below 1 must be 1/k (e.g. 0.5, 0.25), so k runs fit a GPU")
    return float(value)


@contextlib.contextmanager
def connect(place: Placement) -> Iterator[None]:
    """Ray for the length of the block: joins `place.address` (or RAY_ADDRESS) and leaves that
    cluster running, or starts a local cluster and shuts it down afterwards."""
    import ray  # ~1 s at import: only when the study runs on Ray

    address = place.address or os.environ.get("RAY_ADDRESS") or None
    tmp = None if address else tempfile.mkdtemp(prefix="ecgssl-ray-")  # short: Ray's socket paths < 107 characters
    try:
        if address:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"--address {address}: no Ray cluster answers there ({exc})") from None
        else:
            kw = {"num_cpus": place.local_cpus, "num_gpus": place.local_gpus, "object_store_memory": OBJECT_STORE_BYTES}
            ray.init(**kw, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def run(todo: list[Job], place: Placement, cwd: Path, as_notebooks: bool, done: Callable[[Job], None]) -> None:
    """Run the jobs `todo` (needs first) as Ray tasks on the cluster of `connect`; each job's
    status, reason, where and when it ran are set on it, and `done(job)` is called as each one
    ends. UserError when a job asks for more GPUs or CPUs than the whole cluster has;
    KeyboardInterrupt cancels the tasks still running, then is raised again."""
    import ray  # ~1 s at import: only when the study runs on Ray

    have = ray.cluster_resources()  # a job asking for more than the whole cluster has would wait forever
    for key, name in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
        need = max(place.resources(j.kind)[key] for j in todo)
        if need > have.get(name, 0.0):
            flag = "--gpus-per-run" if name == "GPU" else "--cpus-per-run"
            raise UserError(
                f"{flag}: a run asks for {need:g} {name}(s) but "
                f"the Ray cluster has {have.get(name, 0.0):g} (start it with more, or ask for less)"
            )
    task = ray.remote(_task)
    refs: dict[int, object] = {}
    for job in todo:  # needs come before the jobs that need them (the plan's order)
        deps = [refs[id(n)] for n in job.needs if id(n) in refs]
        opts = {**place.resources(job.kind), "max_retries": place.retries, "retry_exceptions": False}
        slim = replace(job, needs=[])  # what the task is sent: the needs' results come as arguments
        refs[id(job)] = task.options(**opts, name=job.name).remote(slim, str(cwd), as_notebooks, *deps)
    by_ref = {refs[id(job)]: job for job in todo}
    pending = list(by_ref)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            job = by_ref[ready[0]]
            _collect(job, ready[0])
            done(job)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _collect(job: Job, ref) -> None:
    """The task's record onto `job`; a task that raised (its worker died more than `retries`
    times, or a need did) fails the job, or blocks it when a job it needs failed."""
    import ray  # ~1 s at import: only when the study runs on Ray

    try:
        rec = ray.get(ref)
    except Exception as exc:  # RayTaskError, WorkerCrashedError, NodeDiedError, ...
        bad = [n.name for n in job.needs if n.status in ("failed", "blocked")]
        rec = {"status": "blocked", "reason": blocked_reason(bad)} if bad else {}
        if not rec:  # the task's own error: its last line as the reason, all of it in error.txt
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            rec = {"status": "failed", "reason": f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]}
            note(job, f"{type(exc).__name__}\n{exc}\n")
    for key in ("status", "reason", "device", "node", "host", "gpu_ids", "started", "ended", "wall_s", "replaced"):
        if key in rec:
            setattr(job, key, rec[key])
    if job.status == "blocked":
        note(job, f"not run: {job.reason}\n")


def _task(job: Job, cwd: str, as_notebooks: bool, *needs: dict) -> dict:
    """One job in a Ray worker: blocked when a job it needs did not succeed; else run in a child
    process on the GPU(s) Ray gave this task (CUDA_VISIBLE_DEVICES), or on the CPU."""
    import ray  # in the Ray worker, where it is loaded already

    os.chdir(cwd)  # the driver's folder: a job's paths may be relative to it
    bad = [n["name"] for n in needs if n["status"] not in ("done", "skipped")]
    if bad:
        return {"name": job.name, "status": "blocked", "reason": blocked_reason(bad)}
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    where = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "gpu_ids": gpu_ids}
    device = "cuda" if gpu_ids else "cpu"
    t0, started = time.perf_counter(), time.time()
    if as_notebooks:
        run_notebook(job, device, True)
        rec = {"status": job.status, "reason": job.reason, "device": device}
    else:
        rec = _child(job, cwd, device, len(gpu_ids) if job.kind == "pretrain" and len(gpu_ids) > 1 else 1)
    rec |= {"started": started, "ended": time.time(), "wall_s": time.perf_counter() - t0}
    return {"name": job.name, **rec, **where}


def _child(job: Job, cwd: str, device: str, ddp: int = 1) -> dict:
    """Run `job` in `python -m ecgssl_nb.study.cluster` (its output to the job's log), which dies with
    this worker (ddp > 1: a pre-training under DDP, one process per GPU of the task); its record,
    or a failure with the log's tail when it did not write one."""
    log = log_path(job)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ecgssl-task-") as tmp:
        out = Path(tmp) / "record.json"
        cmd = [sys.executable, "-m", "ecgssl_nb.study.cluster", device, str(out), str(ddp)]
        with open(log, "w") as fh:
            fh.write(f"$ {' '.join(cmd)}  # {job.name}\n")
            fh.flush()
            rc = subprocess.run(
                cmd, input=pickle.dumps(job), stdout=fh, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            ).returncode
        if out.is_file():
            return json.loads(out.read_text())
    tail = log.read_text(errors="replace").splitlines()[-60:]
    last = next((ln for ln in reversed(tail) if ln.strip()), "")
    failed(job, f"exit status {rc}: {last.strip()}", f"exit status {rc}\n\n" + "\n".join(tail) + "\n")
    return {"status": job.status, "reason": job.reason, "device": device}


def _die_with_parent() -> None:
    """In the child, before it starts: SIGKILL when the Ray worker that started it dies (Linux),
    so a retried task never meets an orphan still writing its folder."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _main(argv: list[str]) -> int:
    """`python -m ecgssl_nb.study.cluster DEVICE RECORD DDP` with a pickled Job on stdin (from `_child`):
    run it as `reproduce` runs a job in its own process (DDP > 1: under torchrun with DDP
    processes); its status goes to the RECORD file."""
    device, record, ddp = argv
    job = pickle.loads(sys.stdin.buffer.read())
    if device == "cuda" and resolve_device("auto") == "cpu":
        device = "cpu"  # GPUs declared to Ray but absent here (a test cluster's fake GPUs)
    if int(ddp) > 1:
        _run_torchrun(job, device, int(ddp))
    else:
        run_inprocess(job, device)
    rec = {"status": job.status, "reason": job.reason, "device": device, "replaced": job.replaced}
    Path(record).write_text(json.dumps(rec))
    return 0


def _run_torchrun(job: Job, device: str, n: int) -> None:
    """A pre-training under DDP on this task's `n` GPUs: `torchrun --standalone` starts one
    `python -m ecgssl_nb pretrain` per GPU (rank 0 claims the folder and writes it). The folder's
    lock is waited for first and the run checked again, so one another driver finished is skipped."""
    with provenance.lock(job.folder, what=job.name, wait_s=LOCK_WAIT_S):
        if job.done_before():
            job.status = "skipped"
            return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    rc = subprocess.run([*cmd, "-m", "ecgssl_nb", *job.argv(device)]).returncode
    if rc == 0 and job.done_before():
        return succeeded(job)
    reason = f"torchrun exit status {rc} ({n} processes)"
    failed(job, reason, f"{reason}: their output is in {log_path(job)}\n")


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
