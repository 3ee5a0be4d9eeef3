"""Result files of the study (one result.json per fine-tuning run), their aggregation over
folds, and the paper's tables (paper Sec. III-B, Tables I and II) beside ours.

Result file schema (written by `stages.finetune` to RUNS/<profile>/finetune/<setup>/fold<k>/, the
ablation's under RUNS/<profile>/ablation/finetune/<run>/fold<k>/)::

    {"setup": "ssl-tsg", "fold": 3, "profile": "tiny" | "samples" | "paper",
     "data": {"kind": "fixture" | "samples" | "physionet2020", "n_records", "n_train", "n_val", ...},
     "seed", "epochs",
     "metrics": {"paper": {auroc, auprc, accuracy, f1, f2, g2, challenge, epoch},   # fractions, null
                 "honest": {...}},                                                 # when undefined
     "per_class": {"paper": {"auroc": [24], "auprc": [24], "f1": [24]}, ...},
     "thresholds": {"paper": [24], "honest": [24]},
     "gate_weights": {"classes", "time", "spec"} | null, "wall_time_s", "device", "created",
     "provenance": {"request", "code_version", "created"}}

"paper" is the released protocol (checkpoint and thresholds chosen on the reported fold);
"honest" chooses both on an inner fold (book: Deviations, B14, B15). `check_result` says what is required.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import provenance
from ..core.errors import UserError, check_choice
from ..core.labels import ABBREVIATIONS
from ..core.metrics import METRIC_KEYS
from ..core.settings import PROTOCOLS, SETUPS

METRIC_LABELS = dict(zip(METRIC_KEYS, ("AUROC", "AUPRC", "Acc", "F1", "F2", "G2", "ChM")))  # as the paper heads them
SETUP_LABELS = {s: s.upper() for s in SETUPS}  # "t" -> "T", "ssl-tsg" -> "SSL-TSG"


def setting_label(run: str) -> str:
    """A setting as the tables name it: "ssl-t" -> "SSL-T"; "ssl-t-tc" (a Fig. 3 run) -> "SSL-T (TC)"."""
    if run in SETUP_LABELS:
        return SETUP_LABELS[run]
    base, _, tr = run.rpartition("-")
    return f"{SETUP_LABELS.get(base, base)} ({tr.upper()})"


class ResultFileWarning(UserWarning):
    """A result file was skipped (unreadable or not in the schema); the message names it."""


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises UserError naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def check_result(obj: Any) -> list[str]:
    """The schema problems of one parsed result.json (empty list when it is usable)."""
    if not isinstance(obj, dict):
        return [f"top level is a {type(obj).__name__}, not an object"]
    problems = [f"missing key {key!r}" for key in ("setup", "fold", "profile", "data", "metrics") if key not in obj]
    if "fold" in obj and not (isinstance(obj["fold"], int) and not isinstance(obj["fold"], bool)):
        problems.append(f"fold must be an integer, got {obj['fold']!r}")
    if "data" in obj and not (isinstance(obj["data"], dict) and "kind" in obj["data"]):
        problems.append("data must be an object with a 'kind'")
    metrics = obj.get("metrics")
    if "metrics" in obj and not (isinstance(metrics, dict) and metrics):
        problems.append("metrics must be a non-empty object of protocols")
    for protocol, values in (metrics if isinstance(metrics, dict) else {}).items():
        missing = sorted(set(METRIC_KEYS) - set(values if isinstance(values, dict) else ()))
        if protocol not in PROTOCOLS:
            problems.append(f"metrics: unknown protocol {protocol!r} (expected {', '.join(PROTOCOLS)})")
        elif missing:
            problems.append(f"metrics.{protocol}: missing {', '.join(missing)}")
    return problems


def predictions(pred: pd.DataFrame, protocol: str, role: str = "outer") -> tuple[np.ndarray, np.ndarray]:
    """(labels (n, 24) int, probabilities (n, 24) float) of the predictions.csv rows of `protocol`
    and `role`."""
    rows = pred[(pred["protocol"] == protocol) & (pred["role"] == role)]
    y, p = ([f"{kind}_{a}" for a in ABBREVIATIONS] for kind in "yp")
    return rows[y].to_numpy(int), rows[p].to_numpy(float)


def _num(x) -> float:
    return float("nan") if x is None else float(x)


RESULT_COLUMNS = (
    ["setup", "fold", "protocol", "profile", "data", "n_records", "n_train", "n_val", "seed", "epochs", "epoch"]
    + list(METRIC_KEYS)
    + ["wall_time_s", "device", "created", "run", "path", "digest", "settings_id", "code_version", "smoke"]
)
# digest: the prepared corpus's digest; settings_id: `settings_id` of the run's request (runs of
# one table share it); code_version: what made the run. None without provenance.json.


def settings_id(req: dict) -> str:
    """A short fingerprint of what every run of one table must share, from a fine-tuning's
    provenance request: its settings less setup/fold/inner_fold, and its seed (backbone digests
    differ by design)."""
    settings = {k: v for k, v in (req.get("settings") or {}).items() if k not in ("setup", "fold", "inner_fold")}
    text = json.dumps({"settings": settings, "seed": req.get("seed")}, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


SMOKE_LABEL = "SMOKE RUN, not a result"  # marks every row, table and label made from smoke runs


def load_results(root: str | os.PathLike) -> pd.DataFrame:
    """One row per (result.json under `root`, protocol), metrics as fractions 0..1; `run` is the
    run's folder name (the setup, or e.g. "ssl-t-tc" in the ablation). Files `_read_result` skips
    are left out; folders moved aside by provenance.move_aside ('<name>.stale-<time>') unread."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"results folder {root} does not exist")
    rows = []
    for path in sorted(root.rglob("result.json")):
        stale = any(".stale-" in part for part in path.relative_to(root).parts)  # an old run kept aside
        if stale:
            continue
        obj = _read_result(path)
        if obj is None:
            continue
        run = {"profile": obj["profile"], "data": obj["data"]["kind"], "smoke": bool(obj.get("smoke", False))}
        run.update({k: obj["data"].get(k) for k in ("n_records", "n_train", "n_val")})
        run.update({k: obj.get(k) for k in ("setup", "fold", "seed", "epochs", "device", "created")})
        run.update(wall_time_s=_num(obj.get("wall_time_s")), run=path.parent.parent.name, path=str(path))
        prov = obj["provenance"] if isinstance(obj.get("provenance"), dict) else {}
        req = prov.get("request") if isinstance(prov.get("request"), dict) else None
        run.update(digest=None, settings_id=None, code_version=None)  # without provenance.json
        if req is not None:
            run.update(digest=(req.get("inputs") or {}).get("prepared"), settings_id=settings_id(req))
            run.update(code_version=prov.get("code_version"))
        for protocol, values in obj["metrics"].items():
            metrics = {m: _num(values[m]) for m in METRIC_KEYS}
            rows.append({**run, "protocol": protocol, "epoch": values.get("epoch"), **metrics})
    rows.sort(key=lambda r: (_setup_rank(r["setup"]), r["run"], r["fold"], r["protocol"]))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _read_result(path: Path) -> dict | None:
    """The parsed result.json at `path`, or None after a ResultFileWarning saying why it is skipped
    (not as its run wrote it, unreadable, or outside the schema)."""
    fault = run_file_fault(path.parent, ("result.json",))
    if not fault:
        try:
            obj = read_json(path)
        except UserError as exc:  # missing or not JSON: its message names the file
            warnings.warn(f"skipped {exc}", ResultFileWarning, stacklevel=3)
            return None
        fault = "; ".join(check_result(obj))
    if fault:
        warnings.warn(f"skipped {path}: {fault}", ResultFileWarning, stacklevel=3)
        return None
    return obj


