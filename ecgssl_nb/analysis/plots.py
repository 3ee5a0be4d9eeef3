"""Figures for the book. Each function draws arrays or DataFrames computed elsewhere (mV at `fs`
Hz; spectrograms (12, 13, 21) = lead x frequency 0..48 Hz x frame) and returns a matplotlib
`Figure`, shown inline by a notebook; none computes a result."""

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
from ..data.records import LEADS  # noqa: E402

OURS_COLOR = "#1f77b4"
PAPER_COLOR = "#d62728"
MODALITY_COLORS = {"time": "#1f77b4", "spec": "#ff7f0e"}


def _check_2d(a, name: str, rows: int | None = None, cols: int | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or a.shape != (rows or a.shape[0], cols or a.shape[1]):
        raise ValueError(f"{name} must be a 2-D array of shape ({rows or 'rows'}, {cols or 'N'}), got shape {a.shape}")
    return a


def _need(table: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    if not set(columns) <= set(table.columns):
        raise ValueError(f"{name} needs columns {sorted(columns)}, has {list(table.columns)}")


def _done(fig: Figure, title: str | None = None, **suptitle) -> Figure:
    if title is not None:
        fig.suptitle(title, **suptitle)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    return fig


def _spec_image(ax, a: np.ndarray, **kw):  # a: (frequencies, frames), 4 Hz rows, 0.13 s frames
    extent = (0.0, a.shape[1] * SPEC_HOP_S, 0.0, a.shape[0] * SPEC_FREQ_STEP_HZ)
    return ax.imshow(a, origin="lower", aspect="auto", extent=extent, cmap="magma", **kw)


def _grouped_bars(t: pd.DataFrame, name: str, size: tuple, horizontal: bool = False) -> tuple:
    """(fig, ax) of one bar per row (a tick each, the first on top) and column of `t`, the columns
    side by side, with a grid along the values."""
    if t.empty:
        raise ValueError(f"{name} is empty")
    fig, ax = plt.subplots(figsize=size)
    x, width, t = np.arange(len(t)), 0.8 / t.shape[1], t.astype(float)
    for j, col in enumerate(t.columns):
        at = x + (j - (t.shape[1] - 1) / 2) * width
        if horizontal:
            ax.barh(at, t[col].to_numpy(), height=width, label=str(col))
        else:
            ax.bar(at, t[col].to_numpy(), width=width, label=str(col))
    if horizontal:
        ax.set_yticks(x, [str(i) for i in t.index], fontsize=8)
        ax.invert_yaxis()
    else:
        ax.set_xticks(x, [str(i) for i in t.index], rotation=90, fontsize=8)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    return fig, ax


def _grid(n: int, max_cols: int, cell: tuple[float, float], pad: tuple[float, float], **kw) -> tuple:
    """(fig, axes (rows, cols), cols) for `n` panels in rows of up to `max_cols`, the unused ones hidden."""
    cols = min(max_cols, n)
    rows = -(-n // cols)
    size = (cell[0] * cols + pad[0], cell[1] * rows + pad[1])
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, sharey=True, **kw)
    plt.setp(axes.ravel()[n:], visible=False)
    return fig, axes, cols


def _spectrograms(arrays: Mapping[str, np.ndarray], cols: int, cell: tuple, pad: tuple, title: str, label: str):
    """{name: (frequencies, frames)} in rows of `cols` panels on one colour scale, one colour bar."""
    vmin, vmax = min(np.nanmin(a) for a in arrays.values()), max(np.nanmax(a) for a in arrays.values())
    fig, axes, cols = _grid(len(arrays), cols, cell, pad, sharex=True, layout="constrained")
    for i, (ax, (name, a)) in enumerate(zip(axes.ravel(), arrays.items())):
        im = _spec_image(ax, a, vmin=vmin, vmax=vmax)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("time (s)")
        if i % cols == 0:
            ax.set_ylabel("frequency (Hz)")
    fig.colorbar(im, ax=axes, shrink=0.9, label=label)
    return _done(fig, title)


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
    fig, axes = plt.subplots(6, 2, figsize=(11, 7), sharex=True)
    for k, name in enumerate(leads):
        ax = axes[k % 6, k // 6]
        ax.plot(np.arange(n) / fs, x[k, :n], lw=0.7, color="black")
        ax.set_ylabel(f"{name}\nmV", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    plt.setp(axes[-1], xlabel="time (s)")
    return _done(fig, title)


def spectrogram_leads(
    spec: ArrayLike, title: str = "", leads: Sequence[str] = LEADS, label: str = "normalised |STFT|"
) -> Figure:
    """Spectrogram of every lead, (12, 13, 21) = lead x frequency x frame."""
    s = np.asarray(spec, dtype=float)
    if s.ndim != 3 or s.shape[0] != len(leads):
        raise ValueError(f"spec must have shape ({len(leads)}, frequencies, frames), got {s.shape}")
    return _spectrograms(dict(zip(leads, s)), 4, (2.7, 1.9), (1.0, 0.5), title, label)


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
    return _done(fig, title)


def spectrogram_panels(panels: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """One lead's spectrogram under several transforms: {name: (13, 21) array}, side by side."""
    if not panels:
        raise ValueError("panels is empty: give at least one {name: spectrogram} entry")
    arrays = {k: _check_2d(v, f"panels[{k!r}]") for k, v in panels.items()}
    return _spectrograms(arrays, 3, (3.4, 2.9), (1.2, 0.4), title, "normalised |STFT|")


def views_grid(views: ArrayLike, n_global: int, kind: str = "time", fs: float = TARGET_FS, title: str = "") -> Figure:
    """DINO views of one record and lead, (V, n) or (V, 13, 21): global views first (outlined in
    blue), then local views (orange)."""
    v, shape = np.asarray(views, dtype=float), {"time": "(V, n)", "spec": "(V, 13, 21)"}.get(kind)
    if shape is None:
        raise ValueError(f"kind must be 'time' or 'spec', got {kind!r}")
    if v.ndim != (2 if kind == "time" else 3):
        raise ValueError(f"views of kind {kind!r} must be {shape}, got {v.shape}")
    n_views = v.shape[0]
    if not 0 <= n_global <= n_views:
        raise ValueError(f"n_global must be between 0 and the number of views ({n_views}), got {n_global}")
    fig, axes, cols = _grid(n_views, 5, (2.5, 1.9), (0.0, 0.5))
    for i, ax in enumerate(axes.ravel()[:n_views]):
        if kind == "time":
            ax.plot(np.arange(v.shape[1]) / fs, v[i], lw=0.6, color="black")
        else:
            _spec_image(ax, v[i])
        ax.set_title(f"{'global' if i < n_global else 'local'} view {i + 1}", fontsize=8)
        plt.setp(list(ax.spines.values()), edgecolor="#1f77b4" if i < n_global else "#ff7f0e", linewidth=2)
        ax.tick_params(labelsize=7)
        if i + cols >= n_views:  # the last panel of its column
            ax.set_xlabel("time (s)", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("normalised amplitude" if kind == "time" else "frequency (Hz)", fontsize=8)
    return _done(fig, title)


def class_counts(table: pd.DataFrame, title: str = "", log: bool = True) -> Figure:
    """Counts indexed by class, a column per series (`dataset.class_counts`), as horizontal bars."""
    fig, ax = _grouped_bars(table, "table", (9, 0.28 * len(table) + 1.5), horizontal=True)
    ax.set(xscale="log" if log else "linear", xlabel="records", title=title)
    ax.legend(fontsize=8)
    return _done(fig)


def fold_balance(counts: pd.DataFrame, title: str = "") -> Figure:
    """Share of each class's records in each fold, from `dataset.fold_counts` (folds x classes);
    a balanced split has every cell at 1 / n_folds."""
    if counts.empty:
        raise ValueError("counts is empty")
    c = counts.drop(columns="records", errors="ignore").astype(float)
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
    _need(log, "log", [x, *columns])
    labels = {**CURVE_LABELS, **dict(labels or {})}
    fig, axes = plt.subplots(1, len(columns), figsize=(3.3 * len(columns), 2.9), squeeze=False)
    for ax, col in zip(axes[0], columns):
        ax.plot(log[x], log[col], marker="o", ms=3, lw=1.2)
        ax.set_title(labels.get(col, col), fontsize=9)
        ax.set_ylabel(labels.get(col, col), fontsize=8)
        ax.set(xlabel=labels.get(x, x), yscale="log" if col in logy else "linear")
        if x == "epoch":
            ax.set_xticks(log[x].to_numpy())
        ax.grid(alpha=0.3)
    return _done(fig, title)


def feature_scatter(points: ArrayLike, groups: Sequence[str], title: str = "", max_groups: int = 10) -> Figure:
    """A 2-D projection of features (N, 2), one colour for each of the `max_groups` largest
    groups, the rest grey ('other')."""
    p = _check_2d(points, "points", cols=2)
    g = pd.Series(list(groups), dtype=str)
    if len(g) != len(p):
        raise ValueError(f"groups has {len(g)} labels for {len(p)} points")
    top = list(g.value_counts().index[:max_groups])
    fig, ax = plt.subplots(figsize=(7, 5.5))
    rest = ~g.isin(top).to_numpy()
    if rest.any():
        ax.scatter(p[rest, 0], p[rest, 1], s=10, c="lightgrey", label="other")
    for i, name in enumerate(top):
        m = (g == name).to_numpy()
        ax.scatter(p[m, 0], p[m, 1], s=12, color=plt.get_cmap("tab10")(i % 10), label=f"{name} ({m.sum()})")
    ax.set(xlabel="component 1", ylabel="component 2", title=title)
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    return _done(fig)


def per_class_bars(
    values: pd.DataFrame,
    title: str = "",
    ylabel: str = "",
    ylim: tuple | None = None,
    reference: float | None = None,
    xlabel: str = "class",
) -> Figure:
    """`values` indexed by class, a column per series (e.g. per-class AUROC), as bars; NaN blank."""
    fig, ax = _grouped_bars(values, "values", (11, 3.6))
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, **({"ylim": ylim} if ylim else {}))
    if values.shape[1] > 1:
        ax.legend(fontsize=8)
    return _done(fig)


def gate_weights(weights: pd.DataFrame, title: str = "") -> Figure:
    """Mean TSG gate weights per class (columns 'time', 'spec', summing to 1) as stacked bars."""
    _need(weights, "weights", ("time", "spec"))
    w = weights[["time", "spec"]].astype(float)
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(w) + 1.4))
    y = np.arange(len(w))
    ax.barh(y, w["time"], color=MODALITY_COLORS["time"], label="w1 (time series)")
    ax.barh(y, w["spec"], left=w["time"], color=MODALITY_COLORS["spec"], label="w2 (spectrogram)")
    ax.axvline(0.5, color="black", lw=0.8, ls=":")
    ax.set_yticks(y, [str(i) for i in w.index], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="mean gate weight over the class's records", title=title)
    ax.legend(fontsize=8, loc="lower right")
    return _done(fig)


def _error_bars(std: pd.Series) -> pd.Series | None:  # NaN for a single fold: no error bar is drawn then
    return std.astype(float) if std.notna().any() else None


def compare_with_paper(
    ours: pd.DataFrame, paper: pd.Series | None, metric: str, title: str = "", ours_label: str = "ours"
) -> Figure:
    """One metric per setup: ours ('mean' with a +-1 'std' error bar over folds) beside the
    paper's value (`paper`, indexed by setup, on the same scale; a missing setup left out)."""
    _need(ours, "ours", ("mean", "std"))
    x, width = np.arange(len(ours)), 0.6 if paper is None else 0.38
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(ours) + 2), 4.0))
    bars = {"width": width, "yerr": _error_bars(ours["std"]), "capsize": 3, "color": OURS_COLOR, "label": ours_label}
    ax.bar(x if paper is None else x - width / 2, ours["mean"].astype(float), **bars)
    if paper is not None:
        pv = [float(paper.get(s, np.nan)) for s in ours.index]
        ax.bar(x + width / 2, pv, width=width, color=PAPER_COLOR, alpha=0.8, label="paper (Phan et al. 2022)")
    ax.set_xticks(x, [str(s).upper() for s in ours.index], rotation=30, fontsize=8)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _done(fig)


