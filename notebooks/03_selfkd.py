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
# # Self-distillation: the pre-stream task
#
# Each backbone is first trained without labels, by DINO-style self-distillation
# {cite:p}`caron2021emerging`:
#
# - a *student* sees all ten views of a window (2 global + 8 local, see the Transforms chapter);
# - a *teacher* sees only the two global views;
# - the student learns to predict the teacher's output distribution with a cross-entropy loss;
# - the teacher is an exponential moving average (EMA) of the student;
# - the teacher's outputs are *centred* (minus an EMA of their batch mean) and *sharpened*
#   (temperature 0.04), so that it neither collapses to one output nor spreads uniformly.
#
# The time-series backbone is an xresnet1d50 and the spectrogram backbone an SE-ResNet34.
#
# ## The method as equations
#
# For one window, let $\mathcal{G}$ be its two global views and $\mathcal{V}$ all ten views
# (global and local). The student $g_{\theta_s}$ and the teacher $g_{\theta_t}$ map a view to
# $K$ outputs ($K = 65{,}536$ in the paper). The student's distribution uses temperature
# $\tau_s = 0.1$; the teacher's is *centred* by $c$ and *sharpened* by $\tau_t = 0.04$:
#
# ```{math}
# :label: eq-dino-dists
# P_s(v) = \operatorname{softmax}\!\left(\frac{g_{\theta_s}(v)}{\tau_s}\right),
# \qquad
# P_t(u) = \operatorname{softmax}\!\left(\frac{g_{\theta_t}(u) - c}{\tau_t}\right).
# ```
#
# The loss is the cross-entropy $H(a, b) = -\sum_k a_k \log b_k$ from each teacher view to every
# *other* student view, averaged over those pairs and over the batch:
#
# ```{math}
# :label: eq-dino-loss
# \mathcal{L} = \frac{1}{|\mathcal{G}|\,(|\mathcal{V}| - 1)}
#   \sum_{u \in \mathcal{G}} \sum_{\substack{v \in \mathcal{V} \\ v \neq u}} H\big(P_t(u),\, P_s(v)\big).
# ```
#
# After each step the centre follows the batch mean of the teacher's outputs over the $B$
# windows and their global views (divided **once** by the number of rows; the released code
# divided twice, B7), and the teacher follows the student as an exponential moving average:
#
# ```{math}
# :label: eq-dino-ema
# c \leftarrow m\,c + (1 - m)\,\frac{1}{B\,|\mathcal{G}|}\sum_{b=1}^{B}\sum_{u \in \mathcal{G}} g_{\theta_t}(u_b),
# \qquad
# \theta_t \leftarrow \lambda\,\theta_t + (1 - \lambda)\,\theta_s,
# ```
#
# with $m = 0.9$ and $\lambda = 0.996$. In the code: {eq}`eq-dino-dists` and {eq}`eq-dino-loss`
# are `core.dino.DINOLoss.forward`, the centre update is `DINOLoss.update_center`, and the EMA is
# `core.dino.ema_update`. Only the student receives gradients.
#
# Because the loss is a cross-entropy, it splits into the teacher's own entropy and the part the
# student can reduce:
#
# ```{math}
# :label: eq-dino-split
# H\big(P_t, P_s\big) = H\big(P_t\big) + \operatorname{KL}\big(P_t \,\|\, P_s\big).
# ```
#
# {eq}`eq-dino-split` explains the loss curve below.
#
# Where this differs from the authors' code: centring divided once, not twice (B7); schedules
# indexed from epoch 0 (B8); the last layer frozen during the first epoch (B9); AdamW with no
# decay on biases and norms (B10); the final-epoch student transferred (B12). Pre-training sees
# every record of every fold but never a label, as in the released code (B13). The
# [Deviations](../book/deviations.md) chapter gives the details.
#
# This notebook reads what `python -m ecgssl_nb pretrain` wrote:
#
# - `log.csv`: one row per epoch;
# - `summary.json`: the settings and the final state;
# - `backbone.pt`: the student backbone.
#
# It computes a pre-training only when it is missing (`reproduce.ensure_pretrain`: the data it
# needs, then the run, skipping finished work), so papermill can run this notebook as the unit
# of work of one modality. `modality` selects `time`, `spec`, or `all` (both, the default).

