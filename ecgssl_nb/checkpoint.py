"""Checkpoints of the two training stages: one rule, one format.

The rule: a run folder holding `checkpoint.pt` holds an unfinished run, continued only with
`--resume` (which `reproduce` always passes) and only for the same run (its "run" entry);
otherwise it is refused, naming the file. The format: tensors and plain values, written atomically
and read with `torch.load(weights_only=True)`, so a planted pickle never runs; `rng_state` saves
the generators, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import provenance
from .atomic import atomic_write
from .core.errors import UserError

NAME = "checkpoint.pt"


def save(path: str | os.PathLike, state: dict) -> None:
    """Write `state` atomically with torch.save. A refused write (a full disk, a file-size limit)
    is one `atomic.WriteError` naming `path` and the cause (torch writes through a Python file
    here, so the OSError survives its RuntimeError for `atomic_write` to find)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)

    atomic_write(path, write)


def load(path: str | os.PathLike, resume: bool, run: dict) -> dict | None:
    """The checkpoint to continue from, None when there is none (a fresh run). UserError when
    `path` exists without `resume`, or when its "run" differs from `run` in any key of `run`."""
    path = Path(path)
    if not path.is_file():
        return None
    if not resume:
        raise UserError(
            f"{path.parent} holds an unfinished run ({path}); pass --resume to continue it, "
            f"or remove {path.name} to start over"
        )
    ck = provenance.load_checkpoint(path)  # tensors and plain values only, never code
    saved = ck.get("run") if isinstance(ck, dict) else None
    changed = sorted(k for k in run if not isinstance(saved, dict) or saved.get(k) != run[k])
    if changed:
        raise UserError(
            f"--resume: {path} was written with different settings ({', '.join(changed)}); "
            f"resume with the same settings, or remove it or choose another --out"
        )
    return ck


def checkpoint_due(cfg: Any, epoch: int, minutes_since_last: float) -> bool:
    """Whether a checkpoint follows `epoch` (a PretrainConfig's or FinetuneConfig's cadence): every
    `checkpoint_epochs`-th epoch, or once `checkpoint_minutes` (> 0) passed since the last one."""
    every = cfg.checkpoint_epochs
    return (every > 0 and epoch % every == 0) or 0 < cfg.checkpoint_minutes <= minutes_since_last


def rng_state(generator: torch.Generator) -> dict:
    """Python's, NumPy's and torch's global generators and `generator`, as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": list(random.getstate()),
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore what `rng_state` saved."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _convert(obj: Any, kind: type, fn: Callable[[Any], Any]) -> Any:
    if isinstance(obj, kind):
        return fn(obj)
    return {k: _convert(v, kind, fn) for k, v in obj.items()} if isinstance(obj, dict) else obj


def to_tensors(obj: Any) -> Any:
    """numpy arrays -> tensors, recursively through dicts (a checkpoint holds no numpy objects)."""
    return _convert(obj, np.ndarray, lambda a: torch.from_numpy(np.ascontiguousarray(a)))


def to_arrays(obj: Any) -> Any:
    """The inverse of `to_tensors`."""
    return _convert(obj, torch.Tensor, lambda t: t.numpy())
