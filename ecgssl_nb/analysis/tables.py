"""The table chapters (Tables I and II, Fig. 3, the released code): our aggregates beside the
paper's, the claims as the book prints them, the paper's orderings, and what made the runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..study import paths
from ..core import metrics
from ..core.errors import UserError
from ..core.settings import MAIN_TRANSFORMS, PROTOCOLS, SETUPS
from .results import DATA_LABELS, METRIC_LABELS, PROTOCOL_LABELS, SETUP_LABELS, SMOKE_LABEL
from .results import fmt, is_smoke, mean_std, setting_label


CLAIM_METRICS = ("auroc", "challenge")  # the two metrics the table chapters show beside the paper and test claims on
SPLIT_LABELS = {  # which folds trained the network: the tables always say which they show
    "eight": "eight training folds (one outer fold reported, one inner fold held out for the honest protocol)",
    "nine": "nine training folds, as the authors trained (paper-exact protocol, departure B14)",
}


def _smoke(aggs) -> str:  # the mark of a table made from smoke runs
    return f" ({SMOKE_LABEL})" if any(is_smoke(a) for a in aggs) else ""


def _frame(data: dict, index: list, name: str, levels: list[str]) -> pd.DataFrame:
    """{(metric, column): values} as a frame with two-level columns named `levels`."""
    out = pd.DataFrame(data, index=pd.Index(index, name=name))
    out.columns.names = levels
    return out


def describe_runs(agg: pd.DataFrame, split: str | None = None) -> str:
    """'synthetic fixture, profile `tiny`, outer folds 0,1 (2 folds)': what produced an aggregate,
    with `split`'s training folds (SPLIT_LABELS), prefixed with SMOKE_LABEL for smoke runs."""
    first, n = agg.iloc[0], int(agg.iloc[0]["n_folds"])
    text = f"{DATA_LABELS.get(first['data'], first['data'])}, profile `{first['profile']}`, "
    text += f"outer folds {first['folds']} ({n} fold{'s' if n > 1 else ''})"
    text += f", {SPLIT_LABELS[split]}" if split else ""
    return f"{SMOKE_LABEL}: {text}" if bool(first.get("smoke", False)) else text


def runs_warning(agg: pd.DataFrame) -> str | None:
    """The warning box (MyST markdown) a results chapter shows above its tables, or None for full
    runs on the paper's data: smoke runs say they are not results (whatever their profile);
    runs on the fixture or the sample records say they are not a reproduction of the paper."""
    first, n = agg.iloc[0], int(agg.iloc[0]["n_folds"])
    profile, data = first["profile"], DATA_LABELS.get(first["data"], first["data"])
    if is_smoke(agg):
        body = (
            f"**{SMOKE_LABEL}.** These runs of the `{profile}` profile (data: {data}) were stopped after a few "
            "optimisation steps per stage (`reproduce --max-steps`): they check that every stage of this profile "
            "runs at its exact settings. Every number below is untrained noise, labelled "
            f'"{SMOKE_LABEL}", and means **nothing** about the paper or the method.'
        )
    elif first["data"] == "physionet2020":
        return None
    else:
        body = (
            f"These are numbers from the `{profile}` profile (data: {data}): a few epochs, {n} fold{'s' if n > 1 else ''}. "
            "They show that the pipeline runs and learns. They are **not** a reproduction of the paper, and their "
            "distance from the paper's values means nothing. Run the `paper` profile on the real data to compare "
            "(see the Reproduce chapter)."
        )
    return "```{warning}\n" + body + "\n```"


def results_table(
    aggs: dict[str, pd.DataFrame],
    metrics_shown: Sequence[str] = CLAIM_METRICS,
    paper: pd.DataFrame | None = None,
    decimals: int = 2,
) -> pd.DataFrame:
    """One row per setup; per metric, the paper's value as printed (with `paper`, PAPER_TABLE_I or
    II) and ours (×100, "mean ± std") under each protocol of `aggs` ({protocol: aggregate}), each
    column named for whose number it is."""
    setups = list(next(iter(aggs.values())).index)
    labels, data = [SETUP_LABELS[s] for s in setups], {}
    for m in metrics_shown:
        if paper is not None:  # NaN (printed "–") where the paper has no such row
            d = int(paper.attrs.get("decimals", 2))
            data[(METRIC_LABELS[m], "paper (as printed)")] = [fmt(v, d) for v in paper[m].reindex(labels)]
        for protocol, agg in aggs.items():
            ours = [mean_std(agg.at[s, f"{m}_mean"], agg.at[s, f"{m}_std"], digits=decimals) for s in setups]
            data[(METRIC_LABELS[m], f"ours{_smoke([agg])}, {PROTOCOL_LABELS[protocol]}")] = ours
    return _frame(data, labels, "setup", ["metric", "whose number"])


