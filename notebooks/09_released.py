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
# # What the released code measured
#
# The [Deviations](../book/deviations.md) chapter lists where the authors' released code departs
# from the paper or is broken, and this book implements the corrected choice for each. Two
# questions follow that no other companion of the paper answers:
#
# 1. **How much does each of those choices change the results?** The library can run the
#    *released recipe*: what the released code actually does, one switch per departure. Runs of
#    both recipes can be compared setup by setup, and each departure can be switched on alone.
# 2. **Are the paper's claimed gains larger than the fold-to-fold noise?** Every claim is a
#    difference between two settings on the same folds, so it is tested on the paired per-fold
#    differences, with a confidence interval. The table chapters do this where each claim is
#    made ({doc}`Table II <06_table2>`, {doc}`Fig. 3 <07_fig3>`); this chapter measures the first.
#
# This chapter shows the machinery on small runs: the `tiny` profile (synthetic fixture), with
# the released recipe on fold 0 and three setups only. On the real sample records the same
# chapter runs with `ECGSSL_PROFILE=samples` (the commands below take `--profile samples`).
# **Those runs show the machinery, not the answer**, and every table and figure made from them
# says so. The last section gives the command that answers both questions on the real data and
# a GPU, and what it costs.

# %% tags=["parameters", "remove-cell"]
# None = not given: then $ECGSSL_<NAME>, else the default (ecgssl_nb.study.params).
profile = None  # "tiny" (synthetic fixture, CPU), "samples" (real sample records, CPU) or "paper"
runs = None  # the study's results folder (reproduce --out); default "../runs"
data = None  # real data folder (paper profile); default: empty, meaning the fixture
device = None  # default "cpu"
released_folds = None  # folds of the released recipe's runs on the tiny profile; default "0"
released_setups = None  # setups of the released recipe's runs on the tiny profile; default "t,ssl-t,ssl-tsg"

# %% tags=["remove-stderr", "remove-input"]
import time
import warnings

import pandas as pd
from IPython.display import Markdown, display

from ecgssl_nb.study import book, params, paths, recipes
from ecgssl_nb.analysis import plots, results, tables

