"""The study on Ray (`cluster`): real clusters started on this machine (loopback only)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
RAY = str(Path(sys.executable).with_name("ray"))
STUDY = ["--no-ablation", "--max-steps", "1", "--no-progress"]

pytestmark = pytest.mark.slow  # each starts Ray and real runs: 30-120 s on 2 loaded cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_dir():
    """Session folders of `ray start` (short: Ray's socket paths must stay under 107 characters);
    the processes of these clusters are killed afterwards (not `ray stop`, which stops every Ray
    cluster on the machine, another test's too)."""
    d = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    yield d
    for _ in range(3):  # a dying raylet may start no more, but its workers end after it
        for pid in _pids_with(str(d)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    shutil.rmtree(d, ignore_errors=True)


def _pids_with(text: str) -> list[int]:
    """The processes whose command line holds `text` (a cluster's session folder), and their
    descendants (Ray's agents rename their command line)."""
    cmds, parents = {}, {}
    for f in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = f.read_text()
            cmds[int(f.parent.name)] = (f.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(f.parent.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {pid for pid, cmd in cmds.items() if text in cmd and pid != os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def _start(args: list[str]) -> None:
    subprocess.run(
        [RAY, "start", "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args],
        env=ENV,
        check=True,
        capture_output=True,
        timeout=120,
    )


def _reproduce(out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ecgssl_nb", "reproduce", "--out", str(out), *STUDY, *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen, timeout: float = 400) -> str:
    text = p.communicate(timeout=timeout)[0]
    assert p.returncode == 0, text[-3000:]
    return text


def _head(ray_dir: Path, *extra: str) -> str:
    """A one-node Ray cluster (`ray start --head`) on loopback; its address."""
    port = _free_port()
    _start(["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(ray_dir / "h"), *extra])
    return f"127.0.0.1:{port}"


def _runs(out: Path) -> dict:
    return json.loads((out / "tiny" / "manifest.json").read_text())["runs"]


def test_fractional_gpus_place_two_fine_tunings_on_each_declared_gpu_at_once(ray_dir, tmp_path):
    address = _head(ray_dir, "--num-cpus", "4", "--num-gpus", "2")
    p = _reproduce(tmp_path, "--address", address, "--gpus-per-run", "0.5", "--setups", "t,s", "--folds", "0,1")
    _finish(p)
    runs = list(_runs(tmp_path).values())
    assert len(runs) == 4 and all(r["status"] == "done" for r in runs)
    assert Counter(g for r in runs for g in r["gpu_ids"]) == {"0": 2, "1": 2}  # two runs per GPU id
    assert all(len(r["gpu_ids"]) == 1 for r in runs)
    assert max(r["started_s"] for r in runs) < min(r["ended_s"] for r in runs)  # all four at once


def test_two_drivers_on_one_runs_folder_finish_the_study_together_each_run_trained_once(tmp_path):
    a = _reproduce(tmp_path, "--setups", "t,s,ssl-t", "--folds", "0", "--devices", "cpu,cpu")  # on Ray
    b = _reproduce(tmp_path, "--setups", "t,s,ssl-t", "--folds", "0")  # in its own process
    _finish(a), _finish(b)
    manifest = json.loads((tmp_path / "tiny" / "manifest.json").read_text())
    assert len(manifest["drivers"]) == 2
    assert sum(c["done"] for c in manifest["drivers"].values()) == 4  # each run trained by one of them
    assert all(c["failed"] == c["blocked"] == 0 for c in manifest["drivers"].values())
    assert {r["status"] for r in manifest["runs"].values()} == {"done"} and len(manifest["runs"]) == 4
    assert not list((tmp_path / "tiny").rglob("*.stale-*"))  # nothing was moved aside and redone
    assert (tmp_path / "tiny" / "tables" / "table2.csv").is_file()


def _raylet_pids(session: Path) -> list[int]:
    return [
        pid
        for pid in _pids_with(str(session))
        if "raylet/raylet" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]


def test_a_worker_node_lost_mid_study_leaves_the_study_finished_on_the_head_with_nothing_lost(ray_dir, tmp_path):
    address = _head(ray_dir, "--num-cpus", "1", "--num-gpus", "0")
    _start(
        [
            "--address",
            address,
            "--num-cpus",
            "1",
            "--resources",
            '{"spare": 1}',
            "--temp-dir",
            str(ray_dir / "w"),
        ]
    )
    p = _reproduce(tmp_path, "--address", address, "--setups", "t,s", "--folds", "0,1")
    jobs = tmp_path / "tiny" / "jobs"
    deadline = time.monotonic() + 120
    while len(list(jobs.glob("*.log"))) < 2 and time.monotonic() < deadline:  # a run on each node
        time.sleep(0.5)
    pids = _raylet_pids(ray_dir / "w")
    assert pids, "the worker node's raylet is not running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)  # the node is lost
    _finish(p)
    runs = _runs(tmp_path)
    assert len(runs) == 4 and {r["status"] for r in runs.values()} == {"done"}
    assert len({r["node"] for r in runs.values()}) >= 1
    for setup in ("t", "s"):
        for fold in (0, 1):
            assert (tmp_path / "tiny" / "finetune" / setup / f"fold{fold}" / "result.json").is_file()


def _same_runs(a: Path, b: Path) -> list[str]:
    """The run folders of study `a` (relative), each checked equal to `b`'s: the provenance request
    (settings, seed, input digests: the prepared corpus's and a backbone's) and the fine-tunings'
    metrics. The prepared folder's request names its input folder and the tables' the hashes of
    result files (which hold wall times), so those two are compared by their contents."""
    names = []
    for prov in sorted((a / "tiny").rglob("provenance.json")):
        rel = prov.parent.relative_to(a)
        other = b / rel
        want = json.loads(prov.read_text())["request"]
        if want["stage"] == "tables":
            for csv in prov.parent.glob("*.csv"):
                assert csv.read_text() == (other / csv.name).read_text(), csv.name
        elif want["stage"] == "prepare":
            assert (prov.parent / "signals.npy").read_bytes() == (other / "signals.npy").read_bytes()
        else:
            assert want == json.loads((other / "provenance.json").read_text())["request"], rel
        if (prov.parent / "result.json").is_file():
            ra, rb = (json.loads((d / "result.json").read_text()) for d in (prov.parent, other))
            for key in ("metrics", "per_class", "thresholds", "selection"):
                assert ra[key] == rb[key], (rel, key)
        names.append(str(rel))
    return names


def test_the_tiny_study_on_a_local_ray_cluster_equals_the_study_run_in_this_process(tmp_path):
    inproc, on_ray = tmp_path / "inproc", tmp_path / "ray"
    study = ("--setups", "t,ssl-t", "--folds", "0")
    _finish(_reproduce(inproc, *study))  # one device: in the driver's process, no Ray
    _finish(_reproduce(on_ray, *study, "--devices", "cpu,cpu"))  # two at once: a local Ray cluster
    engines = [json.loads((d / "tiny" / "manifest.json").read_text())["placement"]["engine"] for d in (inproc, on_ray)]
    assert engines == ["in-process", "ray"]
    names = _same_runs(inproc, on_ray)
    assert {"tiny/pretrain/time", "tiny/finetune/t/fold0", "tiny/finetune/ssl-t/fold0"} <= set(names)


def test_a_pretraining_asking_two_gpus_runs_under_ddp_inside_its_task(ray_dir, tmp_path):
    address = _head(ray_dir, "--num-cpus", "3", "--num-gpus", "2")  # declared GPUs: the ranks run on the CPU
    _finish(_reproduce(tmp_path, "--address", address, "--gpus-per-pretrain", "2", "--setups", "ssl-t", "--folds", "0"))
    runs = _runs(tmp_path)
    assert runs["pretrain time"]["status"] == "done" and sorted(runs["pretrain time"]["gpu_ids"]) == ["0", "1"]
    assert runs["finetune ssl-t fold 0"]["status"] == "done" and len(runs["finetune ssl-t fold 0"]["gpu_ids"]) == 1
    summary = json.loads((tmp_path / "tiny" / "pretrain" / "time" / "summary.json").read_text())
    assert summary["world_size"] == 2  # two DDP processes trained it


def test_ctrl_c_stops_a_study_on_ray_cleanly_and_every_finished_run_is_reused(ray_dir, tmp_path):
    # the driver's own temp folder (short, for Ray's socket paths): its local cluster's session
    # folder goes there, so another Ray user on the machine cannot pass or fail the check
    study = ("--setups", "t,s,ssl-t", "--folds", "0,1", "--devices", "cpu,cpu")
    cmd = [sys.executable, "-m", "ecgssl_nb", "reproduce", "--out", str(tmp_path), *STUDY, *study]
    p = subprocess.Popen(
        cmd,
        env={**ENV, "TMPDIR": str(ray_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list((tmp_path / "tiny" / "finetune").rglob("result.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert p.poll() is None, "the study ended before a run finished"
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the driver's whole process group
    text = p.communicate(timeout=120)[0]
    assert p.returncode == 130, text[-3000:]
    assert "interrupted: finished work is kept" in text
    assert not list(ray_dir.glob("ecgssl-ray-*"))  # the local cluster was shut down, its folder removed
    finished = {r.parent for r in (tmp_path / "tiny").rglob("result.json")}
    for folder in finished:  # every result on disk is whole: its digests check
        ok = subprocess.run([sys.executable, "-m", "ecgssl_nb", "verify", str(folder)], env=ENV, capture_output=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    _finish(_reproduce(tmp_path, *study))  # run again: what finished is reused, the rest runs
    counts = json.loads((tmp_path / "tiny" / "manifest.json").read_text())["counts"]  # the second call's
    assert counts["skipped"] >= len(finished) and counts["failed"] == counts["blocked"] == 0
    assert not list((tmp_path / "tiny").rglob("*.stale-*"))  # nothing finished was redone
    assert len(list((tmp_path / "tiny" / "finetune").rglob("result.json"))) == 6


def test_on_ray_a_changed_pretraining_reruns_the_ssl_finetuning_that_reads_its_backbone(tmp_path):
    study = ("--setups", "t,ssl-t", "--folds", "0", "--devices", "cpu,cpu")
    _finish(_reproduce(tmp_path, *study))
    _finish(_reproduce(tmp_path, *study, "--set", "pretrain.warmup_epochs=0"))  # a new backbone (LR > 0 at step 1)
    runs = _runs(tmp_path)
    status = {k: v["status"] for k, v in runs.items()}
    assert status == {"pretrain time": "done", "finetune t fold 0": "skipped", "finetune ssl-t fold 0": "done"}
    assert [d.split(":")[0] for d in runs["finetune ssl-t fold 0"]["replaced"]] == ["inputs.backbone.time"]
    backbone = json.loads((tmp_path / "tiny" / "pretrain" / "time" / "digests.json").read_text())
    inputs = json.loads((tmp_path / "tiny" / "finetune" / "ssl-t" / "fold0" / "provenance.json").read_text())
    assert inputs["request"]["inputs"]["backbone.time"] == backbone["files"]["backbone.pt"]["sha256"]  # the new one
