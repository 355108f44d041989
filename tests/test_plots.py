"""Tests for bnbook.plots: style, seed bands with diverged runs, never a NaN handed to matplotlib."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from bnbook import data, models, plots, train  # noqa: E402
from bnbook.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def run(values, diverged_at=None, steps=None):
    steps = steps or [0, 10, 20, 30][:len(values)]
    return History(steps=steps, test_acc=list(values), train_loss=list(values), test_loss=list(values),
                   train_acc=list(values), diverged=diverged_at is not None, diverged_at=diverged_at)


def plotted_y(ax):
    """Every y value handed to matplotlib: lines and the vertices of bands."""
    ys = [np.asarray(line.get_ydata(), float) for line in ax.lines]
    ys += [np.asarray(p.get_paths()[0].vertices[:, 1]) for p in ax.collections if isinstance(p, PolyCollection)]
    return np.concatenate(ys) if ys else np.array([])


def markers(ax):
    return [line for line in ax.lines if line.get_marker() == "x"]


def test_use_style_sets_the_book_style():
    plots.use_style()
    assert not matplotlib.rcParams["axes.spines.top"] and not matplotlib.rcParams["axes.spines.right"]
    assert matplotlib.rcParams["font.size"] >= 11
    assert plots.color("bn") != plots.color("plain") and plots.color("unknown") == "#000000"
    fig, axes = plots.subplots(1, 3)
    assert len(axes) == 3 and fig.get_figwidth() <= 13.0


def test_seed_band_median_band_and_diverged_marker():
    fig, ax = plots.subplots()
    runs = [run([0.1, 0.5, 0.8, 0.9]), run([0.1, 0.6, 0.85, 0.95]), run([0.1, 0.4, 0.7, 0.8]),
            run([0.1, 0.3], diverged_at=17)]
    assert plots.seed_band(ax, runs, label="plain", color=plots.color("plain")) is ax
    median = ax.lines[0]
    assert np.allclose(median.get_ydata(), [0.1, 0.5, 0.8, 0.9])
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 1 and np.isclose(band[0].get_paths()[0].vertices[:, 1].max(), 0.95)
    [x_mark] = markers(ax)
    assert list(x_mark.get_xdata()) == [17] and list(x_mark.get_ydata()) == [0.3]
    assert "1/4 diverged" in ax.get_legend_handles_labels()[1][0]
    assert np.isfinite(plotted_y(ax)).all()


def test_seed_band_with_arrays_treats_nan_as_divergence():
    fig, ax = plots.subplots()
    x = np.array([1, 2, 3, 4])
    plots.seed_band(ax, [np.array([1.0, 0.5, 0.3, 0.2]), np.array([1.0, 0.6, np.nan, np.nan]),
                         np.array([1.0, 0.4, 0.2, 0.1])], x=x, label="bn")
    assert np.isfinite(plotted_y(ax)).all()
    [x_mark] = markers(ax)
    assert list(x_mark.get_xdata()) == [3] and list(x_mark.get_ydata()) == [0.6]


def test_seed_band_when_every_run_diverged_at_once():
    fig, ax = plots.subplots()
    plots.seed_band(ax, [run([], diverged_at=1, steps=[]), run([0.1], diverged_at=3, steps=[0])], label="plain")
    assert len(markers(ax)) == 2 and np.isfinite(plotted_y(ax)).all()
    assert "all 2 diverged" in ax.get_legend_handles_labels()[1][0]
    fig.canvas.draw()


def test_real_diverged_run_plots_without_nan():
    raw = data.digits(seed=0)
    torch.manual_seed(0)
    runs = [train.train(models.mlp(64, [32], 10), raw, steps=40, lr=lr, eval_every=10, progress=False)
            for lr in (1e-3, 1e4)]
    assert runs[1].diverged
    fig, ax = plots.subplots()
    for metric in ("test_acc", "train_loss", "step_loss"):
        plots.seed_band(ax, runs, metric=metric, label=metric)
    assert np.isfinite(plotted_y(ax)).all() and len(markers(ax)) == 3
    assert markers(ax)[-1].get_xdata()[0] == runs[1].diverged_at
    fig.canvas.draw()


def test_percentile_bands_skip_non_finite_points():
    fig, ax = plots.subplots()
    steps = np.arange(5)
    plots.percentile_bands(ax, steps, [-1, -1, np.nan, -1, -1], [0, 0, 0, 0, 0], [1, 1, 1, np.inf, 1],
                           color=plots.color("bn"), label="bn")
    assert np.isfinite(plotted_y(ax)).all()
    assert list(ax.lines[-1].get_xdata()) == [0, 1, 4]
    with pytest.raises(ValueError, match="same length"):
        plots.percentile_bands(ax, steps, [0], [0], [0])


def test_sweep_marks_where_seeds_diverged():
    fig, ax = plots.subplots()
    lrs = [0.01, 0.1, 1.0, 3.0]
    runs = [[run([0.2, 0.5]), run([0.2, 0.7])], [run([0.2, 0.9]), run([0.2, 0.95])],
            [run([0.2, 0.9]), run([0.2], diverged_at=4)], [run([0.2], diverged_at=2), run([0.2], diverged_at=1)]]
    plots.sweep(ax, lrs, runs, label="plain")
    plots.sweep(ax, lrs, [runs[3]] * 4, label="other", row=1)
    first, second = markers(ax)
    assert list(first.get_xdata()) == [3.0] and ax.get_xscale() == "log"
    assert second.get_ydata()[0] > first.get_ydata()[0]  # rows keep the x marks apart
    assert [t.get_text() for t in ax.texts] == ["1/2 div."]  # lr 1.0: the surviving seed, annotated
    assert np.isfinite(plotted_y(ax)).all()
    with pytest.raises(ValueError, match="2 values but 4"):
        plots.sweep(ax, lrs[:2], runs)


def test_bad_inputs_raise_clear_errors():
    fig, ax = plots.subplots()
    with pytest.raises(ValueError, match="unknown metric"):
        plots.seed_band(ax, [run([0.1])], metric="acc")
    with pytest.raises(ValueError, match="same length"):
        plots.seed_band(ax, [np.ones(3), np.ones(4)])
    with pytest.raises(ValueError, match="at least one run"):
        plots.seed_band(ax, [])
    with pytest.raises(TypeError, match="not a mix"):
        plots.seed_band(ax, [run([0.1]), np.ones(1)])


def test_sweep_plots_a_function_of_each_history():
    fig, ax = plots.subplots()
    runs = [[run([0.2, 0.5]), run([0.2, 0.7])], [run([0.2], diverged_at=3), run([0.2], diverged_at=2)]]
    plots.sweep(ax, [1.0, 2.0], runs, metric=lambda h: len(h.steps) * 10.0)
    assert list(markers(ax)[0].get_xdata()) == [2.0]
    assert 20.0 in plotted_y(ax)
