"""Where every artefact of a study lives: one function per folder, used by `reproduce` and by the
notebooks so that both read and write the same places.

    RUNS/<profile>/fixture/                                  synthetic corpus (tiny, no --data-dir)
    RUNS/<profile>/prepared/                                 prepare.prepare output
    RUNS/<profile>/pretrain/{time,spec}/                     main pre-trainings (t1, t2 views)
    RUNS/<profile>/finetune/<setup>/fold<k>/                 one fine-tuning run
    RUNS/<profile>/ablation/pretrain/<modality>-<transforms>/    Fig. 3 pre-trainings
    RUNS/<profile>/ablation/finetune/<ssl-t|ssl-s>-<transforms>/fold<k>/
    RUNS/<profile>/tables/{table1,table2,fig3}.csv, provenance.json (the runs aggregated)
    RUNS/<profile>/jobs/<job>.json, <job>.log                 resolved settings and output of each job
    RUNS/<profile>/jobs/study.json                            the resolved study a notebook job runs
    <run folder>/notebook.ipynb                               the executed chapter notebook of a run
                                                              (reproduce --as-notebooks)
    RUNS/<profile>/manifest.json

Every stage folder holds `provenance.json` (see `provenance`); a folder made by another request
is moved aside to `<folder>.stale-<UTC time>` and never read again.
A recipe other than `corrected` (see `recipes`) uses the same layout below
RUNS/recipes/<label>/ (`recipe_runs`), so its runs never mix with the corrected ones.

`RUNS` is the `--out` of `reproduce` (default "runs"). The main pre-training folder `pretrain/`
is the `--pretrained` folder of the ssl- fine-tunings (it holds `time/` and `spec/`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.errors import UserError
from .core.settings import ABLATION_SETUPS, ABLATION_TRANSFORMS, MAIN_TRANSFORMS, check_modality, check_setup

__all__ = [
    "ABLATION_TRANSFORMS",
    "MAIN_TRANSFORMS",
    "ABLATION_SETUPS",
    "profile_root",
    "fixture_dir",
    "prepared_dir",
    "pretrain_dir",
    "pretrain_run_dir",
    "finetune_dir",
    "ablation_pretrain_dir",
    "ablation_finetune_dir",
    "tables_dir",
    "table_path",
    "manifest_path",
    "job_file",
    "recipe_runs",
]

# Fig. 3's view sets live in config (one source); re-exported for the layout's readers.


def _root(runs: str | os.PathLike) -> Path:
    return Path(runs)


def recipe_runs(runs: str | os.PathLike, recipe: str = "corrected") -> Path:
    """The runs folder of a recipe label: RUNS for "corrected", RUNS/recipes/<label> otherwise."""
    recipe = str(recipe)
    if not recipe or "/" in recipe or recipe.startswith("."):
        raise UserError(f"recipe label {recipe!r} is not a folder name")
    return _root(runs) if recipe == "corrected" else _root(runs) / "recipes" / recipe


def profile_root(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/."""
    return _root(runs) / str(profile)


def fixture_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/fixture/: the synthetic corpus written when no --data-dir is given."""
    return profile_root(runs, profile) / "fixture"


def prepared_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/prepared/: signals.npy, index.csv, stats.json (prepare.prepare)."""
    return profile_root(runs, profile) / "prepared"


def pretrain_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/pretrain/: the `--pretrained` folder of the ssl- setups."""
    return profile_root(runs, profile) / "pretrain"


def pretrain_run_dir(runs: str | os.PathLike, profile: str, modality: str) -> Path:
    """RUNS/<profile>/pretrain/<time|spec>/: one main pre-training (backbone.pt when done)."""
    return pretrain_dir(runs, profile) / check_modality(modality)


def finetune_dir(runs: str | os.PathLike, profile: str, setup: str, fold: int) -> Path:
    """RUNS/<profile>/finetune/<setup>/fold<k>/: one fine-tuning run (result.json when done)."""
    return profile_root(runs, profile) / "finetune" / check_setup(setup) / f"fold{int(fold)}"


def _check_ablation(modality: str, transforms: str) -> str:
    check_modality(modality)
    if transforms not in ABLATION_TRANSFORMS[modality]:
        raise UserError(
            f"ablation transforms {transforms!r} for {modality} must be one of "
            f"{', '.join(ABLATION_TRANSFORMS[modality])}"
        )
    return transforms


def ablation_pretrain_dir(runs: str | os.PathLike, profile: str, modality: str, transforms: str) -> Path:
    """RUNS/<profile>/ablation/pretrain/<modality>-<transforms>/ (e.g. time-gn)."""
    _check_ablation(modality, transforms)
    return profile_root(runs, profile) / "ablation" / "pretrain" / f"{modality}-{transforms}"


def ablation_finetune_dir(runs: str | os.PathLike, profile: str, modality: str, transforms: str, fold: int) -> Path:
    """RUNS/<profile>/ablation/finetune/<ssl-t|ssl-s>-<transforms>/fold<k>/."""
    _check_ablation(modality, transforms)
    name = f"{ABLATION_SETUPS[modality]}-{transforms}"
    return profile_root(runs, profile) / "ablation" / "finetune" / name / f"fold{int(fold)}"


TABLES = ("table1", "table2", "fig3")


def tables_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/tables/."""
    return profile_root(runs, profile) / "tables"


def table_path(runs: str | os.PathLike, profile: str, name: str) -> Path:
    """RUNS/<profile>/tables/<name>.csv for name in table1, table2, fig3."""
    if name not in TABLES:
        raise UserError(f"table name {name!r} must be one of {', '.join(TABLES)}")
    return tables_dir(runs, profile) / f"{name}.csv"


def manifest_path(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/manifest.json: what ran, when, with which versions."""
    return profile_root(runs, profile) / "manifest.json"


def job_file(runs: str | os.PathLike, profile: str, name: str, suffix: str) -> Path:
    """RUNS/<profile>/jobs/<name with _ for spaces><suffix>: the resolved settings (.json) that
    `reproduce` hands a subprocess job, or its output (.log)."""
    return profile_root(runs, profile) / "jobs" / (str(name).replace(" ", "_") + suffix)
