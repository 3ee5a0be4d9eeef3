"""`python -m ecgssl_nb reproduce`: the whole study in one command, resumable, run by run.

`plan` returns every job as data (`jobs.Job`), writing nothing; `run_jobs` runs them (one at a
time here, or as Ray tasks: `cluster`), each as itself or as its chapter notebook
(`notebook_jobs`); `write_tables` makes tables/{table2,table1,fig3}.csv (paper Tables II, I,
Fig. 3). The data come first (the fixture of a tiny profile without --data-dir, then `prepare`);
the pre-trainings (t1 / t2, and Fig. 3's view sets with the ablation) and the fine-tunings
(every setup on every fold, protocol "both", then the ablation's) run together, each once what
it needs exists; a failing run stops no other (its traceback in `<run>/error.txt`), one whose
pre-training failed is blocked. A finished run of the request asked now is skipped, an
interrupted one resumes, one of another request is moved aside (`<folder>.stale-<time>`) and
runs again. manifest.json records what ran, where and how long; the layout is in `paths`.
`ensure_pretrain` / `ensure_finetune` compute one run and what it needs through the same plan
(the notebooks' way in), waiting for a folder another process writes, then reusing it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import cluster, paths
from .. import provenance
from ..atomic import write_csv_atomic, write_json
from .cluster import Placement
from ..config import apply_settings, as_dict, config_from_dict
from ..core.errors import UserError, check_choice, check_int, check_seed
from ..core.settings import (
    MODALITIES,
    N_FOLDS,
    SETUPS,
    FinetuneConfig,
    PretrainConfig,
    Profile,
    SettingError,
    check_fold,
    check_modality,
    check_setup,
    get_profile,
    is_ssl,
    parse_folds,
    resolve_device,
    setup_modalities,
)
from .jobs import ENDED, LOCK_WAIT_S, Job, blocked, drop_own_notes, run_inprocess, run_notebook, say_replaced
from ..analysis.results import METRIC_KEYS, aggregate, check_one_study, compare_with_paper, load_results
from .recipes import STAGES, affected_setups, apply_recipe, expand_recipes, parse_recipe, stage_runs


class RunsFailed(Exception):
    """Some runs of a study failed (the others finished; tables were written from them).
    `failures` lists (job name, folder, one-line reason); `root` is the study folder."""

    def __init__(self, root: Path, failures: list[tuple[str, str, str]]):
        self.root = root
        self.failures = failures
        lines = "\n".join(f"  {name}: {reason} (see {folder}/error.txt)" for name, folder, reason in failures)
        super().__init__(f"{len(failures)} run(s) failed in {root}:\n{lines}")


# --- arguments ---------------------------------------------------------------------------------


def _items(value: str | Sequence) -> list[str]:
    """'a, b' or a list -> ['a', 'b'] (empty items dropped)."""
    items = value.split(",") if isinstance(value, str) else value
    return [t for t in (str(i).strip() for i in items) if t]


def parse_setups(setups: str | Sequence[str] | None) -> tuple[str, ...]:
    """'all' -> every setup; 't,tsg' or a list -> those, in the paper's order."""
    if setups is None or setups == "all":
        return SETUPS
    items = _items(setups)
    if not items:
        raise UserError(f"--setups {setups!r} names no setup; use 'all' or a list like t,tsg,ssl-t")
    for s in items:
        check_setup(s)
    return tuple(s for s in SETUPS if s in items)


def parse_devices(devices: str | Sequence[str] | None, profile: Profile) -> list[str]:
    """'0,1' -> ['cuda:0', 'cuda:1']; 'cpu' -> ['cpu']; 'cpu,cpu' -> two CPU workers; None -> every
    visible GPU for the paper profile (UserError when there is none), else the profile's device."""
    n = torch.cuda.device_count()
    if devices is None:
        if not profile.device.startswith("cuda"):
            return [resolve_device(profile.device)]
        if n == 0:
            raise UserError(
                f"profile {profile.name!r} runs on GPUs but none is visible; pass --devices cpu "
                f"to run it on the CPU anyway"
            )
        return [f"cuda:{i}" for i in range(n)]
    items = _items(devices)
    if not items:
        raise UserError(f"--devices {devices!r} names no device; use e.g. 0,1 or cpu")
    out = []
    for d in (f"cuda:{d}" if d.isdigit() else d for d in items):
        if d.startswith("cuda:") and d[5:].isdigit() and torch.cuda.is_available() and int(d[5:]) >= n:
            raise UserError(f"--devices: {d} does not exist ({n} GPUs visible)")
        out.append(resolve_device(d))
    return out  # a device named twice is two entries: twice the runs on it at a time (e.g. cpu,cpu)


