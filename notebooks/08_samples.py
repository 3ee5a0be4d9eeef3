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
# # Real sample records: the study on 208 real ECGs
#
# The fixture of the other chapters is synthetic. This chapter runs the same code on **real
# Challenge recordings**: the 208 records shipped in `tests/data/ecg-samples/` (PhysioNet/CinC
# Challenge 2020 and 2021 training data, CC BY 4.0 {cite:p}`goldberger2000physiobank,perezalday2020classification`;
# the folder's README and `cinc2021-more/SOURCES.csv` say where each copy came from). It asks
# one question: **does the pipeline learn anything from real signals in a CPU budget of
# minutes, and how much can so few records tell?**
#
# ```{warning}
# About 190 records are 0.4% of the paper's 43,101. These numbers are **real sample records**
# numbers: they are not a reproduction of the paper and are not set beside the paper's.
# ```

# %% tags=["parameters", "remove-cell"]
# None = not given: then $ECGSSL_<NAME>, else the default (ecgssl_nb.study.params).
runs = None  # the study's results folder (reproduce --out); default "../runs"
samples = None  # the real sample records; default "../tests/data/ecg-samples"
device = None  # default "cpu"

# %% tags=["remove-cell"]
import pandas as pd
from IPython.display import Markdown, display

from ecgssl_nb.study import book, params, paths
from ecgssl_nb.data import prepare
from ecgssl_nb.analysis import dataset, plots, training
from ecgssl_nb.core import settings

params.resolve(globals())
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # nor a long cell
root = book.run_samples_study(runs, samples, device=device)  # skips finished work
control_root = book.run_samples_control(runs, samples, device=device)
prep = prepare.load_prepared(paths.prepared_dir(runs, "samples"))
skipped = pd.read_csv(paths.prepared_dir(runs, "samples") / "skipped.csv", keep_default_na=False)
SETUP = settings.SAMPLES_SETUPS[0]
FOLDS = settings.SAMPLES_FOLDS
prof, ctrl = settings.get_profile("samples"), book.samples_control_profile()
ours = training.pooled_auroc(runs, "samples", SETUP, FOLDS, protocol="honest")
control = training.pooled_auroc(control_root.parent, "samples", SETUP, FOLDS, protocol="honest")

# %% [markdown]
# ## The records
#
# `prepare` reads every header, keeps the records that carry at least one of the 24 scored
# classes, and drops a duplicated signal (E07509 and E07510 are one recording under two names).
# The kept records are spread over the ten folds by the same stratification as the full data.

# %% tags=["remove-input"]
n_kept, n_skipped = len(prep.index), len(skipped)
display(
    Markdown(
        f"**{n_kept + n_skipped} headers: {n_kept} kept, {n_skipped} skipped** "
        f"({', '.join(f'{n} {r}' for r, n in skipped.groupby('reason').size().items())})."
    )
)
dataset.records_per_source(prep.index)[["records kept"]].T

# %% [markdown]
# ## Settings that learn
#
# Setup T (the time-series backbone, from scratch: the simplest setup, the only one this CPU
# budget allows on real records) is fine-tuned once per outer fold, and each record of
# those folds is predicted by the run that did not train on it. Pooling these out-of-fold
# predictions gives one AUROC per class over all of them, which is steadier than a mean of
# per-fold values on about 19 records each.
#
# Two settings, measured on the same records and folds (the honest protocol throughout):


# %% tags=["remove-input"]
budget = training.finetune_budget(
    {"tiny profile's fine-tuning (control)": ctrl, "samples profile": prof}, n_train=int(len(prep.index) * 0.8)
)
budget

# %% mystnb={"figure": {"caption": "Per-class AUROC of setup T on the real sample records, out-of-fold predictions of the folds named above pooled, honest protocol: the `samples` profile's settings (blue) and the tiny profile's (orange). Each class label gives the number of positive records behind its bars; classes with no positive are left out. The dashed line is chance (0.5).", "name": "fig-samples-auroc"}, "image": {"alt": "Bar chart of per-class AUROC for two fine-tuning settings on the real sample records"}} tags=["remove-input"]
shown = ours[ours["positives"] > 0].iloc[:-1]
bars = pd.DataFrame({"samples profile": shown["AUROC"], "tiny settings (control)": control.loc[shown.index, "AUROC"]})
bars.index = [f"{c} ({int(n)})" for c, n in zip(shown.index, shown["positives"])]
fig = plots.per_class_bars(
    bars, ylabel="AUROC (out of fold)", ylim=(0, 1), reference=0.5, xlabel="class (positive records)"
)

# %% tags=["remove-input"]
m_ours, m_ctrl = ours.iloc[-1]["AUROC"], control.iloc[-1]["AUROC"]
well = ours.iloc[:-1].query("positives >= 10")
display(
    Markdown(
        f"Pooled over folds {', '.join(map(str, FOLDS))} ({int(ours.iloc[-1]['negatives'])} records), the macro AUROC "
        f"is **{m_ours:.2f}** with the `samples` settings and **{m_ctrl:.2f}** with the tiny settings "
        f"(chance is 0.50). On the {len(well)} classes with at least ten positives, the `samples` settings reach "
        + ", ".join(f"{c} {a:.2f} ± {h:.2f}" for c, a, h in zip(well.index, well["AUROC"], well["± (95%)"]))
        + " ({numref}`fig-samples-auroc`). The tiny settings take about "
        f"{budget.iat[0, -1]} optimiser steps in all, against about "
        f"{budget.iat[1, -1]}; with them even the rate classes stay near chance "
        f"(SB {control.at['SB', 'AUROC']:.2f}, STach {control.at['STach', 'AUROC']:.2f}). A 2.5 s window shows a "
        "fixture record's class plainly; real signals need more steps."
    )
)

# %% [markdown]
# The full table, all 24 classes, with the half-width of each AUROC's 95% interval (Hanley and
# McNeil's normal approximation; wide when a class has few positives):

# %% tags=["remove-input"]
ours.round(3).astype({"positives": int, "negatives": int})

# %% [markdown]
# ## What such a small set can and cannot tell
#
# - **It can tell** that the code path that reads, resamples, windows, trains and scores real
#   12-lead records works, and that with enough optimiser steps the network learns the classes
#   that a 2.5 s window shows plainly and that have dozens of examples here: rate (sinus
#   bradycardia and tachycardia) and normal sinus rhythm.
# - **It cannot tell** anything about the paper's claims. Most classes have fewer than ten
#   positives, so their AUROC intervals span much of [0, 1]; some have none. Differences between
#   setups of the size the paper reports (tenths of a point of AUROC) are far below this noise,
#   which is why only one setup is run here. The records come from five databases in unequal
#   shares, so a class can be confounded with its source.
