"""DINO views of an ECG window: time-series (paper Sec. II-B.1, Eq. 1) and spectrogram (paper
Sec. II-B.2, Eq. 2-3) transforms. Time series are raw mV windows (B, 12, 250) at 100 Hz;
spectrograms (B, 12, 13, 21): lead, frequency 0..48 Hz in 4 Hz rows, a frame every 0.13 s. Every
transform works on a whole batch on its own device and draws its random numbers only from the
`torch.Generator` passed in, on the generator's device (so a CPU generator serves a CUDA batch):
the same generator state gives the same views. The ranges of the draws default to
`settings.AugmentConfig`'s (`AUGMENT`).

Faithful choices (book: Deviations): local time views are 250 samples long like global ones (B17);
time cutout is per lead U(0.2, 0.4) by default, the paper's shared U(0, 0.5) span an option (B18);
spectrogram crop ratios are the released 0.6-1 / 0.3-0.6 (B19); frequency cutout comes before
time cutout, with a flag for the released time-only views (B16).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError, check_choice, check_int, check_pair
from .settings import MAIN_TRANSFORMS, TARGET_FS, TC_MODES, AugmentConfig

# --- constants ---------------------------------------------------------------------------------

SPEC_NPERSEG = 25  # samples per STFT segment (0.25 s at TARGET_FS)
SPEC_NOVERLAP = SPEC_NPERSEG // 2  # 12 samples, scipy's default
SPEC_HOP = SPEC_NPERSEG - SPEC_NOVERLAP  # 13 samples between frames
SPEC_HOP_S = SPEC_HOP / TARGET_FS  # 0.13 s between frames
SPEC_N_FREQ = SPEC_NPERSEG // 2 + 1  # 13 frequency rows
SPEC_FREQ_STEP_HZ = TARGET_FS / SPEC_NPERSEG  # 4 Hz between rows: 0, 4, ..., 48 Hz
# Per-lead mean and shared std of |STFT| of raw mV windows, from the released code (book: Transforms).
SPEC_MEAN: tuple[float, ...] = (
    0.01696577, 0.018700505, 0.01614143, 0.016069638, 0.013717703, 0.015169965,
    0.021021612, 0.031449795, 0.032050893, 0.031188736, 0.028222399, 0.024229238,
)  # fmt: skip
SPEC_STD = 0.05418394

# Transform sets of the Fig. 3 ablation, applied in the paper's order (crops, which make views
# global or local, always on).
TIME_TRANSFORMS = {
    "none": (),
    "tc": ("time_cutout",),
    "gn": ("gaussian_noise",),
    "t1": ("time_cutout", "gaussian_noise"),
}
SPEC_TRANSFORMS = {
    "none": (),
    "tc": ("time_cutout",),
    "fc": ("freq_cutout",),
    "t2": ("freq_cutout", "time_cutout"),
}  # B16
PerLead = Sequence[float] | np.ndarray | torch.Tensor  # one value per lead, (12,)
AUGMENT = AugmentConfig()  # the default view settings: every range below defaults to one of its fields
# time_views on one CPU thread works through blocks of about this many samples (1 MiB in float32).
_CPU_BLOCK = 2**18


# --- input checks and random draws -------------------------------------------------------------


def _check_generator(generator: torch.Generator | None) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise UserError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), got {type(generator).__name__}"
        )
    return generator


def _check_batch(x: torch.Tensor, name: str, ndim: int, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != ndim or not x.is_floating_point():
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(f"{name} must be a floating-point torch.Tensor {what}, got {got}")
    return x


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """U[0, 1) float64 of `shape`, drawn on the generator's device, on `device`."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64).to(device)


def _between(lo: float | torch.Tensor, hi: float | torch.Tensor, shape, generator, device) -> torch.Tensor:
    """U[lo, hi) float64 (lo, hi scalars or tensors broadcastable to `shape`)."""
    return lo + (hi - lo) * _uniform(shape, generator, device)


def _randint_below(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform integers in [0, high - 1] elementwise (`high` a LongTensor >= 1)."""
    u = _uniform(tuple(high.shape), generator, high.device)
    return torch.minimum((u * high).long(), high - 1)


def _standard_normal(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """i.i.d. N(0, 1) of `shape` in like's dtype, drawn on the generator's device, on like's."""
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=generator.device).to(like.device)


