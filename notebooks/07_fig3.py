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
# # Fig. 3: which pre-training transforms matter
#
# The paper's Fig. 3 ablates the self-distillation transforms of each modality:
#
# - **time series:** no transform (the crops only), time cutout (TC), Gaussian noise (GN), and
#   T1 = TC + GN;
# - **time-frequency:** no transform, TC, frequency cutout (FC), and T2 = TC + FC.
#
# Each pre-trained backbone is then fine-tuned (SSL-T or SSL-S) and scored. The paper prints the
# figure without its numbers. Its text says only that the baseline already does well, which it
# credits to the random cropping, and that T1 and T2 were chosen. **There are no paper values
# to put beside ours.** The comparison can only be qualitative: do the full sets T1 and T2 come
# out on top?
#
# The full sets are the main pre-trainings (`pretrain/time` with T1, `pretrain/spec` with T2)
# and their SSL-T and SSL-S fine-tunings. The six other settings are in `ablation/`.

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

# %% tags=["remove-stderr", "remove-input"]
import warnings

import pandas as pd
from IPython.display import Markdown, display

from ecgssl_nb.study import book, params, paths
from ecgssl_nb.analysis import claims, plots, results, tables
from ecgssl_nb.core import settings

params.resolve(globals())
pd.set_option("display.max_columns", None)  # never cut a wide table
pd.set_option("display.max_colwidth", None)  # nor a long cell

if profile == "tiny":
    book.run_study(device, profile="tiny", out=runs, data_dir=data or None)  # skips finished work
root = paths.profile_root(runs, profile)
with warnings.catch_warnings():
    warnings.simplefilter("error", results.ResultFileWarning)
    ablation = results.load_results(root / "ablation" / "finetune")
    all_main = results.load_results(root / "finetune")
# the table `reproduce` wrote (tables/fig3.csv): the full sets (T1, T2) are the main SSL-T / SSL-S runs
agg = tables.read_fig3(runs, profile)  # {protocol: one row per setting, in the figure's order}
names = list(agg["paper"].index)  # "ssl-t-none", ..., "ssl-t-t1", "ssl-s-none", ..., "ssl-s-t2"
assert set(settings.PROTOCOLS) <= set(agg) and len(names) == 8, "both protocols, 4 + 4 settings in the Fig. 3 table"
first = agg["paper"].iloc[0]
KIND = results.data_kind(first["data"])
FOLDS = sorted({int(f) for folds in agg["paper"]["folds"] for f in str(folds).split(",")})
display(
    Markdown(
        f"**Our runs:** data {KIND}; profile `{profile}`; outer folds {FOLDS}; each setting = one pre-training with "
        f"those views + an SSL-T or SSL-S fine-tuning per fold; "
        + ("mean ± std over folds; " if len(FOLDS) > 1 else "one fold, so no spread can be given; ")
        + f"each fine-tuning trained on {tables.SPLIT_LABELS['eight']}; "
        + "the optimistic (authors') and the honest protocol. **No paper values exist for this figure.**"
        + (f" **{results.SMOKE_LABEL}.**" if results.is_smoke(agg["paper"]) else "")
    )
)
warning = tables.runs_warning(agg["paper"])
if warning:
    display(Markdown(warning))

# %% tags=["remove-input"]
table = tables.fig3_table(agg)
assert len(table) == 8, "4 time-series + 4 time-frequency settings"
table


# %% tags=["remove-cell"]
def fig3(k: str, p: str = "paper"):
    return plots.ablation_bars(
        tables.fig3_bars(agg[p], k),
        f"fine-tuned {results.METRIC_LABELS[k]} (×100)",
        title=(f"{results.SMOKE_LABEL}: " if results.is_smoke(agg[p]) else "")
        + f"Fig. 3 ({results.METRIC_LABELS[k]}, {results.PROTOCOL_LABELS[p]})",
    )


# %% mystnb={"figure": {"caption": "Our Fig. 3: macro AUROC (×100) after fine-tuning (SSL-T left, SSL-S right) for each set of pre-training transforms, optimistic (authors') protocol, on the data, profile and folds stated above. Error bars (±1 std over folds) appear only when more than one fold ran. The paper gives no values for this figure.", "name": "fig-fig3-auroc"}, "image": {"alt": "Bar charts of fine-tuned AUROC per pre-training transform set, time series and time-frequency"}} tags=["remove-input"]
fig = fig3("auroc")

