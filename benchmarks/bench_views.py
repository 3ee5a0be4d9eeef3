"""How fast are the DINO views? Times `time_views` (B = 196 raw windows, 10 views each) and
`spec_views` (B = 256) per batch, on the CPU with 1 and 2 torch threads, and on CUDA when there
is one. Prints wall and process-CPU milliseconds per batch, records/s, and for the time views the
ratio to the authors' loader.

For scale: the authors' loader made time-series views at about 260 records/s per loader process
(numpy per record, per view); the target is at least 20x that, 5,200 records/s, i.e.
about 37 ms of one core per batch of 196. With one thread the CPU milliseconds are the cost of
the work itself and the steadiest figure on a shared machine; "x authors (1 core)" is
(B / CPU seconds) / 260. On a machine whose cores are busy with other work, 2 threads can be
far slower than 1 (the threads wait for each other at every parallel op); a loader process
is best given one thread.

    .venv/bin/python benchmarks/bench_views.py [--threads 1 2] [--repeats R] [--device cpu cuda]
                                               [--baseline GIT_REV]

--baseline times ecgssl_nb/transforms.py as it was at GIT_REV in the same run, each call
alternating with the current code, so that both see the same load.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ecgssl_nb
from ecgssl_nb.core import transforms as T

AUTHORS_RECORDS_PER_S = 260.0  # time views, one loader process (measured on the released code)
ROOT = Path(__file__).resolve().parents[1]


def load_baseline(rev: str):
    """ecgssl_nb/transforms.py at git revision `rev`, imported as a module of the package."""
    src = subprocess.run(
        ["git", "show", f"{rev}:ecgssl_nb/transforms.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "transforms_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"{ecgssl_nb.__name__}._transforms_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timeit(fns: list, device: str, repeats: int) -> list[tuple[float, float]]:
    """Median (wall, process CPU) seconds per call of each function, after one warm-up call
    each; the functions take turns, so a change in the machine's load hits them alike."""
    for fn in fns:
        fn()
    _sync(device)
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu)]


def bench(device: str, repeats: int, modules: dict) -> list[dict]:
    """Seconds per batch for each view pipeline (and the single transforms) on `device`, for
    each module in `modules` (label -> transforms module)."""
    mean, std = np.zeros(12), np.full(12, 0.2)
    raw_t = torch.randn(196, 12, 250, device=device) * 0.2  # mV
    raw_s = torch.randn(256, 12, 250, device=device) * 0.2
    stacked = raw_t.repeat(10, 1, 1)  # (1960, 12, 250): a single transform on all views at once
    gen = {label: torch.Generator(device=device).manual_seed(0) for label in modules}
    cases = [
        ("time_views t1", 196, lambda M, g: M.time_views(raw_t, mean, std, "t1", generator=g)),
        ("time_views none", 196, lambda M, g: M.time_views(raw_t, mean, std, "none", generator=g)),
        ("spec_views t2", 256, lambda M, g: M.spec_views(raw_s, "t2", generator=g)),
        ("spec_views none", 256, lambda M, g: M.spec_views(raw_s, "none", generator=g)),
        ("  random_resized_crop", 196, lambda M, g: M.random_resized_crop(stacked, (0.1, 1.0), g)),
        ("  time_cutout", 196, lambda M, g: M.time_cutout(stacked, generator=g)),
        ("  gaussian_noise", 196, lambda M, g: M.gaussian_noise(stacked, generator=g)),
        ("  spectrogram (once per record)", 256, lambda M, g: M.spectrogram(raw_s)),
    ]
    rows = []
    for name, b, case in cases:
        fns = [lambda M=M, g=gen[label]: case(M, g) for label, M in modules.items()]
        for label, (sec, cpu) in zip(modules, _timeit(fns, device, repeats)):
            rows.append(
                {
                    "device": device,
                    "code": label,
                    "what": name,
                    "B": b,
                    "ms": 1e3 * sec,
                    "cpu_ms": 1e3 * cpu,
                    "records/s": b / sec,
                    "records/cpu-s": b / cpu,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values (default: 1 2)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per case (median reported)")
    p.add_argument("--device", nargs="+", default=None, help="devices (default: cpu, and cuda when available)")
    p.add_argument("--baseline", default=None, metavar="GIT_REV", help="also time transforms.py as at this revision")
    a = p.parse_args(argv)
    devices = a.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    modules = {"current": T}
    if a.baseline:
        modules[a.baseline] = load_baseline(a.baseline)
    print(f"torch {torch.__version__}, devices {devices}" + (f", baseline {a.baseline}" if a.baseline else ""))
    if torch.cuda.is_available():
        print(f"cuda device: {torch.cuda.get_device_name(0)}")
    head = (
        f"{'thr':>3} {'device':6} {'code':8} {'what':32} {'B':>4} {'ms/batch':>9} {'cpu ms':>8} "
        f"{'records/s':>10} {'rec/cpu-s':>10}"
    )
    print(head)
    for threads in a.threads:
        torch.set_num_threads(threads)
        for device in devices:
            for r in bench(device, a.repeats, modules):
                print(
                    f"{threads:3d} {r['device']:6} {r['code'][:8]:8} {r['what']:32} {r['B']:4d} {r['ms']:9.2f} "
                    f"{r['cpu_ms']:8.2f} {r['records/s']:10.0f} {r['records/cpu-s']:10.0f}"
                )
                if r["what"] == "time_views t1":
                    print(
                        f"{'':3} {'':6} {'':8} {'  = x authors (260 records/s)':32} {'':4} "
                        f"{r['records/s'] / AUTHORS_RECORDS_PER_S:9.1f} {'':8} {'':10} "
                        f"{r['records/cpu-s'] / AUTHORS_RECORDS_PER_S:10.1f}"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
