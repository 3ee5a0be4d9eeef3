"""What the output checks cost on a large prepared corpus (seconds).

    .venv/bin/python benchmarks/bench_digests.py [--gb 3] [--tmp DIR]

Writes a stage folder holding a `signals.npy` of about --gb GB (float32, 12 columns, a random
walk, so no block compresses or repeats) and its digests.json, then times:

* record: `provenance.write_digests` (what a stage pays once, when it finishes: sampled blocks and
  a full SHA-256);
* cheap: `digest_fault(full=False)` with the file as written (what every open pays:
  `load_prepared` in every stage and in each `reproduce` job's request);
* cheap, mtime moved: the same after `touch` (a folder copied without -p): a full SHA-256, once
  per process (then remembered for that stat);
* full: `digest_fault(full=True)` (prepare's "already prepared", a run reused as finished,
  `python -m ecgssl_nb verify`).

The file is read back from the page cache when memory allows (the numbers are then the hashing
cost); from a cold disk, the full check is bounded by the disk's read rate instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# run from anywhere: import the working tree's package (see bench_prepare.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecgssl_nb import provenance  # noqa: E402


def write_signals(path: Path, gb: float) -> int:
    """A float32 (T, 12) .npy file of about `gb` GB, written in 64 MiB blocks; returns its size."""
    rows = int(gb * 1e9) // 48
    block = 1 << 20  # rows per block (48 MiB)
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, 12)})
        done, last = 0, np.zeros(12, dtype=np.float32)
        while done < rows:
            n = min(block, rows - done)
            walk = last + np.cumsum(rng.standard_normal((n, 12), dtype=np.float32) * 0.01, axis=0)
            fh.write(walk.astype("<f4").tobytes())
            last, done = walk[-1], done + n
    return path.stat().st_size


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """(best wall seconds of `repeat` calls, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=3.0, help="size of signals.npy in GB (default 3)")
    p.add_argument("--tmp", default=None, help="folder for the temporary stage folder (default: the system's)")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-digests-", dir=args.tmp))
    try:
        folder = root / "prepared"
        folder.mkdir()
        provenance.write(folder, provenance.request("prepare", {"bench": True}, {}, 0))
        t0 = time.perf_counter()
        size = write_signals(folder / "signals.npy", args.gb)
        print(f"signals.npy: {size / 1e9:.2f} GB written in {time.perf_counter() - t0:.1f} s", flush=True)
        names = ("signals.npy",)
        t_rec, _ = timed(lambda: provenance.write_digests(folder, names))
        t_cheap, fault = timed(lambda: provenance.digest_fault(folder, names), repeat=5)
        assert fault is None, fault
        t_full, fault = timed(lambda: provenance.digest_fault(folder, names, full=True), repeat=2)
        assert fault is None, fault
        os.utime(folder / "signals.npy")  # a copy without -p: the mtime moved, the bytes did not
        t_moved, fault = timed(lambda: provenance.digest_fault(folder, names))
        assert fault is None, fault
        t_again, _ = timed(lambda: provenance.digest_fault(folder, names), repeat=5)
        read = provenance.SAMPLE_BLOCKS * provenance.SAMPLE_BLOCK
        for label, t in (
            ("record digests (once, when the stage finishes)", t_rec),
            (f"cheap check on open ({read >> 20} MiB sampled)", t_cheap),
            ("cheap check, mtime moved (first open after a copy)", t_moved),
            ("cheap check, mtime moved, same process again", t_again),
            ("full check (reuse as finished, verify)", t_full),
        ):
            print(f"{label:<52} {t:9.4f} s")
        print(f"full SHA-256 rate: {size / 1e9 / t_full:.2f} GB/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
