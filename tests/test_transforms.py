"""DINO view transforms (paper Sec. II-B.1, II-B.2): each random transform's ranges and invariants, the
STFT against scipy, and the view pipelines' order, shapes and reproducibility."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.signal
import scipy.stats
import torch

from ecgssl_nb.core import transforms as T
from ecgssl_nb.core.errors import UserError
from ecgssl_nb.core.settings import AugmentConfig

N = 250
SAMPLES = Path(__file__).parent / "data" / "ecg-samples" / "cinc2020"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramp(b: int, dtype=torch.float64, first: float = 0.0) -> torch.Tensor:
    """(b, 12, 250) with x[..., i] = first + i: a crop of it says where it came from."""
    return (first + torch.arange(N, dtype=dtype)).expand(b, 12, N).clone()


def knots_of_ramp(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid positions holding an original sample (integer values) and those values."""
    is_int = np.abs(row - np.round(row)) < 1e-9
    return np.flatnonzero(is_int), np.round(row[is_int]).astype(int)


def spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a 1-D bool array as (start, length)."""
    d = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(a), int(e - a)) for a, e in zip(starts, ends)]


# --- random resized crop -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_resized_crop_keeps_shape_dtype_and_device(dtype):
    x = torch.randn(5, 12, N, dtype=dtype)
    y = T.random_resized_crop(x, (0.1, 0.5), gen())
    assert y.shape == (5, 12, N) and y.dtype == dtype and y.device == x.device


def test_random_resized_crop_places_each_crop_sample_once_in_order_with_both_ends_kept():
    lo, hi = 0.1, 0.5
    y = T.random_resized_crop(ramp(300), (lo, hi), gen(1)).numpy()
    lengths = []
    for row in y[:, 0]:
        pos, val = knots_of_ramp(row)
        length = len(val)
        lengths.append(length)
        assert pos[0] == 0 and pos[-1] == N - 1  # endpoints always hold a sample
        np.testing.assert_array_equal(val, np.arange(val[0], val[0] + length))  # consecutive, once each
        assert 25 <= length <= 124  # int(r * 250) for r in [0.1, 0.5)
        assert val[-1] <= N - 2  # start <= N-L-1: the last sample is never used
        assert np.all(np.diff(row) >= 0)  # a warp, never a reversal
    assert min(lengths) < 35 and max(lengths) > 115  # the ratio spreads over (0.1, 0.5)
    np.testing.assert_array_equal(y, np.repeat(y[:, :1], 12, axis=1))  # one warp for all leads


def test_random_resized_crop_fills_gaps_by_linear_interpolation_per_lead():
    x = torch.randn(40, 12, N, dtype=torch.float64)
    x[:, 0] = torch.arange(N, dtype=torch.float64)  # lead 0 is a ramp that reveals the knots
    y = T.random_resized_crop(x, (0.1, 1.0), gen(2)).numpy()
    xn = x.numpy()
    for b in range(len(y)):
        pos, src = knots_of_ramp(y[b, 0])
        for c in range(1, 12):
            expect = np.interp(np.arange(N), pos, xn[b, c, src])
            np.testing.assert_allclose(y[b, c], expect, rtol=0, atol=1e-12)


def test_random_resized_crop_fixed_ratio_gives_fixed_length_and_every_start_but_the_last():
    y = T.random_resized_crop(ramp(3000), (0.5, 0.5), gen(3)).numpy()[:, 0]
    assert np.all(y[:, -1] - y[:, 0] == 124)  # L = int(0.5 * 250) = 125
    starts = y[:, 0].astype(int)
    assert starts.min() == 0 and starts.max() == N - 125 - 1
    assert len(np.unique(starts)) == N - 125


def test_random_resized_crop_rejects_bad_scale_and_missing_generator():
    x = torch.zeros(2, 12, N)
    with pytest.raises(UserError, match="scale"):
        T.random_resized_crop(x, (0.6, 0.4), gen())
    with pytest.raises(UserError, match="scale"):
        T.random_resized_crop(x, (0.0, 0.5), gen())
    with pytest.raises(UserError, match="generator"):
        T.random_resized_crop(x, (0.1, 0.5))
    with pytest.raises(UserError, match="x must be"):
        T.random_resized_crop(torch.zeros(12, N), (0.1, 0.5), gen())


def subset_counts(mask: torch.Tensor) -> np.ndarray:
    """How often each subset (a row of the bool mask, read as a binary number) was drawn."""
    code = (mask.long() * (2 ** torch.arange(mask.shape[1]))).sum(1)
    return np.bincount(code.numpy(), minlength=2 ** mask.shape[1])


def test_random_subset_draws_k_items_without_replacement_uniformly():
    k = torch.tensor([0, 1, 5, 123, 246, 247]).repeat(50)
    m = T._random_subset(k, 248, gen(60))
    assert m.shape == (300, 248) and m.dtype == torch.bool
    torch.testing.assert_close(m.sum(1), k, rtol=0, atol=0)  # exactly k, none twice
    small = T._random_subset(torch.full((30000,), 2), 6, gen(61))  # the 15 pairs of 6 items
    counts = subset_counts(small)
    pairs = [code for code in range(64) if bin(code).count("1") == 2]
    assert counts[pairs].sum() == 30000
    assert scipy.stats.chisquare(counts[pairs]).pvalue > 1e-3  # every pair equally likely
    inclusion = T._random_subset(torch.full((4000,), 124), 248, gen(62)).sum(0).numpy()  # ~ Bin(4000, 1/2)
    assert scipy.stats.chisquare(inclusion).pvalue > 1e-3  # every position equally likely


def test_random_subset_never_reads_the_device_and_a_tie_gives_fewer_items_never_more(monkeypatch):
    # Keys rounded to 4 values tie all the time (float64 keys tie in fewer than 4 rows in 10^12).
    # The draw never reads a value back (no redraw loop: issue 15), and a row with a tie at its
    # threshold holds fewer than k items, never more, so a crop plan built on it stays in range.
    from ecgssl_nb.syncs import count_ops

    real_uniform = T._uniform
    monkeypatch.setattr(T, "_uniform", lambda *a, **kw: (real_uniform(*a, **kw) * 4).floor() / 4)
    k = torch.full((3000,), 2)
    with count_ops() as ops:
        m = T._random_subset(k, 6, gen(63))
    assert ops.n_syncs == 0, ops.syncs
    assert (m.sum(1) <= 2).all() and (m.sum(1) < 2).any()


def test_random_resized_crop_knots_are_a_uniform_sample_of_the_grid():
    # Crop length fixed at 50: 48 interior knots out of 248 positions, each position equally likely.
    y = T.random_resized_crop(ramp(3000), (0.2, 0.2), gen(64)).numpy()[:, 0]
    counts = np.zeros(N, dtype=int)
    for row in y:
        pos, _ = knots_of_ramp(row)
        assert len(pos) == 50 and pos[0] == 0 and pos[-1] == N - 1
        counts[pos] += 1
    assert counts[0] == counts[-1] == 3000
    assert scipy.stats.chisquare(counts[1:-1]).pvalue > 1e-3


# --- time cutout -------------------------------------------------------------------------------


def test_time_cutout_zeroes_one_span_per_lead_of_20_to_40_percent():
    x = torch.ones(400, 12, N)
    y = T.time_cutout(x, generator=gen(4)).numpy()
    lengths, starts = [], []
    for b in range(len(y)):
        leads = []
        for c in range(12):
            ((start, length),) = spans(y[b, c] == 0)  # exactly one span
            assert 50 <= length <= 99  # int(U(0.2, 0.4) * 250)
            assert start + length <= N - 1  # start <= N-len-1: the last sample is never cut
            lengths.append(length)
            starts.append(start)
            leads.append((start, length))
        assert len(set(leads)) > 1  # the leads do not share one span
    assert min(lengths) <= 52 and max(lengths) >= 97
    assert min(starts) == 0


def test_time_cutout_keeps_every_sample_outside_the_span():
    x = torch.randn(50, 12, N)
    y = T.time_cutout(x, generator=gen(5))
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept], rtol=0, atol=0)
    assert ((y == 0).sum(-1) >= 50).all()


def test_time_cutout_paper_mode_shares_one_span_across_leads_up_to_half_the_window():
    x = torch.ones(2000, 12, N)
    y = T.time_cutout(x, mode="paper", generator=gen(6)).numpy()
    np.testing.assert_array_equal(y, np.repeat(y[:, :1], 12, axis=1))
    lengths, ends = [], []
    for row in y[:, 0]:
        s = spans(row == 0)
        assert len(s) <= 1  # one span, possibly empty (alpha = int(U(0, 0.5) * n))
        length = s[0][1] if s else 0
        lengths.append(length)
        if s:
            ends.append(s[0][0] + length)
    assert min(lengths) <= 3 and max(lengths) >= 120 and max(lengths) <= 124
    assert max(ends) == N  # t1 in [0, n - alpha]: the span may reach the last sample


def test_time_cutout_rejects_unknown_mode():
    with pytest.raises(UserError, match="per_lead, paper"):
        T.time_cutout(torch.ones(1, 12, N), mode="shared", generator=gen())


# --- gaussian noise ----------------------------------------------------------------------------


def test_gaussian_noise_has_the_drawn_sigma_per_window():
    x = torch.full((200, 12, N), 0.3)
    noise = (T.gaussian_noise(x, (0.005, 0.025), gen(7)) - x).double()
    std = noise.std(dim=(1, 2)).numpy()  # one sigma per window, 3000 samples each
    assert std.min() > 0.005 * 0.95 and std.max() < 0.025 * 1.05
    assert std.min() < 0.007 and std.max() > 0.023  # sigma spreads over its range
    assert abs(float(noise.mean())) < 3 * 0.025 / np.sqrt(noise.numel())
    fixed = T.gaussian_noise(torch.zeros(100, 12, N), (0.01, 0.01), gen(8))
    assert abs(float(fixed.std()) - 0.01) < 0.01 * 0.01
    per_lead = fixed.std(dim=(0, 2))  # every lead of a window gets the same sigma
    assert float(per_lead.max() / per_lead.min()) < 1.03


# --- normalisation -----------------------------------------------------------------------------


def test_normalize_subtracts_mean_and_divides_by_std_plus_epsilon_per_lead():
    x = torch.arange(12, dtype=torch.float64)[None, :, None].expand(3, 12, 4)
    mean = np.arange(12) * 0.5
    std = np.full(12, 2.0)
    y = T.normalize(x, mean, std)
    expect = (np.arange(12) - mean) / (2.0 + 1e-8)
    np.testing.assert_allclose(y[0, :, 0].numpy(), expect, rtol=1e-15)
    assert y.shape == x.shape and y.dtype == x.dtype
    with pytest.raises(UserError, match="mean must hold one value per lead"):
        T.normalize(x, np.zeros(11), std)


# --- spectrogram -------------------------------------------------------------------------------


def real_window() -> np.ndarray:
    """2.5 s of a real 12-lead record (A5432, 500 Hz, 1000/mV) resampled to 100 Hz: (12, 250) mV."""
    val = scipy.io.loadmat(SAMPLES / "A5432.mat")["val"].astype(np.float64) / 1000.0  # (12, 5000)
    return scipy.signal.resample(val, 1000, axis=1)[:, 300:550]


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_stft_magnitude_equals_scipy_stft(dtype, atol):
    rng = np.random.default_rng(0)
    inputs = [rng.normal(0, 0.3, (4, 12, N)), real_window()[None], rng.normal(0, 1, (2, 12, 301))]
    for x in inputs:
        ours = T.stft_magnitude(torch.as_tensor(x, dtype=dtype)).numpy()
        _, _, z = scipy.signal.stft(x, fs=100, window="hann", nperseg=25)
        assert ours.shape == z.shape and ours.dtype == (np.float64 if dtype == torch.float64 else np.float32)
        np.testing.assert_allclose(ours, np.abs(z), rtol=0, atol=atol)
    assert T.stft_magnitude(torch.zeros(1, 12, N)).shape == (1, 12, 13, 21)


def test_spectrogram_normalises_with_the_released_constants():
    s = T.spectrogram(torch.zeros(2, 12, N))
    expect = -np.asarray(T.SPEC_MEAN) / 0.05418394
    np.testing.assert_allclose(s[1, :, 5, 7].numpy(), expect, rtol=1e-6)
    x = torch.as_tensor(real_window()[None], dtype=torch.float32)
    manual = (T.stft_magnitude(x) - torch.tensor(T.SPEC_MEAN)[:, None, None]) / T.SPEC_STD
    torch.testing.assert_close(T.spectrogram(x), manual)


# --- spectrogram crop, cutouts -----------------------------------------------------------------


def frame_numbered(b: int) -> torch.Tensor:
    """(b, 12, 13, 21) whose frame j holds j + 1 everywhere."""
    return (torch.arange(21, dtype=torch.float32) + 1).expand(b, 12, 13, 21).clone()


def test_spec_time_crop_centres_the_crop_and_zero_pads_by_hand():
    out, widths = T.spec_time_crop(frame_numbered(500), (0.5, 0.5), gen(9), return_widths=True)
    assert (widths == 10).all()  # int(0.5 * 21)
    out = out.numpy()
    assert (out[..., :5] == 0).all() and (out[..., 15:] == 0).all()  # left pad (21-10)//2 = 5
    first = out[:, 0, 0, 5] - 1  # crop start
    expect = first[:, None] + np.arange(10) + 1
    np.testing.assert_array_equal(out[:, 3, 7, 5:15], expect)
    assert first.min() == 0 and first.max() == 21 - 10 - 1  # start in randint(0, F-W-1)
    np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1, :1], out.shape))


def test_spec_time_crop_widths_follow_the_scale():
    out, widths = T.spec_time_crop(frame_numbered(400), (0.3, 0.6), gen(10), return_widths=True)
    w = widths.numpy()
    assert w.min() == 6 and w.max() == 12  # int(0.3*21)=6 .. int(0.6*21)=12
    nonzero = (out[:, 0, 0] != 0).numpy()
    for b in range(len(w)):
        ((start, length),) = spans(nonzero[b])
        assert length == w[b] and start == (21 - w[b]) // 2


def test_spec_time_cutout_zeroes_one_frame_span_per_channel_inside_the_crop():
    s, widths = T.spec_time_crop(frame_numbered(300), (0.3, 1.0), gen(11), return_widths=True)
    y = T.spec_time_cutout(s, (0.1, 0.35), gen(12), widths=widths)
    yn, sn, w = y.numpy(), s.numpy(), widths.numpy()
    differs = 0
    for b in range(len(w)):
        left = (21 - w[b]) // 2
        cuts = []
        for c in range(12):
            cut = (yn[b, c] == 0) & (sn[b, c] != 0)  # (13, 21)
            assert (cut == cut[:1]).all()  # whole frames: every frequency row
            s_ = spans(cut[0])
            length = s_[0][1] if s_ else 0
            assert len(s_) <= 1 and int(0.1 * w[b]) <= length <= int(0.35 * w[b])
            if s_:
                assert left <= s_[0][0] and s_[0][0] + length <= left + w[b] - 1  # start <= W-w-1
            cuts.append(s_[0] if s_ else None)
        differs += len(set(cuts)) > 1
    assert differs > len(w) // 2  # channels get their own spans


def test_freq_cutout_zeroes_exactly_one_row_per_channel():
    y = T.freq_cutout(torch.ones(200, 12, 13, 21), gen(13)).numpy()
    zero_rows = (y == 0).all(axis=-1)  # (B, 12, 13)
    assert (zero_rows.sum(-1) == 1).all()
    assert ((y == 0).sum(axis=(-1, -2)) == 21).all()  # nothing else touched
    rows = zero_rows.argmax(-1)
    assert set(np.unique(rows)) == set(range(13))


# --- views -------------------------------------------------------------------------------------

ZERO, ONE = np.zeros(12), np.ones(12)


def test_time_views_are_global_then_local_crops_of_each_record():
    raw = ramp(30, torch.float32, first=1.0)
    v = T.time_views(raw, ZERO, ONE, transforms="none", generator=gen(14))
    assert v.shape == (10, 30, 12, N) and v.dtype == torch.float32
    span = (v[:, :, 0, -1] - v[:, :, 0, 0] + 1).round().numpy()  # crop length L per view
    assert span[:2].min() >= 125 and span[:2].max() <= 249
    assert span[2:].min() >= 25 and span[2:].max() <= 124
    assert (v[:, :, 0].diff(dim=-1) >= 0).all() and (v != 0).all()  # "none": only crops


def test_time_views_apply_cutout_noise_and_normalisation_as_named():
    raw = ramp(20, torch.float32, first=1.0)
    tc = T.time_views(raw, ZERO, ONE, transforms="tc", generator=gen(15))
    assert ((tc == 0).sum(-1) >= 50).all()  # per-lead spans of 50..99 samples on every view
    kept = torch.where(tc != 0, tc, torch.tensor(-float("inf")))
    assert (kept.cummax(dim=-1).values[tc != 0] == tc[tc != 0]).all()  # no noise: still monotone
    gn = T.time_views(raw, ZERO, ONE, transforms="gn", generator=gen(15))
    assert (gn != 0).all() and (gn.diff(dim=-1) < 0).any()  # noise, no cutout
    t1 = T.time_views(raw, ZERO, ONE, transforms="t1", tc_mode="paper", generator=gen(15))
    assert t1.shape == (10, 20, 12, N)
    const = torch.full((4, 12, N), 2.0, dtype=torch.float64)
    mean, std = np.linspace(0, 1, 12), np.full(12, 4.0)
    norm = T.time_views(const, mean, std, transforms="none", generator=gen(16))
    assert norm.dtype == torch.float64
    np.testing.assert_allclose(norm[3, 2, :, 100].numpy(), (2.0 - mean) / (4.0 + 1e-8), rtol=1e-15, atol=0)


def test_time_cutout_in_views_precedes_noise_and_normalisation():
    # A cut span gets noise then normalisation: with mean 1 and std 1 it is no longer 0 but about -1.
    raw = ramp(8, torch.float32, first=1.0)
    v = T.time_views(raw, ONE, ONE, transforms="t1", generator=gen(17))
    near_minus_one = ((v + 1).abs() < 0.15).sum(-1)  # samples of the cut span
    assert (near_minus_one >= 45).all()


def test_views_reproduce_for_a_seed_and_differ_for_another():
    raw = torch.randn(6, 12, N)
    a = T.time_views(raw, ZERO, ONE, generator=gen(20))
    torch.testing.assert_close(a, T.time_views(raw, ZERO, ONE, generator=gen(20)), rtol=0, atol=0)
    assert not torch.equal(a, T.time_views(raw, ZERO, ONE, generator=gen(21)))
    s = T.spec_views(raw, generator=gen(20))
    torch.testing.assert_close(s, T.spec_views(raw, generator=gen(20)), rtol=0, atol=0)
    assert not torch.equal(s, T.spec_views(raw, generator=gen(21)))


@pytest.mark.parametrize(
    "transforms,tc_mode,scales",
    [
        ("t1", "per_lead", (3, 0)),
        ("t1", "paper", (0, 3)),
        ("tc", "per_lead", (0, 3)),
        ("gn", "per_lead", (3, 0)),
        ("none", "per_lead", (0, 3)),
    ],
)
def test_time_views_equal_crop_cutout_noise_normalise_one_after_the_other(transforms, tc_mode, scales):
    # time_views makes its random draws in the order of the single transforms applied to the V*B
    # stacked windows (view-major), so with one crop scale for all views the two must agree.
    n_global, n_local = scales
    scale = (0.45, 0.95) if n_global else (0.1, 0.5)
    raw = torch.randn(7, 12, N, dtype=torch.float64) * 0.3
    mean, std = np.linspace(-0.1, 0.1, 12), np.linspace(0.1, 0.3, 12)
    views = T.time_views(raw, mean, std, transforms, n_global=n_global, n_local=n_local, global_scale=scale,
                         local_scale=scale, tc_mode=tc_mode, generator=gen(40))  # fmt: skip
    g = gen(40)
    x = T.random_resized_crop(raw.repeat(3, 1, 1), scale, g)
    if transforms in ("tc", "t1"):
        x = T.time_cutout(x, mode=tc_mode, generator=g)
    if transforms in ("gn", "t1"):
        x = T.gaussian_noise(x, generator=g)
    expect = T.normalize(x, mean, std).view(3, 7, 12, N)
    torch.testing.assert_close(views, expect, rtol=0, atol=1e-12)


def test_time_views_take_their_ranges_from_the_augment_settings():
    # Settings other than the defaults: the views equal the single transforms with those ranges.
    aug = AugmentConfig(time_global_scale=(0.7, 0.9), time_cutout=(0.05, 0.1), noise_sigma=(0.1, 0.2))
    raw = torch.randn(4, 12, N, dtype=torch.float64) * 0.3
    views = T.time_views(raw, ZERO, ONE, n_global=2, n_local=0, generator=gen(43), **aug.time_view_args())
    g = gen(43)
    x = T.random_resized_crop(raw.repeat(2, 1, 1), (0.7, 0.9), g)
    x = T.gaussian_noise(T.time_cutout(x, (0.05, 0.1), generator=g), (0.1, 0.2), g)
    torch.testing.assert_close(views, T.normalize(x, ZERO, ONE).view(2, 4, 12, N), rtol=0, atol=1e-12)
    default = T.time_views(raw, ZERO, ONE, n_global=2, n_local=0, generator=gen(43))
    assert torch.equal(default, T.time_views(raw, ZERO, ONE, n_global=2, n_local=0, generator=gen(43),
                                             **AugmentConfig().time_view_args()))  # fmt: skip
    with pytest.raises(UserError, match="sigma must satisfy"):
        T.time_views(raw, ZERO, ONE, sigma=(0.2, 0.1), generator=gen(0))


def test_spec_views_take_their_ranges_from_the_augment_settings():
    aug = AugmentConfig(spec_local_scale=(0.4, 0.5), spec_time_cutout=(0.3, 0.6))
    raw = torch.randn(5, 12, N)
    views = T.spec_views(raw, "t2", n_global=0, n_local=2, generator=gen(44), **aug.spec_view_args())
    g = gen(44)
    s, widths = T.spec_time_crop(T.spectrogram(raw).repeat(2, 1, 1, 1), (0.4, 0.5), g, return_widths=True)
    s = T.spec_time_cutout(T.freq_cutout(s, g), (0.3, 0.6), g, widths=widths)
    torch.testing.assert_close(views, s.view(2, 5, 12, 13, 21), rtol=0, atol=0)


def test_spectrogram_axes_come_from_the_stft_settings():
    assert (T.SPEC_HOP, T.SPEC_HOP_S, T.SPEC_N_FREQ, T.SPEC_FREQ_STEP_HZ) == (13, 0.13, 13, 4.0)
    assert T.stft_magnitude(torch.zeros(1, 12, N)).shape == (1, 12, T.SPEC_N_FREQ, 21)


def test_time_views_do_not_depend_on_the_cpu_block_size(monkeypatch):
    raw = torch.randn(13, 12, N)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # blocks are used on one thread
    whole = T.time_views(raw, ZERO, ONE, generator=gen(41))
    monkeypatch.setattr(T, "_CPU_BLOCK", 10 * 5 * 12 * N)  # 10 views of 5, 5 and 3 records
    torch.testing.assert_close(T.time_views(raw, ZERO, ONE, generator=gen(41)), whole, rtol=0, atol=0)


def test_spec_views_equal_crop_frequency_then_time_cutout_one_after_the_other():
    raw = torch.randn(5, 12, N)
    views = T.spec_views(raw, "t2", n_global=0, n_local=3, local_scale=(0.3, 0.6), generator=gen(42))
    g = gen(42)
    s, widths = T.spec_time_crop(T.spectrogram(raw).repeat(3, 1, 1, 1), (0.3, 0.6), g, return_widths=True)
    s = T.spec_time_cutout(T.freq_cutout(s, g), (0.1, 0.35), g, widths=widths)
    torch.testing.assert_close(views, s.view(3, 5, 12, 13, 21), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_span_mask_and_indicator_mark_exactly_the_span(dtype):
    start, length = torch.meshgrid(torch.arange(N), torch.arange(N + 1), indexing="ij")
    keep = start + length <= N
    start, length = start[keep], length[keep]  # every span that fits
    expect = np.zeros((len(start), N), dtype=bool)
    for i, (s, ln) in enumerate(zip(start.tolist(), length.tolist())):
        expect[i, s : s + ln] = True
    np.testing.assert_array_equal(T._span_mask(start, length, N).numpy(), expect)
    ind = T._span_indicator(start, length, N, dtype)
    assert ind.dtype == dtype
    np.testing.assert_array_equal(ind.float().numpy(), expect.astype(np.float32))


def test_spec_views_are_centred_crops_of_the_record_spectrogram():
    raw = torch.randn(25, 12, N)
    full = T.spectrogram(raw).numpy()
    v = T.spec_views(raw, transforms="none", generator=gen(22)).numpy()
    assert v.shape == (10, 25, 12, 13, 21)
    for i in range(10):
        for b in range(25):
            live = np.flatnonzero((v[i, b] != 0).any(axis=(0, 1)))
            w = len(live)
            assert (12 <= w <= 20) if i < 2 else (6 <= w <= 12)
            assert live[0] == (21 - w) // 2 and live[-1] == live[0] + w - 1
            block = v[i, b][..., live]
            starts = [s for s in range(21 - w) if np.array_equal(full[b][..., s : s + w], block)]
            assert starts  # the block is an unaltered slice of the record's spectrogram


def test_spec_views_t2_applies_frequency_cutout_unless_released_behaviour_is_asked():
    raw = torch.randn(10, 12, N)
    t2 = T.spec_views(raw, transforms="t2", generator=gen(23))
    live = (t2 != 0).any(dim=-2, keepdim=True)  # frames inside the crop and not cut in time
    rows_cut = ((t2 == 0) | ~live).all(dim=-1)  # (V, B, 12, 13)
    assert (rows_cut.sum(-1) == 1).all()  # FC: one row per channel
    released = T.spec_views(raw, transforms="t2", released_fc=True, generator=gen(23))
    live = (released != 0).any(dim=-2, keepdim=True)
    assert not ((released == 0) | ~live).all(dim=-1).any()  # no row cut: TC only
    crops = T.spec_views(raw, transforms="none", generator=gen(23)).numpy()  # the same crops
    cut = (released.numpy() == 0) & (crops != 0)  # (V, B, 12, 13, 21)
    assert (cut == cut[..., :1, :]).all()  # TC cuts whole frames
    n_spans = [len(spans(m)) for m in cut[..., 0, :].reshape(-1, 21)]
    assert max(n_spans) == 1 and np.mean(n_spans) > 0.5


def test_unknown_transform_sets_are_rejected_with_the_valid_names():
    raw = torch.zeros(2, 12, N)
    with pytest.raises(UserError, match="none, tc, gn, t1"):
        T.time_views(raw, ZERO, ONE, transforms="t2", generator=gen())
    with pytest.raises(UserError, match="none, tc, fc, t2"):
        T.spec_views(raw, transforms="gn", generator=gen())
    with pytest.raises(UserError, match="n_local"):
        T.spec_views(raw, n_local=-1, generator=gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_views_on_cuda_with_a_cpu_generator_equal_the_cpu_views():
    raw = torch.randn(8, 12, N)
    cpu_t = T.time_views(raw, ZERO, ONE, generator=gen(30))
    gpu_t = T.time_views(raw.cuda(), ZERO, ONE, generator=gen(30))
    assert gpu_t.device.type == "cuda"
    torch.testing.assert_close(gpu_t.cpu(), cpu_t, rtol=1e-5, atol=1e-5)
    cpu_s = T.spec_views(raw, generator=gen(30))
    gpu_s = T.spec_views(raw.cuda(), generator=gen(30))
    torch.testing.assert_close(gpu_s.cpu(), cpu_s, rtol=1e-4, atol=1e-4)
    cuda_gen = torch.Generator(device="cuda").manual_seed(0)
    assert T.time_views(raw, ZERO, ONE, generator=cuda_gen).device.type == "cpu"