def run_file_fault(folder: str | os.PathLike, names: tuple[str, ...]) -> str | None:
    """Why the files `names` of a run folder are not the ones its run wrote (the cheap
    `provenance.digest_fault`); None when they are or when no run recorded them (written by hand)."""
    folder = Path(folder)
    if not (folder / provenance.PROVENANCE).is_file() and not (folder / provenance.DIGESTS).exists():
        return None
    return provenance.digest_fault(folder, names)


def check_one_study(df: pd.DataFrame) -> None:
    """UserError naming two runs when the rows of `df` come from different prepared corpora
    (`digest`) or different settings or seeds (`settings_id`): such runs never share a table."""
    for col, words in {"digest": "prepared data", "settings_id": "settings or seed"}.items():
        if col not in df.columns or df[col].nunique() < 2:  # nunique counts known values only
            continue
        (ka, a), (kb, b) = list(df[df[col].notna()].groupby(col, sort=False))[:2]
        na, nb = (
            f"{r['run']} fold {r['fold']}" if "run" in df.columns else f"fold {r['fold']}"
            for r in (a.iloc[0], b.iloc[0])
        )
        fix = "load the results of one study"
        if "path" in b.columns:
            folder = Path(b["path"].iloc[0]).parent
            fix = (
                f"move the runs that do not belong out of the study (rename e.g. {folder} to {folder.name}.stale-mixed "
                f"beside it: folders named *.stale-* are never read), or re-run them with the study's data and settings"
            )
        raise UserError(
            f"results mix runs made from different {words}: {na} ({col} {str(ka)[:12]}) and "
            f"{nb} ({col} {str(kb)[:12]}), {df[col].nunique()} kinds in all; {fix}"
        )