def _interval(lo: float, hi: float, missing: str = "–") -> str:
    return missing if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.2f}, {hi:+.2f}]"


def claims_display(claim_table: pd.DataFrame, noise: pd.DataFrame | None = None) -> pd.DataFrame:
    """`claims.claims_table` as the book prints it, per (claim, metric): A → B, the folds, B − A
    (×100), both intervals, the t test's p and the verdict; with `noise`
    (`claims.margins_vs_noise`), the paper's margin beside our larger fold std (×100)."""
    rows, index = [], []
    noise_of = {} if noise is None else {(n["claim"], n["metric"]): n for _, n in noise.iterrows()}
    for _, r in claim_table.iterrows():
        row = {
            "A → B": f"{setting_label(r['A'])} → {setting_label(r['B'])}",
            "folds": int(r["n_folds"]),
            "B − A (×100)": f"{r['mean B - A']:+.2f}",
            "95 % bootstrap over folds": _interval(r["bootstrap lo"], r["bootstrap hi"]),
            "95 % paired t": _interval(r["t lo"], r["t hi"]),
            "p (paired t)": fmt(r["p (paired t)"], 2),
            "verdict": r["verdict"],
        }
        n = noise_of.get((r["claim"], r["metric"]))
        if n is not None:
            row["paper's margin (×100)"] = f"{n['paper margin']:+.2f}"
            row["our larger fold std (×100)"] = fmt(np.fmax(n["our fold std A"], n["our fold std B"]), 2)
            row["margin > fold std?"] = {True: "yes", False: "no"}.get(n["margin > fold std"], "– (one fold)")
        rows.append(row)
        fig3 = lambda m: "beats " + ("no transform" if m[1] == "none" else m[1].upper())  # noqa: E731
        index.append((re.sub(r"beats (none|tc|gn|fc)$", fig3, r["claim"]), METRIC_LABELS[r["metric"]]))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["claim", "metric"]))


def pooled_beside_means(
    pooled: pd.DataFrame,
    agg_honest: pd.DataFrame,
    names: Sequence[str] | None = None,
    metrics_shown: Sequence[str] = metrics.HEADLINE_METRICS,
) -> pd.DataFrame:
    """Per setting of an honest aggregate (or its rows `names`): the pooled out-of-fold metric
    (`claims.pooled_oof`, "–" without predictions) beside the mean over folds, ×100, and their folds."""
    names = list(agg_honest.index) if names is None else list(names)
    pooled = (pooled.set_index("setup") if len(pooled) else pd.DataFrame(columns=[*metrics_shown, "folds"])).reindex(
        names
    )
    data = {}
    for m in metrics_shown:  # NaN, printed "–", for a setting without predictions
        data[(METRIC_LABELS[m], "pooled out-of-fold")] = [fmt(100 * v, 2) for v in pooled[m].astype(float)]
        data[(METRIC_LABELS[m], "mean over folds")] = [fmt(100 * agg_honest.at[n, f"{m}_mean"], 2) for n in names]
    data[("folds", "pooled")] = list(pooled["folds"].fillna("–"))
    data[("folds", "mean")] = [agg_honest.at[n, "folds"] for n in names]
    return _frame(data, [setting_label(n) for n in names], "setting", ["metric", "how"])


