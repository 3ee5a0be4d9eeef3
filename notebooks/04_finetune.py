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
# # Fine-tuning one setup on one fold
#
# The down-stream task fine-tunes a classifier on the 24 labels. There are eight setups:
#
# - **T**: the time-series backbone;
# - **S**: the spectrogram backbone;
# - **TSC**: both backbones, features concatenated;
# - **TSG**: both backbones, features fused by the gate.
#
# Each is trained either from scratch (xavier initialisation) or from the pre-trained students
# ("SSL-" prefix). The gate is a softmax over two weights (w1, w2), computed from the
# concatenated features. It scales each modality's 512 features before the two-layer head.
#
# A run (`python -m ecgssl_nb finetune --setup S --fold K`) works like this:
#
# - it trains on 8 folds;
# - after every epoch it predicts two held-out folds: the outer fold K and the inner fold
#   J = (K + 1) mod 10;
# - each record's probability is the mean over its 2.5 s windows (stride 125).
#
# From one training it reports two protocols (see [Deviations](../book/deviations.md), B14):
#
# - **`paper` (optimistic)**: epoch and per-class thresholds chosen on K, metrics on K (the
#   authors' protocol);
# - **`honest`**: epoch and thresholds chosen on J, metrics on K.
#
# This notebook reads one run's `log.csv`, `result.json` and `predictions.csv`. The `setup` and
# `fold` parameters choose the run, so papermill can render one copy per run.

# %% tags=["parameters", "remove-cell"]
# None = not given: then $ECGSSL_<NAME>, else the default (ecgssl_nb.params).
profile = None  # "tiny" (synthetic fixture, CPU), "samples" (real sample records, CPU) or "paper"
runs = None  # the study's results folder (reproduce --out); default "../runs"
data = None  # real data folder (paper profile); default: empty, meaning the fixture
fold = None  # the outer (reported) fold; default 0
setup = None  # t, s, tsc, tsg, ssl-t, ssl-s, ssl-tsc, ssl-tsg; default "ssl-tsg"
modality = None  # "time" or "spec"; default "time"
device = None  # default "cpu"
seed = None  # default 0

# %% tags=["remove-stderr", "hide-input"]
import json

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from ecgssl_nb import config, labels, paths, plots, results
from ecgssl_nb import params

params.resolve(globals())
from ecgssl_nb import reproduce as rp

config.check_setup(setup)
prof = config.get_profile(profile)
if profile == "tiny":
    rp.reproduce(profile="tiny", out=runs, devices=device, data_dir=data or None, progress=False)  # skips finished work
run_dir = paths.finetune_dir(runs, profile, setup, fold)
res = results.read_json(run_dir / "result.json")
log = pd.read_csv(run_dir / "log.csv")
pred = pd.read_csv(run_dir / "predictions.csv")
assert res["setup"] == setup and res["fold"] == fold and res["profile"] == profile
d = res["data"]
KIND = {"fixture": "the synthetic fixture", "samples": "the real sample records",
        "physionet2020": "PhysioNet/CinC 2020 training data"}[d["kind"]]
inner = res.get("inner_fold", d.get("inner_fold"))
display(Markdown(
    f"**Run shown:** setup `{setup.upper()}`, outer fold {fold}, inner fold {inner}; data: {KIND} "
    f"({d['n_train']} training records from folds {d.get('train_folds', '?')}, {d['n_val']} records in fold {fold}); "
    f"profile `{profile}`; {res['epochs']} epochs on `{res['device']}` in {res['wall_time_s']:.0f} s; seed {res['seed']}."
    + (" **Fixture numbers show that the pipeline works; they are not a reproduction of the paper.**"
       if d["kind"] == "fixture" else "")
))

# %% [markdown]
# ## Training curves
#
# The training loss (BCE with logits), the learning rate (cosine, stepped at the start of each
# epoch as in the released code, B22), and the macro AUROC and AUPRC of the inner fold J and the
# outer fold K after each epoch. The `paper` protocol picks the epoch with the best AUPRC on K;
# the `honest` protocol picks the epoch with the best AUPRC on J.

