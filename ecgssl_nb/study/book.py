"""The studies the book runs (`reproduce` on the book's devices, the samples study and its
control) and the status table of what each profile reproduces."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..core.settings import N_FOLDS, SAMPLES_SETUPS, SETUPS, Profile, get_profile, is_ssl, setup_family


def book_devices(device: str = "cpu", cpus: int | None = None) -> str:
    """The `devices` the book's studies run on: "cpu,cpu" (two CPU workers, one subprocess each,
    so two runs at a time) when `device` is "cpu" and the machine has at least two cores
    (`cpus`, default os.cpu_count()); `device` unchanged otherwise."""
    cpus = os.cpu_count() if cpus is None else cpus
    return "cpu,cpu" if device == "cpu" and (cpus or 1) >= 2 else device


def run_study(device: str = "cpu", **kwargs: Any) -> Path:
    """`reproduce.reproduce(**kwargs)` as the book starts it: on `book_devices(device)`, progress
    bars off, finished work skipped. With several CPU workers each worker subprocess uses one
    torch thread (OMP_NUM_THREADS / MKL_NUM_THREADS set to 1 where unset, which the subprocesses
    inherit; unset again after), so two workers never oversubscribe two cores. Returns its folder."""
    from .reproduce import reproduce  # the whole study (~60 ms at import): only when one runs

    devices = book_devices(device)
    several = devices.split(",").count("cpu") > 1
    unset = [n for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if several and n not in os.environ]
    os.environ.update(dict.fromkeys(unset, "1"))
    try:
        return reproduce(devices=devices, progress=False, **kwargs)
    finally:
        for n in unset:
            os.environ.pop(n, None)


def run_samples_study(runs: str | Path, samples: str | Path, device: str = "cpu") -> Path:
    """The book's study on the real sample records: profile `samples`, setups
    `settings.SAMPLES_SETUPS`, folds `settings.SAMPLES_FOLDS`, no ablation, on `book_devices(device)`;
    finished work is skipped. Returns RUNS/samples/."""
    return _samples(device, "samples", samples, runs)


def samples_control_profile() -> Profile:
    """The `samples` profile with the tiny profile's fine-tuning settings (3 epochs of 16 records
    x 2 crops, lr 1e-3): the control that shows those settings learn nothing on real signals."""
    return replace(get_profile("samples"), finetune=replace(get_profile("tiny").finetune, ablation_folds=None))


def run_samples_control(runs: str | Path, samples: str | Path, device: str = "cpu") -> Path:
    """`samples_control_profile` on the same records, setups and folds as `run_samples_study`,
    into RUNS/samples-control/samples/. Returns that folder."""
    return _samples(device, samples_control_profile(), samples, Path(runs) / "samples-control")


def _samples(device: str, profile: str | Profile, samples: str | Path, out: str | Path) -> Path:
    setups = ",".join(SAMPLES_SETUPS)
    return run_study(device, profile=profile, data_dir=samples, out=out, setups=setups, ablation=False)


def status_table() -> pd.DataFrame:
    """What the book reproduces and on what data, read off the profiles (one row per part of the
    study; columns: the paper's setting, and what the tiny, samples and paper profiles run)."""
    tiny, samples, paper = get_profile("tiny"), get_profile("samples"), get_profile("paper")

    def folds(p: Profile) -> str:
        return f"{len(p.folds)} of {N_FOLDS} folds" if len(p.folds) < N_FOLDS else f"{N_FOLDS} folds"

    def pre(p: Profile) -> str:
        c = p.pretrain["time"]
        return f"{c.epochs} epochs, {c.n_global} global + {c.n_local} local views, head {c.out_dim}"

    def fine(p: Profile, setups: Sequence[str]) -> str:
        f = p.finetune
        e = sorted(set(f.epochs[setup_family(s)] for s in setups))
        return f"{len(setups)} setup{'s' if len(setups) > 1 else ''}, {folds(p)}, {'/'.join(map(str, e))} epochs"

    ablation = f"fold {', '.join(map(str, tiny.finetune.ablation_folds or tiny.folds))} only"
    samples_pre = "none (T from scratch)" if not any(is_ssl(s) for s in SAMPLES_SETUPS) else pre(samples)
    rows = {  # the paper, then the tiny, samples and paper profiles
        "data": (
            "PhysioNet/CinC 2020, 43,101 records",
            f"synthetic fixture, {tiny.fixture_records} records",
            "208 real Challenge records (tests/data/ecg-samples)",
            "PhysioNet/CinC 2020 (download)",
        ),
        "pre-training (DINO, both backbones)": (
            "300 epochs, 2 + 8 views, head 65536",
            pre(tiny),
            samples_pre,
            pre(paper),
        ),
        "fine-tuning (Table II)": (
            "8 setups, 10 folds, 100-200 epochs",
            fine(tiny, SETUPS),
            fine(samples, SAMPLES_SETUPS),
            fine(paper, SETUPS),
        ),
        "Fig. 3 ablation": ("10 folds", ablation, "not run", "10 folds"),
        "hardware, time": ("GPU", "CPU, minutes", "CPU, minutes", "GPU, days (not run for this build)"),
    }
    return pd.DataFrame(rows, index=["the paper", "tiny (this build)", "samples (this build)", "paper profile"]).T