# %% mystnb={"figure": {"caption": "As {numref}`fig-fig3-auroc`, for the Challenge metric (×100).", "name": "fig-fig3-chm"}, "image": {"alt": "Bar charts of the fine-tuned Challenge metric per pre-training transform set"}} tags=["remove-input"]
fig = fig3("challenge")

# %% [markdown]
# ## Does the full set win?
#
# The paper implies that T1 and T2 are the best view sets for their modalities. This checks it
# on our means: the answer is "yes" when the full set has the highest mean of the four.

# %% tags=["remove-input"]
tables.full_set_best(agg)

# %% [markdown]
# ## The claim against fold-to-fold noise
#
# The claim behind the figure is "the full set beats each of its ablations": T1 beats no
# transform, TC alone and GN alone (SSL-T); T2 beats no transform, TC alone and FC alone
# (SSL-S). Each is tested as in the {doc}`Table II chapter <06_table2>`: on the paired per-fold
# difference full − ablated (×100, honest protocol), with its 95 % **percentile bootstrap
# interval over folds** (2,000 resamples, seed 0) and its 95 % **paired t interval**. The paper
# gives no numbers for Fig. 3, so there is no claimed margin to set against our fold standard
# deviation.

# %% tags=["remove-input"]
everything = claims.with_ablation_runs(all_main, ablation)
transform_rows = claims.claims_table(
    everything, protocol="honest", metrics=tables.CLAIM_METRICS, claims=claims.TRANSFORM_CLAIMS, n_boot=2000
)
assert len(transform_rows) == len(claims.TRANSFORM_CLAIMS) * len(tables.CLAIM_METRICS), "every Fig. 3 claim was tested"
display(Markdown(f"*Paired differences, honest protocol; {tables.describe_runs(agg['honest'], split='eight')}.*"))
tables.claims_display(transform_rows)

# %% tags=["remove-input"]
n = len(FOLDS)
display(
    Markdown(
        f"**What {n} fold{'s' if n > 1 else ''} of {KIND} can tell.** "
        + (
            "With one fold there is no spread: no interval and no test, only the sign of one difference per claim. "
            if n < 2
            else f'With {n} folds the intervals are very wide, and "within fold noise" is the expected verdict '
            "whatever the truth. "
        )
        + (
            "These runs show that the ablation runs and is tested; they cannot confirm or refute the paper's choice of "
            "T1 and T2. Ten folds of the real data (the `paper` profile) can."
            if first["data"] != "physionet2020" or results.is_smoke(agg["paper"])
            else ""
        )
    )
)

# %% [markdown]
# ## Pooled out-of-fold metrics beside the fold means
#
# As in the {doc}`Table II chapter <06_table2>`: each setting's outer-fold predictions concatenated
# (each binarised with its own fold's thresholds) and scored once, beside the mean over folds
# (honest protocol, ×100). The full sets T1 and T2 are the main SSL-T and SSL-S runs, pooled
# over every fold they ran; the columns *folds* say which folds are behind each number.

# %% tags=["remove-input"]
pooled = pd.concat(
    [
        claims.pooled_oof(root / "ablation" / "finetune", protocol="honest"),
        claims.pooled_oof(root / "finetune", protocol="honest").replace(
            {
                "setup": {
                    settings.ABLATION_SETUPS[m]: f"{settings.ABLATION_SETUPS[m]}-{settings.MAIN_TRANSFORMS[m]}"
                    for m in settings.MODALITIES
                }
            }
        ),
    ],
    ignore_index=True,
)
side = tables.pooled_beside_means(pooled, agg["honest"], names=names)
assert (side[("AUROC", "pooled out-of-fold")] != "–").all(), "every Fig. 3 setting has pooled out-of-fold metrics"
display(
    Markdown(f"*Pooled and fold-mean metrics, honest protocol; {tables.describe_runs(agg['honest'], split='eight')}.*")
)
side
