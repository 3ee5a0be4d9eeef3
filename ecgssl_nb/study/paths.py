"""Where every artefact of a study lives: one function per folder or file (its docstring names the
path below RUNS/<profile>/), so that `reproduce` and the notebooks read and write the same places.
RUNS is `reproduce --out` (default "runs"); a run folder run as a notebook (--as-notebooks) also
holds its executed chapter, notebook.ipynb.

A folder made by another request is moved aside to `<folder>.stale-<UTC time>` (`provenance`). A
recipe other than `corrected` (`recipes`) uses the same layout below RUNS/recipes/<label>/.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import UserError
from ..core.settings import ABLATION_SETUPS as ABLATION_SETUPS  # Fig. 3's view sets: re-exported for the layout
from ..core.settings import ABLATION_TRANSFORMS as ABLATION_TRANSFORMS
from ..core.settings import MAIN_TRANSFORMS as MAIN_TRANSFORMS
from ..core.settings import check_modality, check_setup

TABLES = ("table1", "table2", "fig3")


def recipe_runs(runs: str | os.PathLike, recipe: str = "corrected") -> Path:
    """The runs folder of a recipe label: RUNS for "corrected", RUNS/recipes/<label> otherwise."""
    recipe = str(recipe)
    if not recipe or "/" in recipe or recipe.startswith("."):
        raise UserError(f"recipe label {recipe!r} is not a folder name")
    return Path(runs) if recipe == "corrected" else Path(runs) / "recipes" / recipe


def profile_root(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/."""
    return Path(runs) / str(profile)


def fixture_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/fixture/: the synthetic corpus written when no --data-dir is given."""
    return profile_root(runs, profile) / "fixture"


def prepared_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/prepared/: signals.npy, index.csv, stats.json (prepare.prepare)."""
    return profile_root(runs, profile) / "prepared"


def pretrain_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/pretrain/: the `--pretrained` folder of the ssl- setups (time/, spec/)."""
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


def tables_dir(runs: str | os.PathLike, profile: str) -> Path:
    """RUNS/<profile>/tables/: table1.csv, table2.csv, fig3.csv and provenance.json (the runs aggregated)."""
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
    """RUNS/<profile>/jobs/<name with _ for spaces><suffix>: a subprocess job's resolved settings
    (.json) or its output (.log); the folder also holds study.json, the study's."""
    return profile_root(runs, profile) / "jobs" / (str(name).replace(" ", "_") + suffix)