def _fold_lists(prof: Profile, folds) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(outer folds of the main fine-tunings, of the Fig. 3 ones): `folds` ('0-9', '0,3' or a
    list) for both, or by default the profile's folds and its smaller ablation folds (both
    checked with the profile)."""
    if folds is None:
        return tuple(prof.folds), tuple(prof.finetune.ablation_folds or prof.folds)
    chosen = parse_folds(folds) if isinstance(folds, str) else tuple(dict.fromkeys(check_fold(f) for f in folds))
    if not chosen:
        raise UserError("--folds names no fold")
    return chosen, chosen


def _check_data_dir(prof: Profile, data_dir) -> None:
    if data_dir is None and prof.data != "fixture":
        raise UserError(
            f"--data-dir is required for profile {prof.name!r}: the folder with the PhysioNet/CinC 2020 "
            f"records (`python -m ecgssl_nb download`)"
        )
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")


# --- running the jobs --------------------------------------------------------------------------


def run_jobs(
    jobs: list[Job],
    device: str = "cpu",
    place: Placement | None = None,
    progress: bool = True,
    on_update: Callable[[], None] | None = None,
    as_notebooks: bool = False,
) -> None:
    """Run `jobs` (needs first; those finished before with the request asked now, as notebooks
    with their executed notebook, skipped; those whose needs failed blocked): one at a time in
    this process on `device` when `place` is None, else as Ray tasks placed by `place`
    (`cluster`). as_notebooks: each as its chapter notebook (`notebook_jobs`). One progress bar
    counts the runs done (or found finished), in flight and failed; `on_update` is called after
    each run (reproduce rewrites its manifest)."""
    todo: list[Job] = []
    for job in jobs:  # one that needs a job run now is judged when it starts (`jobs.run_inprocess`)
        waits = any(any(n is t for t in todo) for n in job.needs)
        if not waits and job.done_before() and not (as_notebooks and not job.record.is_file()):
            job.status = "skipped"
            continue
        drop_own_notes(job.folder)
        say_replaced(job)
        todo.append(job)
    if not todo:
        return
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress, file=sys.stderr)

    def done(job: Job) -> None:
        bar.update(1)
        ok = {k: [j.status in ("done", "skipped") for j in todo if j.kind == k] for k in ("pretrain", "finetune")}
        parts = [f"{kind} {sum(mine)}/{len(mine)}" for kind, mine in ok.items() if mine]
        ready = [j for j in todo if j.status not in ENDED and all(n.status in ENDED for n in j.needs)]
        failed = sum(j.status in ("failed", "blocked") for j in todo)
        bar.set_postfix_str(f"{', '.join(parts)}; {len(ready)} running or queued, {failed} failed")
        if on_update is not None:
            on_update()

    try:
        if place is not None:
            with cluster.connect(place):
                return cluster.run(todo, place, Path.cwd(), as_notebooks, done)
        for job in todo:
            if not blocked(job):
                t0, job.started, job.device = time.perf_counter(), time.time(), device
                if as_notebooks:
                    run_notebook(job, device, False)
                else:
                    run_inprocess(job, device)
                job.wall_s, job.ended = time.perf_counter() - t0, time.time()
            done(job)
    finally:
        bar.close()


# --- tables ------------------------------------------------------------------------------------


def write_tables(runs: str | Path, profile: str) -> dict[str, Path]:
    """Write tables/table1.csv, table2.csv (ours beside paper Tables I and II) and fig3.csv (the
    transform ablation), both protocols, from the finished runs (never from *.stale-* folders);
    returns {name: path} of those written (none without a run). tables/provenance.json lists
    every run aggregated (its folder, result.json digest, prepared digest, settings fingerprint
    and code version). Runs of different data or settings are refused (UserError naming two);
    every table is computed before the folder is touched, so a refusal leaves it as it was."""
    root = paths.profile_root(runs, profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        main, ab = (
            load_results(d) if d.is_dir() else pd.DataFrame()
            for d in (root / "finetune", root / "ablation" / "finetune")
        )
        if not len(main) and not len(ab):
            return {}
        check_one_study(pd.concat([f for f in (main, ab) if len(f)]))  # UserError naming two runs that differ
        tables = {**(_paper_tables(main) if len(main) else {}), "fig3": _fig3_table(main, ab)}
    with provenance.lock(paths.tables_dir(runs, profile), what="tables folder", wait_s=600):  # another driver
        df = pd.concat([f for f in (main, ab) if len(f)]).drop_duplicates("path")
        made = {}
        for _, r in df.iterrows():
            made[str(Path(r["path"]).parent.relative_to(root))] = {
                "result_sha256": provenance.sha256_file(r["path"]),
                **{k: r[k] if isinstance(r[k], str) else None for k in ("digest", "settings_id", "code_version")},
            }
        digests = ",".join(sorted({str(d) for d in df["digest"] if isinstance(d, str)}))
        seeds = sorted({int(x) for x in df["seed"] if x is not None and x == x})
        inputs, seed = {"prepared": digests}, seeds[0] if len(seeds) == 1 else -1
        request = provenance.request("tables", {"profile": profile, "runs": made}, inputs, seed)
        provenance.claim(paths.tables_dir(runs, profile), request, force=True, what="tables folder")
        return {
            n: write_csv_atomic(paths.table_path(runs, profile, n), df) for n, df in tables.items() if df is not None
        }


def _paper_tables(main: pd.DataFrame) -> dict[str, pd.DataFrame | None]:
    """table2 (every setup beside paper Table II) and table1 (SSL-T, SSL-S, SSL-TSG beside Table I),
    one block per protocol; None for a table without any run."""
    tables = {}
    for name, table, keep in (("table2", "II", None), ("table1", "I", ("ssl-t", "ssl-s", "ssl-tsg"))):
        parts = []
        for protocol in sorted(main["protocol"].unique()):
            agg = aggregate(main, protocol)
            if keep is not None:
                agg = agg.loc[[s for s in agg.index if s in keep]]
            if len(agg):
                parts.append(compare_with_paper(agg, table))
        tables[name] = pd.concat(parts).reset_index() if parts else None
    return tables


_FIG3_COLUMNS = ["modality", "transforms", "setup", "protocol", "n_folds", "folds", "profile", "data", "smoke"]
_FIG3_COLUMNS += [f"{m}_{x}" for x in ("mean", "std") for m in METRIC_KEYS]


def _fig3_table(main: pd.DataFrame, ab: pd.DataFrame) -> pd.DataFrame | None:
    """Fig. 3: per modality, protocol and view set (the ablation runs, and the main ssl-t / ssl-s
    runs on the same folds as t1 / t2), mean and std over folds of every metric; None without
    ablation runs."""
    parts = []
    for modality, setup in paths.ABLATION_SETUPS.items():
        part = ab[ab["run"].str.startswith(f"{setup}-")] if len(ab) else ab
        if len(part) == 0:  # no ablation for this modality
            continue
        # the full view set (t1 / t2) on the folds the ablation ran, so every bar compares like with like
        full = main[(main["setup"] == setup) & main["fold"].isin(part["fold"])] if len(main) else main
        full = full.assign(run=f"{setup}-{paths.MAIN_TRANSFORMS[modality]}")
        both = pd.concat([p for p in (part, full) if len(p)])
        for protocol in sorted(both["protocol"].unique()):
            agg = aggregate(both, protocol, by="run")
            parts.append(agg.assign(modality=modality, transforms=agg.index.str[len(setup) + 1 :], setup=setup))
    if not parts:
        return None
    order = {t: i for m, ts in paths.ABLATION_TRANSFORMS.items() for i, t in enumerate((*ts, paths.MAIN_TRANSFORMS[m]))}
    df = pd.concat(parts)[_FIG3_COLUMNS]
    df = df.assign(_o=df["transforms"].map(order)).sort_values(
        ["modality", "protocol", "_o"], ascending=[False, True, True]
    )
    return df.drop(columns="_o").reset_index(drop=True)


# --- the study: its settings, then its jobs as data (nothing is written or run) -----------------


REPRODUCE_PROTOCOLS = ("paper", "paper-exact")


def resolve_settings(prof: Profile, items: Sequence[str] = ()) -> tuple[dict[str, PretrainConfig], FinetuneConfig]:
    """The profile's PretrainConfig per modality and FinetuneConfig with `--set` items applied:
    'pretrain.KEY=V' (both modalities), 'pretrain.time.KEY=V', 'finetune.KEY=V', or 'KEY=V' when
    only one of the two configs has KEY. Type-checked (config.apply_settings)."""
    pre_fields = set(PretrainConfig.__dataclass_fields__)
    ft_fields = set(FinetuneConfig.__dataclass_fields__)
    pre_items: dict[str, list[tuple[str, str]]] = {m: [] for m in prof.pretrain}  # (item, as written)
    ft_items: list[tuple[str, str]] = []
    for item in map(str, items or ()):
        key, _, value = item.partition("=")
        head, _, rest = key.partition(".")
        sub, _, tail = rest.partition(".")
        if head == "pretrain" and sub in prof.pretrain and tail:
            pre_items[sub].append((f"{tail}={value}", item))
        elif head in ("pretrain", "finetune"):
            for target in pre_items.values() if head == "pretrain" else [ft_items]:
                target.append((f"{rest}={value}", item))
        elif head in pre_fields and head in ft_fields:
            raise UserError(
                f"--set {item}: {head!r} is a setting of both pre-training and fine-tuning; write "
                f"pretrain.{key}=... or finetune.{key}=..."
            )
        elif head in pre_fields or head in ft_fields:
            for target in pre_items.values() if head in pre_fields else [ft_items]:
                target.append((item, item))
        else:
            raise UserError(
                f"--set {item}: {head!r} is not a setting (PretrainConfig: {', '.join(sorted(pre_fields))}; "
                f"FinetuneConfig: {', '.join(sorted(ft_fields))})"
            )
    pre = {m: apply_settings(c, *zip(*pre_items[m])) for m, c in prof.pretrain.items()}  # (items, as written)
    return pre, apply_settings(prof.finetune, *zip(*ft_items))


def resolve_study(
    profile: str | Profile = "tiny",
    seed: int | None = None,
    settings: Sequence[str] = (),
    recipe: str | Sequence[str] = "corrected",
    max_steps: int = 0,
    protocol: str = "paper",
) -> tuple[Profile, int]:
    """The resolved request of a study: the profile with the recipe's departures, the `--set`
    items and the smoke limit applied to its configs (`prof.pretrain`, `prof.finetune` are then
    exactly what every job runs), and the training seed. `reproduce` and `ensure_*` share it.
    protocol: 'paper' (8 training folds, paper and honest protocols) or 'paper-exact' (9 training
    folds as the authors trained, paper protocol only: the B14 departure)."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise UserError(f"--profile must be a profile name, got {type(profile).__name__}")
    check_choice("--protocol", protocol, REPRODUCE_PROTOCOLS, "a protocol")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 0:
        raise UserError(f"--max-steps must be an integer >= 0 (0 = full run), got {max_steps!r}")
    if protocol == "paper-exact":  # the authors' nine training folds are the released recipe's B14
        recipe = tuple(sorted(set(parse_recipe(recipe)) | {"B14"}))
    prof = apply_recipe(prof, recipe)
    pre_cfgs, ft_cfg = resolve_settings(prof, settings)
    if max_steps:  # a smoke run: a setting like any other, so provenance never mixes it with a full run
        pre_cfgs = {m: replace(c, max_steps=int(max_steps)) for m, c in pre_cfgs.items()}
        ft_cfg = replace(ft_cfg, max_steps=int(max_steps))
    train_seed = prof.seed if seed is None else seed
    return replace(prof, pretrain=pre_cfgs, finetune=ft_cfg), check_seed("--seed", train_seed)


