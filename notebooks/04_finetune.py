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
# ("SSL-" prefix).
#
# ## The gate and the metrics as equations
#
# The time backbone gives $f_1 \in \mathbb{R}^{512}$, the spectrogram backbone
# $f_2 \in \mathbb{R}^{512}$. The gate is one linear layer $W \in \mathbb{R}^{2 \times 1024}$,
# $b \in \mathbb{R}^2$ followed by a softmax; it scales each modality before the head
# (`models.ECGNet.forward`):
#
# ```{math}
# :label: eq-gate
# (w_1, w_2) = \operatorname{softmax}\big(W [f_1; f_2] + b\big),
# \qquad
# \hat{y} = \sigma\big(\operatorname{head}([\,w_1 f_1;\ w_2 f_2\,])\big) \in [0, 1]^{24}.
# ```
#
# With two logits $z = W[f_1; f_2] + b$ the softmax is $w_2 = \sigma(z_2 - z_1)$, and every
# gradient that reaches $z$ is multiplied by $w_1 w_2 = w_2(1 - w_2)$: it vanishes when the gate
# is saturated ($w_2 \to 0$ or $1$).
#
# **Metrics** (`ecgssl_nb.core.metrics`, the Challenge 2020 evaluation code's definitions). For $N$
# records with labels $y_{ik} \in \{0, 1\}$ and thresholded outputs $o_{ik}$ over $K = 24$
# classes:
#
# - **AUROC** and **AUPRC**: per class over the record scores, then the mean over the classes
#   (macro). They use the scores, not the thresholds.
# - **Accuracy** (Acc) is *exact match*: a record counts only if all 24 outputs are right,
#
#   ```{math}
#   :label: eq-acc
#   \mathrm{Acc} = \frac{1}{N}\sum_{i=1}^{N} \mathbb{1}\big[o_{ik} = y_{ik}\ \text{for all}\ k\big].
#   ```
#
# - **F1**: the macro mean of $2\,TP_k / (2\,TP_k + FP_k + FN_k)$.
# - **F2** and **G2** (the Challenge 2020's $F_\beta$ and $G_\beta$ with $\beta = 2$): each record
#   is weighted by $1/\max(|y_i|, 1)$, its number of labels, when $TP_k, FP_k, FN_k$ are counted;
#   then, per class and averaged over classes,
#
#   ```{math}
#   :label: eq-f2g2
#   F_\beta = \frac{(1 + \beta^2)\,TP}{(1 + \beta^2)\,TP + FP + \beta^2 FN},
#   \qquad
#   G_\beta = \frac{TP}{TP + FP + \beta\,FN}.
#   ```
#
# - **Challenge metric** (ChM): a reward for each record from the Challenge's $24 \times 24$
#   weight matrix $A$ (full credit for the right class, partial credit for a related one),
#   normalised so that the true labels score 1 and a model that always outputs only normal sinus
#   rhythm scores 0:
#
#   ```{math}
#   :label: eq-chm
#   s(O) = \sum_{i=1}^{N} \frac{\sum_{j,k} y_{ij} A_{jk} o_{ik}}{\max(|y_i \cup o_i|, 1)},
#   \qquad
#   \mathrm{ChM} = \frac{s(O) - s(O_{\mathrm{NSR}})}{s(Y) - s(O_{\mathrm{NSR}})}.
#   ```
#
# The book prints every metric ×100.
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
# This notebook shows one run's `log.csv`, `result.json` and `predictions.csv`. The `setup` and
# `fold` parameters choose the run; when it is missing, the notebook computes it first
# (`reproduce.ensure_finetune`: prepare and the pre-trainings it uses, skipping finished work).
# So one papermill job per fold is a way to run the study.

# %% tags=["parameters", "remove-cell"]
# None = not given: then $ECGSSL_<NAME>, else the default (ecgssl_nb.study.params).
profile = None  # "tiny" (synthetic fixture, CPU), "samples" (real sample records, CPU) or "paper"
runs = None  # the study's results folder (reproduce --out); default "../runs"
data = None  # real data folder (paper profile); default: empty, meaning the fixture
fold = None  # the outer (reported) fold; default 0
setup = None  # t, s, tsc, tsg, ssl-t, ssl-s, ssl-tsc, ssl-tsg; default "ssl-tsg"
modality = None  # "time" or "spec"; default "time"
device = None  # default "cpu"
seed = None  # default 0
transforms = None  # an ablation view set of Fig. 3 (e.g. "gn"); default "": the main run
study_config = None  # the resolved study (jobs/study.json) that `reproduce --as-notebooks` passes; default ""
recipe = None  # corrected, released or departures like B1,B7 (reproduce --recipe); default corrected
settings = None  # reproduce --set items, several separated by semicolons; default: none
max_steps = None  # smoke run: stop each stage after this many steps; default 0 (full run)

