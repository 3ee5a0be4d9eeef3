"""Counting host-device synchronisations and aten calls, on any device (issue: the GPU path).

A CUDA op that reads a value on the host (`.item()`, `if t:`), has a data-dependent shape
(`nonzero`, boolean-mask indexing, `unique`) or compares whole tensors blocks the host until the
GPU caught up. Those ops reach the dispatcher as the same aten operators on every device, so
counting them under a `TorchDispatchMode` on the CPU counts what CUDA would sync on
(`with count_ops() as c: ...; c.syncs, c.n_syncs, c.n_calls`). On CUDA,
`torch.cuda.set_sync_debug_mode("error")` is the independent check (`gpu_check.sh` uses both).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# aten operators that block the host on CUDA (their output's value or shape lives on the device):
# _local_scalar_dense is .item(), int(t), float(t), bool(t) and `if t:`; repeat_interleave counts
# only without output_size (its length is then data-dependent)
SYNC_OPS = frozenset(
    f"aten.{name}"
    for name in "_local_scalar_dense is_nonzero nonzero masked_select unique _unique _unique2 unique_dim "
    "unique_consecutive equal repeat_interleave allclose".split()
)


def _name(func: Any) -> str:
    packet = getattr(func, "overloadpacket", func)
    return f"aten.{getattr(packet, '__name__', str(packet))}"


def _bool_index(args: tuple) -> bool:
    """aten.index / index_put with a boolean mask among its indices (a data-dependent shape)."""
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (indices or ()))


@dataclass
class OpCounts:
    """What ran under `count_ops`: every aten call by name, and the synchronising ones."""

    calls: Counter = field(default_factory=Counter)
    syncs: Counter = field(default_factory=Counter)

    @property
    def n_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def n_syncs(self) -> int:
        return sum(self.syncs.values())


class _Counter(TorchDispatchMode):
    def __init__(self, counts: OpCounts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = _name(func)
        self.counts.calls[name] += 1
        if name in SYNC_OPS or (name in ("aten.index", "aten.index_put", "aten.index_put_") and _bool_index(args)):
            if not (name == "aten.repeat_interleave" and (kwargs or {}).get("output_size") is not None):
                self.counts.syncs[name] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_ops() -> Iterator[OpCounts]:
    """Count the aten calls made in the block, and those that synchronise host and device."""
    counts = OpCounts()
    with _Counter(counts):
        yield counts
