# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Transforms: the views that self-distillation learns from
#
# Self-distillation needs several *views* of each ECG window. The teacher sees two global views
# and the student sees all ten (2 global + 8 local), and both must agree on what they see. This
# chapter applies every transform of `ecgssl_nb.core.transforms` to one real 2.5 s window:
#
# - **time series:** random resized crop, time cutout (TC), Gaussian noise (GN), normalisation;
#   T1 = TC + GN;
# - **time-frequency:** the STFT spectrogram and its parameters, time crop, frequency cutout
#   (FC), time cutout; T2 = TC + FC;
# - **global versus local** views, as the pre-training makes them.
#
# Each transform works on a batch of windows on any device, and draws all its random numbers
# from the `torch.Generator` it is given, so the same seed gives the same figure.

# %% tags=["parameters", "remove-cell"]
# None = not given: then $ECGSSL_<NAME>, else the default (ecgssl_nb.study.params).
profile = None  # "tiny" (synthetic fixture, CPU), "samples" (real sample records, CPU) or "paper"
runs = None  # the study's results folder (reproduce --out); default "../runs"
data = None  # real data folder (paper profile); default: empty, meaning the fixture
samples = None  # the real sample records; default "../tests/data/ecg-samples"
fold = None  # the outer (reported) fold; default 0
setup = None  # t, s, tsc, tsg, ssl-t, ssl-s, ssl-tsc, ssl-tsg; default "ssl-tsg"
modality = None  # "time" or "spec"; default "time"
device = None  # default "cpu"
seed = None  # default 0
record = "HR00599"  # the real record shown (PTB-XL; LPR, NSR)
lead = 1  # lead II

# %% tags=["hide-input"]
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.signal
import torch
from IPython.display import Markdown, display

from ecgssl_nb.study import params
from ecgssl_nb.data import prepare
from ecgssl_nb.analysis import dataset, plots
from ecgssl_nb.data import records
from ecgssl_nb.core import labels

params.resolve(globals())
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # nor a long cell
from ecgssl_nb.core import transforms as T

rec = records.read_record(next(Path(samples).rglob(f"{record}.hea")))
x100 = prepare.resample_100hz(rec.signal, rec.fs).T  # (12, n) mV at 100 Hz, as prepare stores it
start = 200  # 2 s in
window = torch.from_numpy(np.ascontiguousarray(x100[:, start : start + 250]))[None]  # (1, 12, 250) raw mV
assert window.shape == (1, 12, 250)
# normalisation statistics: the per-lead mean and std of this record (the corpus statistics of
# the prepared data are used in training; here one record is enough to show the operation)
mean, std = x100.mean(axis=1), x100.std(axis=1)
LEAD = records.LEADS[lead]
dx = ", ".join(labels.abbreviation(c) for c in labels.merge_codes(rec.dx))
display(
    Markdown(
        f"**Record shown:** `{rec.name}` ({rec.source}, real, resampled to 100 Hz), samples "
        f"{start}..{start + 250} (2.5 s), classes {dx}. *Data: PhysioNet/Computing in Cardiology "
        "Challenge 2020 training data, CC BY 4.0; PhysioNet {cite:p}`goldberger2000physiobank`, "
        "Challenge {cite:p}`perezalday2020classification`.*"
    )
)


def gen(offset: int = 0) -> torch.Generator:
    """A fresh seeded generator, so each figure is reproducible on its own."""
    return torch.Generator().manual_seed(seed + offset)


# %% [markdown]
# ## The window, all twelve leads

# %% mystnb={"figure": {"caption": "One 2.5 s window (250 samples at 100 Hz) of the real PTB-XL record HR00599, all twelve leads in millivolts: the unit every model sees.", "name": "fig-window"}, "image": {"alt": "Twelve leads of a 2.5 second window"}} tags=["remove-input"]
fig = plots.ecg_leads(window[0].numpy(), fs=100, title=f"{rec.name}: one window")

# %% [markdown]
# ## Time-series transforms, one at a time (lead II)
#
# - **Random resized crop** (`random_resized_crop`). It keeps a fraction r of the window and
#   stretches it back to 250 samples with a random, non-uniform time warp. Global views use
#   r ~ U(0.5, 1) and local views r ~ U(0.1, 0.5). A local view is a 0.25–1.25 s piece
#   stretched 2–10×; it is not a shorter view (B17).
# - **Time cutout** (`time_cutout`). It zeroes a span in raw mV. The released code gives each
#   lead its own span of U(0.2, 0.4)·250 samples (the default). The paper's Eq. 1 uses one span
#   of U(0, 0.5)·250 shared by all leads (`mode="paper"`, B18).
# - **Gaussian noise** (`gaussian_noise`). It adds N(0, σ²) with one σ ~ U(0.005, 0.025) mV per
#   view.
# - **Normalisation** (`normalize`): (x − mean)/(std + 1e-8) per lead.
#
# Every range above is a field of `core.settings.AugmentConfig` (`PretrainConfig.augment`), which a run
# can change with `--set augment.KEY=VALUE`; its defaults are the ones listed here:

