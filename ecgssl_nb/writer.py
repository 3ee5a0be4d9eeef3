"""Writing files beside the training loop: one background job at a time (issue: the GPU path).

A checkpoint of a fine-tuning is 0.26 GB; serialising and fsyncing it takes seconds that the
device would otherwise spend idle. `Writer.submit(job)` runs `job` on a background thread while
the loop goes on. At most one job is in flight: `submit` first waits for the one before, so
files are written in the order they were submitted, and a job that failed (or was interrupted)
raises its error in the training thread at the next `submit` or `wait`, never silently.

The job must not read state that training keeps changing: `host_copy` takes a snapshot of
tensors (on the host, detached, cloned) before the job is submitted.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import torch

__all__ = ["Writer", "host_copy"]


def host_copy(obj: Any) -> Any:
    """A snapshot of `obj` on the host: every tensor detached and copied to the CPU (cloned when it
    is on the CPU already), recursively through dicts, lists and tuples; other values as they are."""
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
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as e:  # a KeyboardInterrupt in the job too: raised again by wait()
            self._error = e

    def submit(self, job: Callable[[], None]) -> None:
        """Wait for the job in flight (raising its error), then start `job` in the background."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name="ecgssl-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the job in flight is done; raise the error it ended with, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def drain(self) -> None:
        """Block until the job in flight is done, keeping its error for the next `wait` (on the way
        out of a loop that is already failing: its checkpoint is left whole, its error not masked)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def busy(self) -> bool:
        """True while a job is running."""
        return self._thread is not None and self._thread.is_alive()