def ablation_bars(table: pd.DataFrame, metric: str, title: str = "") -> Figure:
    """Fig. 3: the fine-tuned 'mean' +- 'std' per pre-training 'transforms', a panel per 'modality'."""
    _need(table, "table", ("modality", "transforms", "mean", "std"))
    mods = list(dict.fromkeys(table["modality"]))
    fig, axes = plt.subplots(1, len(mods), figsize=(4.2 * len(mods), 3.3), squeeze=False, sharey=True)
    for ax, mod in zip(axes[0], mods):
        t = table[table["modality"] == mod]
        x = np.arange(len(t))
        color = MODALITY_COLORS.get(mod, OURS_COLOR)
        ax.bar(x, t["mean"].astype(float), yerr=_error_bars(t["std"]), capsize=3, color=color)
        ax.set_xlabel("pre-training transforms")
        ax.set_xticks(x, [str(s).upper() for s in t["transforms"]])
        ax.set_title({"time": "time series", "spec": "time-frequency"}.get(mod, mod), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel(metric)
    return _done(fig, title, fontsize=10)


def paired_intervals(table: pd.DataFrame, xlabel: str, title: str = "", label: str = "") -> Figure:
    """One row per comparison, the first on top: a dot at 'mean', a bar from 'lo' to 'hi' (none
    where either is NaN), a dashed line at 0; `label` (what data and runs) in the legend."""
    _need(table, "table", ("mean", "lo", "hi"))
    y = np.arange(len(table))[::-1]  # first row on top
    mean, lo, hi = (table[c].astype(float).to_numpy() for c in ("mean", "lo", "hi"))
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
    return _done(fig)
