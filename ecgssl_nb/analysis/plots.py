"""Figures for the book: ECG leads, spectrograms, views, curves, gate weights, table bars.

Each function takes arrays or DataFrames (mV, samples at `fs` Hz, spectrograms (12, 13, 21) =
lead x frequency 0..48 Hz x frame) computed elsewhere in the library and returns a matplotlib
`Figure` (`plt.subplots`, so a notebook shows it inline); none computes a result.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
from numpy.typing import ArrayLike

matplotlib.rcParams.setdefault("figure.dpi", 100)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.settings import TARGET_FS  # noqa: E402
from ..core.transforms import SPEC_FREQ_STEP_HZ, SPEC_HOP_S  # noqa: E402  (4 Hz rows, 0.13 s frames)
from ..records import LEADS  # noqa: E402

OURS_COLOR = "#1f77b4"
PAPER_COLOR = "#d62728"
MODALITY_COLORS = {"time": "#1f77b4", "spec": "#ff7f0e"}


def _check_2d(a, name: str, rows: int | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or (rows is not None and a.shape[0] != rows):
        want = f"({rows}, N)" if rows is not None else "(rows, columns)"
        raise ValueError(f"{name} must be a 2-D array of shape {want}, got shape {a.shape}")
    return a


def ecg_leads(
    signal: ArrayLike,
    fs: float = TARGET_FS,
    title: str = "",
    seconds: float | None = None,
    leads: Sequence[str] = LEADS,
) -> Figure:
    """Twelve leads of one record, (12, N) mV at `fs` Hz, in a 6 x 2 grid (limb | chest leads)."""
    x = _check_2d(signal, "signal", rows=len(leads))
    n = x.shape[1] if seconds is None else min(x.shape[1], int(round(seconds * fs)))
    t = np.arange(n) / fs
    fig, axes = plt.subplots(6, 2, figsize=(11, 7), sharex=True)
    for k, name in enumerate(leads):
        ax = axes[k % 6, k // 6]
        ax.plot(t, x[k, :n], lw=0.7, color="black")
        ax.set_ylabel(f"{name}\nmV", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def spectrogram_leads(
    spec: ArrayLike, title: str = "", leads: Sequence[str] = LEADS, label: str = "normalised |STFT|"
) -> Figure:
    """Spectrogram of every lead, (12, 13, 21) = lead x frequency (0..48 Hz) x frame (0.13 s)."""
    s = np.asarray(spec, dtype=float)
    if s.ndim != 3 or s.shape[0] != len(leads):
        raise ValueError(f"spec must have shape ({len(leads)}, frequencies, frames), got {s.shape}")
    fig, axes = plt.subplots(3, 4, figsize=(11, 6), sharex=True, sharey=True, layout="constrained")
    vmin, vmax = np.nanmin(s), np.nanmax(s)
    extent = (0.0, s.shape[2] * SPEC_HOP_S, 0.0, s.shape[1] * SPEC_FREQ_STEP_HZ)
    im = None
    for k, name in enumerate(leads):
        ax = axes[k // 4, k % 4]
        im = ax.imshow(s[k], origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(name, fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("Hz")
    fig.suptitle(title)
    fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    return fig


def signal_panels(
    panels: Mapping[str, np.ndarray], fs: float = TARGET_FS, title: str = "", ylabel: str = "mV"
) -> Figure:
    """One lead under several transforms: {name: (n,) array}, one row each, same time axis."""
    if not panels:
        raise ValueError("panels is empty: give at least one {name: signal} entry")
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.6 * len(panels) + 0.6), sharex=True, squeeze=False)
    for ax, (name, y) in zip(axes[:, 0], panels.items()):
        y = np.asarray(y, dtype=float).ravel()
        ax.plot(np.arange(y.size) / fs, y, lw=0.8, color="black")
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.25)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def spectrogram_panels(panels: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """One lead's spectrogram under several transforms: {name: (13, 21) array}, side by side."""
    if not panels:
        raise ValueError("panels is empty: give at least one {name: spectrogram} entry")
    arrays = {k: _check_2d(v, f"panels[{k!r}]") for k, v in panels.items()}
    vmin = min(np.nanmin(a) for a in arrays.values())
    vmax = max(np.nanmax(a) for a in arrays.values())
    cols = min(3, len(arrays))
    rows = -(-len(arrays) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.4 * cols + 1.2, 2.9 * rows + 0.4), sharey=True, squeeze=False, layout="constrained"
    )
    im = None
    for i, ax in enumerate(axes.ravel()):
        if i >= len(arrays):
            ax.axis("off")
            continue
        name, a = list(arrays.items())[i]
        extent = (0.0, a.shape[1] * SPEC_HOP_S, 0.0, a.shape[0] * SPEC_FREQ_STEP_HZ)
        im = ax.imshow(a, origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("time (s)")
        if i % cols == 0:
            ax.set_ylabel("frequency (Hz)")
    fig.suptitle(title)
    fig.colorbar(im, ax=axes, shrink=0.9, label="normalised |STFT|")
    return fig


def views_grid(views: ArrayLike, n_global: int, kind: str = "time", fs: float = TARGET_FS, title: str = "") -> Figure:
    """DINO views of one record and one lead: (V, n) time views or (V, 13, 21) spectrogram views,
    global views first (outlined in blue), local views after (orange)."""
    v = np.asarray(views, dtype=float)
    if kind not in ("time", "spec"):
        raise ValueError(f"kind must be 'time' or 'spec', got {kind!r}")
    if (kind == "time" and v.ndim != 2) or (kind == "spec" and v.ndim != 3):
        raise ValueError(
            f"views of kind {kind!r} must be {'(V, n)' if kind == 'time' else '(V, 13, 21)'}, got {v.shape}"
        )
    n_views = v.shape[0]
    if not 0 <= n_global <= n_views:
        raise ValueError(f"n_global must be between 0 and the number of views ({n_views}), got {n_global}")
    cols = min(5, n_views)
    rows = int(np.ceil(n_views / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 1.9 * rows + 0.5), squeeze=False, sharey=True)
    for i in range(rows * cols):
        ax = axes[i // cols, i % cols]
        if i >= n_views:
            ax.axis("off")
            continue
        is_global = i < n_global
        if kind == "time":
            ax.plot(np.arange(v.shape[1]) / fs, v[i], lw=0.6, color="black")
        else:
            ax.imshow(
                v[i],
                origin="lower",
                aspect="auto",
                cmap="magma",
                extent=(0.0, v.shape[2] * SPEC_HOP_S, 0.0, v.shape[1] * SPEC_FREQ_STEP_HZ),
            )
        ax.set_title(f"{'global' if is_global else 'local'} view {i + 1}", fontsize=8)
        color = "#1f77b4" if is_global else "#ff7f0e"
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2)
        ax.tick_params(labelsize=7)
        if i // cols == rows - 1 or i + cols >= n_views:
            ax.set_xlabel("time (s)", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("normalised amplitude" if kind == "time" else "frequency (Hz)", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_counts(table: pd.DataFrame, title: str = "", log: bool = True) -> Figure:
    """Records per class: `table` indexed by class name, one column per count series
    (e.g. 'this corpus', 'official total'); horizontal bars, log scale by default."""
    if table.empty:
        raise ValueError("table is empty")
    t = table.astype(float)
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(t) + 1.5))
    height = 0.8 / t.shape[1]
    y = np.arange(len(t))
    for j, col in enumerate(t.columns):
        ax.barh(y + (j - (t.shape[1] - 1) / 2) * height, t[col].to_numpy(), height=height, label=str(col))
    ax.set_yticks(y, [str(i) for i in t.index], fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("records")
    ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def fold_balance(counts: pd.DataFrame, title: str = "") -> Figure:
    """Share of each class's records that fall in each fold: `counts` is folds x classes (record
    counts); a perfectly balanced split has every cell at 1 / n_folds."""
    if counts.empty:
        raise ValueError("counts is empty")
    c = counts.astype(float)
    share = c / c.sum(axis=0).replace(0, np.nan)
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(c) + 1.8), layout="constrained")
    ideal = 1.0 / len(c)
    im = ax.imshow(share.to_numpy(), aspect="auto", cmap="coolwarm", vmin=0, vmax=2 * ideal)
    ax.set_xticks(range(c.shape[1]), [str(x) for x in c.columns], rotation=90, fontsize=8)
    ax.set_yticks(range(len(c)), [f"fold {i}" for i in c.index], fontsize=8)
    fig.colorbar(im, ax=ax, label=f"share of the class's records (ideal {ideal:.2f})")
    ax.set_title(title)
    return fig