def _random_subset(k: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Row r of the (R, n) bool result marks a uniform random k[r]-subset of range(n) (`k` a
    LongTensor (R,), 0 <= k < n): the items whose i.i.d. U[0, 1) float64 key is below the row's
    (k+1)-th smallest, with no argsort, scatter or host-device sync (issue 15). A tie at the threshold
    gives fewer items, never more: under 4 rows in 10^12 at n = 248 (float32 keys: 1 in 70,000)."""
    keys = _uniform((k.shape[0], n), gen, k.device)
    # numpy's sort on the CPU: about 30x faster than torch.sort there (benchmarks/bench_views.py)
    ordered = torch.from_numpy(np.sort(keys.numpy(), axis=1)) if keys.device.type == "cpu" else keys.sort(dim=1).values
    threshold = ordered.gather(1, k[:, None])  # the (k+1)-th smallest key of each row
    return keys < threshold


# --- time-series transforms (paper Sec. II-B.1) ------------------------------------------------


def random_resized_crop(
    x: torch.Tensor, scale: Sequence[float] = AUGMENT.time_global_scale, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random crop of each window warped back to its length, (B, C, N) mV -> same: r ~ U(scale),
    L = int(r*N) in [2, N-1] samples from randint(0, N-L-1) (as released), set in order at sorted grid
    points 0, N-1 and L-2 of 1..N-2 drawn without replacement, linear interpolation between."""
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    lo, hi = check_pair("scale", scale, 0.0, 1.0, lo_open=True)
    gen = _check_generator(generator)
    ratio = _between(lo, hi, (x.shape[0],), gen, x.device)
    src, t = _crop_plan(ratio, x.shape[-1], gen, x.dtype)
    out, scratch = torch.empty((2, 1, *x.shape), dtype=x.dtype, device=x.device)
    return _warp(x, x.diff(dim=-1), src[None], t[None], out, scratch)[0]


def _crop_plan(
    ratio: torch.Tensor, n: int, gen: torch.Generator, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random resized crops of R windows of n samples (`ratio` (R,) float64) as interpolation
    plans (src, t), (R, n) each: output sample g of window r is x[src] + t * (x[src + 1] - x[src]),
    t = 0 on the grid points that hold a crop sample, src <= n - 2."""
    if n < 3:
        raise UserError(f"x must have at least 3 samples per lead to crop, got {n}")
    r = ratio.shape[0]
    dev = ratio.device
    length = (ratio * n).long().clamp(2, n - 1)  # (R,) L = int(r * N) (truncation: r >= 0)
    start = _randint_below(n - length, gen)  # (R,) in [0, N-L-1]

    # The grid points that hold a crop sample ("knots"): 0, N-1 and L-2 of 1..N-2 drawn
    # without replacement. Knot j (counting from 0, left to right) holds crop sample j.
    edge = torch.ones(r, 1, dtype=torch.bool, device=dev)
    knot = torch.cat([edge, _random_subset(length - 2, n - 2, gen), edge], dim=1)  # (R, N)
    # Grid point g lies at or after knot count(g) - 1, where count(g) = knots in 0..g, so its
    # left sample is x[start + count(g) - 1] and its right one the next.
    src = knot.cumsum(1, dtype=torch.int64).add_((start - 1)[:, None])  # (R, N)
    # Its weight t = (g - p_prev) / (p_next - p_prev), with p_prev the last knot at or before g
    # (running max of the knots' positions) and p_next the first at or after it (the same,
    # from the right). On a knot p_prev = p_next = g and t = 0. (Small integer types: these
    # running maxima are several times faster in int16 than in int64 on the CPU.)
    g = torch.arange(n, dtype=torch.int16 if n < 2**15 else torch.int64, device=dev)
    p_prev = (knot * g).cummax(1).values
    p_next = (n - 1) - (knot.flip(1) * g).cummax(1).values.flip(1)
    t = (g - p_prev).to(dtype).div_((p_next - p_prev).clamp_(min=1).to(dtype))  # (R, N)
    return src, t


def _warp(
    x: torch.Tensor, step: torch.Tensor, src: torch.Tensor, t: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor
) -> torch.Tensor:
    """out (V, B, C, N) = x[src] + t * step[src]: the crop plans src, t (V, B, N) applied to x
    (B, C, N), the same warp for all leads of a view; `step` = x.diff(-1); `scratch` holds step[src]."""
    v, b, c, n = shape = out.shape
    index = src.unsqueeze(2).expand(shape)
    torch.gather(x.expand(shape), 3, index, out=out)  # x[src]
    torch.gather(step.expand(v, b, c, n - 1), 3, index, out=scratch)  # step[src]
    return out.addcmul_(scratch, t.unsqueeze(2))


def time_cutout(
    x: torch.Tensor,
    ratio: Sequence[float] | None = None,
    mode: str = "per_lead",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero one random span of each window, (B, C, N) mV -> same (B18). "per_lead" (released, ratio
    (0.2, 0.4)): each lead a span of int(U(ratio)*N) samples from randint(0, N-len-1); "paper" (Eq. 1,
    (0.0, 0.5)): one span of alpha = int(U(ratio)*N) for all leads from t1 uniform in [0, N-alpha]."""
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    lo, hi = _cutout_ratio(mode, ratio, "mode", "ratio")
    start, length = _cutout_spans(x.shape, lo, hi, mode, _check_generator(generator), x.device)
    return x.masked_fill(_span_mask(start, length, x.shape[-1]), 0.0)


def _cutout_ratio(mode: str, ratio: Sequence[float] | None, param: str, name: str) -> tuple[float, float]:
    """The span range (lo, hi), checked: `ratio`, or the mode's default from AUGMENT when None."""
    check_choice(param, mode, TC_MODES, "a time-cutout mode")
    if ratio is None:
        ratio = AUGMENT.time_cutout if mode == "per_lead" else AUGMENT.paper_time_cutout
    return check_pair(name, ratio, 0.0, 1.0)


def _cutout_spans(shape: tuple[int, int, int], lo: float, hi: float, mode: str, gen: torch.Generator, device):
    """time_cutout spans of windows `shape` (B, C, N): (start, length) (B, C), or (B, 1) in mode "paper"."""
    b, c, n = shape
    length = (_between(lo, hi, (b, c) if mode == "per_lead" else (b, 1), gen, device) * n).long()  # int(U * N)
    if mode == "per_lead":
        length = length.clamp(max=n - 1)
        start = _randint_below(n - length, gen)  # [0, N-len-1]
    else:
        start = _randint_below(n - length + 1, gen)  # [0, N-alpha]
    return start, length


def _span_mask(start: torch.Tensor, length: torch.Tensor, n: int) -> torch.Tensor:
    """Bool (..., n), True on samples start <= g < start + length (start, length: LongTensors (...))."""
    g = torch.arange(n, device=start.device)
    return (g >= start[..., None]) & (g < (start + length)[..., None])


def _span_indicator(start: torch.Tensor, length: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """_span_mask as 1.0 / 0.0 in `dtype`: min(g - start + 1, start + length - g) clipped to
    [0, 1], float arithmetic that costs a third of the comparisons in time_views' inner loop."""
    g = torch.arange(n, dtype=torch.float32, device=start.device)
    s = start[..., None].float()
    inside = torch.minimum((g - s).add_(1.0), (s + length[..., None].float()) - g)
    return inside.clamp_(0.0, 1.0).to(dtype)


def gaussian_noise(
    x: torch.Tensor, sigma: Sequence[float] = AUGMENT.noise_sigma, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add i.i.d. N(0, s^2) noise to every sample of every lead, one s ~ U(sigma) mV per window."""
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    lo, hi = check_pair("sigma", sigma, 0.0, float("inf"))
    gen = _check_generator(generator)
    s = _between(lo, hi, (x.shape[0], 1, 1), gen, x.device).to(x.dtype)  # (B, 1, 1)
    return x + _standard_normal(x.shape, gen, x) * s


def check_lead_stats(mean: PerLead, std: PerLead, n_leads: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """mean, std as float64 (n_leads,) mV arrays; UserError unless each holds n_leads finite values
    and std >= 0: the checks `time_views(checked=True)` leaves to its caller, made once per run."""
    out = []
    for name, v in (("mean", mean), ("std", std)):
        a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
        if a.shape != (n_leads,):
            raise UserError(f"{name} must hold one value per lead, shape ({n_leads},), got {a.shape}")
        if not np.isfinite(a).all():
            raise UserError(f"{name} must be finite")
        out.append(a)
    if (out[1] < 0).any():
        raise UserError("std must be >= 0 for every lead")
    return out[0], out[1]


def _per_lead(mean: PerLead, std: PerLead, like: torch.Tensor, checked: bool = False) -> list[torch.Tensor]:
    """mean, std (C,) on like's (..., C, N) device and dtype; checked (`check_lead_stats`) unless `checked`."""
    if not checked:
        mean, std = check_lead_stats(mean, std, like.shape[-2])
    out = [v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (mean, std)]
    return [t.to(device=like.device, dtype=like.dtype) for t in out]


def zscore(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / (std + 1e-8) per lead of x (..., C, N) mV; mean, std (C,) on x's device, unchecked."""
    return (x - mean[:, None]) / (std[:, None] + 1e-8)


def normalize(x: torch.Tensor, mean: PerLead, std: PerLead) -> torch.Tensor:
    """`zscore` with mean, std (C,) mV checked (book: The data). `x` (..., C, N)."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
        raise UserError("x must be a floating-point tensor (..., leads, samples)")
    return zscore(x, *_per_lead(mean, std, x))


# --- spectrogram (paper Sec. II-B.2, Eq. 2) ----------------------------------------------------


def stft_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|STFT| of each lead (Eq. 2), equal to abs(scipy.signal.stft(x, fs=100, window='hann',
    nperseg=25)): (B, C, N) raw mV -> (B, C, 13, frames), 21 frames for N = 250 (periodic Hann,
    hop 13, boundary='zeros', padded=True, 'spectrum' scaling)."""
    x = _check_batch(x, "x", 3, "(B, leads, samples)")
    b, c, n = x.shape
    half = SPEC_NPERSEG // 2
    extra = (SPEC_NPERSEG - (n + 2 * half)) % SPEC_HOP  # scipy's padded=True
    flat = F.pad(x.reshape(b * c, n), (half, half + extra))  # (B*C, n + 24 + extra)
    window = torch.hann_window(SPEC_NPERSEG, periodic=True, dtype=x.dtype, device=x.device)
    z = torch.stft(
        flat, n_fft=SPEC_NPERSEG, hop_length=SPEC_HOP, win_length=SPEC_NPERSEG, window=window,
        center=False, onesided=True, return_complex=True,
    )  # fmt: skip  # (B*C, 13, frames) complex
    mag = z.abs() / window.sum()
    return mag.reshape(b, c, SPEC_N_FREQ, -1)


@functools.lru_cache(maxsize=8)
def spec_lead_mean(device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SPEC_MEAN (12,) on `device`, made once per device: a tensor built from Python numbers is a
    host-to-device copy, which on CUDA waits for the queue (a training step passes it in)."""
    return torch.tensor(SPEC_MEAN, dtype=dtype, device=device)


def spectrogram(x: torch.Tensor, lead_mean: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised magnitude spectrogram (|Z| - SPEC_MEAN[lead]) / SPEC_STD of raw mV windows:
    (B, 12, 250) -> (B, 12, 13, 21); `lead_mean` is SPEC_MEAN on x's device (`spec_lead_mean`)."""
    spec = stft_magnitude(x)  # (B, 12, 13, 21)
    if spec.shape[1] != len(SPEC_MEAN):
        raise UserError(f"x must have {len(SPEC_MEAN)} leads, got {spec.shape[1]}")
    lead_mean = spec_lead_mean(spec.device, spec.dtype) if lead_mean is None else lead_mean
    return (spec - lead_mean[:, None, None]) / SPEC_STD


# --- spectrogram transforms (paper Sec. II-B.2, Eq. 3) -----------------------------------------


def spec_time_crop(
    spec: torch.Tensor,
    scale: Sequence[float] = AUGMENT.spec_global_scale,
    generator: torch.Generator | None = None,
    return_widths: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(B, C, K, F) -> same: W = int(r*F) in [1, F-1] frames (r ~ U(scale)) from randint(0, F-W-1),
    zero-padded to F with the crop centred (left pad (F-W)//2); return_widths: also W (B,), no resize."""
    spec = _check_batch(spec, "spec", 4, "(B, leads, freq, frames)")
    lo, hi = check_pair("scale", scale, 0.0, 1.0, lo_open=True)
    gen = _check_generator(generator)
    ratio = _between(lo, hi, (spec.shape[0],), gen, spec.device)
    frame, widths = _spec_crop_plan(ratio, spec.shape[-1], gen)
    out = _gather_frames(spec, frame[:, None, :], 1)[0]
    return (out, widths) if return_widths else out


def _spec_crop_plan(ratio: torch.Tensor, f: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The centred time crops of R spectrograms of f frames (`ratio` (R,) float64): (frame (R, f),
    the source frame of each output frame or f for the zero padding; the widths W (R,))."""
    if f < 2:
        raise UserError(f"spec must have at least 2 frames to crop, got {f}")
    width = (ratio * f).long().clamp(1, f - 1)  # (R,) W = int(r * F)
    start = _randint_below(f - width, gen)  # (R,) in [0, F-W-1]
    left = (f - width) // 2  # the crop goes to output frames left .. left+W-1
    j = torch.arange(f, device=ratio.device)
    return torch.where(_span_mask(left, width, f), start[:, None] + j - left[:, None], f), width


def _gather_frames(spec: torch.Tensor, frame: torch.Tensor, n_views: int) -> torch.Tensor:
    """Views (V, B, C, K, F) of spec (B, C, K, F) by `frame` (V*B, C or 1, F): row v*B + b, view v
    of record b, holds a source frame or F for a zero frame. One gather, a zero frame appended."""
    b, c, k, f = spec.shape
    padded = F.pad(spec, (0, 1))  # (B, C, K, F+1), frame F is 0
    index = frame.view(n_views, b, -1, 1, f).expand(n_views, b, c, k, f)
    return padded.expand(n_views, b, c, k, f + 1).gather(4, index)


def spec_time_cutout(
    spec: torch.Tensor,
    ratio: Sequence[float] = AUGMENT.spec_time_cutout,
    generator: torch.Generator | None = None,
    widths: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, C, K, F) -> same: zero one span of w = int(U(ratio)*W) frames per channel (all rows) from
    randint(0, W-w-1) inside each sample's centred crop of W frames (`widths`, else the full F)."""
    spec = _check_batch(spec, "spec", 4, "(B, leads, freq, frames)")
    lo, hi = check_pair("ratio", ratio, 0.0, 1.0)
    gen = _check_generator(generator)
    b, c, _, f = spec.shape
    width = torch.as_tensor([f] * b if widths is None else widths).to(device=spec.device, dtype=torch.long)  # (B,) W
    if width.shape != (b,) or (width < 1).any() or (width > f).any():
        raise UserError(f"widths must be a LongTensor ({b},) of crop widths in [1, {f}]")
    start, span = _spec_cutout_spans(width, c, f, lo, hi, gen)
    return spec.masked_fill(_span_mask(start, span, f)[:, :, None, :], 0.0)  # (B, C, 1, F) mask


def _spec_cutout_spans(width: torch.Tensor, c: int, f: int, lo: float, hi: float, gen: torch.Generator):
    """Draw spec_time_cutout spans for R spectrograms with centred crops of `width` (R,) of f
    frames: (start, span) LongTensors (R, C) in output frames."""
    span = (_between(lo, hi, (width.shape[0], c), gen, width.device) * width[:, None]).long()  # (R, C) int(U * W)
    span = torch.minimum(span, width[:, None] - 1).clamp(min=0)
    start = (f - width[:, None]) // 2 + _randint_below(width[:, None] - span, gen)  # (R, C)
    return start, span


def freq_cutout(spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one uniform random frequency row of every channel: (B, C, K, F) -> same shape."""
    spec = _check_batch(spec, "spec", 4, "(B, leads, freq, frames)")
    b, c, k, _ = spec.shape
    row = _randint_below(torch.full((b, c), k, device=spec.device), _check_generator(generator))  # (B, C)
    hit = torch.arange(k, device=spec.device) == row[..., None]  # (B, C, K)
    return spec.masked_fill(hit[..., None], 0.0)


# --- views -------------------------------------------------------------------------------------


def _view_ratios(b: int, n_global: int, n_local: int, global_scale, local_scale, gen, device) -> torch.Tensor:
    """Crop ratios (V*B,) float64, view-major: n_global*B from global_scale then n_local*B."""
    for name, v in (("n_global", n_global), ("n_local", n_local)):
        check_int(name, v, 0)
    if n_global + n_local < 1:
        raise UserError("n_global + n_local must be at least 1")
    glo, ghi = check_pair("global_scale", global_scale, 0.0, 1.0, lo_open=True)
    llo, lhi = check_pair("local_scale", local_scale, 0.0, 1.0, lo_open=True)

    # The bounds are filled on the device (no host-to-device copy of Python numbers per call).
    local = torch.arange((n_global + n_local) * b, device=device) >= n_global * b  # (V*B,)
    lo = torch.full(local.shape, glo, dtype=torch.float64, device=device).masked_fill_(local, llo)
    hi = torch.full(local.shape, ghi, dtype=torch.float64, device=device).masked_fill_(local, lhi)
    return _between(lo, hi, local.shape, gen, device)


def time_views(
    raw: torch.Tensor,
    mean: PerLead,
    std: PerLead,
    transforms: str = MAIN_TRANSFORMS["time"],
    n_global: int = 2,
    n_local: int = 8,
    global_scale: Sequence[float] = AUGMENT.time_global_scale,
    local_scale: Sequence[float] = AUGMENT.time_local_scale,
    tc_mode: str = AUGMENT.time_cutout_mode,
    generator: torch.Generator | None = None,
    tc_ratio: Sequence[float] | None = None,
    sigma: Sequence[float] = AUGMENT.noise_sigma,
    checked: bool = False,
) -> torch.Tensor:
    """DINO time-series views (paper Sec. II-B.1): raw mV (B, 12, 250) -> normalised (V, B, 12, 250),
    V = n_global + n_local, global views first: equal (up to float rounding) to random_resized_crop
    (global_scale or local_scale), then as `transforms` (a TIME_TRANSFORMS key) says time_cutout
    (`tc_mode`, `tc_ratio`) and gaussian_noise (`sigma` mV), then `normalize` by `mean`, `std` (12,)
    mV. checked=True: the caller checked `mean`, `std` (`check_lead_stats`): the host never blocks."""
    names = TIME_TRANSFORMS[check_choice("transforms", transforms, TIME_TRANSFORMS, "a transform set")]
    raw = _check_batch(raw, "raw", 3, "(B, leads, samples)")
    gen = _check_generator(generator)
    tc_lo, tc_hi = _cutout_ratio(tc_mode, tc_ratio, "tc_mode", "tc_ratio")
    sigma_lo, sigma_hi = check_pair("sigma", sigma, 0.0, float("inf"))
    b, c, n = raw.shape
    mean_t, std_t = _per_lead(mean, std, raw, checked)
    v = n_global + n_local
    ratio = _view_ratios(b, n_global, n_local, global_scale, local_scale, gen, raw.device)  # (V*B,)

    # Every random draw first, in the order of the step-by-step composition.
    src, t = _crop_plan(ratio, n, gen, raw.dtype)  # (V*B, N) each, row v*B + b = view v of record b
    cutout, noise = "time_cutout" in names, "gaussian_noise" in names
    if cutout:
        cut_start, cut_len = _cutout_spans((v * b, c, n), tc_lo, tc_hi, tc_mode, gen, raw.device)  # (V*B, C or 1)
    if noise:
        s = _between(sigma_lo, sigma_hi, (v * b, 1, 1), gen, raw.device).to(raw.dtype)  # mV, one per view
        views = _standard_normal((v, b, c, n), gen, raw)  # N(0, 1), scaled and the crops added below
    else:
        views = torch.empty((v, b, c, n), dtype=raw.dtype, device=raw.device)

    # The z-score is per lead and affine and the crop's weights sum to 1, so the B raw windows
    # are normalised before the V*B crops: a cut span (0 mV) then holds -mean / (std + 1e-8), and
    # sigma mV of noise is sigma / (std + 1e-8).
    x = zscore(raw, mean_t, std_t)  # (B, C, N)
    step = x.diff(dim=-1)  # x[i+1] - x[i], for the interpolation
    fill = zscore(torch.zeros_like(mean_t)[:, None], mean_t, std_t)  # (C, 1): 0 mV, z-scored
    inv = 1.0 / (std_t[:, None] + 1e-8)  # (C, 1): the z-score's scale

    cuts = (cut_start.view(v, b, -1), cut_len.view(v, b, -1)) if cutout else None  # (V, B, C or 1) each
    scale = s.view(v, b, 1, 1) * inv if noise else None  # (V, B, C, 1): sigma / (std + 1e-8)
    _fill_views(views, x, step, src.view(v, b, n), t.view(v, b, n), cuts, fill, scale)
    return views


def _fill_views(views, x, step, src, t, cuts, fill, scale) -> None:
    """Write time_views' `views` (V, B, C, N) in place: the crop plans src, t (V, B, N) of the
    normalised x (B, C, N) (step = x.diff(-1)), `fill` (C, 1) on the spans `cuts` ((start, length)
    (V, B, C or 1) or None), plus `scale` (V, B, C, 1) or None times the N(0, 1) `views` holds. One
    CPU thread works in cache-sized blocks (~16 ms, not ~27, per batch of 196); else one block."""
    v, b, c, n = views.shape
    blocked = views.device.type == "cpu" and torch.get_num_threads() == 1
    size = max(1, _CPU_BLOCK // (v * c * n)) if blocked else max(1, b)  # records per block
    warped, scratch = torch.empty((2, v, min(size, b), c, n), dtype=views.dtype, device=views.device)
    for r0 in range(0, b, size):
        rec = slice(r0, min(r0 + size, b))  # these records, all their views
        m = rec.stop - rec.start
        out = views[:, rec]  # (V, m, C, N)
        w = warped[:, :m] if scale is not None else out
        _warp(x[rec], step[rec], src[:, rec], t[:, rec], w, scratch[:, :m])  # crop, normalised
        if cuts is not None:  # w -> fill on the cut spans (lerp with weight 1), unchanged elsewhere
            w.lerp_(fill.expand_as(w), _span_indicator(cuts[0][:, rec], cuts[1][:, rec], n, w.dtype))
        if scale is not None:  # out = crop + sigma / (std + 1e-8) * N(0, 1)
            torch.addcmul(w, out, scale[:, rec], out=out)


def spec_views(
    raw: torch.Tensor,
    transforms: str = MAIN_TRANSFORMS["spec"],
    n_global: int = 2,
    n_local: int = 8,
    global_scale: Sequence[float] = AUGMENT.spec_global_scale,
    local_scale: Sequence[float] = AUGMENT.spec_local_scale,
    released_fc: bool = False,
    generator: torch.Generator | None = None,
    tc_ratio: Sequence[float] = AUGMENT.spec_time_cutout,
) -> torch.Tensor:
    """DINO spectrogram views (paper Sec. II-B.2): raw mV (B, 12, 250) -> (V, B, 12, 13, 21), global
    views first: equal to spec_time_crop (global_scale or local_scale), then as `transforms` (a
    SPEC_TRANSFORMS key) says freq_cutout and spec_time_cutout (`tc_ratio`) on the V*B stacked
    spectrograms of the raw windows (computed once; crop, padding and time cutout one gather).
    released_fc=True drops the frequency cutout (B16)."""
    names = SPEC_TRANSFORMS[check_choice("transforms", transforms, SPEC_TRANSFORMS, "a transform set")]
    raw = _check_batch(raw, "raw", 3, "(B, leads, samples)")
    gen = _check_generator(generator)
    tc_lo, tc_hi = check_pair("tc_ratio", tc_ratio, 0.0, 1.0)
    spec = spectrogram(raw)  # (B, 12, 13, 21)
    b, c, k, f = spec.shape
    ratio = _view_ratios(b, n_global, n_local, global_scale, local_scale, gen, raw.device)
    v = n_global + n_local
    # Random draws in the order of spec_time_crop, freq_cutout, spec_time_cutout on the V*B
    # stacked spectrograms (row v*B + b = view v of record b).
    frame, widths = _spec_crop_plan(ratio, f, gen)  # (V*B, F): source frame, or F for padding
    frame = frame[:, None, :]  # (V*B, 1, F), the same for every channel
    fc = "freq_cutout" in names and not released_fc
    if fc:
        row = _randint_below(torch.full((v * b, c), k, device=raw.device), gen)  # (V*B, C)
    if "time_cutout" in names:  # a cut frame reads the zero frame F: (V*B, C, F)
        start, span = _spec_cutout_spans(widths, c, f, tc_lo, tc_hi, gen)
        frame = torch.where(_span_mask(start, span, f), f, frame)
    views = _gather_frames(spec, frame, v)  # (V, B, 12, 13, 21): crop, padding, time cutout
    if fc:  # times 0 on the cut row, 1 elsewhere: ~4x cheaper than masked_fill_ here (a cut
        # negative value becomes -0.0, which equals 0)
        keep = torch.arange(k, device=raw.device) != row[..., None]  # (V*B, C, K)
        views.mul_(keep.to(views.dtype).view(v, b, c, k, 1))
    return views
