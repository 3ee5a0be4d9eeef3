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
# # The data
#
# The paper trains and evaluates on the public training set of the PhysioNet/Computing in
# Cardiology Challenge 2020 {cite:p}`perezalday2020classification`: six databases, 43,101
# twelve-lead ECGs, 111 diagnoses coded in SNOMED CT. This chapter shows:
#
# - the label space, and the official merge of 27 scored codes into 24 classes;
# - how many records of each class the corpus in use holds, beside the official totals;
# - the ten folds and how well they balance the classes;
# - real 12-lead records and synthetic fixture records;
# - what `prepare` skipped, and why.
#
# Everything here is computed by `ecgssl_nb` (`labels`, `records`, `prepare`, `folds`). The
# notebook only calls it and shows the results.

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

# %% tags=["remove-stderr", "hide-input"]
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from ecgssl_nb.study import params, paths
from ecgssl_nb.data import prepare
from ecgssl_nb.analysis import dataset, plots, results
from ecgssl_nb.data import records
from ecgssl_nb.core import labels, settings

params.resolve(globals())
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # nor a long cell
from ecgssl_nb.data import fixture as fx
from ecgssl_nb.study import reproduce as rp

prof = settings.get_profile(profile)
if profile == "tiny":
    # The tiny study (fixture, preparation, pre-training, fine-tuning, tables) is run once and
    # shared by the book build and nbval; finished work is skipped.
    rp.reproduce(profile="tiny", out=runs, devices=device, data_dir=data or None, progress=False)
prep = prepare.load_prepared(paths.prepared_dir(runs, profile))
index = prep.index
DATA = results.data_kind("physionet2020" if prof.data == "fixture" and data else prof.data)
display(
    Markdown(
        f"**Data in this chapter:** {DATA}, {len(index)} records kept"
        + (f" (seed {prof.seed})" if prof.data == "fixture" and not data else "")
        + f"; profile `{profile}`; prepared folder `{paths.prepared_dir(runs, profile)}`."
    )
)

# %% [markdown]
# ## Sources and classes
#
# The Challenge scores 27 of the 111 diagnoses. Three pairs of them count as the same class
# (the Challenge's equivalence classes). The second code of each pair is merged into the first,
# which leaves **24 classes**; the paper's "25" is a slip (Deviations, B24). The class order is
# the order of the official `weights.csv` with the merged duplicates dropped. The normal class
# used by the Challenge metric is sinus rhythm (NSR, 426783006).

# %% tags=["hide-input"]
merges = pd.DataFrame(
    [
        (removed, labels.abbreviation(removed).split("+")[-1], kept, labels.abbreviation(kept))
        for removed, kept in labels.MERGES.items()
    ],
    columns=["removed code", "removed", "kept code", "merged class"],
)
assert len(labels.SCORED_CODES) == 27 and labels.N_CLASSES == 24 and len(merges) == 3
merges

# %% tags=["hide-input"]
totals = labels.official_totals()  # per-source record counts of each scored code (dx_mapping_scored.csv)
classes = pd.DataFrame(
    {
        "code": labels.CLASSES,
        "class": labels.ABBREVIATIONS,
        "diagnosis": labels.NAMES,
    }
)
classes.index.name = "k"
classes

# %% [markdown]
# ## Records per class: the corpus in use beside the official totals
#
# The official column adds up the Challenge's `dx_mapping_scored.csv` counts over the six
# sources. For a merged class it adds both codes, so a record that carries both (say CRBBB
# and RBBB) counts twice there: the official figure is an upper bound. Our column counts the
# records that `prepare` kept with that class after merging.

# %% tags=["hide-input"]
counts = dataset.class_counts(prep.label_matrix(), name=f"this corpus ({profile})")
if profile == "tiny":
    # every class must be present in the fixture, or a class has no positives to learn or score
    missing = counts.index[counts.iloc[:, 0] == 0].tolist()
    assert not missing, f"classes absent from the fixture: {missing}"
counts

# %% mystnb={"figure": {"caption": "Records per class (log scale): the corpus used in this build (named above) beside the official Challenge 2020 totals over the six sources.", "name": "fig-class-counts"}, "image": {"alt": "Bar chart of records per class, this corpus and the official totals"}} tags=["remove-input"]
fig = plots.class_counts(counts, title="Records per class")

# %% [markdown]
# The official counts of each source, for reference. The paper uses the six 2020 sources; the
# St Petersburg INCART column is the `INCART` source here.

# %% tags=["hide-input"]
official_by_source = pd.DataFrame(
    {labels.abbreviation(c): {k: v for k, v in totals[c].items() if k != "Total"} for c in labels.SCORED_CODES}
).T
official_by_source.index.name = "scored code (before merging)"
official_by_source

# %% [markdown]
# Records kept per source in the corpus in use:

# %% tags=["hide-input"]
dataset.records_per_source(index)