# %% tags=["parameters", "remove-cell"]
# None = not given: then $ECGSSL_<NAME>, else the default (ecgssl_nb.study.params).
profile = None  # "tiny" (synthetic fixture, CPU), "samples" (real sample records, CPU) or "paper"
runs = None  # the study's results folder (reproduce --out); default "../runs"
data = None  # real data folder (paper profile); default: empty, meaning the fixture
fold = None  # the outer (reported) fold; default 0
setup = None  # t, s, tsc, tsg, ssl-t, ssl-s, ssl-tsc, ssl-tsg; default "ssl-tsg"
modality = None  # "time", "spec" or "all"; default "all"
device = None  # default "cpu"
seed = None  # default 0
max_records = None  # records of the fold in the feature map; default 2000
transforms = None  # an ablation view set of Fig. 3 (e.g. "gn"); default "": the main run
study_config = None  # the resolved study (jobs/study.json) that `reproduce --as-notebooks` passes; default ""
recipe = None  # corrected, released or departures like B1,B7 (reproduce --recipe); default corrected
settings = None  # reproduce --set items, several separated by semicolons; default: none
max_steps = None  # smoke run: stop each stage after this many steps; default 0 (full run)

# %% tags=["remove-stderr", "hide-input"]
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from ecgssl_nb.study import params
from ecgssl_nb.data import prepare
from ecgssl_nb.analysis import plots, results, training
from ecgssl_nb.core import models, windows
from ecgssl_nb.core import settings as core_settings

params.resolve(globals(), modality="all")
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # nor a long cell
from ecgssl_nb.study import reproduce as rp

modalities = list(core_settings.MODALITIES) if modality == "all" else [core_settings.check_modality(modality)]
# compute each pre-training shown, and what it needs, unless finished (the provenance rules of reproduce)
targets = {
    m: rp.ensure_pretrain(
        profile,
        runs,
        m,
        data=data or None,
        device=device,
        seed=seed,
        settings=settings,
        recipe=recipe,
        max_steps=max_steps,
        transforms=transforms or None,
        config=study_config or None,
    )
    for m in modalities
}
prof = targets[modalities[0]].profile
run_dirs = {m: t.folder for m, t in targets.items()}
prep = prepare.load_prepared(targets[modalities[0]].prepared)
summaries = {m: json.loads((run_dirs[m] / "summary.json").read_text()) for m in modalities}
logs = {m: pd.read_csv(run_dirs[m] / "log.csv") for m in modalities}
NAMES = {"time": "time series (xresnet1d50)", "spec": "spectrogram (SE-ResNet34)"}


def describe(m: str) -> str:
    s = summaries[m]
    d = s.get("data", {})
    kind = results.data_kind("physionet2020" if prof.data == "fixture" and data else prof.data)
    return (
        f"{NAMES[m]}: {kind}, {d.get('n_records', '?')} records of all folds (no labels), profile `{profile}`, "
        f"{s.get('epochs', '?')} epochs of batch {s.get('batch_size_per_process', '?')}, "
        f"views `{s.get('transforms', '?')}`, kept student: {s.get('kept', '?')} epoch"
    )


display(Markdown("**Pre-trainings shown:**\n\n" + "\n".join(f"- {describe(m)}" for m in modalities)))

# %% [markdown]
# ## The settings of each run
#
# `summary.json` holds the settings each run actually used. For the `tiny` profile they are
# shrunk: a few epochs, a 4,096-wide head instead of 65,536, batch 32.

# %% tags=["hide-input"]
training.pretrain_settings(summaries)