@dataclass
class Plan:
    """Every job of a study, not run: the data (the fixture when one is made, then prepare), the
    main pre-training of each modality the ssl- setups read, the Fig. 3 pre-trainings per
    (modality, transforms), and the fine-tunings (every setup on every fold, then the ablation)."""

    data: list[Job]
    main_pre: dict[str, Job]
    ablation_pre: dict[tuple[str, str], Job]
    ft_jobs: list[Job]
    data_kind: str | None  # 'fixture' when the plan makes the fixture; else inferred from the prepared folder

    @property
    def prep_dir(self) -> Path:
        return self.data[-1].folder

    @property
    def pre_jobs(self) -> list[Job]:
        return list(self.main_pre.values()) + list(self.ablation_pre.values())


@dataclass(frozen=True)
class _Context:
    """What every job of one plan shares: the resolved study and its folders."""

    prof: Profile
    seed: int
    out: Path
    data_dir: Path | None
    runs_pre: Path
    runs_ft: Path
    prep_dir: Path
    data_kind: str | None
    progress: bool

    def job(self, kind: str, name: str, folder: Path, args: dict, needs: list[Job], **notebook) -> Job:
        """A pre-training or fine-tuning job: its log and --config file in RUNS/<profile>/jobs/, and
        its papermill parameters, every path absolute (the kernel runs in notebooks/); the resolved
        study travels in study.json (written by `reproduce --as-notebooks`), so a customised
        profile runs the same as a notebook."""
        runs = self.runs_pre if kind == "pretrain" else self.runs_ft
        log, config = (paths.job_file(runs, self.prof.name, name, ext) for ext in (".log", ".json"))
        study = paths.job_file(self.runs_ft, self.prof.name, STUDY_CONFIG, ".json")
        data = str(Path(self.data_dir).resolve()) if self.data_dir else ""
        nb = {"profile": self.prof.name, "runs": str(self.out.resolve()), "data": data, "seed": self.seed}
        nb |= {"recipe": "corrected", "settings": "", "max_steps": 0}  # the study is in study_config
        nb |= {**notebook, "study_config": str(study.resolve())}
        args = {**args, "seed": self.seed, "resume": True, "force": True, "progress": self.progress}
        return Job(kind, name, folder, args, needs, log=log, config_file=config, notebook=nb)

    def pretrain(self, modality: str, transforms: str, ablated: bool) -> Job:
        """A pre-training: the main one of `modality` (t1 / t2 views) or a Fig. 3 one (`ablated`)."""
        if ablated:
            name = f"pretrain {modality}-{transforms}"
            folder = paths.ablation_pretrain_dir(self.runs_pre, self.prof.name, modality, transforms)
        else:
            name, folder = f"pretrain {modality}", paths.pretrain_run_dir(self.runs_pre, self.prof.name, modality)
        args = {"prepared_dir": self.prep_dir, "out": folder, "modality": modality, "profile": self.prof.name}
        args |= {"config": self.prof.pretrain[modality], "transforms": transforms}  # recipe applied
        return self.job("pretrain", name, folder, args, [], modality=modality, transforms=transforms if ablated else "")

    def finetune(self, setup: str, fold: int, needs: list[Job], transforms: str = "") -> Job:
        """`setup` on outer `fold`: a main run (an ssl- setup reads the main pre-trainings `needs`)
        or, with `transforms`, Fig. 3's ssl-t / ssl-s from the backbone of the ablation pre-training."""
        if transforms:
            modality = setup_modalities(setup)[0]
            name = f"ablation {setup}-{transforms} fold {fold}"
            folder = paths.ablation_finetune_dir(self.runs_ft, self.prof.name, modality, transforms, fold)
            pretrained = {modality: needs[0].folder / "backbone.pt"}
        else:
            name = f"finetune {setup} fold {fold}"
            folder = paths.finetune_dir(self.runs_ft, self.prof.name, setup, fold)
            pretrained = paths.pretrain_dir(self.runs_pre, self.prof.name) if is_ssl(setup) else None
        args = {"setup": setup, "fold": int(fold), "prepared": self.prep_dir, "out": folder, "pretrained": pretrained}
        args |= {"profile": self.prof, "config": self.prof.finetune, "data_kind": self.data_kind}
        return self.job("finetune", name, folder, args, needs, setup=setup, fold=int(fold), transforms=transforms)