# %% tags=["hide-input"]
dataset.augment_settings()

# %% mystnb={"figure": {"caption": "Each time-series transform applied alone to lead II of the window in {numref}`fig-window` (mV against seconds). The Gaussian noise is small beside the ECG (σ of 0.005 to 0.025 mV), so its row is followed by the noise itself (noisy minus raw) on its own scale.", "name": "fig-time-transforms"}, "image": {"alt": "Seven stacked line plots of lead II under each time-series transform"}} tags=["remove-input"]
raw = window.clone()
A = T.AUGMENT  # the default view settings (core.settings.AugmentConfig)
panels = {
    "raw window": raw[0, lead],
    f"random resized crop, global (r ~ U{A.time_global_scale})": T.random_resized_crop(
        raw, A.time_global_scale, generator=gen(1)
    )[0, lead],
    f"random resized crop, local (r ~ U{A.time_local_scale})": T.random_resized_crop(
        raw, A.time_local_scale, generator=gen(2)
    )[0, lead],
    f"time cutout, per lead U{A.time_cutout} (released default)": T.time_cutout(raw, generator=gen(3))[0, lead],
    f"Gaussian noise, sigma ~ U{A.noise_sigma} mV": T.gaussian_noise(raw, generator=gen(4))[0, lead],
    "the added noise alone (noisy minus raw; its own scale)": T.gaussian_noise(raw, generator=gen(4))[0, lead]
    - raw[0, lead],
    "T1 = time cutout + Gaussian noise": T.gaussian_noise(T.time_cutout(raw, generator=gen(5)), generator=gen(6))[
        0, lead
    ],
}
assert torch.equal(raw, window), "transforms return new tensors and leave their input alone"
fig = plots.signal_panels({k: v.numpy() for k, v in panels.items()}, title=f"{rec.name}, lead {LEAD}")

# %% [markdown]
# Per lead or shared: the released time cutout zeroes a different span in each lead, while the
# paper's Eq. 1 zeroes the same span in all of them. The table counts the zeroed samples per
# lead for each mode.

# %% tags=["hide-input"]
per_lead = T.time_cutout(raw, generator=gen(7))[0]
shared = T.time_cutout(raw, mode="paper", generator=gen(8))[0]
zeros = pd.DataFrame(
    {
        "per lead (released)": (per_lead == 0).sum(dim=1).numpy(),
        "shared (paper, Eq. 1)": (shared == 0).sum(dim=1).numpy(),
    },
    index=records.LEADS,
).T
assert ((50 <= zeros.loc["per lead (released)"]) & (zeros.loc["per lead (released)"] < 100)).all()
zeros

# %% mystnb={"figure": {"caption": "Time cutout in leads I, II and V2: the released code zeroes a different span in each lead (top three rows); the paper's Eq. 1 zeroes one span shared by all leads (bottom three).", "name": "fig-cutout-modes"}, "image": {"alt": "Six stacked line plots comparing per-lead and shared time cutout"}} tags=["remove-input"]
fig = plots.signal_panels(
    {f"lead {records.LEADS[k]}, per lead": per_lead[k].numpy() for k in (0, 1, 7)}
    | {f"lead {records.LEADS[k]}, shared": shared[k].numpy() for k in (0, 1, 7)},
    title="Time cutout: per lead vs shared",
)

# %% [markdown]
# ## The spectrogram
#
# The second modality is the magnitude of the short-time Fourier transform of the **raw**
# (un-normalised) window, per lead. The settings equal `scipy.signal.stft(x, fs=100,
# window='hann', nperseg=25)`; `ecgssl_nb` computes it with `torch.stft` on the training
# device. The magnitudes are then normalised per lead with the released constants.

# %% tags=["hide-input"]
dataset.stft_settings()  # transforms' STFT constants and their meaning