# %% [markdown]
# ## The ten folds
#
# The folds come from iterative multilabel stratification {cite:p}`sechidis2011stratification`,
# run separately within each source on the scored codes before merging, with seed 0. Records
# are sorted first, so the folds do not depend on the order in which the file system lists
# them (B3). Records with an identical signal were already reduced to one by `prepare`.
# The figure shows, for each class, the share of its records in each fold. With ten folds the
# ideal share is 0.1.

# %% tags=["hide-input"]
Y = prep.label_matrix()
fold_table = dataset.fold_counts(Y, index["fold"])  # records and positives per class of each fold
assert fold_table["records"].sum() == len(index) and (fold_table["records"] > 0).all(), "every fold holds records"
fold_table

# %% mystnb={"figure": {"caption": "Share of each class's records in each of the ten folds, for the corpus used in this build; the ideal share is 0.1.", "name": "fig-fold-balance"}, "image": {"alt": "Heat map of the share of each class in each fold"}} tags=["remove-input"]
fig = plots.fold_balance(fold_table, title="Class balance over the ten folds")

# %% [markdown]
# The largest deviation from the ideal count per fold is a direct measure of the balance.
# For each class, ideal = (records of the class) / 10. The stratification aims to keep each fold
# within about one record of the ideal *within each source*. The folds here are unions over the
# sources, so these deviations can add up across sources.

# %% tags=["hide-input"]
dataset.fold_balance(fold_table)

# %% [markdown]
# ## Real 12-lead records
#
# Two real recordings from the Challenge training databases, read by `records.read_record` and
# shown at their original sampling rate (500 Hz). Below each, the same record after `prepare`'s
# resampling to 100 Hz, every lead on its own (B1: the authors' code copied lead I into all
# twelve channels).
#
# *Data: PhysioNet/Computing in Cardiology Challenge 2020 training data, CC BY 4.0; PhysioNet
# {cite:p}`goldberger2000physiobank`, Challenge {cite:p}`perezalday2020classification`.
# Copies from `tests/data/ecg-samples/`.*

# %% tags=["remove-input"]
sample_dir = Path(samples)
shown = {}
for name in ("HR00599", "Q0096"):
    hea = next(sample_dir.rglob(f"{name}.hea"))
    rec = records.read_record(hea)
    shown[name] = rec
    dx = ", ".join(labels.abbreviation(c) for c in labels.merge_codes(rec.dx)) or "no scored class"
    fig = plots.ecg_leads(rec.signal, fs=rec.fs, seconds=10, title=f"{rec.name} ({rec.source}, {rec.fs:g} Hz): {dx}")
    glue(f"real-{name}", fig, display=False)
    plt.close(fig)

# %% [markdown]
# ```{glue:figure} real-HR00599
# :name: fig-real-hr00599
# :alt: Twelve leads of the real PTB-XL record HR00599, first 10 seconds at 500 Hz
#
# A real record: PTB-XL HR00599, all twelve leads in millivolts, the first 10 s at its original
# 500 Hz (PhysioNet/CinC Challenge 2020, CC BY 4.0).
# ```
#
# ```{glue:figure} real-Q0096
# :name: fig-real-q0096
# :alt: Twelve leads of the real CPSC-Extra record Q0096, first 10 seconds at 500 Hz
#
# A second real record: CPSC-Extra Q0096, as {numref}`fig-real-hr00599`.
# ```

# %% mystnb={"figure": {"caption": "The record of {numref}`fig-real-hr00599` after `prepare`: every lead resampled to 100 Hz on its own (FFT resampling). The authors' code copied lead I into all twelve channels (B1).", "name": "fig-real-100hz"}, "image": {"alt": "Twelve leads of HR00599 resampled to 100 Hz"}} tags=["remove-input"]
rec = shown["HR00599"]
x100 = prepare.resample_100hz(rec.signal, rec.fs).T  # (n, 12) -> (12, n) mV at 100 Hz
assert x100.shape == (12, int(rec.signal.shape[1] * 100 / rec.fs))
assert not np.allclose(x100[0], x100[1]), "the twelve leads differ after resampling (B1 fixed)"
fig = plots.ecg_leads(x100, fs=100, seconds=10, title=f"{rec.name} at 100 Hz after prepare")

# %% [markdown]
# ### `prepare` on the real sample records
#
# The same `prepare` runs on the 208 real sample records shipped with the repository (30 from
# the 2020 release, 178 from the 2021 release). It shows on real files what the full data set
# will meet:
#
# - records whose only codes are unscored;
# - duplicate signals published under two names (CPSC-Extra Q0048 is CPSC A0101);
# - several header styles.
#
# The {doc}`Real sample records <08_samples>` chapter trains on them.

# %% tags=["remove-stderr", "remove-input"]
sample_prep_dir = paths.prepared_dir(runs, "samples")
prepare.prepare(sample_dir, sample_prep_dir, workers=settings.get_profile("samples").workers, progress=False)
sp = prepare.load_prepared(sample_prep_dir)
sample_skipped = pd.read_csv(sample_prep_dir / "skipped.csv", keep_default_na=False)
n_sample_headers = len(list(sample_dir.rglob("*.hea")))
assert len(sp.index) + len(sample_skipped) == n_sample_headers, (
    "every sample header is either kept or skipped with a reason"
)
display(Markdown(f"Real sample records: **{len(sp.index)} kept**, **{len(sample_skipped)} skipped**."))
sample_skipped.groupby("reason").size().rename("records").to_frame()