# %% tags=["remove-stderr", "hide-input"]

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from ecgssl_nb.study import params
from ecgssl_nb.data import prepare
from ecgssl_nb.analysis import plots, results, training
from ecgssl_nb.core import labels
from ecgssl_nb.core import settings as core_settings

params.resolve(globals())
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # nor a long cell
from ecgssl_nb.study import reproduce as rp

core_settings.check_setup(setup)
# compute the run and what it needs (prepare, its pre-trainings) unless finished: reproduce's planning and provenance
target = rp.ensure_finetune(
    profile,
    runs,
    setup,
    fold,
    data=data or None,
    device=device,
    seed=seed,
    settings=settings,
    recipe=recipe,
    max_steps=max_steps,
    transforms=transforms or None,
    config=study_config or None,
)
prof = target.profile
run_dir = target.folder
res = results.read_json(run_dir / "result.json")
log = pd.read_csv(run_dir / "log.csv")
pred = pd.read_csv(run_dir / "predictions.csv")
prep = prepare.load_prepared(target.prepared)
assert res["setup"] == setup and res["fold"] == fold and res["profile"] == profile
d = res["data"]
KIND = results.data_kind(d["kind"])
inner = res.get("inner_fold", d.get("inner_fold"))
display(
    Markdown(
        f"**Run shown:** setup `{setup.upper()}`, outer fold {fold}, inner fold {inner}; data: {KIND} "
        f"({d['n_train']} training records from folds {d.get('train_folds', '?')}, {d['n_val']} records in fold {fold}); "
        f"profile `{profile}`; {res['epochs']} epochs on `{res['device']}` in {res['wall_time_s']:.0f} s; seed {res['seed']}."
        + (
            " **Fixture numbers show that the pipeline works; they are not a reproduction of the paper.**"
            if d["kind"] == "fixture"
            else ""
        )
    )
)

# %% [markdown]
# ## Training curves
#
# The training loss (BCE with logits), the learning rate (cosine, stepped at the start of each
# epoch as in the released code, B22), and the macro AUROC and AUPRC of the inner fold J and the
# outer fold K after each epoch. The `paper` protocol picks the epoch with the best AUPRC on K;
# the `honest` protocol picks the epoch with the best AUPRC on J.

# %% mystnb={"figure": {"caption": "Training of the run shown (setup, fold, data and profile as above), per epoch: the training loss (binary cross-entropy with logits) and the learning rate.", "name": "fig-ft-train"}, "image": {"alt": "Two line plots against epoch: training loss and learning rate"}} tags=["remove-input"]
assert len(log) == res["epochs"] or res.get("smoke"), "one log row per epoch (a smoke run stops early)"
fig = plots.curves(log, ["train_loss", "lr"], title=f"{setup.upper()}, fold {fold}: training")

# %% mystnb={"figure": {"caption": "Macro AUROC and AUPRC of the same run after each epoch, on the inner fold J (used by the honest protocol to choose) and the outer fold K (reported).", "name": "fig-ft-val"}, "image": {"alt": "Line plots of AUROC and AUPRC against epoch for the inner and the outer fold"}} tags=["remove-input"]
cols = [c for c in ("inner_auroc", "outer_auroc", "inner_auprc", "outer_auprc") if c in log.columns]
fig = plots.curves(
    log,
    cols,
    labels={
        "inner_auroc": f"AUROC, inner fold {inner}",
        "outer_auroc": f"AUROC, outer fold {fold}",
        "inner_auprc": f"AUPRC, inner fold {inner}",
        "outer_auprc": f"AUPRC, outer fold {fold}",
    },
    title=f"{setup.upper()}, fold {fold}: validation after each epoch",
)

# %% [markdown]
# ## The metrics under both protocols
#
# All seven metrics of the paper, as defined by the Challenge 2020 evaluation code, on the
# outer fold K. The selected epoch counts from 1, as in `log.csv`.

# %% tags=["remove-input"]
training.run_metrics(res)

# %% [markdown]
# ### Why exact-match accuracy is (near) zero
#
# Acc {eq}`eq-acc` counts a record only when all 24 thresholded outputs equal its labels. The
# measurement below (`training.exact_match`, on the run's saved predictions and thresholds)
# counts those records and shows what the others get wrong.

