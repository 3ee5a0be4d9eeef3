"""Recipes: the corrected study (the default) and what the authors' released code actually does.

The book's Deviations page lists where the released code departs from the paper or is broken
(B1..B28); the library implements the corrected choice for each. A *departure* switches one
choice back to the released behaviour, as a field of the existing settings (`Profile.leads`,
`PretrainConfig`, `FinetuneConfig`), so every result file records its recipe; a *recipe* is a
set of them: `corrected` (none), `released` (all), `B7` or `B1,B7` (those alone), `released-B7`
(the released recipe with B7 fixed). The released crashes (B4, B8) are listed, not reproduced.

The corrected recipe keeps RUNS/<profile>/, any other lives in RUNS/recipes/<label>/<profile>/,
sharing every stage it does not change (`stage_runs`): e.g. `B6` (fine-tuning only) fine-tunes
from the corrected pre-trainings.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..core.errors import UserError
from ..core.settings import Profile, is_ssl, setup_modalities
from .paths import profile_root, recipe_runs

STAGES = ("prepare", "pretrain", "finetune")


@dataclass(frozen=True)
class Departure:
    """One released behaviour. `override` maps a setting to its released value: "leads" is a
    Profile field (prepare), "pretrain.<field>" a PretrainConfig field of both modalities,
    "finetune.<field>" a FinetuneConfig field. Crashes have no override."""

    key: str  # "B7"
    name: str  # short name, e.g. "centre-twice"
    stage: str  # the first stage it changes: prepare, pretrain, finetune (or "crash")
    override: tuple  # ((setting, released value), ...)
    released: str  # what the released code does
    ours: str  # what the corrected recipe does


# fmt: off
# (key, name, stage, override), what the released code does, what the corrected recipe does
DEPARTURES: dict[str, Departure] = {d.key: d for d in (
    Departure("B1", "lead-i", "prepare", (("leads", "lead-i"),),
              "copies lead I into all twelve channels: every model sees lead I twelve times",
              "resamples every lead and keeps the 12-lead order"),
    Departure("B7", "centre-twice", "pretrain", (("pretrain.center_update", "twice"),),
              "divides the batch mean of the teacher outputs by the batch size again: the centre is "
              "1/(2B) of the mean, so centring is essentially off",
              "centre <- 0.9 centre + 0.1 batch mean (official DINO)"),
    Departure("B9", "no-freeze", "pretrain", (("pretrain.freeze_last_layer_epochs", 0),),
              "never freezes the DINO head's last layer (the freeze test is always false)",
              "drops the last layer's gradients during the first epoch, as DINO does"),
    Departure("B10", "adam-l2", "pretrain", (("pretrain.optimizer", "adam-l2"),),
              "Adam with coupled L2 weight decay (0.04 -> 0.4) on every parameter, biases and norms included",
              "AdamW, decoupled decay on weights only (DINO), same schedule"),
    Departure("B12", "lowest-loss", "pretrain", (("pretrain.keep", "lowest-loss"),),
              "transfers the student of the epoch with the lowest training loss",
              "transfers the final student"),
    Departure("B16", "fc-discarded", "pretrain", (("pretrain.freq_cutout", "discarded"),),
              "computes the spectrogram frequency cutout and discards it: T2 views get time cutout only",
              "frequency cutout then time cutout (T2 = TC + FC, as the paper says)"),
    Departure("B6", "fusion-unloaded", "finetune", (("finetune.fusion_ssl", "ignored"),),
              "loads no SSL weight into the fusion models (0 keys match) and skips xavier: SSL-TSC and "
              "SSL-TSG are scratch models at default init",
              "loads both pre-trained backbones, refusing any missing or unexpected key"),
    Departure("B14", "paper-exact", "finetune", (("finetune.protocol", "paper-exact"),),
              "trains on nine folds and selects the checkpoint and tunes thresholds on the reported fold",
              "eight training folds; reports the nested (honest) protocol beside the paper's"),
)}

CRASHES: dict[str, Departure] = {d.key: d for d in (
    Departure("B4", "model-type", "crash", (),
              "reads args.model_type, which does not exist: AttributeError at the first checkpoint save",
              "fixed checkpoint names; not reproduced (a crash measures nothing)"),
    Departure("B8", "epoch-index", "crash", (),
              "indexes the schedules with epochs starting at 1: IndexError in epoch 301 after 300 epochs "
              "trained, warm-up shifted by one epoch",
              "epochs 0..299; not reproduced (the crash comes after the last checkpoint)"),
)}
# fmt: on


def departure_table() -> pd.DataFrame:
    """One row per departure (and per crash): B-number, name, stage, what the released code
    does, what we do, the setting it changes (for the book's chapter)."""
    rows = []
    for d in (*DEPARTURES.values(), *CRASHES.values()):
        setting = ", ".join(f"{k} = {v!r}" for k, v in d.override) or "not reproduced"
        rows.append((d.key, d.name, d.stage, d.released, d.ours, setting))
    return pd.DataFrame(rows, columns=["B", "name", "stage", "released code", "corrected", "setting"]).set_index("B")


def _one(item: str) -> str:
    """'b7', 'B7' or 'centre-twice' -> 'B7'."""
    by_name = {d.name: k for k, d in DEPARTURES.items()}
    key = by_name.get(item.strip().lower(), item.strip().upper())
    if key in DEPARTURES:
        return key
    if key in CRASHES:
        raise UserError(
            f"--recipe: {key} is a crash in the released code ({CRASHES[key].released}); it is not reproduced"
        )
    raise UserError(
        f"--recipe: {item!r} is not a departure; choose from {', '.join(DEPARTURES)} (or their names "
        f"{', '.join(d.name for d in DEPARTURES.values())}), 'corrected' or 'released'"
    )


def _ordered(keys) -> tuple[str, ...]:
    keys = set(keys)
    return tuple(k for k in DEPARTURES if k in keys)


def parse_recipe(spec: str | Sequence[str]) -> tuple[str, ...]:
    """A recipe -> its departures in table order. 'corrected' -> (); 'released' -> all;
    'B1,B7' (or 'b1+b7', names allowed) -> those; 'released-B7-B9' -> all but those. A tuple of
    keys passes through (checked)."""
    if spec is None:
        return ()
    if isinstance(spec, (tuple, list)):
        return _ordered(_one(s) for s in spec)
    text = str(spec).strip()
    low = text.lower()
    if low in ("", "corrected"):
        return ()
    if low == "released":
        return tuple(DEPARTURES)
    if low.startswith("released-"):
        fixed = {_one(s) for s in text[len("released-") :].replace(",", "-").split("-") if s}
        return _ordered(set(DEPARTURES) - fixed)
    return _ordered(_one(s) for s in text.replace("+", ",").split(",") if s.strip())


def recipe_label(keys: str | Sequence[str]) -> str:
    """Departures -> a folder-safe label: 'corrected', 'released', 'b1+b7', 'released-b7'; also
    a `--recipe` value that parses back to them."""
    keys = parse_recipe(keys) if not isinstance(keys, (tuple, list)) else _ordered(keys)
    if not keys:
        return "corrected"
    if set(keys) == set(DEPARTURES):
        return "released"
    missing = [k for k in DEPARTURES if k not in keys]
    if len(missing) < len(keys):
        return "released-" + "-".join(k.lower() for k in missing)
    return "+".join(k.lower() for k in keys)


def expand_recipes(specs: str | Sequence[str]) -> list[tuple[str, ...]]:
    """`reproduce --recipe` values -> departure sets, in order, without repeats. 'each' adds
    every departure alone (on the corrected study), 'each-fix' the released recipe with one
    departure fixed."""
    items = [specs] if isinstance(specs, str) else list(specs or ["corrected"])
    out: list[tuple[str, ...]] = []
    for item in items:
        for part in str(item).split() if " " in str(item) else [item]:
            if part == "each":
                sets = [(k,) for k in DEPARTURES]
            elif part == "each-fix":
                sets = [parse_recipe(f"released-{k}") for k in DEPARTURES]
            else:
                sets = [parse_recipe(part)]
            out.extend(s for s in sets if s not in out)
    return out


def _overrides(keys, group: str) -> dict[str, object]:
    """The settings of `group` ("pretrain.", "finetune." or "" for Profile fields) the departures change."""
    ov = {setting: value for k in keys for setting, value in DEPARTURES[k].override}
    return {k[len(group) :]: v for k, v in ov.items() if k.startswith(group) and (group or "." not in k)}


def apply_recipe(profile: Profile, spec: str | Sequence[str]) -> Profile:
    """`profile` with the recipe's departures switched on (a new Profile; `recipe` and
    `departures` record them). A profile that already carries another recipe is refused."""
    keys = parse_recipe(spec)
    if profile.departures and tuple(profile.departures) != keys:
        raise UserError(
            f"profile {profile.name!r} already carries recipe {profile.recipe!r}; apply a recipe to the plain profile"
        )
    pre, fin = _overrides(keys, "pretrain."), _overrides(keys, "finetune.")
    pretrain = {m: replace(c, **pre) for m, c in profile.pretrain.items()}
    finetune = replace(profile.finetune, **fin)
    top = _overrides(keys, "")
    return replace(profile, **top, recipe=recipe_label(keys), departures=keys, pretrain=pretrain, finetune=finetune)


def stage_runs(runs: str | os.PathLike, keys: Sequence[str], stage: str) -> Path:
    """The runs folder whose `paths` layout holds `stage` of the recipe `keys`: shared with every
    recipe that has the same departures up to that stage, its own and those of earlier stages
    (RUNS itself for the corrected ones)."""
    if stage not in STAGES:
        raise UserError(f"stage {stage!r} must be one of {', '.join(STAGES)}")
    upto = STAGES[: STAGES.index(stage) + 1]
    mine = tuple(k for k in _ordered(keys) if DEPARTURES[k].stage in upto)
    if mine and mine == tuple(k for k, d in DEPARTURES.items() if d.stage in upto):
        return recipe_runs(runs, "released")  # the released recipe's folder holds the shared stage
    return recipe_runs(runs, recipe_label(mine))


def pretrain_overrides(keys: Sequence[str]) -> dict[str, object]:
    """PretrainConfig fields the recipe changes ({} for corrected), for `stages.pretrain.pretrain`'s
    `overrides` / `--set` (the `keep` field included)."""
    return _overrides(_ordered(keys), "pretrain.")


def affected_setups(keys: Sequence[str], setups: Sequence[str]) -> tuple[str, ...]:
    """The setups of `setups` whose fine-tuning the recipe changes (the others would repeat the
    corrected runs exactly): all for prepare or B14 departures; the ssl- setups for pre-training
    departures; the ssl- fusions (ssl-tsc, ssl-tsg) for B6."""
    keys = _ordered(keys)
    if not keys or any(DEPARTURES[k].stage == "prepare" or k == "B14" for k in keys):
        return tuple(setups)
    pre = any(DEPARTURES[k].stage == "pretrain" for k in keys)
    return tuple(s for s in setups if is_ssl(s) and (pre or len(setup_modalities(s)) == 2))  # B6: the fusions


# --- results of several recipes side by side ----------------------------------------------------


def load_recipe_results(runs: str | os.PathLike, profile: str, recipe: str | Sequence[str]) -> pd.DataFrame:
    """`results.load_results` of one recipe's fine-tunings (empty when none ran), with a `recipe`
    column. Every result.json must record this recipe (results written before recipes existed
    count as corrected); a result of another recipe raises UserError, so two recipes' runs are
    never mixed."""
    from ..analysis.results import load_results  # pandas tables: ~10 ms at import

    keys = parse_recipe(recipe)
    root = profile_root(stage_runs(runs, keys, "finetune"), profile) / "finetune"
    if not root.is_dir():
        return pd.DataFrame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        df = load_results(root)
    for path in df["path"].unique() if len(df) else []:
        rec = json.loads(Path(path).read_text()).get("recipe") or {"departures": []}
        if _ordered(rec.get("departures", [])) != keys:
            raise UserError(
                f"{path} records recipe {rec.get('name', 'corrected')!r}, not {recipe_label(keys)!r}: "
                f"runs of two recipes are mixed in {root}"
            )
    return df.assign(recipe=recipe_label(keys))


def recipes_on_disk(runs: str | os.PathLike, profile: str) -> list[str]:
    """Labels of the non-corrected recipes with fine-tuning results under RUNS/recipes/, in
    table order (released first, then single departures, then the rest)."""
    base = Path(runs) / "recipes"
    found = [p.name for p in sorted(base.iterdir()) if (p / profile / "finetune").is_dir()] if base.is_dir() else []
    rank = {recipe_label(k): i for i, k in enumerate(expand_recipes(["released", "each", "each-fix"]))}
    return sorted(found, key=lambda name: (rank.get(name, len(rank)), name))


def compare_recipes(
    runs: str | os.PathLike,
    profile: str,
    recipes: Sequence[str] = ("released",),
    metrics: Sequence[str] = ("auroc", "auprc", "challenge"),
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each recipe against the corrected one, per setup and metric, on the folds both ran (x100):
    each in the protocol it reports (paper for B14 recipes, else the nested honest one),
    the mean over those folds, the mean paired difference (recipe - corrected) and its bootstrap
    interval (`claims.paired_stats`). Recipes or setups without runs are left out."""
    from ..analysis.claims import paired_differences, paired_stats  # scipy.stats (~0.7 s at import)

    base = load_recipe_results(runs, profile, "corrected")
    if base.empty:
        return pd.DataFrame()
    rows = []
    for recipe in [r for r in expand_recipes(recipes) if r]:
        df = load_recipe_results(runs, profile, recipe)
        if df.empty:
            continue
        proto = "paper" if "B14" in recipe else "honest"  # B14: selection on the reported fold
        arms = pd.concat([_main_runs(base, "honest", "corrected"), _main_runs(df, proto, "recipe")])
        for setup in [s for s in df["setup"].unique() if s in set(base["setup"])]:
            for m in metrics:  # the recipe's protocol against the corrected recipe's honest one
                d = paired_differences(arms[arms["setup"] == setup], "corrected", "recipe", m, "reported", by="arm")
                if d.empty:
                    break
                s = paired_stats(d["diff"].to_numpy(), n_boot=n_boot, seed=seed)
                row = {"recipe": recipe_label(recipe), "departures": ",".join(recipe), "setup": setup, "metric": m}
                row |= {"protocol": proto, "n_folds": len(d), "recipe mean": 100 * d["better"].mean()}
                row |= {"corrected mean": 100 * d["worse"].mean(), "difference": 100 * s["mean"]}
                rows.append(row | {"bootstrap lo": 100 * s["boot_lo"], "bootstrap hi": 100 * s["boot_hi"]})
    return pd.DataFrame(rows)


def _main_runs(df: pd.DataFrame, protocol: str, arm: str) -> pd.DataFrame:
    """The main runs (not the ablation's) of `protocol`, named `arm` and relabelled protocol "reported"."""
    return df[(df["protocol"] == protocol) & (df["run"] == df["setup"])].assign(arm=arm, protocol="reported")


def departure_effects(comparison: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """A `compare_recipes` frame -> recipe x setup table of the mean difference (x100) on one
    metric, rows ordered by the largest absolute effect first (which choice moves the numbers most)."""
    if comparison.empty:
        return pd.DataFrame()
    sub = comparison[comparison["metric"] == metric]
    table = sub.pivot_table(index="recipe", columns="setup", values="difference", aggfunc="first")
    order = table.abs().max(axis=1).sort_values(ascending=False).index
    return table.loc[order]
