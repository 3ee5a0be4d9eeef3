"""The book's figures: each plot function draws exactly the data it is given, and rejects bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ecgssl_nb.analysis import plots, results  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def test_ecg_leads_draws_every_lead_with_its_samples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 500)).astype(np.float32)
    fig = plots.ecg_leads(x, fs=100, title="t", seconds=3)
    axes = fig.axes
    assert len(axes) == 12
    # lead k is in row k % 6, column k // 6; the first 3 s = 300 samples are drawn
    for k, ax in enumerate(np.array(axes).reshape(6, 2).T.ravel()):
        y = ax.lines[0].get_ydata()
        assert len(y) == 300
        np.testing.assert_allclose(y, x[k, :300], rtol=1e-6)
        assert ax.get_ylabel().startswith(plots.LEADS[k])


def test_ecg_leads_rejects_a_signal_that_is_not_twelve_leads():
    with pytest.raises(ValueError, match=r"\(12, N\)"):
        plots.ecg_leads(np.zeros((8, 100)))


def test_spectrogram_leads_shows_each_lead_on_the_frequency_axis():
    s = np.arange(12 * 13 * 21, dtype=float).reshape(12, 13, 21)
    fig = plots.spectrogram_leads(s)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 12
    np.testing.assert_array_equal(images[5].get_array(), s[5])
    assert images[0].get_extent()[3] == pytest.approx(52.0)  # 13 rows of 4 Hz
    with pytest.raises(ValueError):
        plots.spectrogram_leads(np.zeros((12, 13)))


def test_signal_and_spectrogram_panels_one_panel_per_transform():
    fig = plots.signal_panels({"raw": np.ones(250), "cutout": np.zeros(250)})
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["raw", "cutout"]
    fig = plots.spectrogram_panels({"a": np.zeros((13, 21)), "b": np.ones((13, 21))})
    assert sum(1 for ax in fig.axes if ax.images) == 2
    with pytest.raises(ValueError, match="empty"):
        plots.signal_panels({})


def test_views_grid_marks_global_and_local_views():
    v = np.random.default_rng(1).normal(size=(10, 250))
    fig = plots.views_grid(v, n_global=2)
    titles = [ax.get_title() for ax in fig.axes if ax.lines]
    assert titles[:2] == ["global view 1", "global view 2"]
    assert all(t.startswith("local") for t in titles[2:]) and len(titles) == 10
    fig = plots.views_grid(np.zeros((4, 13, 21)), n_global=1, kind="spec")
    assert sum(1 for ax in fig.axes if ax.images) == 4
    with pytest.raises(ValueError, match="n_global"):
        plots.views_grid(v, n_global=11)
    with pytest.raises(ValueError):
        plots.views_grid(v, n_global=2, kind="spec")


def test_class_counts_bar_lengths_are_the_counts():
    t = pd.DataFrame({"ours": [5, 7], "official": [50, 70]}, index=["AF", "NSR"])
    fig = plots.class_counts(t, log=False)
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    assert widths == [5, 7, 50, 70]


def test_fold_balance_shows_each_class_share_per_fold():
    counts = pd.DataFrame({"AF": [1, 3], "NSR": [2, 2]}, index=[0, 1])
    fig = plots.fold_balance(counts)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), [[0.25, 0.5], [0.75, 0.5]])
    with_records = counts.assign(records=[3, 5])  # dataset.fold_counts' first column is not a class
    np.testing.assert_allclose(
        plots.fold_balance(with_records).axes[0].images[0].get_array(), [[0.25, 0.5], [0.75, 0.5]]
    )


def test_curves_plots_each_logged_column_and_names_missing_ones():
    log = pd.DataFrame({"epoch": [0, 1, 2], "loss": [3.0, 2.0, 1.5], "lr": [1e-4, 2e-4, 1e-4]})
    fig = plots.curves(log, ["loss", "lr"], logy=["lr"])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [3.0, 2.0, 1.5])
    assert fig.axes[1].get_yscale() == "log"
    with pytest.raises(ValueError, match="teacher_entropy"):
        plots.curves(log, ["teacher_entropy"])


def test_feature_scatter_colours_the_largest_groups_and_counts_them():
    pts = np.arange(20, dtype=float).reshape(10, 2)
    groups = ["NSR"] * 6 + ["AF"] * 3 + ["PVC"]
    fig = plots.feature_scatter(pts, groups, max_groups=2)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["other", "NSR (6)", "AF (3)"]
    with pytest.raises(ValueError, match="labels"):
        plots.feature_scatter(pts, groups[:5])


def test_per_class_bars_and_gate_weights_draw_the_values():
    v = pd.DataFrame({"AUROC": [0.9, 0.6, np.nan]}, index=["AF", "NSR", "PVC"])
    fig = plots.per_class_bars(v, reference=0.5)
    h = _bar_heights(fig.axes[0])
    assert h[:2] == [0.9, 0.6] and np.isnan(h[2])
    w = pd.DataFrame({"time": [0.7, 0.4], "spec": [0.3, 0.6]}, index=["AF", "NSR"])
    fig = plots.gate_weights(w)
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert widths == pytest.approx([0.7, 0.4, 0.3, 0.6])
    with pytest.raises(ValueError, match="spec"):
        plots.gate_weights(w[["time"]])


def test_compare_with_paper_puts_the_papers_value_beside_ours():
    ours = pd.DataFrame({"mean": [80.0, 70.0], "std": [1.0, np.nan]}, index=["t", "ssl-tsg"])
    paper = pd.Series({"t": 95.34, "ssl-tsg": 95.99})
    fig = plots.compare_with_paper(ours, paper, "AUROC")
    ax = fig.axes[0]
    assert _bar_heights(ax) == pytest.approx([80.0, 70.0, 95.34, 95.99])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours", "paper (Phan et al. 2022)"]
    fig = plots.compare_with_paper(ours, None, "AUROC")
    assert len(fig.axes[0].get_legend().get_texts()) == 1


def test_ablation_bars_one_panel_per_modality():
    t = pd.DataFrame(
        {
            "modality": ["time"] * 2 + ["spec"] * 2,
            "transforms": ["none", "t1", "none", "t2"],
            "mean": [0.6, 0.7, 0.5, 0.55],
            "std": [0.01, 0.02, 0.0, np.nan],
        }
    )
    fig = plots.ablation_bars(t, "AUROC")
    assert [ax.get_title() for ax in fig.axes] == ["time series", "time-frequency"]
    assert _bar_heights(fig.axes[1]) == pytest.approx([0.5, 0.55])
    with pytest.raises(ValueError, match="modality"):
        plots.ablation_bars(t.drop(columns="modality"), "AUROC")


def test_mean_std_formats_fractions_as_percent():
    assert results.mean_std(0.95987, 0.00312) == "95.99 ± 0.31"
    assert results.mean_std(0.5, float("nan")) == "50.00"
    assert results.mean_std(float("nan"), 0.1) == "–"


def test_spectrogram_panels_wrap_into_rows_of_three_with_labelled_axes():
    fig = plots.spectrogram_panels({str(i): np.full((13, 21), i) for i in range(6)})
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 6
    assert len({round(ax.get_position().x0, 3) for ax in shown}) == 3  # three columns, two rows
    assert all(ax.get_xlabel() == "time (s)" for ax in shown)
    assert sum(ax.get_ylabel() == "frequency (Hz)" for ax in shown) == 2  # first column of each row


def test_views_grid_labels_time_and_amplitude_axes():
    fig = plots.views_grid(np.zeros((6, 250)), n_global=2, kind="time")
    labelled = [ax for ax in fig.axes if ax.get_ylabel()]
    assert {ax.get_ylabel() for ax in labelled} == {"normalised amplitude"}
    assert any(ax.get_xlabel() == "time (s)" for ax in fig.axes)


def test_curves_name_log_columns_in_words_with_units():
    log = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.7, 0.5]})
    ax = plots.curves(log, ["train_loss"]).axes[0]
    assert ax.get_title() == "training loss (BCE, nats)" and "train_loss" not in ax.get_title()
    assert list(ax.get_xticks()) == [1, 2]


def test_bars_draw_no_error_bar_for_a_single_fold():
    one = pd.DataFrame({"modality": ["time"], "transforms": ["t1"], "mean": [0.8], "std": [np.nan]})
    assert len(plots.ablation_bars(one, "AUROC").axes[0].lines) == 0  # an error bar is drawn as lines
    two = pd.DataFrame({"modality": ["time"], "transforms": ["t1"], "mean": [0.8], "std": [0.1]})
    assert len(plots.ablation_bars(two, "AUROC").axes[0].lines) > 0


def test_paired_intervals_draws_each_mean_and_only_the_intervals_that_exist():
    table = pd.DataFrame({"mean": [1.5, -0.5], "lo": [0.5, np.nan], "hi": [2.5, np.nan]}, index=["SSL-T", "T"])
    ax = plots.paired_intervals(table, "B − A (×100)", label="fixture, 1 fold").axes[0]
    dots = next(line for line in ax.lines if line.get_marker() == "o")
    assert list(dots.get_xdata()) == [1.5, -0.5] and list(dots.get_ydata()) == [1, 0]  # first row on top
    segments = ax.collections[0].get_segments()
    assert len(segments) == 1 and np.allclose(segments[0], [[0.5, 1], [2.5, 1]])  # no bar for the NaN interval
    assert dict(zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()])) == {1: "SSL-T", 0: "T"}
    assert "fixture, 1 fold" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="lo"):
        plots.paired_intervals(table.drop(columns="lo"), "x")