# %% tags=["remove-input"]
em = {p: training.exact_match(pred, res["thresholds"][p], protocol=p) for p in res["thresholds"]}
for p, e in em.items():
    assert abs(e["accuracy"] - float(res["metrics"][p]["accuracy"])) < 1e-9, (
        "the measurement reproduces the reported Acc"
    )
display(pd.DataFrame(em).T.rename(index=results.PROTOCOL_LABELS).round(2))
e = em["paper"]
display(
    Markdown(
        f"Under the optimistic protocol, **{e['exact']} of {e['records']}** records have all 24 outputs right. A record "
        f"carries {e['true_labels_per_record']:.1f} labels on average, but the model switches on "
        f"{e['predicted_labels_per_record']:.1f} classes per record, so it gets {e['wrong_outputs_per_record']:.1f} of the "
        "24 outputs wrong on average, and one wrong output is enough to lose the record. "
        + (
            "The model switches on more classes than records carry: the per-class thresholds (a grid of 0.1 to 0.5) are "
            "chosen to maximise the Challenge metric, not exact match, and each extra class switched on costs Acc a whole record. "
            if e["predicted_labels_per_record"] > e["true_labels_per_record"]
            else "The model switches on fewer classes than records carry: it misses labels. "
        )
        + f"Exact match is the harshest of the seven metrics; even the paper's best Acc is "
        f"{results.PAPER_TABLE_II['accuracy'].max():.2f}."
    )
)

# %% [markdown]
# ## Per-class AUROC
#
# The macro AUROC is the mean over the classes present in the fold. Per class, the variation is
# large: rare classes rest on a handful of records. A dashed line marks chance (0.5). A class
# with no positive record in the fold is blank.

# %% mystnb={"figure": {"caption": "Per-class AUROC of the run shown on the outer fold, under both protocols (the optimistic and the honest one choose different epochs). The dashed line is chance (0.5); a class with no positive record in the fold is blank. The table below the figure gives the number of positives behind each bar.", "name": "fig-ft-auroc"}, "image": {"alt": "Bar chart of AUROC per class under the two protocols"}} tags=["remove-input"]
per_class = training.per_class_auroc(res, pred)  # positives in the outer fold, then AUROC per protocol
fig = plots.per_class_bars(
    per_class.drop(columns=per_class.columns[0]).rename(columns=results.PROTOCOL_LABELS),
    ylabel="AUROC (outer fold)",
    ylim=(0, 1),
    reference=0.5,
    title=f"{setup.upper()}, fold {fold}: per-class AUROC",
)

# %% tags=["remove-input"]
per_class.rename(columns=results.PROTOCOL_LABELS).round(2).astype(object).T

# %% [markdown]
# ## The gate's weights per class (TSG setups)
#
# In the gate fusion, each record gets a pair of weights (w1 for the time series, w2 for the
# spectrogram) that sum to 1. Averaging them over the outer-fold records of each class shows
# which modality the model leans on for which diagnosis. The paper gives no such analysis; it
# is an extra view of its main idea.

# %% mystnb={"figure": {"caption": "Mean gate weights {eq}`eq-gate` per class over the outer-fold records of the run shown: $w_1$ (time series, blue) and $w_2$ (spectrogram, orange). The dotted line marks an even split.", "name": "fig-ft-gate"}, "image": {"alt": "Stacked horizontal bars of the two gate weights per class"}} tags=["remove-input"]
gate = res.get("gate_weights")
if core_settings.setup_family(setup) == "tsg":
    assert gate is not None, "a TSG run records its gate weights"
    gw = pd.DataFrame({"time": gate["time"], "spec": gate["spec"]}, index=labels.ABBREVIATIONS).astype(float)
    ok = gw.dropna()
    assert np.allclose(ok["time"] + ok["spec"], 1.0, atol=1e-6), "w1 + w2 = 1 for every class"
    fig = plots.gate_weights(gw.dropna(), title=f"{setup.upper()}, fold {fold}: mean gate weights per class")
else:
    assert gate is None, "only the gated setups have gate weights"
    display(Markdown(f"`{setup}` has no gate: the gate weights exist only for `tsg` and `ssl-tsg`."))

# %% [markdown]
# ### Why the gate leans on one modality
#
# If {numref}`fig-ft-gate` shows the same weight for every class, the gate is not choosing per
# class. Three causes are possible: the initialisation, the scale of the two feature vectors,
# or what fine-tuning learned. `training.gate_at_init` rebuilds the network exactly as
# fine-tuning starts it (pre-trained backbones, gate and head at PyTorch's default
# initialisation) and measures, on real windows of this corpus, the size of each feature vector
# and how much of the gate's logit gap $z_2 - z_1$ each one contributes.