# %% [markdown]
# ## Training curves
#
# - **loss**: the cross-entropy between the teacher's and the student's distributions, averaged
#   over the 18 (teacher view, student view) pairs.
# - **lr**: the per-iteration learning rate (linear warm-up, then cosine decay), shown at its
#   end-of-epoch value.
# - **teacher entropy**: the entropy of the centred, sharpened teacher distribution. It falls
#   towards 0 if the teacher collapses onto one output dimension, and sits at log(K) if the
#   distribution is uniform.
# - **embedding std**: the per-dimension standard deviation of the L2-normalised 128-d
#   bottleneck embeddings, averaged over dimensions. It collapses towards 0 if every input maps
#   to the same point.

# %% mystnb={"figure": {"caption": "Self-distillation of the time-series backbone, one point per epoch: the DINO loss {eq}`eq-dino-loss`, the learning rate at the end of the epoch, the entropy of the centred, sharpened teacher distribution, and the spread of the embeddings. The data, profile and settings are listed above.", "name": "fig-pretrain-time"}, "image": {"alt": "Four line plots against epoch: loss, learning rate, teacher entropy, embedding std (time-series backbone)"}} tags=["remove-input"]
if "time" in modalities:
    log = logs["time"]
    assert {"epoch", "loss", "lr", "teacher_entropy", "embedding_std"} <= set(log.columns)
    assert len(log) == summaries["time"]["epochs"], "one log row per epoch"
    fig = plots.curves(log, ["loss", "lr", "teacher_entropy", "embedding_std"], title=NAMES["time"])

# %% mystnb={"figure": {"caption": "Self-distillation of the spectrogram backbone, one point per epoch: the DINO loss {eq}`eq-dino-loss`, the learning rate at the end of the epoch, the entropy of the centred, sharpened teacher distribution, and the spread of the embeddings. The data, profile and settings are listed above.", "name": "fig-pretrain-spec"}, "image": {"alt": "Four line plots against epoch: loss, learning rate, teacher entropy, embedding std (spectrogram backbone)"}} tags=["remove-input"]
if "spec" in modalities:
    log = logs["spec"]
    assert {"epoch", "loss", "lr", "teacher_entropy", "embedding_std"} <= set(log.columns)
    assert len(log) == summaries["spec"]["epochs"], "one log row per epoch"
    fig = plots.curves(log, ["loss", "lr", "teacher_entropy", "embedding_std"], title=NAMES["spec"])

# %% tags=["remove-input"]
for m in modalities:
    log = logs[m]
    K = summaries[m].get("out_dim", summaries[m].get("config", {}).get("out_dim"))
    display(
        Markdown(
            f"**{NAMES[m]}:** loss {log['loss'].iloc[0]:.3f} → {log['loss'].iloc[-1]:.3f}; "
            f"teacher entropy {log['teacher_entropy'].iloc[-1]:.2f} nats"
            + (f" (uniform over {K} outputs would be {np.log(K):.2f})" if K else "")
            + f"; embedding std {log['embedding_std'].iloc[-1]:.4f} (all inputs mapped to one point would give 0)."
        )
    )
    # collapse check: the embeddings of different windows must stay apart
    assert log["embedding_std"].iloc[-1] > 1e-3, f"{m}: the embeddings collapsed"

# %% [markdown]
# ## Why the loss can rise
#
# With only a few epochs the loss may go *up* ({numref}`fig-pretrain-time`). Whether the
# student is getting worse can be read off {eq}`eq-dino-split`: the loss is the teacher's entropy plus
# $\operatorname{KL}(P_t \| P_s)$, and both are measured: `teacher_entropy` is logged, and
# `training.dino_loss_parts` takes the difference. (Each teacher view enters the same number of
# pairs, so the split holds exactly for the averaged loss; `tests/test_report.py` checks it
# against an independent computation.)