def plan(
    prof: Profile,
    seed: int,
    out: str | Path,
    data_dir: str | Path | None = None,
    setups: tuple[str, ...] = SETUPS,
    folds: tuple[int, ...] | None = None,
    ablation_folds: tuple[int, ...] | None = None,
    ablation: bool = True,
    progress: bool = False,
) -> Plan:
    """The jobs of the study of `prof` (as `resolve_study` returns it) with training seed `seed`
    into the runs folder `out`; nothing is written or run. data_dir: the records (None: the
    fixture of a fixture profile, else the prepared folder as it is); folds / ablation_folds: the
    outer folds of the main / Fig. 3 fine-tunings (default the profile's)."""
    out = Path(out)
    runs_prep, runs_pre, runs_ft = (stage_runs(out, prof.departures, st) for st in STAGES)
    prep_dir = paths.prepared_dir(runs_prep, prof.name)
    # step 1: the fixture (a fixture profile without data), then prepare (force: a folder prepared from
    # other data or settings is moved aside); a real-data profile without data: only its check
    if data_dir is None and prof.data != "fixture":
        data = [Job("prepare", "prepare", prep_dir, {"data_dir": None, "out": prep_dir})]
    else:
        fx = paths.fixture_dir(out, prof.name)
        args = {"out": fx, "n_records": prof.fixture_records, "seed": prof.seed}
        data = [Job("fixture", "fixture", fx, args)] if data_dir is None else []
        args = {"data_dir": fx if data_dir is None else data_dir, "out": prep_dir, "workers": prof.workers}
        args |= {"progress": progress, "force": True, "leads": prof.leads}
        data.append(Job("prepare", "prepare", prep_dir, args, needs=list(data)))
    kind = "fixture" if data[0].kind == "fixture" else None
    c = _Context(prof, seed, out, data_dir, runs_pre, runs_ft, prep_dir, kind, progress)
    folds, default_ablation_folds = _fold_lists(prof, folds)
    ablation_folds = default_ablation_folds if ablation_folds is None else tuple(ablation_folds)
    used = [m for m in MODALITIES if any(is_ssl(s) and m in setup_modalities(s) for s in setups)]
    main_pre = {m: c.pretrain(m, paths.MAIN_TRANSFORMS[m], ablated=False) for m in used}
    ablated = [m for m in MODALITIES if ablation and paths.ABLATION_SETUPS[m] in setups]
    ablation_pre = {(m, tr): c.pretrain(m, tr, ablated=True) for m in ablated for tr in paths.ABLATION_TRANSFORMS[m]}
    needs = {s: [main_pre[m] for m in setup_modalities(s)] if is_ssl(s) else [] for s in setups}
    ft_jobs = [c.finetune(s, k, needs[s]) for k in folds for s in setups]
    for k in ablation_folds:
        ft_jobs += [c.finetune(paths.ABLATION_SETUPS[m], k, [pre], tr) for (m, tr), pre in ablation_pre.items()]
    return Plan(data, main_pre, ablation_pre, ft_jobs, kind)


def _make_data(job: Job, profile: str, wait_s: float = 0.0) -> Path:
    """Run a data job in this process: the fixture (a complete one of the same size, seed and
    version is read as it is, without the lock; else it is made under the folder's lock, checked
    again once held), `prepare` (nothing to do when prepared from the same input), or, without
    records, check the prepared folder (UserError naming the profile when it is not usable).
    Another process writing the same folder is waited for at most `wait_s` seconds."""
    from ..data.prepare import load_prepared, prepare  # scipy: only when a stage reads or writes its data

    if job.kind == "fixture":
        from ..data.fixture import make_fixture  # scipy: only when the fixture is made

        if _fixture_done(**job.args):
            return job.folder
        with provenance.lock(job.folder, what="fixture", wait_s=wait_s):  # perhaps made by the process waited for
            return job.folder if _fixture_done(**job.args) else make_fixture(**job.args)
    if job.args["data_dir"] is not None:
        return prepare(**job.args, wait_s=wait_s)
    try:
        return load_prepared(job.folder).path
    except UserError as exc:
        raise UserError(f"data is required for profile {profile!r} to prepare the records ({exc})") from None


def _fixture_done(out: Path, n_records: int, seed: int) -> bool:
    from ..data.fixture import FIXTURE_VERSION, MARKER  # scipy.io and scipy.signal (~1.1 s): only on the tiny profile

    meta = _read_json(out / MARKER) or {}
    made = (meta.get("n_records"), meta.get("seed"), meta.get("version"))
    return bool(meta.get("complete")) and made == (n_records, seed, FIXTURE_VERSION)