# %% tags=["remove-input"]
if core_settings.setup_family(setup) == "tsg":
    pre = target.pretrain if core_settings.is_ssl(setup) else None
    outer_rows = np.flatnonzero(prep.index["fold"].to_numpy() == fold)
    g0 = training.gate_at_init(prep, pre, rows=outer_rows, seed=res["seed"], setup=setup, lr=prof.finetune.lr)
    n_steps = int(res["epochs"]) * -(
        -int(d["n_train"]) // prof.finetune.batch_records[core_settings.setup_family(setup)]
    )
    w2_after = float(gw["spec"].dropna().mean())
    display(pd.Series(g0).round(4).to_frame(f"{setup.upper()} at initialisation").T)
    cause = (
        "the spectrogram features"
        if g0["gap_from_spec_absmean"] > 3 * g0["gap_from_time_absmean"]
        else "the time-series features"
        if g0["gap_from_time_absmean"] > 3 * g0["gap_from_spec_absmean"]
        else None
    )
    display(
        Markdown(
            f"Before any fine-tuning the features have mean norms **{g0['norm_time']:.1f}** (time series) and "
            f"**{g0['norm_spec']:.1f}** (spectrogram). Their contributions to the logit gap average "
            f"{g0['gap_from_time_absmean']:.2f} and {g0['gap_from_spec_absmean']:.2f} in size, and the gate starts at "
            f"$w_2$ = **{g0['w2_mean']:.3f}** on average ({100 * g0['w2_over_099']:.0f}% of the windows above 0.99), "
            f"with a softmax gradient factor $w_1 w_2$ of {g0['softmax_gradient_factor']:.4f}. After fine-tuning the "
            f"mean $w_2$ over the classes is **{w2_after:.3f}**. "
            + (
                f"So the saturation is there **at initialisation**, caused by the **scale** of {cause}, which dominate the "
                "gate's logits; a saturated softmax passes almost no gradient, so fine-tuning cannot undo it in a few epochs."
                if g0["w2_over_099"] > 0.5 and cause
                else f"The gate starts unsaturated, so the saturation was **learned**, and fast: Adam moves each of the 1,024 "
                f"gate weights by up to about the learning rate ({prof.finetune.lr:g}) per step whatever the gradient's size, "
                f"and the features' L1 norm is {g0['feature_l1']:.0f}, so one step can move the logit gap $z_2 - z_1$ by up "
                f"to {g0['gap_step_bound']:.2f}, and the run's {n_steps} steps by up to {n_steps * g0['gap_step_bound']:.0f}. "
                "A gap of 5 already gives $w_2$ = 0.993, so the run had room to saturate the gate many times over; once "
                "saturated, the softmax passes almost no gradient back (the factor $w_1 w_2$ goes to 0), so nothing pulls "
                "it back. Which modality wins is decided by the training, not by the initialisation."
                if g0["w2_over_099"] < 0.5
                else "The gate starts saturated although neither feature vector dominates the logits: the bias and weights of "
                "the initialisation decide it."
            )
        )
    )
else:
    display(Markdown(f"`{setup}` has no gate."))

# %% [markdown]
# ## Thresholds under both protocols
#
# The released threshold search works class by class. Every other class is held at
# 0.1, and the class's threshold is set to the value in {0.1, …, 0.5} that maximises the
# Challenge metric. The `paper` protocol searches on the reported fold itself; the `honest`
# protocol searches on the inner fold. Where the two differ, the paper's protocol has fitted
# the reported fold.

# %% mystnb={"figure": {"caption": "Per-class decision thresholds chosen by the released search under the two protocols, for the run shown.", "name": "fig-ft-thr"}, "image": {"alt": "Bar chart of the chosen threshold per class under the two protocols"}} tags=["remove-input"]
thr = pd.DataFrame(res["thresholds"], index=labels.ABBREVIATIONS).astype(float).rename(columns=results.PROTOCOL_LABELS)
grid = set(np.round(prof.finetune.threshold_grid, 3))
assert set(np.round(thr.to_numpy().ravel(), 3)) <= grid, "every threshold is on the search grid"
fig = plots.per_class_bars(
    thr, ylabel="threshold (probability)", ylim=(0, 0.55), title=f"{setup.upper()}, fold {fold}: per-class thresholds"
)