# %% tags=["remove-input"]
sample_counts = pd.DataFrame(
    {
        "real sample records": sp.label_matrix().sum(axis=0).astype(int),
    },
    index=labels.ABBREVIATIONS,
)
sample_counts.T

# %% [markdown]
# ## Fixture records
#
# The `tiny` profile does not use real data. It uses a synthetic *fixture*: records written in
# the Challenge's exact file format, with a waveform built from the labels. The fixture changes:
#
# - the rate for bradycardia and tachycardia;
# - the rhythm for AF (irregular, no P waves) and flutter (flutter waves);
# - QRS width for the bundle branch blocks;
# - the voltage for low QRS voltage;
# - and so on.
#
# A model can therefore learn it in a few epochs. These are not ECGs of people, and nothing
# learned on them says anything about the paper's results. Below are clean examples of four
# classes from `fixture.synth_ecg`, followed by a record of the prepared corpus in use.

# %% tags=["remove-input"]
rng = np.random.default_rng(seed)
examples = {"NSR": ["426783006"], "AF": ["164889003"], "LBBB": ["164909002", "426783006"], "STach": ["427084000"]}
for title, codes in examples.items():
    x = fx.synth_ecg(codes, fs=500, seconds=5, rng=rng)
    fig = plots.ecg_leads(x, fs=500, title=f"Synthetic fixture ECG (not a real record): {title}")
    glue(f"fixture-{title}", fig, display=False)
    plt.close(fig)

# %% [markdown]
# ```{glue:figure} fixture-NSR
# :name: fig-fixture-nsr
# :alt: Twelve leads of a synthetic normal-sinus-rhythm record
#
# A **synthetic** fixture record (not an ECG of a person) labelled normal sinus rhythm, 5 s at
# 500 Hz, in millivolts.
# ```
#
# ```{glue:figure} fixture-AF
# :name: fig-fixture-af
# :alt: Twelve leads of a synthetic atrial fibrillation record
#
# A synthetic fixture record labelled atrial fibrillation: irregular beats, no P waves.
# ```
#
# ```{glue:figure} fixture-LBBB
# :name: fig-fixture-lbbb
# :alt: Twelve leads of a synthetic left bundle branch block record
#
# A synthetic fixture record labelled left bundle branch block (with sinus rhythm): wide QRS.
# ```
#
# ```{glue:figure} fixture-STach
# :name: fig-fixture-stach
# :alt: Twelve leads of a synthetic sinus tachycardia record
#
# A synthetic fixture record labelled sinus tachycardia: a fast rate.
# ```

# %% mystnb={"figure": {"caption": "A record of the prepared corpus used in this build (named in the title: record, source, fold, classes), at 100 Hz, in millivolts.", "name": "fig-fixture-prepared"}, "image": {"alt": "Twelve leads of one prepared record at 100 Hz"}} tags=["remove-input"]
row = (
    int(np.flatnonzero(Y[:, labels.CLASS_INDEX["164889003"]])[0]) if Y[:, labels.CLASS_INDEX["164889003"]].any() else 0
)
r = index.iloc[row]
fig = plots.ecg_leads(
    prep.record(row),
    fs=100,
    seconds=10,
    title=f"{r['record']} from the prepared corpus ({r['source']}, fold {r['fold']}, 100 Hz): "
    + ", ".join(labels.abbreviation(c) for c in str(r["labels"]).split()),
)

# %% [markdown]
# ## What `prepare` skipped, and why
#
# Every header found is either in `index.csv` or in `skipped.csv` with a reason; nothing is
# dropped silently. The fixture deliberately includes records that carry only unscored codes
# (the Challenge data has thousands of them), which must be skipped.

# %% tags=["hide-input"]
skipped = pd.read_csv(Path(prep.path) / "skipped.csv", keep_default_na=False)
n_headers = len(index) + len(skipped)
display(Markdown(f"{DATA}: {n_headers} headers found, **{len(index)} kept**, **{len(skipped)} skipped**."))
reasons = skipped.groupby("reason").size().rename("records").to_frame()
if profile == "tiny":
    assert "no scored label" in reasons.index, "the fixture's unscored-only records are skipped"
reasons

# %% tags=["hide-input"]
skipped.head(10)

# %% [markdown]
# The per-lead normalisation statistics (the mean over records of each record's
# per-lead mean and standard deviation, in mV). With the authors' lead-I bug these twelve
# values would all be equal.

# %% tags=["hide-input"]
stats = pd.DataFrame({"mean (mV)": prep.mean, "std (mV)": prep.std}, index=records.LEADS).T
assert np.unique(np.round(prep.std, 6)).size > 1, "per-lead statistics differ between leads"
stats.round(4)
