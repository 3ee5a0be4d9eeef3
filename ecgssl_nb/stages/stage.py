"""What both training stages share (ARCHITECTURE.md, A study on disk): the claim of the run folder
(`claim`, `finished`), the checkpoints on a cadence beside the epoch loop (`Checkpoints`,
`checkpoint_job`: the checkpoint first, then the log, so log.csv never shows an epoch that a
resume runs again), the per-epoch log and the command line."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import checkpoint, provenance
from ..atomic import atomic_write
from ..config import add_settings_arguments
from ..core.errors import UserError
from ..writer import Writer, host_copy

# --- the run folder ------------------------------------------------------------------------------


def _mark(outputs: Sequence[str]) -> str:
    """The JSON output: written last of `outputs`, it holds the provenance record it was made under."""
    return next(name for name in outputs if name.endswith(".json"))


def _made_under(out: Path, req: dict, outputs: Sequence[str]) -> str | None:
    """Why OUT's JSON output was not made under `req` (None: it was): it holds its provenance record."""
    path = out / _mark(outputs)
    try:
        made = json.loads(path.read_text())["provenance"]["request"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path} records no provenance"
    if made != req:
        diff = "; ".join(provenance.differences(made, req)[:3])
        return f"{path} was made by another request than its provenance.json says ({diff})"
    return None


def finished_fault(out: Path, req: dict, outputs: Sequence[str]) -> str | None:
    """Why the finished-looking OUT may not be reused as the run of `req` (None: it may): its
    outputs as digests.json recorded them, byte for byte, and its JSON output made under `req`."""
    return provenance.digest_fault(out, tuple(outputs), full=True) or _made_under(out, req, outputs)


def finished(out: Path, req: dict, outputs: Sequence[str]) -> bool:
    """OUT holds the run of `req` finished and as written: read as it is, without its lock."""
    return provenance.finished(out, req, *outputs) and _made_under(out, req, outputs) is None


def claim(out: Path, req: dict, outputs: Sequence[str], force: bool, recorded: dict, what: str) -> bool:
    """Make OUT the home of `req` (`provenance.claim`, under OUT's lock); True when it holds this run
    finished and as written. A finished-looking OUT that fails `finished_fault` is written again:
    from its checkpoint when it has one, else after `force` moved it aside (UserError without)."""
    status = provenance.claim(out, req, force=force, recorded=recorded)
    if status != "same" or not (out / _mark(outputs)).is_file():
        return False
    fault = finished_fault(out, req, outputs)
    if fault is None:
        return True
    if (out / checkpoint.NAME).is_file():  # the run's last checkpoint: resumed, its outputs written again
        print(f"{out}: {fault}; going on from its {checkpoint.NAME}", file=sys.stderr, flush=True)
        return False
    if not force:
        raise UserError(
            f"--out {out} holds a finished {what} that cannot be reused: {fault}. "
            f"Use another --out, or --force to move it aside (nothing is deleted)"
        )
    moved = provenance.move_aside(out)
    print(f"{out}: {fault}; moved aside to {moved.name}", file=sys.stderr, flush=True)
    provenance.claim(out, req, recorded=recorded)  # the new run records how it is executed, as any run
    return False


# --- checkpoints and the log ---------------------------------------------------------------------


class Checkpoints(contextlib.AbstractContextManager):
    """The checkpoints of an epoch loop, as a `with` block around it: `due` asks the cadence
    (`checkpoint.checkpoint_due`), `after` writes in the background (`writer.Writer`: one in
    flight). Leaving the block waits for the last write and raises its error; leaving it on an
    error lets the write in flight finish whole, without masking the error."""

    def __init__(self, cfg: Any):
        self.cfg, self.writer, self.last = cfg, Writer(), time.monotonic()

    def due(self, epoch: int) -> bool:
        """Whether the cadence asks for a checkpoint after `epoch`."""
        return checkpoint.checkpoint_due(self.cfg, epoch, (time.monotonic() - self.last) / 60)

    def after(self, job: Callable[[], None] | None) -> None:
        """Start `job` (a `checkpoint_job`; None: nothing to write on this process); the cadence's
        clock starts again."""
        if job is not None:
            self.writer.submit(job)
        self.last = time.monotonic()

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is None:
            self.writer.wait()  # raises the error of a failed write: no result after a lost checkpoint
        else:
            self.writer.drain()


def checkpoint_job(out: Path, state: dict, log_rows: Sequence[dict], columns: Sequence[str]) -> Callable[[], None]:
    """Copy `state` and `log_rows` to the host now; return the job that writes OUT/checkpoint.pt,
    then OUT/log.csv."""
    state, rows = host_copy(state), host_copy(list(log_rows))

    def job() -> None:
        checkpoint.save(out / checkpoint.NAME, state)
        write_log(out / "log.csv", rows, columns)

    return job


def write_log(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """OUT/log.csv, atomically: one row per epoch, `columns` in order (None or NaN: an empty field)."""

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


# --- the command line ----------------------------------------------------------------------------


def parser(prog: str, description: str, out: str, device: tuple[str | None, str]) -> argparse.ArgumentParser:
    """The options every stage takes; `device` = (default, help). The stage adds its own, then `settings`."""
    p = argparse.ArgumentParser(prog=f"python -m ecgssl_nb {prog}", description=description)
    p.add_argument("--prepared", required=True, help="a folder written by `python -m ecgssl_nb prepare`")
    p.add_argument("--out", required=True, help=out)
    p.add_argument("--profile", default="tiny", help="tiny (fixture, CPU; default), samples or paper")
    p.add_argument("--epochs", type=int, help="epochs (default: the profile's)")
    p.add_argument("--device", default=device[0], help=device[1])
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, record order and crops (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same settings)")
    p.add_argument(
        "--max-steps", type=int, help="smoke run: stop after N optimisation steps, write every output marked smoke"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    return p


def settings(p: argparse.ArgumentParser, cls: type, example: str, departures: str, wins: str) -> None:
    """--recipe, then --set, --config and --force (`config.add_settings_arguments`)."""
    p.add_argument(
        "--recipe",
        default="corrected",
        help=f"corrected (default), released, or released departures like {departures} (see `recipes`); {wins} over it",
    )
    add_settings_arguments(p, cls, example)


def run_options(a: argparse.Namespace, config: Any, flags: dict[str, Any]) -> dict:
    """The keyword arguments both stage functions take from the options of `parser` and `settings`:
    `config`, and one list of `--set` items, the --set ones first, then one per setting option
    given (`flags`, e.g. {"epochs": 2}: "epochs=2"), so that an option wins over --set."""
    items = [*a.set, *(f"{key}={value}" for key, value in flags.items() if value is not None)]
    return dict(config=config, settings=items, device=a.device, seed=a.seed, resume=a.resume,
                progress=not a.no_progress, force=a.force)  # fmt: skip
