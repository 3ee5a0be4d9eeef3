"""DINO views of an ECG window: time-series (SPEC 2.1) and spectrogram (SPEC 1.4, 2.2) transforms.

Every transform works on a whole batch at once and on whatever device the batch lives on.
Random numbers come only from the `torch.Generator` passed in, never from the global RNG. They
are drawn on the generator's own device and then moved to the batch's device, so a CPU
generator works for a CUDA batch (and the reverse); a generator on the batch's device avoids
the copy. The same generator state gives the same views.

Time series are raw mV windows `(B, 12, 250)` (100 Hz). Spectrograms are `(B, 12, 13, 21)`
(lead, frequency 0..48 Hz in 4 Hz steps, frame every 0.13 s).

Faithful choices (SPEC section 8): local time views are 250 samples long like global ones (B17);
time cutout is per lead U(0.2, 0.4) by default with the paper's shared U(0, 0.5) span as an
option (B18); spectrogram crop ratios are the released 0.6-1 / 0.3-0.6 (B19); frequency
cutout is applied before time cutout, with a flag for the released code's time-only views (B16).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError

# --- constants ---------------------------------------------------------------------------------

SPEC_FS = 100  # Hz
SPEC_NPERSEG = 25  # samples per STFT segment (0.25 s)
SPEC_NOVERLAP = 12  # scipy's default nperseg // 2
SPEC_HOP = SPEC_NPERSEG - SPEC_NOVERLAP  # 13 samples
SPEC_N_FREQ = SPEC_NPERSEG // 2 + 1  # 13 rows: 0, 4, ..., 48 Hz
# Per-lead mean and shared std of |STFT| of raw mV windows, from the released code (SPEC 1.4).
SPEC_MEAN: tuple[float, ...] = (
    0.01696577, 0.018700505, 0.01614143, 0.016069638, 0.013717703, 0.015169965,
    0.021021612, 0.031449795, 0.032050893, 0.031188736, 0.028222399, 0.024229238,
)  # fmt: skip
SPEC_STD = 0.05418394

# Transform sets of the Fig. 3 ablation. Crops are always on: they are what makes views global
# or local. Names are applied in the order of SPEC 2.1 / 2.2 whatever order a set lists.
TIME_TRANSFORMS: dict[str, tuple[str, ...]] = {
    "none": (),
    "tc": ("time_cutout",),
    "gn": ("gaussian_noise",),
    "t1": ("time_cutout", "gaussian_noise"),
}
SPEC_TRANSFORMS: dict[str, tuple[str, ...]] = {
    "none": (),
    "tc": ("time_cutout",),
    "fc": ("freq_cutout",),
    "t2": ("freq_cutout", "time_cutout"),  # FC then TC (SPEC B16)
}
TC_MODES = ("per_lead", "paper")


# --- input checks and random draws -------------------------------------------------------------


def _check_generator(generator: torch.Generator | None) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise UserError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), got {type(generator).__name__}"
        )
    return generator


def _check_batch(x: torch.Tensor, name: str, ndim: int, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise UserError(f"{name} must be a torch.Tensor {what}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise UserError(f"{name} must be {what}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise UserError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _check_range(name: str, pair: Sequence[float], lo_min: float, hi_max: float, lo_open: bool = False) -> tuple[float, float]:
    """A (lo, hi) pair with lo_min <= lo <= hi <= hi_max (lo > lo_min when lo_open)."""
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a pair (lo, hi) of numbers, got {pair!r}") from None
    if not (lo > lo_min if lo_open else lo >= lo_min) or not lo <= hi <= hi_max or not np.isfinite([lo, hi]).all():
        bound = f"{lo_min} < lo" if lo_open else f"{lo_min} <= lo"
        raise UserError(f"{name} must satisfy {bound} <= hi <= {hi_max}, got {pair!r}")
    return lo, hi


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """U[0, 1) float64 of `shape`, drawn on the generator's device, returned on `device`."""
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    return u.to(device)