def _read_json(path: Path) -> dict | None:
    """A JSON file's contents; None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


# --- the study: plan, run, tables, manifest ------------------------------------------------------


def reproduce(
    profile: str | Profile = "tiny",
    data_dir: str | Path | None = None,
    out: str | Path = "runs",
    folds: str | Sequence[int] | None = None,
    setups: str | Sequence[str] = "all",
    devices: str | Sequence[str] | None = None,
    ablation: bool = True,
    progress: bool = True,
    seed: int | None = None,
    settings: Sequence[str] = (),
    recipe: str | Sequence[str] = "corrected",
    max_steps: int = 0,
    protocol: str = "paper",
    as_notebooks: bool = False,
    runs_per_device: int | None = None,
    address: str | None = None,
    gpus_per_run: float | None = None,
    cpus_per_run: float = 1.0,
    retries: int = cluster.RETRIES,
    gpus_per_pretrain: int = 1,
) -> Path:
    """Run the study of `profile` into OUT/<profile>/ (the module docstring) and return that
    folder; calling it again resumes. Each keyword is a flag of `cli` (`_ARGUMENTS` says what it
    means); folds, setups and devices also take lists, settings are `--set` items
    (`resolve_settings`). The placement (runs_per_device, address, gpus_per_run, gpus_per_pretrain,
    cpus_per_run, retries: `cluster`) is recorded in the manifest, never in provenance. Several
    calls on one runs folder share its work (each run locks its folder). RunsFailed at the end,
    after the tables and the manifest, when a run failed."""
    t_start, started_at = time.perf_counter(), _stamp(time.time())
    prof, train_seed = resolve_study(profile, seed, settings, recipe, max_steps, protocol)
    if runs_per_device is not None:
        prof = replace(prof, runs_per_device=check_int("--runs-per-device", runs_per_device, 1))
    _check_data_dir(prof, data_dir)
    chosen = parse_setups(setups)
    fold_list, ablation_folds = _fold_lists(prof, folds)
    device_list = parse_devices(devices, prof) if not (address or os.environ.get("RAY_ADDRESS")) else ["ray"]
    place = _placement(prof, device_list, address, (gpus_per_run, gpus_per_pretrain, cpus_per_run), retries)
    p = plan(prof, train_seed, out, data_dir, chosen, fold_list, ablation_folds, ablation, progress)
    runs_ft = stage_runs(out, prof.departures, "finetune")
    root = paths.profile_root(runs_ft, prof.name)
    root.mkdir(parents=True, exist_ok=True)  # no study-wide lock: other drivers share the runs
    head = {"started": started_at, "data_dir": str(data_dir) if data_dir is not None else None}
    head |= {"folds": list(fold_list), "ablation_folds": list(ablation_folds) if ablation else []}
    head |= {"setups": list(chosen), "ablation": bool(ablation), "as_notebooks": bool(as_notebooks)}
    head["placement"] = (
        {"engine": "ray", **asdict(place)} if place else {"engine": "in-process", "device": device_list[0]}
    )
    manifest = _Manifest(
        paths.manifest_path(runs_ft, prof.name), prof, train_seed, device_list, settings, head, progress
    )
    _study(p, manifest, runs_ft, device_list[0], place, as_notebooks)
    failures = manifest.finish(p.pre_jobs + p.ft_jobs, time.perf_counter() - t_start)
    if failures:
        raise RunsFailed(root, failures)
    return root


def _placement(prof: Profile, devices: list[str], address, shares: tuple, retries) -> Placement | None:
    """Where the study's runs go: None (one at a time in this process: one CPU device, one run per
    device, no cluster asked) or the Ray placement: GPUs when the devices (or --gpus-per-run) say
    so, each fine-tuning 1/runs_per_device of one by default, a pre-training `gpus_per_pretrain`
    whole ones. shares: (gpus_per_run, gpus_per_pretrain, cpus_per_run) as asked."""
    gpus_per_run, gpus_per_pretrain, cpus_per_run = shares
    k = prof.runs_per_device
    retries = check_int("--retries", retries, 0)
    n_pre = check_int("--gpus-per-pretrain", gpus_per_pretrain, 1)
    cpus = cluster.check_share("--cpus-per-run", cpus_per_run, 1024)
    gpu = any(d.startswith("cuda") for d in devices) or bool(gpus_per_run) or n_pre > 1
    gpu = gpu or (devices == ["ray"] and prof.device != "cpu")
    share = cluster.check_share("--gpus-per-run", gpus_per_run if gpus_per_run else 1 / k, 1) if gpu else 0.0
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None and not gpu and len(devices) == 1 and k == 1:
        return None  # the tiny book build: no cluster, as fast as before
    place = Placement(address, share, float(n_pre) if gpu else 0.0, cpus, retries)
    if address is not None:
        return place
    cuda = [d for d in devices if d.startswith("cuda")]
    if cuda:  # a local cluster over the GPUs named (--devices 0,1), all visible ones by default
        ids = [d.partition(":")[2] or "0" for d in cuda]
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(dict.fromkeys(ids))
        return replace(place, local_gpus=len(set(ids)), local_cpus=os.cpu_count())
    if gpu:
        raise UserError(
            f"--gpus-per-run {gpus_per_run:g}: no GPU among --devices {','.join(devices)}; name GPUs "
            f"(--devices 0,1) or a Ray cluster that has them (--address)"
        )
    n = len(devices) * k  # CPU: the runs asked to run at once (--devices cpu,cpu, --runs-per-device)
    return replace(place, local_cpus=max(1, int(n * cpus)), local_gpus=0)


def _study(p: Plan, manifest: _Manifest, runs_ft: Path, device: str, place: Placement | None, nb: bool) -> None:
    """`reproduce` once its arguments are checked: data (step 1), the runs (2, 3), tables (4),
    the manifest rewritten after each step and run. nb: the runs as notebooks."""
    from ..data.prepare import load_prepared  # scipy: only when a stage reads or writes its data
    from ..stages.finetune import infer_data_kind  # ~25 ms at import: only when a stage runs

    prof, progress = manifest.prof, manifest.progress
    for job in p.data:
        manifest.step(job.kind, partial(_make_data, job, prof.name, LOCK_WAIT_S))
    prepared = load_prepared(p.prep_dir)
    manifest.data |= {"data_kind": p.data_kind or infer_data_kind(prepared), "n_records": len(prepared.index)}
    if nb:  # the resolved study that every notebook job reads (`study_config`)
        write_study_config(runs_ft, prof, manifest.data["seed"])
    runs = p.pre_jobs + p.ft_jobs
    update = partial(manifest.record_runs, runs)
    manifest.step("runs", partial(run_jobs, runs, device, place, progress, update, nb))
    update()
    try:  # refused, naming the runs, if the finished runs mix data or settings
        tables = manifest.step("tables", partial(write_tables, runs_ft, prof.name))
    except UserError as exc:
        manifest.data["tables_error"] = str(exc)
        manifest.save()
        raise
    manifest.data["tables"] = {k: str(v) for k, v in tables.items()}


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


class _Manifest:
    """RUNS/<profile>/manifest.json: what ran, when, with which versions, devices and settings,
    where and how long (s) each step and run took; rewritten after every step and run. Several
    drivers share it: each save merges what the others recorded, under its lock. A run skipped
    now keeps the wall time measured when it ran; `wall_s` adds up every call's. A smoke study
    and a full one never share a runs folder (neither may reuse the other's runs)."""

    def __init__(self, path: Path, prof: Profile, seed: int, devices: list[str], settings, head: dict, progress: bool):
        self.path, self.prof, self.progress = path, prof, progress
        earlier, ft = _read_json(path), prof.finetune
        if earlier is not None and bool(earlier.get("smoke", False)) != bool(ft.max_steps):
            was = "a smoke study (--max-steps)" if earlier.get("smoke") else "a full study"
            raise UserError(
                f"--out: {path.parent} holds {was}; run {'a full' if not ft.max_steps else 'a smoke'} study "
                f"in another --out folder"
            )
        earlier = earlier or {}
        self.earlier_runs = earlier.get("runs", {})
        self.earlier_wall_s = float(earlier.get("wall_s") or 0.0)
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        cpu = platform.processor() or platform.machine() or "cpu"
        gpu = torch.cuda.is_available()
        names = {
            d: torch.cuda.get_device_name(torch.device(d)) if gpu and d.startswith("cuda") else cpu for d in devices
        }
        versions = {"ecgssl_nb": provenance.package_version(), "python": platform.python_version()}
        versions |= {"torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__}
        versions["platform"] = platform.platform()
        self.data = {"profile": prof.name, **head, "finished": None, "command": sys.argv}
        self.data |= {"devices": devices, "device_names": names, "versions": versions}
        self.data["runs_per_device"] = {"pretrain": 1, "finetune": prof.runs_per_device}  # at once per GPU
        self.data |= {"code_version": provenance.code_version(), "seed": seed}
        pre = {m: as_dict(c) for m, c in prof.pretrain.items()}
        self.data["settings"] = {"pretrain": pre, "finetune": as_dict(ft), "set": list(settings)}
        self.data |= {"steps": {}, "runs": {}, "failures": []}
        self.data |= {"recipe": prof.recipe, "departures": list(prof.departures)}
        self.data |= {"smoke": bool(ft.max_steps), "max_steps": ft.max_steps, "protocol": ft.protocol}

    def save(self) -> None:
        """Write the manifest, merged with what another driver wrote meanwhile (under its lock)."""
        with provenance.lock(self.path, what="manifest", wait_s=600):
            theirs = _read_json(self.path) or {}
            for name, rec in (theirs.get("runs") or {}).items():
                ours = self.data["runs"].get(name)
                new = rec != self.earlier_runs.get(name)  # written by another driver since this one started
                if ours is None or (new and ours["status"] in ("todo", "skipped") and rec.get("status") == "done"):
                    self.data["runs"][name] = rec  # recorded by the driver that ran it
            self.data["drivers"] = {**(theirs.get("drivers") or {}), **self.data.get("drivers", {})}
            write_json(self.path, self.data, ensure_ascii=False)

    def step(self, name: str, fn: Callable[[], object]) -> object:
        """Run one step of the study, recording its wall time (s)."""
        t0 = time.perf_counter()
        if self.progress:
            print(f"reproduce [{self.data['profile']}]: {name} ...", file=sys.stderr)
        result = fn()
        self.data["steps"][name] = {"wall_s": round(time.perf_counter() - t0, 3)}
        self.save()
        return result

    def record_runs(self, jobs: list[Job]) -> None:
        for job in jobs:
            rec = {"name": job.name, "folder": str(job.folder), "status": job.status, "reason": job.reason}
            rec |= {"device": job.device, "wall_s": round(job.wall_s, 3), "driver": self.driver}
            rec |= {"node": job.node, "host": job.host, "gpu_ids": job.gpu_ids} if job.node else {}
            if job.started:
                rec |= {"started": _stamp(job.started), "ended": _stamp(job.ended)}
                rec |= {"started_s": round(job.started, 3), "ended_s": round(job.ended, 3)}
            if job.replaced and job.status != "skipped":
                rec["replaced"] = job.replaced  # why the earlier folder was moved aside
            before = self.earlier_runs.get(job.name) or {}
            if job.status == "skipped" and before.get("wall_s"):
                rec = {**before, "status": "skipped", "reason": before.get("reason") or "finished earlier"}
            self.data["runs"][job.name] = rec
        self.save()

    def finish(self, jobs: list[Job], call_wall_s: float) -> list[tuple[str, str, str]]:
        """Counts, failures and wall times; returns the failures (name, folder, reason)."""
        failures = [(j.name, str(j.folder), j.reason) for j in jobs if j.status in ("failed", "blocked")]
        counts = {s: sum(j.status == s for j in jobs) for s in ("done", "skipped", "failed", "blocked")}
        self.data["failures"] = [{"name": n, "folder": f, "reason": r} for n, f, r in failures]
        self.data |= {"counts": counts, "finished": _stamp(time.time()), "drivers": {self.driver: counts}}
        self.data |= {"call_wall_s": round(call_wall_s, 3), "wall_s": round(self.earlier_wall_s + call_wall_s, 3)}
        self.save()
        if self.progress:
            tables = ", ".join(self.data.get("tables", {}).values()) or "none"
            print(
                f"reproduce [{self.data['profile']}]: {counts['done']} runs done, {counts['skipped']} already "
                f"finished, {counts['failed']} failed, {counts['blocked']} blocked in {call_wall_s:.0f} s; "
                f"tables: {tables}",
                file=sys.stderr,
            )
        return failures


# --- one target: a single run and whatever it needs (the notebooks' way in) ---------------------


STUDY_CONFIG = "study"  # RUNS/<profile>/jobs/study.json: the resolved study a notebook job runs


def write_study_config(runs: str | Path, prof: Profile, seed: int) -> Path:
    """RUNS/<profile>/jobs/study.json: the resolved profile (recipe, `--set` items and smoke limit
    applied) and the training seed, so that a job run as a notebook (`config` parameter) plans
    exactly the runs `reproduce` planned, even for a customised profile."""
    path = paths.job_file(runs, prof.name, STUDY_CONFIG, ".json")
    return write_json(path, {"profile": as_dict(prof), "seed": int(seed)}, ensure_ascii=False)


def read_study_config(path: str | Path) -> tuple[Profile, int]:
    """(resolved Profile, training seed) from a file of `write_study_config`; UserError naming
    the file when it is unreadable or holds unknown settings."""
    src = f"config {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        d, seed = dict(data["profile"]), check_seed(f"{src}: seed", data["seed"])
        d["pretrain"] = {m: config_from_dict(PretrainConfig, c, src) for m, c in d["pretrain"].items()}
        d["finetune"] = config_from_dict(FinetuneConfig, d["finetune"], src)
        d["folds"], d["departures"] = tuple(d["folds"]), tuple(d["departures"])
        return Profile(**d), seed
    except SettingError as exc:  # a profile field out of its range
        raise UserError(f"{src}: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{src}: not a study settings file written by reproduce ({type(exc).__name__}: {exc})"
        ) from None


@dataclass
class Target:
    """What `ensure_pretrain` / `ensure_finetune` made or found: the run's folder, the prepared
    corpus and the main pre-training folders (`--pretrained` of the ssl- setups), the resolved
    profile and seed, and the status of each job involved (skipped = finished earlier)."""

    folder: Path
    prepared: Path
    pretrain: Path
    profile: Profile
    seed: int
    statuses: dict[str, str]  # job name -> done, skipped, failed or blocked


@dataclass(frozen=True)
class TargetOptions:
    """The keyword options of `ensure_pretrain` / `ensure_finetune`. The study: `profile` (their
    first argument) with `seed`, `settings` (`--set` items, or one string of them separated by
    ';'), `recipe` and `max_steps` as in `reproduce`, or the resolved study in `config` (the
    study.json `reproduce --as-notebooks` hands its notebooks). data: the records (None: the
    fixture of a tiny profile, or a real-data profile's prepared folder as it is). device: e.g.
    cpu, cuda:1. wait_s: the longest wait for another process writing a folder the run needs
    (default LOCK_WAIT_S, 48 h), saying on stderr whom it waits for; then RunsFailed."""

    data: str | Path | None = None
    device: str | None = None
    seed: int | None = None
    settings: str | Sequence[str] = ()
    recipe: str | Sequence[str] = "corrected"
    max_steps: int = 0
    config: str | Path | None = None
    progress: bool = False
    wait_s: float | None = None

    def study(self, profile: str | Profile | None) -> tuple[Profile, int]:
        """The resolved study: from `config`, or like `reproduce`."""
        settings, config, seed = self.settings, self.config, self.seed
        if isinstance(settings, str):  # notebook parameter: 'pretrain.epochs=1; finetune.lr=1e-3'
            settings = [s.strip() for s in settings.split(";") if s.strip()]
        if not config:
            return resolve_study(profile, seed, settings, self.recipe, self.max_steps)
        if settings or self.max_steps or parse_recipe(self.recipe):
            raise UserError(
                f"config {config} holds the resolved settings; give settings, recipe and max_steps to the "
                f"reproduce call that wrote it, not beside it"
            )
        prof, file_seed = read_study_config(config)
        name = profile.name if isinstance(profile, Profile) else profile
        if name is not None and name != prof.name:
            raise UserError(f"profile {name!r} differs from the profile {prof.name!r} of config {config}")
        if seed is not None and int(seed) != file_seed:
            raise UserError(f"seed {seed} differs from the seed {file_seed} of config {config}")
        return prof, file_seed


def _run_target(
    o: TargetOptions, profile, runs, setups: tuple[str, ...], fold: int, ablation: bool, name: str
) -> Target:
    """Plan the study of `setups` on `fold`, make the data, then run the job called `name` and
    the jobs it needs in this process: finished ones are skipped (read without their locks), a
    folder another process writes is waited for (the lock taken first, then the run checked
    again). RunsFailed when it or a job it needs failed."""
    prof, seed = o.study(profile)
    data = o.data or None
    p = plan(prof, seed, runs, data, setups, (fold,), (fold,), ablation, o.progress)
    wait_s = LOCK_WAIT_S if o.wait_s is None else o.wait_s
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not 0 <= wait_s < float("inf"):
        raise UserError(f"wait_s must be a number of seconds >= 0, got {wait_s!r}")
    if data is not None:  # without data a real-data profile uses its prepared folder as it is
        _check_data_dir(prof, data)
    device = parse_devices(o.device or None, prof)[0]
    for job in p.data:
        _make_data(job, prof.name, wait_s)
    target = next(j for j in p.pre_jobs + p.ft_jobs if j.name == name)
    todo = [*target.needs, target]
    for job in todo:
        job.lock_wait_s = float(wait_s)
        run_jobs([job], device, None, o.progress)
    bad = [(j.name, str(j.folder), j.reason) for j in todo if j.status in ("failed", "blocked")]
    if bad:
        raise RunsFailed(paths.profile_root(stage_runs(runs, prof.departures, "finetune"), prof.name), bad)
    pre_dir = paths.pretrain_dir(stage_runs(runs, prof.departures, "pretrain"), prof.name)
    return Target(target.folder, p.prep_dir, pre_dir, prof, seed, {j.name: j.status for j in todo})


def ensure_pretrain(
    profile: str | Profile | None = "tiny",
    runs: str | Path = "runs",
    modality: str = "time",
    transforms: str | None = None,
    **options: object,
) -> Target:
    """Compute one pre-training of a study into RUNS (`paths`) and whatever it needs and is
    missing (the fixture, `prepare`), skipping finished work under the provenance rules of
    `reproduce`. modality: time or spec; transforms: None (the main one, t1 / t2) or a Fig. 3
    view set. options: the fields of `TargetOptions`."""
    check_modality(modality)
    tr = None if transforms in (None, "", paths.MAIN_TRANSFORMS[modality]) else transforms
    if tr is not None:
        paths.ablation_pretrain_dir(runs, "x", modality, tr)  # UserError for an unknown view set
    setups = (paths.ABLATION_SETUPS[modality],)  # ssl-t needs the time pre-training, ssl-s the spec one
    name = f"pretrain {modality}" if tr is None else f"pretrain {modality}-{tr}"
    return _run_target(TargetOptions(**options), profile, runs, setups, 0, tr is not None, name)


def ensure_finetune(
    profile: str | Profile | None = "tiny",
    runs: str | Path = "runs",
    setup: str = "ssl-tsg",
    fold: int = 0,
    transforms: str | None = None,
    **options: object,
) -> Target:
    """Compute one fine-tuning (setup on outer fold) and whatever it needs and is missing (the
    fixture, `prepare`, the pre-trainings its setup uses); an interrupted run resumes.
    transforms: None for the main run, or a Fig. 3 view set (ssl-t or ssl-s). options: the
    fields of `TargetOptions`."""
    check_setup(setup)
    fold = check_fold(fold)
    tr = transforms or None
    if tr is not None:
        m = next((m for m, s in paths.ABLATION_SETUPS.items() if s == setup), None)
        if m is None:
            raise UserError(
                f"transforms {tr!r}: only {' and '.join(paths.ABLATION_SETUPS.values())} have ablation runs"
            )
        paths.ablation_finetune_dir(runs, "x", m, tr, fold)  # UserError for an unknown view set
    name = f"finetune {setup} fold {fold}" if tr is None else f"ablation {setup}-{tr} fold {fold}"
    return _run_target(TargetOptions(**options), profile, runs, (setup,), fold, tr is not None, name)


_RECIPE_HELP = (
    "corrected (default), released, departures like B6,B14, released-B7 (one fix), each (every departure "
    "alone) or each-fix; repeat to run several side by side. Only the corrected recipe runs the Fig. 3 "
    "ablation, and each other recipe only the setups it changes"
)
# (flag, argparse options): each dest is a keyword of `reproduce` (recipe: the loop of `cli`)
_ARGUMENTS: tuple[tuple[str, dict], ...] = (
    ("--profile", {"default": "tiny", "help": "tiny (synthetic fixture, CPU; default) or paper"}),
    ("--data-dir", {"help": "the Challenge records (required for paper; default for tiny: the synthetic fixture)"}),
    ("--out", {"default": "runs", "help": "runs folder; the study goes to OUT/<profile>/ (default runs)"}),
    ("--folds", {"help": f"outer folds, e.g. 0-{N_FOLDS - 1} or 0,3 (default: the profile's)"}),
    ("--setups", {"default": "all", "help": f"all (default) or a list like t,tsg,ssl-t from {', '.join(SETUPS)}"}),
    ("--devices", {"help": "GPU numbers like 0,1 for a local Ray cluster over them, or cpu; cpu,cpu: two runs at "
                   "once (default: all visible GPUs for paper, cpu for tiny: one run at a time in this process)"}),
    ("--runs-per-device", {"type": int, "metavar": "K", "help": "fine-tunings at once on each device (default: the "
                           "profile's, 1 for tiny; for paper what fits an 80 GB GPU); --gpus-per-run defaults to 1/K"}),
    ("--address", {"help": "run on this Ray cluster, e.g. 10.0.0.1:6379 (default RAY_ADDRESS)"}),
    ("--gpus-per-run", {"type": float, "help": "a fine-tuning's GPU share on Ray, 1 or 1/k"}),
    ("--gpus-per-pretrain", {"type": int, "default": 1, "metavar": "N",
                             "help": "GPUs of each pre-training on Ray (default 1; N > 1: DDP inside its task)"}),
    ("--cpus-per-run", {"type": float, "default": 1.0, "help": "CPU threads per run on Ray (default 1)"}),
    ("--retries", {"type": int, "default": cluster.RETRIES, "help": "reruns of a run whose worker or node died"}),
    ("--no-ablation", {"dest": "ablation", "action": "store_false", "help": "skip the Fig. 3 transform ablation"}),
    ("--seed", {"type": int, "help": "training seed of every pre-training and fine-tuning (default: the "
                "profile's; the folds keep the profile's)"}),
    ("--set", {"dest": "settings", "action": "append", "default": [], "metavar": "KEY=VALUE",
               "help": "override a setting, type-checked: pretrain.KEY=V, pretrain.time.KEY=V, finetune.KEY=V, "
               "or KEY=V when only one config has KEY (repeatable); runs made with other settings re-run"}),
    ("--max-steps", {"type": int, "default": 0, "help": "smoke run: every stage stops after N optimisation steps; "
                     "outputs are marked smoke and are never results (default 0: full run)"}),
    ("--protocol", {"default": "paper", "choices": REPRODUCE_PROTOCOLS, "help": "paper (default): 8 training "
                    "folds; paper-exact: 9 as the authors trained, the B14 departure (below OUT/recipes/b14/)"}),
    ("--no-progress", {"dest": "progress", "action": "store_false", "help": "no progress bars"}),
    ("--as-notebooks", {"action": "store_true", "help": "run each pre-training and fine-tuning as its chapter "
                        "notebook (03_selfkd, 04_finetune), kept as <run folder>/notebook.ipynb"}),
    ("--recipe", {"action": "append", "help": _RECIPE_HELP}),
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ecgssl_nb reproduce",
        description="Run the whole study (prepare, pre-train, fine-tune every setup on every "
        "fold, ablation, tables), skipping finished work.",
    )
    for flag, options in _ARGUMENTS:
        p.add_argument(flag, **options)
    return p


def cli(argv: list[str]) -> int:
    """`python -m ecgssl_nb reproduce ...`: each recipe asked runs its study (only the setups it
    changes; the Fig. 3 ablation with the corrected recipe only); exit status 1 when a run failed."""
    kw = vars(_parser().parse_args(argv))
    profile, chosen, ablation = kw.pop("profile"), parse_setups(kw.pop("setups")), kw.pop("ablation")
    failed = False
    for recipe in expand_recipes(kw.pop("recipe") or ["corrected"]):
        setups = affected_setups(recipe, chosen)  # the others would repeat corrected runs
        if not setups:
            continue
        try:
            root = reproduce(profile, **kw, setups=setups, recipe=recipe, ablation=ablation and not recipe)
        except RunsFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"reproduce: finished; results, tables and manifest in {root}")
    return 1 if failed else 0
