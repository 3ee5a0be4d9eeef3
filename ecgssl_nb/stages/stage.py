"""What running a stage means, once for pre-training and fine-tuning (ARCHITECTURE.md, A study on
disk): the command line both stages share, the epoch loop's checkpoints on a cadence written
beside the training (`Checkpoints`), and the per-epoch log.

Each stage (`stages.pretrain`, `stages.finetune`) resolves its settings into a frozen `Run`,
claims its folder (`provenance.claim`, under `provenance.lock`), restores its checkpoint
(`checkpoint.load`: only with --resume, only for the same run), then loops over epochs calling the
method (`core.dino`, `core.classify`) directly, hands each epoch's state to `Checkpoints.after`,
and at the end writes its outputs and `digests.json` last. The checkpoint is written first, then
the log, so log.csv never shows an epoch that a resume runs again.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..checkpoint import checkpoint_due
from ..writer import Writer


class Checkpoints:
    """The checkpoints of an epoch loop, as a `with` block around it: after each epoch `after`
    asks the cadence (`checkpoint.checkpoint_due`: every `checkpoint_epochs` epochs, or after
    `checkpoint_minutes`) and, when due, takes the state's host copy now (`snapshot()`) and writes
    it in the background (`writer.Writer`: one in flight). Leaving the block waits for the last
    write and raises its error; leaving it on an error still lets the write in flight finish
    whole, without masking the error."""

    def __init__(self, cfg: Any):
        self.cfg, self.writer, self.last = cfg, Writer(), time.monotonic()

    def __enter__(self) -> Checkpoints:
        return self

    def due(self, epoch: int) -> bool:
        """Whether the cadence asks for a checkpoint after `epoch`."""
        return checkpoint_due(self.cfg, epoch, (time.monotonic() - self.last) / 60)

    def after(self, snapshot: Callable[[], Callable[[], None] | None]) -> None:
        """Write now: `snapshot()` copies the state to the host and returns the job that writes
        the checkpoint and then the log (None: nothing to write on this process)."""
        job = snapshot()
        if job is not None:
            self.writer.submit(job)
        self.last = time.monotonic()

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is None:
            self.writer.wait()  # raises the error of a failed write: no result after a lost checkpoint
        else:
            self.writer.drain()  # the checkpoint in flight is finished before the error goes on


def write_log(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """OUT/log.csv, atomically: one row per epoch, `columns` in order (a missing or NaN value is
    an empty field)."""

    def cell(v: Any) -> Any:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
            w.writeheader()
            w.writerows({k: cell(row.get(k)) for k in columns} for row in rows)

    atomic_write(path, write)


def read_log(path: Path, before_epoch: int) -> list[dict]:
    """The rows of OUT/log.csv of the epochs before `before_epoch` (a resume goes on from there)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) < before_epoch]


def add_run_arguments(p: argparse.ArgumentParser, out: str, device_default: str | None, device_help: str) -> None:
    """The options every stage takes: --prepared, --out, --profile, --epochs, --device, --seed,
    --resume, --max-steps, --no-progress."""
    p.add_argument("--prepared", required=True, help="a folder written by `python -m ecgssl_nb prepare`")
    p.add_argument("--out", required=True, help=out)
    p.add_argument("--profile", default="tiny", help="tiny (fixture, CPU; default), samples or paper")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the profile's)")
    p.add_argument("--device", default=device_default, help=device_help)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, record order and crops (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same settings)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="smoke run: stop after N optimisation steps, write every output marked smoke",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