CURVE_LABELS = {  # log.csv column -> axis label with its unit
    "loss": "DINO loss (nats)",
    "train_loss": "training loss (BCE, nats)",
    "lr": "learning rate",
    "teacher_entropy": "teacher entropy (nats)",
    "embedding_std": "embedding std (unit-norm features)",
    "kl": "KL(teacher || student) (nats)",
    "epoch": "epoch",
}


def curves(
    log: pd.DataFrame,
    columns: Sequence[str],
    x: str = "epoch",
    title: str = "",
    labels: Mapping[str, str] | None = None,
    logy: Sequence[str] = (),
) -> Figure:
    """Training curves from a per-epoch log.csv: one small panel per column, against `x`."""
    missing = [c for c in [x, *columns] if c not in log.columns]
    if missing:
        raise ValueError(f"log has no column(s) {missing}; it has {list(log.columns)}")
    labels = {**CURVE_LABELS, **dict(labels or {})}
    fig, axes = plt.subplots(1, len(columns), figsize=(3.3 * len(columns), 2.9), squeeze=False)
    for ax, col in zip(axes[0], columns):
        ax.plot(log[x], log[col], marker="o", ms=3, lw=1.2)
        ax.set_title(labels.get(col, col), fontsize=9)
        ax.set_ylabel(labels.get(col, col), fontsize=8)
        ax.set_xlabel(labels.get(x, x))
        if x == "epoch":
            ax.set_xticks(log[x].to_numpy())
        if col in logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def feature_scatter(points: ArrayLike, groups: Sequence[str], title: str = "", max_groups: int = 10) -> Figure:
    """A 2-D projection of features (N, 2), one colour per group label; the `max_groups`
    largest groups are coloured, the rest drawn in grey as 'other'."""
    p = _check_2d(points, "points")
    if p.shape[1] != 2:
        raise ValueError(f"points must have 2 columns, got {p.shape[1]}")
    g = pd.Series(list(groups), dtype=str)
    if len(g) != len(p):
        raise ValueError(f"groups has {len(g)} labels for {len(p)} points")
    top = list(g.value_counts().index[:max_groups])
    fig, ax = plt.subplots(figsize=(7, 5.5))
    rest = ~g.isin(top).to_numpy()
    if rest.any():
        ax.scatter(p[rest, 0], p[rest, 1], s=10, c="lightgrey", label="other")
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(top):
        m = (g == name).to_numpy()
        ax.scatter(p[m, 0], p[m, 1], s=12, color=cmap(i % 10), label=f"{name} ({m.sum()})")
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def per_class_bars(
    values: pd.DataFrame,
    title: str = "",
    ylabel: str = "",
    ylim: tuple | None = None,
    reference: float | None = None,
    xlabel: str = "class",
) -> Figure:
    """One value per class for one or more series: `values` indexed by class, a column per
    series (e.g. per-class AUROC); NaN (a class absent from the fold) is left blank."""
    if values.empty:
        raise ValueError("values is empty")
    v = values.astype(float)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / v.shape[1]
    x = np.arange(len(v))
    for j, col in enumerate(v.columns):
        ax.bar(x + (j - (v.shape[1] - 1) / 2) * width, v[col].to_numpy(), width=width, label=str(col))
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1)
    ax.set_xticks(x, [str(i) for i in v.index], rotation=90, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    if v.shape[1] > 1:
        ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def gate_weights(weights: pd.DataFrame, title: str = "") -> Figure:
    """Mean TSG gate weights per class: `weights` indexed by class with columns 'time' and
    'spec' (each row sums to 1); stacked horizontal bars."""
    for col in ("time", "spec"):
        if col not in weights.columns:
            raise ValueError(f"weights needs columns 'time' and 'spec', has {list(weights.columns)}")
    w = weights[["time", "spec"]].astype(float)
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(w) + 1.4))
    y = np.arange(len(w))
    ax.barh(y, w["time"], color=MODALITY_COLORS["time"], label="w1 (time series)")
    ax.barh(y, w["spec"], left=w["time"], color=MODALITY_COLORS["spec"], label="w2 (spectrogram)")
    ax.axvline(0.5, color="black", lw=0.8, ls=":")
    ax.set_yticks(y, [str(i) for i in w.index], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean gate weight over the class's records")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def compare_with_paper(
    ours: pd.DataFrame, paper: pd.Series | None, metric: str, title: str = "", ours_label: str = "ours"
) -> Figure:
    """One metric per setup: ours (mean with a +-1 std error bar over folds) beside the paper's
    value. `ours` is indexed by setup with columns 'mean' and 'std' (same scale as `paper`,
    e.g. x100); `paper` is indexed by setup (missing setups are left out)."""
    for col in ("mean", "std"):
        if col not in ours.columns:
            raise ValueError(f"ours needs columns 'mean' and 'std', has {list(ours.columns)}")
    setups = list(ours.index)
    x = np.arange(len(setups))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(setups) + 2), 4.0))
    width = 0.38 if paper is not None else 0.6
    std = ours["std"].astype(float)
    ax.bar(
        x - (width / 2 if paper is not None else 0),
        ours["mean"].astype(float),
        width=width,
        yerr=std if std.notna().any() else None,
        capsize=3,
        color=OURS_COLOR,
        label=ours_label,
    )
    if paper is not None:
        pv = np.array([float(paper.get(s, np.nan)) for s in setups])
        ax.bar(x + width / 2, pv, width=width, color=PAPER_COLOR, alpha=0.8, label="paper (Phan et al. 2022)")
    ax.set_xticks(x, [str(s).upper() for s in setups], rotation=30, fontsize=8)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def ablation_bars(table: pd.DataFrame, metric: str, title: str = "") -> Figure:
    """Fig. 3 style: fine-tuned score per pre-training transform set and modality. `table` has
    columns 'modality', 'transforms', 'mean', 'std' (one row per setting)."""
    need = {"modality", "transforms", "mean", "std"}
    if not need <= set(table.columns):
        raise ValueError(f"table needs columns {sorted(need)}, has {list(table.columns)}")
    mods = list(dict.fromkeys(table["modality"]))
    fig, axes = plt.subplots(1, len(mods), figsize=(4.2 * len(mods), 3.3), squeeze=False, sharey=True)
    for ax, mod in zip(axes[0], mods):
        t = table[table["modality"] == mod]
        x = np.arange(len(t))
        std = t["std"].astype(float)  # NaN for a single fold: no error bar is drawn then
        ax.bar(
            x,
            t["mean"].astype(float),
            yerr=std if std.notna().any() else None,
            capsize=3,
            color=MODALITY_COLORS.get(mod, OURS_COLOR),
        )
        ax.set_xlabel("pre-training transforms")
        ax.set_xticks(x, [str(s).upper() for s in t["transforms"]])
        ax.set_title({"time": "time series", "spec": "time-frequency"}.get(mod, mod), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel(metric)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def paired_intervals(table: pd.DataFrame, xlabel: str, title: str = "", label: str = "") -> Figure:
    """Mean paired differences with their intervals, one row per comparison: a dot at 'mean' and a
    bar from 'lo' to 'hi' (no bar where either is NaN, e.g. one fold), a dashed line at 0 (no
    difference). `table` is indexed by the row labels, top row first; `label` goes in the legend
    (what data and runs the differences come from)."""
    need = {"mean", "lo", "hi"}
    if not need <= set(table.columns):
        raise ValueError(f"table needs columns {sorted(need)}, has {list(table.columns)}")
    y = np.arange(len(table))[::-1]  # first row on top
    mean = table["mean"].astype(float).to_numpy()
    lo, hi = table["lo"].astype(float).to_numpy(), table["hi"].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(table) + 1.6))
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.hlines(y[ok], lo[ok], hi[ok], color=OURS_COLOR, lw=2, label="95 % interval" if ok.any() else None)
    ax.plot(mean, y, "o", color=OURS_COLOR, label=label or "mean difference")
    ax.axvline(0.0, color="0.3", ls="--", lw=1)
    ax.set_yticks(y, [str(i) for i in table.index], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=1, frameon=False)
    fig.tight_layout()
    return fig