def _between(lo: float | torch.Tensor, hi: float | torch.Tensor, shape, generator, device) -> torch.Tensor:
    """U[lo, hi) float64 (lo, hi scalars or tensors broadcastable to `shape`)."""
    return lo + (hi - lo) * _uniform(shape, generator, device)


def _randint_below(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform integers in [0, high - 1] elementwise (`high` a LongTensor >= 1), like
    `random.randint(0, high - 1)`."""
    u = _uniform(tuple(high.shape), generator, high.device)
    return torch.minimum((u * high).long(), high - 1)


def _floor_len(ratio: torch.Tensor, n: int | torch.Tensor) -> torch.Tensor:
    """int(ratio * n) as in Python (ratios are >= 0): the number of samples a ratio selects."""
    return torch.floor(ratio * n).long()


# --- time-series transforms (SPEC 2.1) ---------------------------------------------------------


def random_resized_crop(
    x: torch.Tensor, scale: Sequence[float] = (0.5, 1.0), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop of each window stretched back to its full length by a random time warp.

    `x` (B, C, N) mV. Per sample: ratio r ~ U(scale), crop length L = int(r*N) samples, start ~
    randint(0, N-L-1) (the last start is never drawn, as released). The L samples are written in
    order at sorted random positions of an N-grid that always include 0 and N-1 (the other L-2
    drawn without replacement from 1..N-2), and the grid points between are filled by per-lead
    linear interpolation. Output (B, C, N) in x's dtype/device. L is kept in [2, N-1].
    """
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    lo, hi = _check_range("scale", scale, 0.0, 1.0, lo_open=True)
    gen = _check_generator(generator)
    ratio = _between(lo, hi, (1, x.shape[0]), gen, x.device)
    return _resized_crop(x, ratio, gen)[0]


def _resized_crop(x: torch.Tensor, ratio: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """random_resized_crop of V views at once: x (B, C, N), ratio (V, B) float64 on x's device
    -> (V, B, C, N), view v of sample b cropped with ratio[v, b]. The views are gathered straight
    from x (expanded, not copied)."""
    n_views, b_rec = ratio.shape
    _, c, n = x.shape
    if n < 3:
        raise UserError(f"x must have at least 3 samples per lead to crop, got {n}")
    dev = x.device
    ratio = ratio.reshape(-1)  # (B,) with B = V * B_rec rows, view-major
    b = ratio.shape[0]
    length = _floor_len(ratio, n).clamp(2, n - 1)  # (B,) L
    start = _randint_below(n - length, gen)  # (B,) in [0, N-L-1]

    # Choose L-2 interior grid points without replacement: a random permutation of 1..N-2
    # (argsort of random keys) whose first L-2 entries are marked.
    perm = _uniform((b, n - 2), gen, dev).argsort(dim=1)  # (B, N-2)
    take = torch.arange(n - 2, device=dev) < (length - 2)[:, None]  # (B, N-2) bool
    inner = torch.zeros(b, n - 2, dtype=torch.bool, device=dev).scatter_(1, perm, take)
    edge = torch.ones(b, 1, dtype=torch.bool, device=dev)
    knot = torch.cat([edge, inner, edge], dim=1)  # (B, N): grid points that hold a sample

    grid = torch.arange(n, device=dev).expand(b, n)
    k_prev = knot.long().cumsum(1) - 1  # (B, N) index (0..L-1) of the last knot at or before g
    k_next = k_prev + (~knot).long()  # the next knot's index (the same knot on a knot)
    p_prev = torch.cummax(torch.where(knot, grid, 0), dim=1).values  # its grid position
    p_next = torch.where(knot, grid, n).flip(1).cummin(dim=1).values.flip(1)
    t = (grid - p_prev).to(x.dtype) / (p_next - p_prev).clamp(min=1).to(x.dtype)  # (B, N), 0 on knots

    shape = (n_views, b_rec, c, n)
    src_prev = (start[:, None] + k_prev).view(n_views, b_rec, 1, n).expand(shape)  # sample index
    src_next = (start[:, None] + k_next).view(n_views, b_rec, 1, n).expand(shape)
    xv = x.expand(shape)  # (V, B, C, N) without a copy
    a = xv.gather(3, src_prev)
    return a.lerp_(xv.gather(3, src_next), t.view(n_views, b_rec, 1, n))  # (V, B, C, N)


def time_cutout(
    x: torch.Tensor,
    ratio: Sequence[float] | None = None,
    mode: str = "per_lead",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero one random span of each window (raw mV in, same shape out).

    mode "per_lead" (released default, ratio (0.2, 0.4)): every lead of every sample gets its
    own span of int(U(ratio)*N) samples starting at randint(0, N-len-1).
    mode "paper" (Eq. 1, ratio (0.0, 0.5)): one span of alpha = int(U(ratio)*N) samples shared by
    all leads, starting at an integer t1 uniform in [0, N-alpha].
    """
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    if mode not in TC_MODES:
        raise UserError(f"mode {mode!r} is not a time-cutout mode; choose one of {', '.join(TC_MODES)}")
    if ratio is None:
        ratio = (0.2, 0.4) if mode == "per_lead" else (0.0, 0.5)
    lo, hi = _check_range("ratio", ratio, 0.0, 1.0)
    return _time_cutout_(x.clone(), lo, hi, mode, _check_generator(generator))


def _time_cutout_(x: torch.Tensor, lo: float, hi: float, mode: str, gen: torch.Generator) -> torch.Tensor:
    """time_cutout in place on x (B, C, N)."""
    b, c, n = x.shape
    shape = (b, c) if mode == "per_lead" else (b, 1)
    length = _floor_len(_between(lo, hi, shape, gen, x.device), n)  # (B, C or 1)
    if mode == "per_lead":
        length = length.clamp(max=n - 1)
        start = _randint_below(n - length, gen)  # [0, N-len-1]
    else:
        start = _randint_below(n - length + 1, gen)  # [0, N-alpha]
    g = torch.arange(n, device=x.device)
    span = (g >= start[..., None]) & (g < (start + length)[..., None])  # (B, C or 1, N)
    return x.masked_fill_(span, 0.0)


def gaussian_noise(
    x: torch.Tensor, sigma: Sequence[float] = (0.005, 0.025), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add i.i.d. N(0, s^2) noise to every sample of every lead, one s ~ U(sigma) mV per window."""
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    lo, hi = _check_range("sigma", sigma, 0.0, float("inf"))
    return _gaussian_noise_(x.clone(), lo, hi, _check_generator(generator))


def _gaussian_noise_(x: torch.Tensor, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """gaussian_noise in place on x (B, C, N)."""
    s = _between(lo, hi, (x.shape[0], 1, 1), gen, x.device).to(x.dtype)  # (B, 1, 1)
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    return x.add_(noise.mul_(s))


def _per_lead(v, name: str, n_leads: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(v, dtype=np.float64) if not isinstance(v, torch.Tensor) else v)
    if t.shape != (n_leads,):
        raise UserError(f"{name} must hold one value per lead, shape ({n_leads},), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise UserError(f"{name} must be finite")
    return t.to(device=like.device, dtype=like.dtype)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x - mean) / (std + 1e-8) per lead (SPEC 1.4). `x` (..., C, N); mean, std (C,) mV."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
        raise UserError("x must be a floating-point tensor (..., leads, samples)")
    c = x.shape[-2]
    m = _per_lead(mean, "mean", c, x)
    s = _per_lead(std, "std", c, x)
    if (s < 0).any():
        raise UserError("std must be >= 0 for every lead")
    return (x - m[:, None]) / (s[:, None] + 1e-8)


# --- spectrogram (SPEC 1.4) --------------------------------------------------------------------


def stft_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|STFT| of each lead, equal to abs(scipy.signal.stft(x, fs=100, window='hann', nperseg=25)).

    `x` (B, C, N) raw mV -> (B, C, 13, frames); N = 250 gives 21 frames. Like scipy's defaults:
    periodic Hann window of 25 samples, hop 13, 12 zeros padded at each end (boundary='zeros'),
    zeros appended so the last segment is full (padded=True), 'spectrum' scaling (divided by
    the window's sum). Same dtype and device as x.
    """
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    b, c, n = x.shape
    half = SPEC_NPERSEG // 2
    total = n + 2 * half
    extra = (-(total - SPEC_NPERSEG)) % SPEC_HOP  # scipy's padded=True
    flat = F.pad(x.reshape(b * c, n), (half, half + extra))  # (B*C, n + 24 + extra)
    window = torch.hann_window(SPEC_NPERSEG, periodic=True, dtype=x.dtype, device=x.device)
    z = torch.stft(
        flat, n_fft=SPEC_NPERSEG, hop_length=SPEC_HOP, win_length=SPEC_NPERSEG, window=window,
        center=False, onesided=True, return_complex=True,
    )  # fmt: skip  # (B*C, 13, frames) complex
    mag = z.abs() / window.sum()
    return mag.reshape(b, c, SPEC_N_FREQ, -1)


def normalize_spectrogram(spec: torch.Tensor) -> torch.Tensor:
    """(|Z| - SPEC_MEAN[lead]) / SPEC_STD for a (B, 12, 13, F) magnitude spectrogram."""
    spec = _check_batch(spec, "spec", 4, "(B, 12, freq, frames)")
    if spec.shape[1] != len(SPEC_MEAN):
        raise UserError(f"spec must have {len(SPEC_MEAN)} leads, got {spec.shape[1]}")
    mean = torch.tensor(SPEC_MEAN, dtype=spec.dtype, device=spec.device)
    return (spec - mean[:, None, None]) / SPEC_STD


def spectrogram(x: torch.Tensor) -> torch.Tensor:
    """Normalised magnitude spectrogram of raw mV windows: (B, 12, 250) -> (B, 12, 13, 21)."""
    return normalize_spectrogram(stft_magnitude(x))


# --- spectrogram transforms (SPEC 2.2) ---------------------------------------------------------


def spec_time_crop(
    spec: torch.Tensor,
    scale: Sequence[float] = (0.6, 1.0),
    generator: torch.Generator | None = None,
    return_widths: bool = False,
):
    """Crop W = int(r*F) frames (r ~ U(scale)) starting at randint(0, F-W-1), no resize, then
    zero-pad back to F frames with the crop centred (left pad (F-W)//2).

    `spec` (B, C, K, F) -> same shape. With return_widths=True returns (out, widths LongTensor
    (B,)); the crop of sample b then occupies frames [(F-W)//2, (F-W)//2 + W), which is what
    `spec_time_cutout(..., widths=widths)` needs. W is kept in [1, F-1].
    """
    spec = _check_batch(spec, "spec", 4, "(B, leads, freq, frames)")
    lo, hi = _check_range("scale", scale, 0.0, 1.0, lo_open=True)
    gen = _check_generator(generator)
    ratio = _between(lo, hi, (1, spec.shape[0]), gen, spec.device)
    out, widths = _spec_crop(spec, ratio, gen)
    return (out[0], widths) if return_widths else out[0]


def _spec_crop(spec: torch.Tensor, ratio: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """spec_time_crop of V views at once: spec (B, C, K, F), ratio (V, B) float64 on spec's
    device -> ((V, B, C, K, F), widths (V*B,) view-major), gathered from spec expanded."""
    n_views, b_rec = ratio.shape
    _, c, k, f = spec.shape
    if f < 2:
        raise UserError(f"spec must have at least 2 frames to crop, got {f}")
    width = _floor_len(ratio.reshape(-1), f).clamp(1, f - 1)  # (V*B,) W
    start = _randint_below(f - width, gen)  # (V*B,) in [0, F-W-1]
    left = (f - width) // 2
    j = torch.arange(f, device=spec.device)
    src = start[:, None] + j - left[:, None]  # (V*B, F): source frame of output frame j
    inside = (j >= left[:, None]) & (j < (left + width)[:, None])  # (V*B, F)
    shape = (n_views, b_rec, c, k, f)
    index = src.clamp(0, f - 1).view(n_views, b_rec, 1, 1, f).expand(shape)
    taken = spec.expand(shape).gather(4, index)  # (V, B, C, K, F)
    return taken.masked_fill_(~inside.view(n_views, b_rec, 1, 1, f), 0.0), width


def _crop_extent(widths: torch.Tensor | None, b: int, f: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, left) per sample for a centred crop; the full width when widths is None."""
    if widths is None:
        w = torch.full((b,), f, dtype=torch.long, device=device)
    else:
        w = torch.as_tensor(widths).to(device=device, dtype=torch.long)
        if w.shape != (b,) or (w < 1).any() or (w > f).any():
            raise UserError(f"widths must be a LongTensor ({b},) of crop widths in [1, {f}]")
    return w, (f - w) // 2


def spec_time_cutout(
    spec: torch.Tensor,
    ratio: Sequence[float] = (0.1, 0.35),
    generator: torch.Generator | None = None,
    widths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Zero one span of frames per channel (all frequency rows), inside each sample's crop.

    For crop width W (from `widths`, else the full F), the span is w = int(U(ratio)*W) frames
    starting at randint(0, W-w-1) within the centred crop. `spec` (B, C, K, F) -> same shape.
    """
    spec = _check_batch(spec, "spec", 4, "(B, leads, freq, frames)")
    lo, hi = _check_range("ratio", ratio, 0.0, 1.0)
    gen = _check_generator(generator)
    b, _, _, f = spec.shape
    width, left = _crop_extent(widths, b, f, spec.device)
    return _spec_time_cutout_(spec.clone(), lo, hi, width, left, gen)


def _spec_time_cutout_(spec, lo: float, hi: float, width, left, gen: torch.Generator) -> torch.Tensor:
    """spec_time_cutout in place; width, left (B,) the centred crop of each sample."""
    b, c, k, f = spec.shape
    span_w = _floor_len(_between(lo, hi, (b, c), gen, spec.device), width[:, None])  # (B, C)
    span_w = torch.minimum(span_w, width[:, None] - 1).clamp(min=0)
    start = left[:, None] + _randint_below(width[:, None] - span_w, gen)  # (B, C) output frame
    j = torch.arange(f, device=spec.device)
    cut = (j >= start[..., None]) & (j < (start + span_w)[..., None])  # (B, C, F)
    return spec.masked_fill_(cut[:, :, None, :], 0.0)


def freq_cutout(spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one random frequency row (uniform over the K rows) of every channel of every sample.
    `spec` (B, C, K, F) -> same shape."""
    spec = _check_batch(spec, "spec", 4, "(B, leads, freq, frames)")
    return _freq_cutout_(spec.clone(), _check_generator(generator))


def _freq_cutout_(spec: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """freq_cutout in place."""
    b, c, k, _ = spec.shape
    row = _randint_below(torch.full((b, c), k, device=spec.device), gen)  # (B, C)
    hit = torch.arange(k, device=spec.device) == row[..., None]  # (B, C, K)
    return spec.masked_fill_(hit[..., None], 0.0)


# --- views -------------------------------------------------------------------------------------


def _check_set(transforms: str, table: dict, param: str) -> tuple[str, ...]:
    if not isinstance(transforms, str) or transforms not in table:
        raise UserError(f"{param} {transforms!r} is not a transform set; choose one of {', '.join(table)}")
    return table[transforms]


def _view_ratios(b: int, n_global: int, n_local: int, global_scale, local_scale, gen, device) -> torch.Tensor:
    """Crop ratios (V*B,) float64, view-major: n_global*B from global_scale then n_local*B."""
    for name, v in (("n_global", n_global), ("n_local", n_local)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise UserError(f"{name} must be an integer >= 0, got {v!r}")
    if n_global + n_local < 1:
        raise UserError("n_global + n_local must be at least 1")
    glo, ghi = _check_range("global_scale", global_scale, 0.0, 1.0, lo_open=True)
    llo, lhi = _check_range("local_scale", local_scale, 0.0, 1.0, lo_open=True)
    lo = torch.tensor([glo] * n_global + [llo] * n_local, dtype=torch.float64, device=device)
    hi = torch.tensor([ghi] * n_global + [lhi] * n_local, dtype=torch.float64, device=device)
    v = n_global + n_local
    return _between(lo.repeat_interleave(b), hi.repeat_interleave(b), (v * b,), gen, device)


def time_views(
    raw: torch.Tensor,
    mean,
    std,
    transforms: str = "t1",
    n_global: int = 2,
    n_local: int = 8,
    global_scale: Sequence[float] = (0.5, 1.0),
    local_scale: Sequence[float] = (0.1, 0.5),
    tc_mode: str = "per_lead",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DINO time-series views (SPEC 2.1): raw mV (B, 12, 250) -> normalised (V, B, 12, 250).

    V = n_global + n_local, global views first. Each view of each record draws its own random
    resized crop (global_scale or local_scale), then, as `transforms` (a TIME_TRANSFORMS key)
    says, time cutout (mode `tc_mode`) and Gaussian noise in mV, then (x - mean)/(std + 1e-8)
    with the per-lead dataset `mean`, `std` (12,) mV.
    """
    names = _check_set(transforms, TIME_TRANSFORMS, "transforms")
    raw = _check_batch(raw, "raw", 3, "(B, leads, samples)")
    gen = _check_generator(generator)
    if tc_mode not in TC_MODES:
        raise UserError(f"tc_mode {tc_mode!r} is not a time-cutout mode; choose one of {', '.join(TC_MODES)}")
    b, c, n = raw.shape
    mean_t, std_t = _per_lead(mean, "mean", c, raw), _per_lead(std, "std", c, raw)
    if (std_t < 0).any():
        raise UserError("std must be >= 0 for every lead")
    ratio = _view_ratios(b, n_global, n_local, global_scale, local_scale, gen, raw.device)
    v = n_global + n_local
    x = _resized_crop(raw, ratio.view(v, b), gen).view(v * b, c, n)  # (V*B, 12, 250), view-major
    # The crop made a fresh tensor, so the rest works in place.
    if "time_cutout" in names:
        lo, hi = (0.2, 0.4) if tc_mode == "per_lead" else (0.0, 0.5)
        x = _time_cutout_(x, lo, hi, tc_mode, gen)
    if "gaussian_noise" in names:
        x = _gaussian_noise_(x, 0.005, 0.025, gen)
    x = x.sub_(mean_t[:, None]).div_(std_t[:, None] + 1e-8)  # normalise (SPEC 1.4)
    return x.view(v, b, c, n)


def spec_views(
    raw: torch.Tensor,
    transforms: str = "t2",
    n_global: int = 2,
    n_local: int = 8,
    global_scale: Sequence[float] = (0.6, 1.0),
    local_scale: Sequence[float] = (0.3, 0.6),
    released_fc: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DINO spectrogram views (SPEC 2.2): raw mV (B, 12, 250) -> (V, B, 12, 13, 21).

    The normalised spectrogram of each raw window is computed once; then every view draws its
    own centred time crop (global_scale or local_scale of the 21 frames) and, as `transforms`
    (a SPEC_TRANSFORMS key) says, frequency cutout then time cutout within the crop. Global
    views first. released_fc=True drops the frequency cutout, as the released code does (B16).
    """
    names = _check_set(transforms, SPEC_TRANSFORMS, "transforms")
    raw = _check_batch(raw, "raw", 3, "(B, leads, samples)")
    gen = _check_generator(generator)
    spec = spectrogram(raw)  # (B, 12, 13, 21)
    b = spec.shape[0]
    ratio = _view_ratios(b, n_global, n_local, global_scale, local_scale, gen, raw.device)
    v = n_global + n_local
    s, widths = _spec_crop(spec, ratio.view(v, b), gen)  # (V, B, 12, 13, 21)
    s = s.view(v * b, *spec.shape[1:])  # view-major
    # The crop made a fresh tensor, so the cutouts work in place.
    if "freq_cutout" in names and not released_fc:
        s = _freq_cutout_(s, gen)
    if "time_cutout" in names:
        s = _spec_time_cutout_(s, 0.1, 0.35, widths, (s.shape[-1] - widths) // 2, gen)
    return s.view(v, b, *spec.shape[1:])
