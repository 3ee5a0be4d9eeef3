"""Training schedules as arrays, one value per iteration (or per epoch), indexed from 0 (paper
Sec. III-B). The training loop only indexes them (`lr[it]`, `it = epoch * L + i`, epoch from 0),
so a schedule can be plotted, tested and checked for length before a run starts: the fix for B8
(the released code indexed from epoch 1, started one epoch into warm-up and crashed with an
IndexError in its last configured epoch). The values (temperatures > 0, momenta in [0, 1]) are
PretrainConfig's, checked there; the counts are checked here.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UserError, check_int, is_int


def _check_counts(epochs: int, iters_per_epoch: int, warmup_epochs: int) -> None:
    check_int("epochs", epochs, 1)
    check_int("iters_per_epoch", iters_per_epoch, 1)
    if not is_int(warmup_epochs, 0, epochs + 1):
        raise UserError(f"warmup_epochs must be an integer in 0..epochs={epochs}, got {warmup_epochs!r}")


def cosine_schedule(
    base: float, final: float, epochs: int, iters_per_epoch: int, warmup_epochs: int = 0, start_warmup: float = 0.0
) -> np.ndarray:
    """Per-iteration values (epochs * iters_per_epoch,) float64: a linear warm-up, entry j of
    W = warmup_epochs * iters_per_epoch being start + (base - start) * j / W, then a half cosine
    from exactly `base` to exactly `final`. Entry `it = epoch * L + i` is batch i of that epoch."""
    _check_counts(epochs, iters_per_epoch, warmup_epochs)
    total, n_warm = epochs * iters_per_epoch, warmup_epochs * iters_per_epoch
    warm = start_warmup + (base - start_warmup) * np.arange(n_warm, dtype=np.float64) / max(n_warm, 1)
    n_cos = total - n_warm
    if n_cos <= 1:
        return np.concatenate([warm, [float(final)] * n_cos])
    i = np.arange(n_cos, dtype=np.float64)
    cos = final + 0.5 * (base - final) * (1.0 + np.cos(math.pi * i / (n_cos - 1)))
    return np.concatenate([warm, cos])


def teacher_temp_schedule(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """Teacher temperature per 0-based epoch: linear from `warmup_temp` to `temp` over `warmup_epochs`
    (both ends included, as DINO), then `temp`; cut at `epochs` (the released 30 of a 4-epoch run)."""
    check_int("epochs", epochs, 1)
    check_int("warmup_teacher_temp_epochs", warmup_epochs, 0)
    out = np.full(max(epochs, warmup_epochs), float(temp))
    out[:warmup_epochs] = np.linspace(warmup_temp, temp, warmup_epochs)
    return out[:epochs]


def momentum_schedule(base: float, epochs: int, iters_per_epoch: int, kind: str = "fixed") -> np.ndarray:
    """Teacher EMA momentum per iteration: "fixed" = `base` (released), "cosine" = half cosine to 1 (official DINO)."""
    if kind == "fixed":
        _check_counts(epochs, iters_per_epoch, 0)
        return np.full(epochs * iters_per_epoch, float(base))
    if kind == "cosine":
        return cosine_schedule(base, 1.0, epochs, iters_per_epoch)
    raise UserError(f"teacher_momentum_schedule {kind!r} is not a schedule; choose 'fixed' or 'cosine'")
