"""The study's SLURM script (cluster/slurm_ray.sbatch) submitted to a real one-machine SLURM
(slurmctld, slurmd and munge on this host, set up by cluster/slurm_single_node.sh): the job
starts a Ray head with `srun`, runs one `reproduce --address` on it, and the tiny study finishes.
The daemons are left running (a later run of the script finds them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_study_on_ray import _free_port  # a free loopback port for the Ray head

ROOT = Path(__file__).resolve().parent.parent
NEEDS = ("sbatch", "slurmctld", "slurmd", "munged")

pytestmark = [
    pytest.mark.slow,  # the daemons, a SLURM job, a Ray head and three runs: ~60 s
    pytest.mark.skipif(os.geteuid() != 0, reason="a one-machine SLURM needs root (it writes /etc/slurm)"),
    pytest.mark.skipif(
        not all(shutil.which(c) for c in NEEDS), reason="no SLURM here: apt-get install -y slurm-wlm munge"
    ),
]


def test_the_slurm_script_runs_the_tiny_study_on_ray_inside_one_slurm_job(tmp_path):
    up = subprocess.run([str(ROOT / "cluster" / "slurm_single_node.sh")], capture_output=True, text=True, timeout=180)
    if up.returncode == 2 and "is not ours" in up.stderr:
        pytest.skip(up.stderr.strip())  # a host with its own SLURM: not reconfigured for a test
    assert up.returncode == 0, up.stdout + up.stderr
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # Ray's socket paths must stay short
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "ECGSSL_PYTHON": sys.executable,
        "ECGSSL_PROFILE": "tiny",
        "ECGSSL_RUNS": str(tmp_path / "runs"),
        "ECGSSL_ARGS": "--setups t,ssl-t --folds 0 --no-ablation --max-steps 1 --no-progress",
        "RAY_PORT": str(_free_port()),
        "RAY_TMP": ray_tmp,
    }
    log = tmp_path / "job.out"
    node_cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0]
    cmd = ["sbatch", "--parsable", "--nodes", "1", "--cpus-per-task", node_cpus, "--time", "15", "--output", str(log)]
    try:
        job = subprocess.run(
            [*cmd, str(ROOT / "cluster" / "slurm_ray.sbatch")], env=env, cwd=ROOT, capture_output=True, text=True
        )
        assert job.returncode == 0, job.stderr
        state = _wait_for(job.stdout.strip().split(";")[0])
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = log.read_text(errors="replace") if log.exists() else ""
    assert state == "COMPLETED", f"job {state}: " + text[-4000:]
    assert "reproduce: finished" in text
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert manifest["placement"]["engine"] == "ray" and manifest["placement"]["address"].startswith("127.0.0.1:")
    runs = manifest["runs"]
    assert set(runs) == {"pretrain time", "finetune t fold 0", "finetune ssl-t fold 0"}
    assert {r["status"] for r in runs.values()} == {"done"} and all(r["node"] for r in runs.values())
    assert (tmp_path / "runs" / "tiny" / "tables" / "table2.csv").is_file()


def _wait_for(job_id: str, timeout: float = 900.0) -> str:
    """The job's end state; fails at once with SLURM's reason when it cannot start (a job pending
    on a node that cannot hold it waits forever), and cancels it when it runs past `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        if "JobState=" not in out:  # purged from the controller's memory (MinJobAge) before we looked
            return "GONE"
        state = re.search(r"JobState=(\S+)", out).group(1)
        reason = re.search(r"Reason=(\S+)", out).group(1)
        if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return state
        if state == "PENDING" and reason not in ("None", "Priority", "Resources", "BeginTime"):
            subprocess.run(["scancel", job_id])
            pytest.fail(f"SLURM job {job_id} cannot start: {reason}\n{out}")
        time.sleep(2)
    subprocess.run(["scancel", job_id])
    pytest.fail(f"SLURM job {job_id} still not finished after {timeout:.0f} s: cancelled")
