"""Checkpoints of the two training stages (`selfkd`, `finetune`): one rule, one format.

* The rule. A run folder that holds `checkpoint.pt` holds an unfinished run. It is continued
  only when the caller asks for it (`--resume`, which `reproduce` always passes); otherwise the
  run is refused with a UserError naming the file, so that nothing is lost by starting over.
  A checkpoint is continued only for the same run: its "run" entry must equal the one asked now.
* The format. A dict of tensors and plain values (lists, dicts, numbers, strings), written
  atomically (`atomic.atomic_write`) and read with `torch.load(weights_only=True)`
  (`provenance.load_checkpoint`): a planted pickle never runs. Entry "run" is the run's
  settings; the stages add their own entries (models, optimiser, history, ...).
* Randomness. `rng_state` / `set_rng_state` save and restore Python's, NumPy's and torch's
  global generators and one `torch.Generator`, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import provenance
from .atomic import atomic_write
from .core.errors import UserError

NAME = "checkpoint.pt"


def save(path: str | os.PathLike, state: dict) -> None:
    """Write `state` (tensors and plain values; a checkpoint's with a "run" entry) atomically with
    torch.save. A refused write (a full disk, a file-size limit) is one `atomic.WriteError` naming
    `path` and the cause: torch writes through a Python file here, so the OSError survives its
    RuntimeError ('unexpected pos 64 vs 0') for `atomic_write` to find."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)

    atomic_write(path, write)


def load(path: str | os.PathLike, resume: bool, run: dict) -> dict | None:
    """The checkpoint to continue from, or None when there is none (a fresh run).

    UserError when `path` exists but `resume` is False (an unfinished run is never silently
    started over), and when the checkpoint's "run" differs from `run` in any key of `run`
    (naming the keys). The file is read with weights_only=True."""
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
    """Whether a checkpoint follows `epoch` (both stages; `cfg` a PretrainConfig or FinetuneConfig): every `checkpoint_epochs`-th epoch, or when
    `checkpoint_minutes` (> 0) minutes have passed since the last one (or since the run started)."""
    every = cfg.checkpoint_epochs
    return (every > 0 and epoch % every == 0) or 0 < cfg.checkpoint_minutes <= minutes_since_last


# --- random number generators ------------------------------------------------------------------


def rng_state(generator: torch.Generator) -> dict:
    """The state of Python's, NumPy's and torch's global generators and of `generator`, as
    tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": list(random.getstate()),
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore what `rng_state` saved: the three global generators and `generator`."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --- numpy arrays in a checkpoint --------------------------------------------------------------


def to_tensors(obj: Any) -> Any:
    """numpy arrays -> tensors, recursively through dicts (a checkpoint holds no numpy objects)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: to_tensors(v) for k, v in obj.items()}
    return obj


def to_arrays(obj: Any) -> Any:
    """The inverse of `to_tensors`: tensors -> numpy arrays, recursively through dicts."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: to_arrays(v) for k, v in obj.items()}
    return obj
