"""Training schedules as arrays: one value per iteration (or per epoch), indexed from 0.

The training loop only indexes these arrays (`lr[it]` with `it = epoch * L + i`, epoch from 0),
so a schedule can be plotted, tested and checked for length before a run starts. This is the
fix for B8 (book: Deviations): the released code indexed with epochs starting at 1, started one epoch into
warm-up and crashed with an IndexError in its last configured epoch.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UserError


def _check_counts(epochs: int, iters_per_epoch: int, warmup_epochs: int) -> None:
    if int(epochs) != epochs or epochs < 1:
        raise UserError(f"epochs must be an integer >= 1, got {epochs!r}")
    if int(iters_per_epoch) != iters_per_epoch or iters_per_epoch < 1:
        raise UserError(f"iters_per_epoch must be an integer >= 1, got {iters_per_epoch!r}")
    if int(warmup_epochs) != warmup_epochs or not 0 <= warmup_epochs <= epochs:
        raise UserError(f"warmup_epochs must be an integer in 0..epochs={epochs}, got {warmup_epochs!r}")


def cosine_schedule(
    base: float,
    final: float,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: int = 0,
    start_warmup: float = 0.0,
) -> np.ndarray:
    """Per-iteration values: linear warm-up from `start_warmup` towards `base` over
    `warmup_epochs * iters_per_epoch` iterations, then a half cosine from `base` to `final`.

    Returns float64 of length `epochs * iters_per_epoch`; entry `it = epoch * L + i` (epoch from 0)
    is the value for batch i of that epoch. Warm-up entry j is `start + (base - start) * j / W`
    (so the first cosine entry is exactly `base`); the last entry is exactly `final`.
    """
    _check_counts(epochs, iters_per_epoch, warmup_epochs)
    total = int(epochs) * int(iters_per_epoch)
    n_warm = int(warmup_epochs) * int(iters_per_epoch)
    warm = start_warmup + (base - start_warmup) * np.arange(n_warm, dtype=np.float64) / max(n_warm, 1)
    n_cos = total - n_warm
    if n_cos == 0:
        return warm
    if n_cos == 1:
        return np.concatenate([warm, [float(final)]])
    i = np.arange(n_cos, dtype=np.float64)
    cos = final + 0.5 * (base - final) * (1.0 + np.cos(math.pi * i / (n_cos - 1)))
    return np.concatenate([warm, cos])


def teacher_temp_schedule(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """Teacher temperature per epoch (index = 0-based epoch): linear from `warmup_temp` to `temp`
    over `warmup_epochs` epochs (both ends included, as in DINO), then constant `temp`.
    A warm-up longer than the run is cut at `epochs` (the released 30-epoch warm-up of a 4-epoch
    run); with warmup_temp == temp it is a constant array (the released, no-op warm-up)."""
    if int(epochs) != epochs or epochs < 1:
        raise UserError(f"epochs must be an integer >= 1, got {epochs!r}")
    if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
        raise UserError(f"warmup_teacher_temp_epochs must be an integer >= 0, got {warmup_epochs!r}")
    if warmup_temp <= 0 or temp <= 0:
        raise UserError(f"teacher temperatures must be > 0, got {warmup_temp!r} and {temp!r}")
    out = np.full(int(max(epochs, warmup_epochs)), float(temp))
    out[: int(warmup_epochs)] = np.linspace(warmup_temp, temp, int(warmup_epochs))
    return out[: int(epochs)]


def momentum_schedule(base: float, epochs: int, iters_per_epoch: int, kind: str = "fixed") -> np.ndarray:
    """Teacher EMA momentum per iteration: "fixed" = `base` throughout (released code), "cosine" =
    half cosine from `base` to 1 (official DINO)."""
    if not 0.0 <= base <= 1.0:
        raise UserError(f"teacher_momentum must be in [0, 1], got {base!r}")
    if kind == "fixed":
        _check_counts(epochs, iters_per_epoch, 0)
        return np.full(int(epochs) * int(iters_per_epoch), float(base))
    if kind == "cosine":
        return cosine_schedule(base, 1.0, epochs, iters_per_epoch)
    raise UserError(f"teacher_momentum_schedule {kind!r} is not a schedule; choose 'fixed' or 'cosine'")