# %% tags=["remove-input"]
parts = pd.concat({NAMES[m]: training.dino_loss_parts(logs[m]).set_index("epoch") for m in modalities}, axis=1)
display(parts.round(3))
lines = []
for m in modalities:
    p = training.dino_loss_parts(logs[m])
    d_loss, d_h, d_kl = (p[c].iloc[-1] - p[c].iloc[0] for c in ("loss", "teacher_entropy", "kl"))
    lines.append(
        f"- **{NAMES[m]}:** loss {p['loss'].iloc[0]:.2f} → {p['loss'].iloc[-1]:.2f} ({d_loss:+.2f}); "
        f"teacher entropy {d_h:+.2f}; KL {d_kl:+.2f} nats. "
        + (
            "The whole rise is the teacher's entropy, which grows as the centring spreads the teacher's outputs, "
            "while the part the student controls (the KL) falls."
            if d_loss > 0 and d_kl < 0
            else "The loss rises with the KL term as well: in this short run the student has not yet caught up "
            "with the moving teacher."
            if d_loss > 0
            else "The loss falls."
        )
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## What do the learned features separate?
#
# The transferred student backbone maps a 2.5 s window to 512 features. For the records of one
# fold, the notebook:
#
# 1. averages the features of each record's evaluation windows (250 samples, stride 125);
# 2. projects them onto their first two principal components;
# 3. colours each record by its rarest class, which is usually its most specific one.
#
# An untrained backbone with the same architecture and the same seed is shown beside it. Any
# structure that appears only after pre-training was learned without labels. Separation in two
# principal components is only a rough first look: the fine-tuning chapters measure what the
# features are worth.

# %% tags=["hide-input"]
rows = np.flatnonzero(prep.index["fold"].to_numpy() == fold)[:max_records]
corpus = windows.Corpus.from_prepared(prep, rows=rows, device=device)
rarest = training.rarest_class(prep.label_matrix()[rows])  # each record's rarest class, for the colours

from myst_nb import glue

for m in modalities:
    trained = models.make_backbone(m)
    models.load_backbone(trained, run_dirs[m] / "backbone.pt")  # raises on a partial load (B6)
    torch.manual_seed(seed)
    untrained = models.make_backbone(m)
    for key, name, net in (
        ("trained", "pre-trained student", trained),
        ("untrained", "untrained (same architecture)", untrained),
    ):
        pts, share = training.pca2(training.record_features(net, corpus, prep.mean, prep.std, m))
        fig = plots.feature_scatter(
            pts,
            rarest,
            title=f"{NAMES[m]}, {name}: PCA ({100 * share[0]:.0f}% + {100 * share[1]:.0f}% of the variance)",
        )
        glue(f"pca-{m}-{key}", fig, display=False)
        plt.close(fig)

# %% [markdown]
# ```{glue:figure} pca-time-trained
# :name: fig-pca-time
# :alt: Scatter plot of the records of one fold in the first two principal components of the pre-trained time-series features, coloured by class
#
# Records of one fold (profile and data as above) in the first two principal components of the
# **pre-trained** time-series backbone's features, coloured by each record's rarest class.
# ```
#
# ```{glue:figure} pca-time-untrained
# :name: fig-pca-time-untrained
# :alt: The same scatter plot for an untrained time-series backbone
#
# The same records through an **untrained** time-series backbone (same architecture and seed):
# the baseline for {numref}`fig-pca-time`.
# ```
#
# ```{glue:figure} pca-spec-trained
# :name: fig-pca-spec
# :alt: Scatter plot of the records of one fold in the first two principal components of the pre-trained spectrogram features, coloured by class
#
# As {numref}`fig-pca-time`, for the **pre-trained** spectrogram backbone.
# ```
#
# ```{glue:figure} pca-spec-untrained
# :name: fig-pca-spec-untrained
# :alt: The same scatter plot for an untrained spectrogram backbone
#
# As {numref}`fig-pca-spec`, for an **untrained** spectrogram backbone.
# ```