params.resolve(globals(), released_folds="0", released_setups="t,ssl-t,ssl-tsg")
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # the departure table's sentences in full
cost = {}
if profile == "tiny":  # both recipes on the fixture; finished runs are skipped
    t0 = time.perf_counter()
    book.run_study(device, profile="tiny", out=runs, data_dir=data or None)
    cost["corrected"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    book.run_study(
        device,
        profile="tiny",
        out=runs,
        data_dir=data or None,
        recipe="released",
        folds=released_folds,
        setups=released_setups,
        ablation=False,
    )
    cost["released"] = time.perf_counter() - t0
with warnings.catch_warnings():
    warnings.simplefilter("error", results.ResultFileWarning)  # a broken result file fails the chapter
    main = recipes.load_recipe_results(runs, profile, "corrected")
    on_disk = recipes.recipes_on_disk(runs, profile)
assert len(main), f"the corrected study has results under {paths.profile_root(runs, profile)}"
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    means = results.aggregate(main[main["run"] == main["setup"]], protocol="honest")
KIND = results.data_kind(main["data"].iloc[0])
ANSWER = main["data"].iloc[0] == "physionet2020" and not results.is_smoke(means)
# every label of this chapter's tables and figures: which runs, and whether they can answer
RUNS_TEXT = tables.describe_runs(means)
WHO = RUNS_TEXT + ("" if ANSWER else "; shows the machinery, not the answer")
display(
    Markdown(
        f"**Runs shown:** profile `{profile}`, data {KIND}; corrected recipe on folds "
        f"{','.join(map(str, sorted(main['fold'].unique())))}, each network trained on {tables.SPLIT_LABELS['eight']}; "
        f"other recipes found: {', '.join(f'`{r}`' for r in on_disk) or 'none'}."
    )
)
if not ANSWER:
    display(
        Markdown(
            "```{warning}\nThese runs ("
            + RUNS_TEXT.replace("`", "")
            + ") **show the machinery, not the answer**: a few "
            "epochs, one or two folds. They show that both recipes run end to end and how the comparison is made. Their "
            "numbers say **nothing** about how much the released code's choices matter on the real data; only the "
            "command in the last section answers that.\n```"
        )
    )

# %% [markdown]
# ## The departures
#
# Each row is one place where the released code does something else than the paper or than
# what it meant to do. The column *setting* is the field of the library's settings that switches
# the released behaviour on; every result file records its settings, so the recipe a number
# came from is always on record. Two released behaviours are crashes: they measure nothing, so
# they are described but not reproduced.
#
# A recipe is a set of departures: `corrected` (none, the default), `released` (all of them),
# `B7` or `B1,B7` (those alone, on top of the corrected study), `released-B7` (the released
# recipe with one fix). Every command takes `--recipe`; `prepare` takes `--leads lead-i` for B1.

# %% tags=["remove-input"]
table = recipes.departure_table()
assert {"B1", "B6", "B7", "B9", "B10", "B12", "B14", "B16", "B4", "B8"} == set(table.index)
table.index.name = "departure"
table

# %% [markdown]
# Two choices change what is *reported* rather than what is trained: with B14 the released
# recipe trains on nine folds and picks its checkpoint and thresholds on the fold it reports
# (the paper's protocol, optimistic); the corrected recipe reports the nested (`honest`)
# protocol, trained on eight folds. The comparison below sets each recipe's reported protocol
# against the corrected recipe's `honest` one: the difference is what a reader of each would
# have been told.
#
# ## Released against corrected
#
# One row per setup, on the folds both recipes ran: the released recipe's mean, the corrected
# one's, and the mean paired difference (released − corrected, ×100) with its 95 % **bootstrap
# interval over folds** (2,000 resamples, seed 0). With one fold there is no interval.

# %% tags=["remove-input"]
comparison = recipes.compare_recipes(runs, profile, on_disk or ["released"], n_boot=2000)
if profile == "tiny":
    assert len(comparison) and "released" in set(comparison["recipe"]), "the released recipe ran on the fixture"
released_vs = comparison[comparison["recipe"] == "released"] if len(comparison) else comparison


if len(released_vs):
    display(
        Markdown(
            f"*Released against corrected (×100); {WHO}; released recipe: optimistic protocol, nine "
            f"training folds; corrected: honest protocol, eight training folds.*"
        )
    )
    display(tables.recipe_differences(released_vs))
if profile == "tiny":
    display(
        Markdown(
            f"The released recipe ran on fold(s) {released_folds} and setups {released_setups} only; wall "
            "time of this chapter's runs: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in cost.items())
            + " (0 s when already finished)."
        )
    )

# %% [markdown]
# {numref}`fig-released-auroc` draws the same differences on AUROC: a dot per setup at the mean
# paired difference, and its bootstrap interval where more than one fold ran.

# %% mystnb={"figure": {"caption": "Released minus corrected recipe, macro AUROC (×100) per setup: the mean paired difference over the folds both ran, with its 95 % bootstrap interval over folds when there are at least two. The legend names the runs; on the tiny or samples profile they show the machinery, not the answer.", "name": "fig-released-auroc"}, "image": {"alt": "Dot plot of the released-minus-corrected AUROC difference per setup, with a dashed line at zero"}} tags=["remove-input"]
auroc = released_vs[released_vs["metric"] == "auroc"].set_index("setup")
points = pd.DataFrame({"mean": auroc["difference"], "lo": auroc["bootstrap lo"], "hi": auroc["bootstrap hi"]})
points.index = [results.SETUP_LABELS[s] for s in points.index]
fig = plots.paired_intervals(
    points, "released − corrected, AUROC (×100)", title="Released against corrected recipe", label=WHO.replace("`", "")
)

# %% [markdown]
# ## One departure at a time
#
# Which choice moves the numbers most? Each single-departure recipe (`--recipe each` runs them
# all: every departure alone on top of the corrected study) gives one row: its mean difference
# from the corrected recipe on AUROC (×100), one column per setup, largest effect first. A
# departure only reruns the setups it can change: pre-training departures the `ssl-` setups, B6
# the two `ssl-` fusion setups. `--recipe each-fix` gives the mirror image: the released recipe
# with one fix at a time.

# %% tags=["remove-input"]
singles = recipes.departure_effects(comparison[comparison["recipe"] != "released"]) if len(comparison) else comparison
if len(singles):
    singles = singles.rename(columns=results.SETUP_LABELS).round(2)
    singles.index.name = "recipe"
    display(Markdown(f"*AUROC, recipe − corrected (×100); {WHO}.*"))
    display(singles)
else:
    display(
        Markdown(
            "No single-departure runs in this runs folder: on the `tiny` profile they are left out to keep "
            "the book's build short. The command in the last section runs them."
        )
    )

# %% [markdown]
# ## The paper's claims, and pooled metrics
#
# Whether the paper's claimed gains exceed the fold-to-fold noise is tested where the claims are
# made: the {doc}`Table II chapter <06_table2>` (SSL helps each setup, the gate beats
# concatenation, fusion beats each single modality, with the paper's margins set against our
# fold standard deviations and the pooled out-of-fold metrics beside the fold means) and the
# {doc}`Fig. 3 chapter <07_fig3>` (the full transform sets against their ablations).
# The same tables, on the released recipe's runs, answer whether the claims survive the
# released code's choices.

# %% [markdown]
# ## The command that answers the question
#
# On the real data and a GPU, one command runs the corrected study, the released recipe and
# every departure alone, then the tables above show the answer
# (see [Reproduce](../book/reproduce.md) for the download and the folder layout):
#
# ```bash
# python -m ecgssl_nb reproduce --profile paper --data-dir /data/challenge2020 --out /scratch/runs \
#     --recipe corrected --recipe released --recipe each --devices 0
# ```
#
# Only the corrected recipe runs the Fig. 3 transform ablation, and every other recipe runs only
# the setups it changes. Every recipe other than `corrected` lives under
# `/scratch/runs/recipes/<recipe>/paper/`; a
# stage a recipe does not change is shared (B6 and B14 fine-tune from the corrected
# pre-trainings; B1 alone uses the released recipe's prepared corpus). Finished runs are skipped,
# so the command can be repeated after an interruption, or extended later with
# `--recipe each-fix`. Then rebuild the book with `ECGSSL_PROFILE=paper ECGSSL_RUNS=/scratch/runs`.
#
# **Estimated cost** (the same estimate as the Reproduce chapter, not a measurement of this code
# on the full data). Take one unit = the corrected main study: 2 pre-trainings and 80 fine-tunings,
# about 5–10 GPU-hours on one H100 with GPU-resident data.
#
# | recipe | work | units |
# |---|---|---|
# | corrected | the main study (+ the Fig. 3 ablation, roughly doubling its SSL share) | 1 (+ ablation) |
# | released | prepare (lead I), 2 pre-trainings, 80 fine-tunings on nine folds | ≈ 1.1 |
# | each: B1 | like the released recipe's data: 2 pre-trainings, 80 fine-tunings | ≈ 1 |
# | each: B7, B9, B10, B12, B16 | 2 pre-trainings + the 40 `ssl-` fine-tunings, each | ≈ 5 × 0.6 |
# | each: B6 | the 20 `ssl-tsc`/`ssl-tsg` fine-tunings | ≈ 0.3 |
# | each: B14 | 80 fine-tunings on nine folds, corrected pre-trainings | ≈ 0.9 |
# | **total** | | **≈ 7 units ≈ 35–70 GPU-hours** |
#
# `--folds 0-4` halves the fine-tuning share; `--recipe corrected --recipe released` alone costs
# about 2 units (10–20 GPU-hours) and answers the first question for the recipe as a whole.