# %% mystnb={"figure": {"caption": "The normalised magnitude spectrogram of the window in {numref}`fig-window`, per lead: 13 frequency rows (0 to 48 Hz) by 21 frames of 0.13 s.", "name": "fig-spectrogram"}, "image": {"alt": "Twelve small heat maps, one spectrogram per lead"}} tags=["remove-input"]
mag = T.stft_magnitude(window.double())  # (1, 12, 13, 21)
_, _, Z = scipy.signal.stft(window[0].double().numpy(), fs=100, window="hann", nperseg=25)
assert mag.shape == (1, 12, 13, 21)
np.testing.assert_allclose(mag[0].numpy(), np.abs(Z), atol=1e-6)  # equal to scipy on this real window
spec = T.spectrogram(window)  # normalised, (1, 12, 13, 21)
fig = plots.spectrogram_leads(spec[0].numpy(), title=f"{rec.name}: spectrogram")

# %% [markdown]
# ## Spectrogram transforms, one at a time (lead II)
#
# - **Time crop** (`spec_time_crop`). It keeps W = int(r·21) frames, with r ~ U(0.6, 1) for
#   global views and U(0.3, 0.6) for local views. There is no resize: the crop is zero-padded
#   back to 21 frames, centred.
# - **Frequency cutout** (`freq_cutout`). It zeroes one random frequency row per lead. The
#   released code computed this and then threw it away (B16). Here it is applied, because the
#   paper's T2 and its Fig. 3 need it.
# - **Time cutout** (`spec_time_cutout`). It zeroes U(0.1, 0.35) of the crop's frames, per
#   lead. In normalised units, 0 means "the lead's mean magnitude".

# %% mystnb={"figure": {"caption": "Each spectrogram transform applied alone to lead II of {numref}`fig-spectrogram` (frequency in Hz against time in s, one colour scale).", "name": "fig-spec-transforms"}, "image": {"alt": "Six heat maps of lead II's spectrogram under each spectrogram transform"}} tags=["remove-input"]
s = spec.clone()
crop, widths = T.spec_time_crop(s, A.spec_global_scale, generator=gen(10), return_widths=True)
local_crop = T.spec_time_crop(s, A.spec_local_scale, generator=gen(11))
t2_crop, t2_w = T.spec_time_crop(s, A.spec_global_scale, generator=gen(12), return_widths=True)
t2 = T.spec_time_cutout(T.freq_cutout(t2_crop, generator=gen(13)), generator=gen(14), widths=t2_w)
spanels = {
    "spectrogram": s[0, lead],
    "time crop, global": crop[0, lead],
    "time crop, local": local_crop[0, lead],
    "frequency cutout": T.freq_cutout(s, generator=gen(15))[0, lead],
    "time cutout": T.spec_time_cutout(s, generator=gen(16))[0, lead],
    "T2 = crop + FC + TC": t2[0, lead],
}
fig = plots.spectrogram_panels({k: v.numpy() for k, v in spanels.items()}, title=f"{rec.name}, lead {LEAD}")

# %% [markdown]
# ## Global and local views, as pre-training makes them
#
# `time_views` and `spec_views` make all ten views of a batch at once: 2 global and 8 local,
# with the global views first. Each view draws its own crop and transforms. The teacher sees
# the global views, and the student sees all ten.

# %% mystnb={"figure": {"caption": "The ten time-series views (T1) of the window that pre-training makes, lead II, normalised: two global views (blue frames), seen by teacher and student, and eight local views (orange), seen by the student only.", "name": "fig-time-views"}, "image": {"alt": "Grid of ten line plots, two global and eight local views"}} tags=["remove-input"]
tv = T.time_views(window, mean, std, transforms="t1", generator=gen(20))  # (10, 1, 12, 250), normalised
assert tv.shape == (10, 1, 12, 250)
fig = plots.views_grid(tv[:, 0, lead].numpy(), n_global=2, kind="time", title=f"Time-series views (T1), lead {LEAD}")

# %% mystnb={"figure": {"caption": "The ten spectrogram views (T2), lead II, as {numref}`fig-time-views`.", "name": "fig-spec-views"}, "image": {"alt": "Grid of ten spectrogram heat maps, two global and eight local views"}} tags=["remove-input"]
sv = T.spec_views(window, transforms="t2", generator=gen(21))  # (10, 1, 12, 13, 21)
assert sv.shape == (10, 1, 12, 13, 21)
fig = plots.views_grid(sv[:, 0, lead].numpy(), n_global=2, kind="spec", title=f"Spectrogram views (T2), lead {LEAD}")

# %% [markdown]
# ## The same seed, the same views
#
# Views depend only on the generator's state: two generators with the same seed give identical
# views. A test in `tests/` pins this for every transform; here it is checked on this window.

# %% tags=["hide-input"]
again = T.time_views(window, mean, std, transforms="t1", generator=gen(20))
assert torch.equal(again, tv)
other = T.time_views(window, mean, std, transforms="t1", generator=gen(99))
assert not torch.equal(other, tv)
"same seed -> same views; another seed -> other views"
