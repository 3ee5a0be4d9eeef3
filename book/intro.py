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
# # Multimodal self-supervised ECG classification, re-derived and re-run
#
# This book is a companion to *Multimodality Multi-Lead ECG Arrhythmia Classification using
# Self-Supervised Learning* by Phan, Le, Brijesh, Adjeroh, Wu, Jensen and Le (IEEE BHI 2022,
# arXiv:2210.06297) {cite:p}`phan2022multimodality`. Every step of the paper is a chapter that
# calls a small, tested library (`ecgssl_nb`); the same code runs on a laptop CPU and on a GPU
# with the full data.
#
# ```{admonition} Status at a glance
# :class: important
# - **Reproduced here:** the whole method (data pipeline, DINO pre-training of both backbones,
#   the eight fine-tuning setups, both evaluation protocols, the Challenge metrics, Tables I and
#   II, Fig. 3), run end to end in this build on a **synthetic fixture** and, for the
#   time-series setup T, on **208 real Challenge records**.
# - **Not reproduced here:** the paper's numbers. They need the full 43,101-record training set
#   and days of GPU time (the `paper` profile; {doc}`Reproduce <reproduce>`). No number in this
#   build is a reproduction of the paper, and the book never sets our fixture numbers beside
#   the paper's.
# - **Found on the way:** 28 places where the authors' released code differs from the paper or
#   is broken ({doc}`Deviations <deviations>`).
# ```
#
# ## The method in one figure
#
# ```{figure} images/method.svg
# :name: fig-method
# :alt: Diagram. Top: a 12-lead window becomes time-series views (T1) and spectrogram views (T2); a student and its EMA teacher are trained with a cross-entropy loss. Middle: the pre-trained time and spectrogram backbones give 512 features each, a gate weighs them by a softmax, and a head predicts 24 classes. Bottom: the two evaluation protocols.
#
# The method. (1) Each backbone (xresnet1d50 on the 2.5 s time series, SE-ResNet34 on its
# spectrogram) is pre-trained without labels by DINO self-distillation: a student matches an
# exponential-moving-average (EMA) teacher across two global and eight local views. (2) The
# pre-trained students are fine-tuned on the 24 classes; in the gated setup (TSG) a softmax gate
# weighs the two 512-feature vectors before the classification head. (3) Ten-fold
# cross-validation under two protocols.
# ```
#
# {numref}`fig-method` is the whole paper. The chapters take it apart: the data and views
# ({doc}`Data <../notebooks/01_data>`, {doc}`Transforms <../notebooks/02_transforms>`), the
# pre-training loss with its equations ({doc}`Self-distillation <../notebooks/03_selfkd>`), the
# gate and the metrics ({doc}`Fine-tuning <../notebooks/04_finetune>`), and the results.

# %% tags=["parameters", "remove-cell"]
# None = not given: then $ECGSSL_<NAME>, else the default (ecgssl_nb.study.params).
profile = None  # "tiny" (synthetic fixture, CPU), "samples" (real sample records, CPU) or "paper"
runs = None  # the study's results folder (reproduce --out); default "../runs"
data = None  # real data folder (paper profile); default: empty, meaning the fixture
samples = None  # the real sample records; default "../tests/data/ecg-samples"
device = None  # default "cpu"

# %% tags=["remove-cell"]
import warnings

import pandas as pd
from IPython.display import Markdown, display

from ecgssl_nb.study import book, params, paths
from ecgssl_nb.analysis import results, tables, training
from ecgssl_nb.core import settings

params.resolve(globals())
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # nor a long cell
if profile == "tiny":
    book.run_study(device, profile="tiny", out=runs, data_dir=data or None)  # skips finished work
book.run_samples_study(runs, samples, device=device)  # skips finished work
with warnings.catch_warnings():
    warnings.simplefilter("error", results.ResultFileWarning)
    ours = results.load_results(paths.profile_root(runs, profile) / "finetune")
agg = {p: results.aggregate(ours, protocol=p) for p in settings.PROTOCOLS}
pooled = training.pooled_auroc(runs, "samples", settings.SAMPLES_SETUPS[0], settings.SAMPLES_FOLDS, protocol="honest")

# %% [markdown]
# ## What is reproduced, and on what data
#
# Each column is one way of running the study; the last three are profiles of `ecgssl_nb`
# (`python -m ecgssl_nb reproduce --profile NAME`). This table is read off the profiles
# themselves (`book.status_table`).

# %% tags=["remove-input"]
book.status_table()

# %% [markdown]
# ## Results at a glance
#
# Three sets of numbers, from three different data sets. **They are not comparable with each
# other** and are shown in separate tables for that reason.
#
# **The paper** (PhysioNet/CinC 2020, 43,101 records, ten folds, the authors' optimistic
# protocol), macro AUROC and Challenge metric (ChM), ×100, as printed in its Table II:

# %% tags=["remove-input"]
paper_rows = results.PAPER_TABLE_II.loc[["T", "TSG", "SSL-T", "SSL-TSG"], ["auroc", "challenge"]]
paper_rows.rename(columns={"auroc": "AUROC", "challenge": "ChM"}).map(lambda v: f"{v:.2f}")  # as printed

# %% tags=["remove-input"]
display(
    Markdown(
        f"**This build, synthetic fixture** ({tables.describe_runs(agg['honest'])}; honest protocol, ×100). "
        "A check that the pipeline runs and learns on signals whose shape follows their labels; "
        "not ECGs of people, not comparable with the paper:"
    )
)
tables.results_table({"honest": agg["honest"]})

# %% tags=["remove-input"]
macro = pooled.iloc[-1]
common = pooled.iloc[:-1].query("positives >= 10").sort_values("positives", ascending=False)
display(
    Markdown(
        f"**This build, real sample records** (setup T from scratch, profile `samples`, the out-of-fold "
        f"predictions of folds {', '.join(map(str, settings.SAMPLES_FOLDS))} pooled: {int(macro['negatives'])} records). "
        f"Macro AUROC over the classes with a positive: **{macro['AUROC']:.2f}**. The classes with at least ten "
        "positives, with the number of positives behind each value and the half-width of its 95% interval "
        "(Hanley and McNeil); the {doc}`Real sample records <../notebooks/08_samples>` chapter shows all 24:"
    )
)
common.round(2).astype({"positives": int, "negatives": int})

# %% [markdown]
# ## How to read it
#
# | chapter | what it shows |
# |---|---|
# | {doc}`Data <../notebooks/01_data>` | sources, the 27 → 24 class merge, class counts, folds, real 12-lead records |
# | {doc}`Transforms <../notebooks/02_transforms>` | every augmentation on one real record, global vs local views, the STFT |
# | {doc}`Self-distillation <../notebooks/03_selfkd>` | the DINO loss, centring and EMA as equations; pre-training curves; why the loss rises |
# | {doc}`Fine-tuning <../notebooks/04_finetune>` | the gate and the metrics as equations; one run; why accuracy is 0 and the gate saturates |
# | {doc}`Table I <../notebooks/05_table1>`, {doc}`Table II <../notebooks/06_table2>`, {doc}`Fig. 3 <../notebooks/07_fig3>` | the paper's results as printed, and ours; each claim tested against fold-to-fold noise; pooled out-of-fold metrics |
# | {doc}`Real sample records <../notebooks/08_samples>` | the study on 208 real Challenge records: what learns, and what so few records can tell |
# | {doc}`Deviations <deviations>` | B1..B28, our own departures, and the recipe that runs each released behaviour |
# | {doc}`What the released code measured <../notebooks/09_released>` | the released recipe against the corrected one, one departure at a time (small runs: the machinery, not the answer) |
# | {doc}`Reproduce <reproduce>` | download the data, run the study on a GPU, rebuild this book from the results; provenance, smoke runs, benchmarks |
#
# ## Whose numbers are these?
#
# - **The paper's numbers** appear only in columns labelled *paper (as printed)*, copied from
#   its Tables I and II (`ecgssl_nb.analysis.results.PAPER_TABLE_I` / `PAPER_TABLE_II`).
# - **Our numbers** always say which **data** (the synthetic *fixture*, the *real sample
#   records*, or *PhysioNet/CinC 2020*), which **profile** (`tiny`, `samples`, `paper`), which
#   **folds**, and which **protocol**:
#   - the **optimistic protocol (authors')**: the checkpoint and per-class thresholds are chosen
#     on the same fold that is then reported, as the authors did;
#   - the **honest protocol (held-out)**: both are chosen on an inner fold, and the result is
#     reported on an outer fold that played no part in any choice.
#
# The fixture is synthetic: ECG-like signals whose shape depends on their labels, written in the
# Challenge's file format, learnable in a few CPU epochs. Its numbers show that the pipeline
# works; they are not a reproduction of the paper. To get numbers that can be set beside the
# paper's, run the `paper` profile on the real data ({doc}`Reproduce <reproduce>`) and rebuild.
#
# ## Data and licences
#
# The real ECG records in this book come from the PhysioNet/Computing in Cardiology Challenge
# 2020 and 2021 training databases, published by PhysioNet under the Creative Commons
# Attribution 4.0 licence. Please cite PhysioNet {cite:p}`goldberger2000physiobank` and the
# Challenge {cite:p}`perezalday2020classification` when you use them. The Challenge's scoring
# tables (`weights.csv`, `dx_mapping_*.csv`) are BSD-2-Clause. Our code is MIT-licensed. The
# vendored MathJax is Apache-2.0.