# %%
assert len(log) == res["epochs"], "one log row per epoch"
fig = plots.curves(log, ["train_loss", "lr"], title=f"{setup.upper()}, fold {fold}: training ({KIND}, profile {profile})")
cols = [c for c in ("inner_auroc", "outer_auroc", "inner_auprc", "outer_auprc") if c in log.columns]
fig = plots.curves(log, cols, labels={"inner_auroc": f"AUROC, inner fold {inner}", "outer_auroc": f"AUROC, outer fold {fold}",
                                      "inner_auprc": f"AUPRC, inner fold {inner}", "outer_auprc": f"AUPRC, outer fold {fold}"},
                   title=f"{setup.upper()}, fold {fold}: validation after each epoch")

# %% [markdown]
# ## The metrics under both protocols
#
# All seven metrics of the paper, as defined by the Challenge 2020 evaluation code, on the
# outer fold K. The selected epoch counts from 1, as in `log.csv`.

# %%
metrics = pd.DataFrame(res["metrics"]).T
metrics.index.name = "protocol"
shown = metrics[list(results.METRIC_KEYS)].astype(float).mul(100).round(2)
shown.columns = [results.METRIC_LABELS[m] for m in results.METRIC_KEYS]
shown["selected epoch"] = metrics["epoch"].astype(int)
shown.index = [f"{p} ({'optimistic: chosen on' if p == 'paper' else 'chosen on inner fold'} "
               f"{'fold ' + str(fold) if p == 'paper' else str(inner)}, reported on fold {fold})" for p in shown.index]
shown

# %% [markdown]
# ## Per-class AUROC
#
# The macro AUROC is the mean over the classes present in the fold. Per class, the variation is
# large: rare classes rest on a handful of records. A dashed line marks chance (0.5). A class
# with no positive record in the fold is blank.

# %%
per_class = pd.DataFrame({p: res["per_class"][p]["auroc"] for p in res["per_class"]}, index=labels.ABBREVIATIONS).astype(float)
positives = pred[(pred["protocol"] == "paper") & (pred["role"] == "outer")][[f"y_{a}" for a in labels.ABBREVIATIONS]].sum()
per_class.insert(0, f"positives in fold {fold}", positives.to_numpy().astype(int))
fig = plots.per_class_bars(per_class.drop(columns=per_class.columns[0]), ylabel="AUROC", ylim=(0, 1), reference=0.5,
                           title=f"{setup.upper()}, fold {fold}: per-class AUROC on the outer fold ({KIND}, profile {profile})")
per_class.round(3).astype(object).T

# %% [markdown]
# ## The gate's weights per class (TSG setups)
#
# In the gate fusion, each record gets a pair of weights (w1 for the time series, w2 for the
# spectrogram) that sum to 1. Averaging them over the outer-fold records of each class shows
# which modality the model leans on for which diagnosis. The paper gives no such analysis; it
# is an extra view of its main idea.

# %%
gate = res.get("gate_weights")
if setup.endswith("tsg"):
    assert gate is not None, "a TSG run records its gate weights"
    gw = pd.DataFrame({"time": gate["time"], "spec": gate["spec"]}, index=labels.ABBREVIATIONS).astype(float)
    ok = gw.dropna()
    assert np.allclose(ok["time"] + ok["spec"], 1.0, atol=1e-6), "w1 + w2 = 1 for every class"
    fig = plots.gate_weights(gw.dropna(), title=f"{setup.upper()}, fold {fold}: mean gate weights per class (outer fold, {KIND})")
    display(gw.round(3).T)
else:
    assert gate is None, "only the gated setups have gate weights"
    display(Markdown(f"`{setup}` has no gate: the gate weights exist only for `tsg` and `ssl-tsg`."))

# %% [markdown]
# ## Thresholds under both protocols
#
# The released threshold search (SPEC 6.3) works class by class. Every other class is held at
# 0.1, and the class's threshold is set to the value in {0.1, …, 0.5} that maximises the
# Challenge metric. The `paper` protocol searches on the reported fold itself; the `honest`
# protocol searches on the inner fold. Where the two differ, the paper's protocol has fitted
# the reported fold.

# %%
thr = pd.DataFrame(res["thresholds"], index=labels.ABBREVIATIONS).astype(float)
grid = set(np.round(config.get_profile(profile).finetune.threshold_grid, 3))
assert set(np.round(thr.to_numpy().ravel(), 3)) <= grid, "every threshold is on the search grid"
fig = plots.per_class_bars(thr, ylabel="threshold", ylim=(0, 0.55),
                           title=f"{setup.upper()}, fold {fold}: per-class thresholds, paper vs honest protocol")
thr.T