def protocol_gap(aggs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Optimistic minus honest mean of each metric per setup (×100, 2 decimals)."""
    paper, honest = aggs["paper"], aggs["honest"]
    gap = pd.DataFrame(
        {METRIC_LABELS[m]: (100 * (paper[f"{m}_mean"] - honest[f"{m}_mean"])).to_numpy() for m in metrics.METRIC_KEYS},
        index=pd.Index([SETUP_LABELS[s] for s in paper.index], name="setup"),
    )
    return gap.round(2)


# the orderings the paper reads off Table II: (metric, the (better, worse) setups they assert)
PAPER_PATTERNS = {
    "no SSL: TSG > TSC > T > S (AUROC)": ("auroc", [("tsg", "tsc"), ("tsc", "t"), ("t", "s")]),
    "SSL: TSG > T > S (AUROC)": ("auroc", [("ssl-tsg", "ssl-t"), ("ssl-t", "ssl-s")]),
    "SSL beats scratch for every architecture (AUROC)": ("auroc", [(f"ssl-{f}", f) for f in SETUPS[:4]]),
    "gate beats concatenation, with and without SSL (AUROC)": ("auroc", [("tsg", "tsc"), ("ssl-tsg", "ssl-tsc")]),
    "SSL-TSG is the best setup (ChM)": ("challenge", [("ssl-tsg", s) for s in SETUPS[:-1]]),
}


def paper_patterns(aggs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per ordering of PAPER_PATTERNS (rows) and protocol (columns) of {protocol: aggregate of the
    eight setups}: "yes" when it holds in our means, else "no"."""
    holds = {
        PROTOCOL_LABELS[p]: {
            name: "yes" if all(a.at[b, f"{m}_mean"] > a.at[w, f"{m}_mean"] for b, w in pairs) else "no"
            for name, (m, pairs) in PAPER_PATTERNS.items()
        }
        for p, a in aggs.items()
    }
    return pd.DataFrame(holds).rename_axis("ordering" + _smoke(aggs.values()))


def read_fig3(runs: str | Path, profile: str) -> dict[str, pd.DataFrame]:
    """RUNS/<profile>/tables/fig3.csv (written by `reproduce`) as {protocol: aggregate-like frame
    with modality and transforms}, indexed by run ("ssl-t-tc", ...) in the figure's order."""
    path = paths.table_path(runs, profile, "fig3")
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `reproduce --profile {profile}` with the ablation first")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"folds": str})
    df.index = pd.Index(df["setup"] + "-" + df["transforms"], name="run")
    return {p: df[df["protocol"] == p] for p in PROTOCOLS if (df["protocol"] == p).any()}


def fig3_table(fig3: dict[str, pd.DataFrame], metrics_shown: Sequence[str] = CLAIM_METRICS) -> pd.DataFrame:
    """The Fig. 3 table per setting ("SSL-T (TC)", ...): modality, transforms, mean ± std ×100 of
    each metric under each protocol of `read_fig3`, and the folds."""
    first = next(iter(fig3.values()))
    data = {"modality": list(first["modality"]), "transforms": [t.upper() for t in first["transforms"]]}
    for p, a in fig3.items():
        for k in metrics_shown:
            data[f"{METRIC_LABELS[k]}, {PROTOCOL_LABELS[p]}"] = [
                mean_std(a.at[n, f"{k}_mean"], a.at[n, f"{k}_std"]) for n in first.index
            ]
    data["folds"] = list(first["folds"])
    index = [setting_label(n) for n in first.index]
    return pd.DataFrame(data, index=pd.Index(index, name="setting" + _smoke(fig3.values())))


def fig3_bars(fig3: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One Fig. 3 panel pair's bars from a `read_fig3` frame: modality, transforms, mean and std ×100."""
    bars = fig3[["modality", "transforms"]].assign(mean=100 * fig3[f"{metric}_mean"], std=100 * fig3[f"{metric}_std"])
    return bars.reset_index(drop=True)


def full_set_best(fig3: dict[str, pd.DataFrame], metric: str = "auroc") -> pd.DataFrame:
    """Per protocol and modality: the setting with the highest mean `metric`, and is it the full
    view set (settings.MAIN_TRANSFORMS)?"""
    rows = {}
    for p, a in fig3.items():
        for m, part in a.groupby("modality", sort=False):
            best = part[f"{metric}_mean"].idxmax()
            rows[(PROTOCOL_LABELS[p], m)] = {
                f"best by {metric.upper()}": best,
                "full set best?": "yes" if part.at[best, "transforms"] == MAIN_TRANSFORMS[m] else "no",
            }
    return pd.DataFrame(rows).T.rename_axis(["protocol", "modality"])


def recipe_differences(rows: pd.DataFrame) -> pd.DataFrame:
    """`recipes.compare_recipes` rows of one recipe, a row per setup: per metric of CLAIM_METRICS
    the released and corrected means (×100), their paired difference with its 95 % bootstrap
    interval, then the folds."""
    out = {}
    for m in CLAIM_METRICS:
        part = rows[rows["metric"] == m].set_index("setup")
        name = METRIC_LABELS[m]
        out[(name, "released")] = [f"{v:.2f}" for v in part["recipe mean"]]
        out[(name, "corrected")] = [f"{v:.2f}" for v in part["corrected mean"]]
        out[(name, "released − corrected [95 % bootstrap]")] = [
            f"{d:+.2f} {_interval(lo, hi, '[–]')}"
            for d, lo, hi in zip(part["difference"], part["bootstrap lo"], part["bootstrap hi"])
        ]
    out[("", "folds")] = list(part["n_folds"])
    return _frame(out, [SETUP_LABELS[s] for s in part.index], "setup", ["metric", "recipe"])
