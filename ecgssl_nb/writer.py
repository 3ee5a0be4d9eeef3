"""Writing files beside the training loop (issue: the GPU path): a checkpoint takes seconds to
serialise and fsync that the device would spend idle, so `Writer.submit(job)` runs it on a
background thread, one job at a time, in order; a failed (or interrupted) job raises its error
in the training thread at the next `submit` or `wait`. A job reads a snapshot (`host_copy`), never
the state training keeps changing.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any, Callable

import torch

__all__ = ["Writer", "host_copy"]


def host_copy(obj: Any) -> Any:
    """`obj` with every tensor detached and copied to the host (cloned when it is there already),
    recursively through dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return t.clone() if t.device.type == "cpu" else t.to("cpu")
    if isinstance(obj, dict):
        return {k: host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(host_copy(v) for v in obj)
    return obj


class Writer:
    """Run write jobs on one background thread, one at a time, in order; errors come back."""

    def __init__(self) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecgssl-writer")
        self._job: futures.Future | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Wait for the job in flight (raising its error), then start `job` in the background."""
        self.wait()
        self._job = self._pool.submit(job)

    def drain(self) -> None:
        """Block until the job in flight is done, keeping its error for the next `wait` (on the way
        out of a loop that is already failing)."""
        if self._job is not None:
            futures.wait([self._job])

    def wait(self) -> None:
        """Block until the job in flight is done; raise the error it ended with (a KeyboardInterrupt
        in the job too), if any."""
        # Forget the job only once it is done: an interrupt while blocked here must leave it to
        # `drain` (Checkpoints.__exit__), so the lock is never released under a write in flight.
        self.drain()
        job, self._job = self._job, None
        if job is not None:
            job.result()  # done by now: raises its error, never blocks

    @property
    def busy(self) -> bool:
        """True while a job is running."""
        return self._job is not None and not self._job.done()