def need_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """UserError naming the `columns` that `df`, a frame of `load_results`, lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"results lack columns {', '.join(missing)}; pass the output of load_results")


def _setup_rank(setup: str) -> tuple:
    return (SETUPS.index(setup), "") if setup in SETUPS else (len(SETUPS), str(setup))


def aggregate(df: pd.DataFrame, protocol: str = "paper", by: str = "setup") -> pd.DataFrame:
    """Mean and std (ddof=1; NaN for one fold) over folds of each metric per setup (in the
    paper's order) or per run (the ablation): columns `<metric>_mean`, `<metric>_std`
    (fractions), `n_folds`, `folds`, `profile`, `data`, `protocol`, `smoke`. Refuses to mix
    profiles, data kinds, smoke with full runs (`check_one_study`) or two results for a fold."""
    check_choice("protocol", protocol, PROTOCOLS)
    check_choice("by", by, ("setup", "run"))
    need_columns(df, (by, "fold", "protocol", "profile", "data", *METRIC_KEYS))
    sub = df[df["protocol"] == protocol]
    if sub.empty:
        have = sorted(df["protocol"].unique())
        raise UserError(f"no results for protocol {protocol!r} (have: {', '.join(have) or 'none'})")
    dup = sub[sub.duplicated([by, "fold"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        paths = list(dup.loc[(dup[by] == first[by]) & (dup["fold"] == first["fold"]), "path"]) if "path" in dup else []
        raise UserError(
            f"{len(dup)} results share a ({by}, fold), e.g. {first[by]} fold {first['fold']}: {paths}; "
            "point load_results at one study (e.g. RUNS/<profile>/finetune)"
        )
    for col in ("profile", "data", "smoke"):
        if col in sub and sub[col].nunique() > 1:
            raise UserError(f"results mix {col}s ({', '.join(map(str, sub[col].unique()))}); filter df first")
    check_one_study(sub)
    rows = {}
    for key, group in sub.groupby(by, sort=False):
        row = {f"{m}_{k}": v for m in METRIC_KEYS for k, v in (("mean", group[m].mean()), ("std", group[m].std()))}
        folds = sorted(int(f) for f in group["fold"])
        row.update(n_folds=len(folds), folds=",".join(map(str, folds)), profile=group["profile"].iloc[0])
        smoke = bool(group["smoke"].any()) if "smoke" in group else False
        rows[key] = {**row, "data": group["data"].iloc[0], "protocol": protocol, "smoke": smoke}
    out = pd.DataFrame.from_dict(rows, orient="index").rename_axis(by)
    return out.loc[sorted(out.index, key=_setup_rank)]


# ------------------------------------------------------------------------------------------
# the paper's tables (paper Sec. III-B, Tables I and II), values as printed (×100); NaN where the paper has "–"

_NA = float("nan")
PAPER_TABLE_I = pd.DataFrame(
    [
        ["[30]", 84.6, 32.2, 20.9, 25.5, _NA, _NA, 21.9, "other work"],
        ["[31]", _NA, _NA, _NA, _NA, _NA, _NA, 23.6, "other work"],
        ["[32]", 80.6, 26.1, 11.3, 26.0, 30.9, 12.6, 24.8, "other work"],
        ["[33]", 82.5, 32.6, 33.1, 28.6, _NA, _NA, 30.5, "other work"],
        ["[34]", 87.2, _NA, _NA, 39.9, 43.6, 23.7, 40.9, "other work"],
        ["[35]", 55.1, 52.3, _NA, 53.8, _NA, _NA, 53.9, "other work"],
        ["[36]", _NA, _NA, _NA, _NA, _NA, _NA, 53.3, "other work"],
        ["[37]", _NA, _NA, _NA, _NA, _NA, _NA, 58.5, "other work"],
        ["[38]", _NA, _NA, _NA, 60.3, _NA, _NA, 62.7, "other work"],
        ["SSL-T", 95.7, 64.8, 48.8, 61.4, 64.9, 40.2, 64.7, "this paper"],
        ["SSL-S", 93.8, 56.3, 40.7, 53.2, 57.4, 33.9, 58.0, "this paper"],
        ["SSL-TSG", 96.0, 65.8, 48.9, 62.1, 65.9, 41.0, 65.4, "this paper"],
    ],
    columns=["model", *METRIC_KEYS, "source"],
).set_index("model")
PAPER_TABLE_I.attrs.update(
    caption="Paper Table I (×100). 'other work' rows are other papers' results under other protocols "
    "(hidden Challenge test sets or their own splits): not comparable with 10-fold CV on public data.",
    decimals=1,
)

PAPER_TABLE_II = pd.DataFrame(
    [
        ["T", 95.34, 62.93, 46.14, 59.56, 63.37, 38.43, 63.25],
        ["S", 93.47, 54.98, 39.53, 52.17, 56.31, 32.85, 56.78],
        ["TSC", 95.41, 63.77, 47.13, 60.54, 64.12, 39.49, 63.72],
        ["TSG", 95.57, 64.22, 48.04, 61.01, 64.18, 39.74, 64.16],
        ["SSL-T", 95.70, 64.81, 48.78, 61.40, 64.89, 40.17, 64.71],
        ["SSL-S", 93.76, 56.29, 40.68, 53.22, 57.44, 33.93, 58.01],
        ["SSL-TSC", 95.65, 64.64, 48.13, 60.92, 64.33, 39.73, 64.37],
        ["SSL-TSG", 95.99, 65.84, 48.91, 62.07, 65.95, 40.98, 65.39],
    ],
    columns=["setting", *METRIC_KEYS],
).set_index("setting")
PAPER_TABLE_II.attrs.update(caption="Paper Table II, ablation (×100).", decimals=2)


COMPARE_COLUMNS = ["ours mean", "ours std", "paper", "ours - paper", "n_folds", "profile", "data", "protocol", "smoke"]


def compare_with_paper(agg: pd.DataFrame, table: str = "II") -> pd.DataFrame:
    """Ours beside the paper's Table I or II, a row per (setting, metric): COMPARE_COLUMNS, the
    numbers ×100 (`paper` NaN where the paper gives none), then what made our runs."""
    table = check_choice("table", str(table).upper(), ("I", "II"))
    paper = PAPER_TABLE_I if table == "I" else PAPER_TABLE_II
    if not any(c.endswith("_mean") for c in agg.columns):
        raise UserError("agg must be the output of aggregate (columns <metric>_mean, <metric>_std)")
    rows = {}
    for setup, r in agg.iterrows():
        setting = SETUP_LABELS.get(setup, str(setup))
        runs = [r["n_folds"], r["profile"], r["data"], r["protocol"], bool(r.get("smoke", False))]
        for m in METRIC_KEYS:
            ours, ref = 100 * r[f"{m}_mean"], paper[m].get(setting, _NA)
            rows[(setting, m)] = [ours, 100 * r[f"{m}_std"], ref, ours - ref, *runs]
    index = pd.MultiIndex.from_tuples(rows, names=["setting", "metric"])
    out = pd.DataFrame(list(rows.values()), columns=COMPARE_COLUMNS, index=index)
    out.attrs.update(caption=f"Ours beside paper Table {table} (all ×100).")
    return out


def fmt(x: float | None, decimals: int = 2) -> str:
    """`x` with `decimals` decimals; "–" for a missing value (None, NaN, inf)."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.{decimals}f}"


def mean_std(mean: float | None, std: float | None, scale: float = 100.0, digits: int = 2) -> str:
    """'95.99 ± 0.31' from fractions; the mean alone without a std (one fold); '–' without a mean."""
    if mean is None or not math.isfinite(mean):
        return "–"
    text = fmt(mean * scale, digits)
    return text if std is None or not math.isfinite(std) else f"{text} ± {std * scale:.{digits}f}"


def display_frame(paper: pd.DataFrame) -> pd.DataFrame:
    """PAPER_TABLE_I or II as printed: AUROC ... ChM at its attrs['decimals'], "–" where it has no
    value, then its `source` column when it has one."""
    if not set(METRIC_KEYS) <= set(paper.columns):
        raise UserError("display_frame needs a paper table (PAPER_TABLE_I or PAPER_TABLE_II)")
    decimals = int(paper.attrs.get("decimals", 2))
    out = pd.DataFrame({METRIC_LABELS[m]: [fmt(v, decimals) for v in paper[m]] for m in METRIC_KEYS}, index=paper.index)
    return out.assign(source=paper["source"]) if "source" in paper.columns else out


PROTOCOL_LABELS = {  # protocol names as the book prints them: never confusable with "the paper's numbers"
    "paper": "optimistic protocol (authors')",
    "honest": "honest protocol (held-out)",
}


_DATA_NAMES = {  # a run's `data` (result.json, Profile.data): (as table captions, as a chapter's sentence name it)
    "fixture": ("synthetic fixture", "the synthetic fixture (not real ECGs)"),
    "samples": ("real sample records", "the real sample records"),
    "physionet2020": ("PhysioNet/CinC 2020", "the PhysioNet/CinC 2020 training data"),
}
DATA_LABELS = {data: names[0] for data, names in _DATA_NAMES.items()}


def data_kind(data: str) -> str:
    """A run's `data` as a chapter's sentence names it: 'fixture' -> 'the synthetic fixture (not real ECGs)'."""
    return _DATA_NAMES[check_choice("data", data, DATA_LABELS, "a kind of data")][1]


def is_smoke(agg: pd.DataFrame) -> bool:
    """True when any row of an aggregate was made from smoke runs (`reproduce --max-steps`)."""
    return "smoke" in agg.columns and bool(agg["smoke"].astype(bool).any())
