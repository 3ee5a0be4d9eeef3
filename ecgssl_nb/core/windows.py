"""Windows of 250 samples cut from records held on the device (paper Sec. II-B, II-C; book:
Transforms, Fine-tuning). A `Corpus` keeps the raw mV signals of its records back to back in ONE
(12, T) float32 tensor on the training device, so a batch of windows is one gather: training
crops start uniform in [0, length - 251] as released (a 250-sample record gets 0, B25), the
evaluation windows every 125 samples while they fit (a shorter tail is dropped).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

from .errors import UserError, check_int
from .labels import LEADS
from .settings import WINDOW


class PreparedLike(Protocol):
    """What the method reads of a prepared corpus (`ecgssl_nb.data.prepare.Prepared`): signals (T, 12)
    float32 mV, the index (offset, length, fold per record), mean and std (12,) mV, labels (N, 24)."""

    path: Any
    signals: Any
    index: Any
    mean: Any
    std: Any
    stats: dict

    def label_matrix(self) -> np.ndarray: ...


Rows = np.ndarray | Sequence[int] | None  # corpus positions (or a boolean mask); None = all

N_LEADS = len(LEADS)  # 12
STRIDE = WINDOW // 2  # evaluation stride, 50 % overlap: 125 samples
_COPY_CHUNK = 1 << 20  # samples per host->device copy in from_prepared (48 MiB of float32)


def _as_long(v, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
    if t.ndim != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise UserError(f"{name} must be a 1-D integer array, got {t.dtype} of shape {tuple(t.shape)}")
    return t.to(torch.long)


class Corpus:
    """Raw mV signals of N records on one device, by record position 0..N-1: signal (12, T), the
    records back to back; offsets, lengths (N,) samples; labels (N, 24) multi-hot, optional; rows
    (N,) each record's row in the prepared index (for the predictions; default 0..N-1)."""

    def __init__(
        self,
        signal: np.ndarray | torch.Tensor,
        offsets: np.ndarray | torch.Tensor,
        lengths: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        rows: np.ndarray | None = None,
    ) -> None:
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError):
            raise UserError(f"device {device!r} is not a torch device (try cpu, cuda)") from None
        sig = torch.as_tensor(signal)
        if sig.ndim != 2 or sig.shape[0] != N_LEADS:
            raise UserError(f"signal must have shape ({N_LEADS}, T), got {tuple(sig.shape)}")
        off, ln = _as_long(offsets, "offsets"), _as_long(lengths, "lengths")
        if off.shape != ln.shape:
            raise UserError(f"offsets and lengths must have the same length, got {len(off)} and {len(ln)}")
        total = sig.shape[1]
        if len(off) and ((off < 0).any() or (ln < 0).any() or (off + ln > total).any()):
            raise UserError(f"offsets/lengths must describe records inside the signal's {total} samples")
        self.signal = sig.to(device=self.device, dtype=torch.float32)  # (12, T)
        self.offsets = off.to(self.device)
        self.lengths = ln.to(self.device)
        self._lengths_host = ln.detach().cpu().clone()  # window counts without device syncs
        self._shortest = int(self._lengths_host.min()) if len(ln) else 0  # samples, read once (random_windows)
        self._eval_index: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, np.ndarray]] = {}
        self.labels = None
        if labels is not None:
            lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
            if lab.ndim != 2 or lab.shape[0] != len(off):
                raise UserError(f"labels must have shape ({len(off)}, n_classes), got {tuple(lab.shape)}")
            self.labels = lab.to(device=self.device, dtype=torch.float32)
        self.rows = np.arange(len(off)) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.shape != (len(off),):
            raise UserError(f"rows must have shape ({len(off)},), got {self.rows.shape}")

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def from_prepared(cls, prepared: PreparedLike, rows: Rows = None, device: str | torch.device = "cpu") -> Corpus:
        """The records of `prepared` at index positions `rows` (ints, or a boolean mask; None = all),
        in that order, copied run by run from the (T, 12) memmap into one (12, T_selected) tensor."""
        index = prepared.index
        n_all = len(index)
        if rows is None:
            sel = np.arange(n_all)
        else:
            sel = np.asarray(rows)
            if sel.dtype == bool:
                if sel.shape != (n_all,):
                    raise UserError(f"rows as a mask must have {n_all} entries, got {sel.shape}")
                sel = np.flatnonzero(sel)
            elif not np.issubdtype(sel.dtype, np.integer) or sel.ndim != 1:
                raise UserError("rows must be a 1-D array of index positions or a boolean mask")
            if len(sel) and (sel.min() < 0 or sel.max() >= n_all):
                raise UserError(f"rows must be positions in 0..{n_all - 1} of the prepared index")
        src_off = index["offset"].to_numpy(dtype=np.int64)[sel]
        src_len = index["length"].to_numpy(dtype=np.int64)[sel]
        signals = prepared.signals  # (T_all, 12) float32 memmap, its shape checked by load_prepared
        dev = torch.device(device)
        new_off = np.cumsum(src_len) - src_len  # (N,) each record's first sample in `out`
        out = torch.empty((N_LEADS, int(src_len.sum())), dtype=torch.float32, device=dev)

        # Records adjacent both in the file and in the selection are one run, copied in chunks of
        # at most _COPY_CHUNK samples.
        breaks = np.flatnonzero(src_off[1:] != src_off[:-1] + src_len[:-1]) + 1
        runs = zip(np.r_[0, breaks], np.r_[breaks, len(sel)]) if len(sel) else []  # (first, end) records
        for a, e in runs:
            file_pos, dst, n = int(src_off[a]), int(new_off[a]), int(src_len[a:e].sum())
            for k in range(0, n, _COPY_CHUNK):
                m = min(_COPY_CHUNK, n - k)
                block = np.array(signals[file_pos + k : file_pos + k + m], dtype=np.float32)  # (m, 12), in RAM
                out[:, dst + k : dst + k + m] = torch.from_numpy(block).to(dev).T  # (m, 12) -> (12, m)
        return cls(out, new_off, src_len, labels=np.asarray(prepared.label_matrix())[sel], device=dev, rows=sel)

    # --- basics --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._lengths_host)

    def __repr__(self) -> str:
        return f"Corpus({len(self)} records, {self.signal.shape[1]} samples, device={self.device})"

    def record(self, i: int) -> torch.Tensor:
        """Record i's whole signal (12, length) mV (a view of the corpus tensor)."""
        o, n = int(self.offsets[i]), int(self._lengths_host[i])
        return self.signal[:, o : o + n]

    def window_labels(self, rec: torch.Tensor, n_crops: int = 1) -> torch.Tensor:
        """Labels (B*n_crops, 24) matching `random_windows(rec, n_crops, ...)` row for row."""
        if self.labels is None:
            raise UserError("this corpus has no labels")
        return self.labels[self._check_rec(rec)].repeat_interleave(n_crops, dim=0)

    def _check_rec(self, rec) -> torch.Tensor:
        """rec as a LongTensor on the device, range-checked there by `torch._assert_async`: at once on the
        CPU (a UserError), as a device-side assert on CUDA (a host check would stall every step)."""
        r = _as_long(rec, "rec").to(self.device)
        msg = f"rec must hold record positions in 0..{len(self) - 1}"
        try:
            torch._assert_async(((r >= 0) & (r < len(self))).all(), msg)
        except RuntimeError:
            raise UserError(msg) from None
        return r

    # --- training crops ------------------------------------------------------------------------

    def random_windows(
        self, rec: torch.Tensor, n_crops: int, generator: torch.Generator, length: int = WINDOW, checked: bool = False
    ) -> torch.Tensor:
        """Independent random crops: (B,) record positions -> (B*n_crops, 12, length) raw mV, rows
        b*n_crops.. of record rec[b], each start uniform in [0, len-length-1] (0 for a record of
        exactly `length`; B25). checked=True: `rec` is a valid LongTensor on the device, not read back."""
        if not isinstance(generator, torch.Generator):
            raise UserError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        check_int("n_crops", n_crops, 1)
        check_int("length", length, 1)
        if self._shortest < length:
            raise UserError(f"length {length} is longer than the shortest record ({self._shortest} samples)")
        r = rec if checked else self._check_rec(rec)
        r = r.repeat_interleave(n_crops, output_size=len(r) * n_crops)  # (B*n,), a length known on the host
        span = (self.lengths[r] - length).clamp(min=1)  # number of allowed starts
        u = torch.rand(r.shape, generator=generator, device=generator.device, dtype=torch.float64)
        start = torch.minimum((u.to(self.device) * span).long(), span - 1)  # (B*n,)
        return self._gather(self.offsets[r] + start, length)

    def _gather(self, first: torch.Tensor, length: int) -> torch.Tensor:
        """Windows starting at absolute sample `first` (W,) -> (W, 12, length)."""
        idx = first[:, None] + torch.arange(length, device=self.device)  # (W, length)
        x = self.signal.index_select(1, idx.reshape(-1))  # (12, W*length)
        return x.view(N_LEADS, len(first), length).permute(1, 0, 2).contiguous()  # (W, 12, length)

    # --- evaluation windows --------------------------------------------------------------------

    def sliding_windows(
        self, length: int = WINDOW, stride: int = STRIDE, rows: Rows = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Index of the evaluation windows, (owner (W,), start (W,)) on the CPU: each record (all, or
        `rows` in that order) has windows at 0, stride, 2*stride, ... while they fit (none if short)."""
        check_int("length", length, 1)
        check_int("stride", stride, 1)
        recs = torch.arange(len(self)) if rows is None else _as_long(rows, "rows")
        if len(recs) and (int(recs.min()) < 0 or int(recs.max()) >= len(self)):
            raise UserError(f"rows must hold record positions in 0..{len(self) - 1}")
        ln = self._lengths_host[recs]
        count = torch.where(ln >= length, (ln - length) // stride + 1, 0)  # (R,) windows per record
        owner = recs.repeat_interleave(count)  # (W,)
        first = torch.cumsum(count, 0) - count  # first window of each record
        k = torch.arange(len(owner)) - first.repeat_interleave(count)  # window number in record
        return owner, k * stride

    def iter_sliding_windows(
        self, batch_windows: int, length: int = WINDOW, stride: int = STRIDE, rows: Rows = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x (w, 12, length) raw mV, owner (w,)) batches of at most `batch_windows`
        evaluation windows, record by record in order; owner = the record's corpus position."""
        check_int("batch_windows", batch_windows, 1)
        if rows is None:  # all records: the index is built once and kept on the device
            owner, start, _ = self._all_windows(length, stride)
        else:
            owner, start = (t.to(self.device) for t in self.sliding_windows(length, stride, rows))
        for a in range(0, len(owner), batch_windows):
            o = owner[a : a + batch_windows]
            yield self._gather(self.offsets[o] + start[a : a + batch_windows], length), o

    def _all_windows(self, length: int, stride: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(owner, start) of every record's evaluation windows on the device and the windows per record
        (N,) on the host, built once: an evaluation pass copies nothing to the device."""
        key = (int(length), int(stride))
        if key not in self._eval_index:
            owner, start = self.sliding_windows(length, stride)
            counts = np.bincount(owner.numpy(), minlength=len(self)).astype(np.float64)
            self._eval_index[key] = (owner.to(self.device), start.to(self.device), counts)
        return self._eval_index[key]

    def mean_over_windows(
        self, fn: Callable[[torch.Tensor], tuple[torch.Tensor | None, ...]], batch_windows: int, stride: int = STRIDE
    ) -> tuple[np.ndarray | None, ...]:
        """Per record, the mean of each output of `fn` (x (w, 12, 250) raw mV -> (w, D_i) tensors or
        None) over its windows (WINDOW every `stride`): (N, D_i) float64 arrays or None; one read-back."""
        n = self._all_windows(WINDOW, stride)[2]  # (N,) windows per record, on the host
        if len(n) == 0 or (n == 0).any():
            raise UserError(f"{int((n == 0).sum())} records are shorter than {WINDOW} samples and have no window")
        sums: list[torch.Tensor | None] = []
        for x, owner in self.iter_sliding_windows(batch_windows, length=WINDOW, stride=stride):
            outs = fn(x)
            sums = sums or [None] * len(outs)
            for i, out in enumerate(outs):
                if out is not None:
                    if sums[i] is None:
                        sums[i] = torch.zeros((len(self), out.shape[1]), dtype=torch.float64, device=self.device)
                    sums[i].index_add_(0, owner, out.double())
        given = [s for s in sums if s is not None]
        host = torch.cat(given, dim=1).cpu().numpy() if given else np.zeros((len(self), 0))  # the one read-back
        parts = iter(np.split(host, np.cumsum([s.shape[1] for s in given])[:-1], axis=1))
        return tuple(None if s is None else next(parts) / n[:, None] for s in sums)
