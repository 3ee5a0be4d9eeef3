"""How fast are the DINO views? Prints views/s and records/s (10 views per record) of
`time_views` (B = 196 raw windows, T1) and `spec_views` (B = 256, T2) on the CPU, and on CUDA
when there is one, with the number of torch threads used.

For scale: the authors' loader made time-series views at about 260 records/s per loader process
on this kind of machine (numpy per record, per view); the target here is at least 20x that.

    .venv/bin/python benchmarks/bench_views.py [--threads N] [--repeats R] [--device cpu cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ecgssl_nb import transforms as T

AUTHORS_RECORDS_PER_S = 260.0  # time views, one loader process (measured for the SPEC)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timeit(fn, device: str, repeats: int) -> tuple[float, float]:
    """Median (wall, process CPU) seconds per call after one warm-up call. On a shared machine
    the CPU seconds are the steadier figure (with 1 thread: the cost of the work itself)."""
    fn()
    _sync(device)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def bench(device: str, repeats: int) -> list[dict]:
    """Seconds per batch for each view pipeline and its parts on `device`."""
    gen = torch.Generator(device=device).manual_seed(0)
    mean, std = np.zeros(12), np.full(12, 0.2)
    rows = []
    raw_t = torch.randn(196, 12, 250, device=device) * 0.2  # mV
    raw_s = torch.randn(256, 12, 250, device=device) * 0.2
    views = 10
    cases = [
        ("time_views t1", 196, lambda: T.time_views(raw_t, mean, std, "t1", generator=gen)),
        ("time_views none", 196, lambda: T.time_views(raw_t, mean, std, "none", generator=gen)),
        ("spec_views t2", 256, lambda: T.spec_views(raw_s, "t2", generator=gen)),
        ("spec_views none", 256, lambda: T.spec_views(raw_s, "none", generator=gen)),
    ]
    stacked = raw_t.repeat(views, 1, 1)  # (1960, 12, 250): the parts, on all views at once
    parts = [
        ("  random_resized_crop", 196, lambda: T.random_resized_crop(stacked, (0.1, 1.0), gen)),
        ("  time_cutout", 196, lambda: T.time_cutout(stacked, generator=gen)),
        ("  gaussian_noise", 196, lambda: T.gaussian_noise(stacked, generator=gen)),
        ("  spectrogram (once per record)", 256, lambda: T.spectrogram(raw_s)),
    ]
    for name, b, fn in cases + parts:
        sec, cpu = _timeit(fn, device, repeats)
        rows.append({"device": device, "what": name, "B": b, "ms": 1e3 * sec, "cpu_ms": 1e3 * cpu,
                     "records/s": b / sec, "views/s": views * b / sec})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case (median reported)")
    p.add_argument("--device", nargs="+", default=None, help="devices (default: cpu, and cuda when available)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = a.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, devices {devices}")
    if torch.cuda.is_available():
        print(f"cuda device: {torch.cuda.get_device_name(0)}")
    print(f"{'device':6} {'what':34} {'B':>4} {'ms/batch':>9} {'cpu ms':>9} {'records/s':>10} {'views/s':>10}")
    for device in devices:
        for r in bench(device, a.repeats):
            print(f"{r['device']:6} {r['what']:34} {r['B']:4d} {r['ms']:9.2f} {r['cpu_ms']:9.2f} "
                  f"{r['records/s']:10.0f} {r['views/s']:10.0f}")
            if r["what"] == "time_views t1":
                print(f"{'':6} {'  = x authors (260 records/s)':34} {'':4} {'':9} {'':9} "
                      f"{r['records/s'] / AUTHORS_RECORDS_PER_S:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
