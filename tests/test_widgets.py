"""The widget scaffold wires controls to plot functions; the BN explorer's data are right."""
import math

import ipywidgets as widgets
import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook import widgets as bw  # noqa: E402


def test_explorer_builds_controls_from_shorthands_and_passes_fixed_values():
    calls = []

    def plot(fig, a, n, kind, fixed):
        calls.append((a, n, kind, fixed))
        fig.add_subplot().plot([0, 1], [0, a])

    box = bw.explorer(plot, a=(0.0, 2.0, 0.5), n=(1, 5, 1), kind=["x", "y"], fixed="f")
    sliders = box.children[0].children
    assert [type(w) for w in sliders] == [widgets.FloatSlider, widgets.IntSlider, widgets.Dropdown]
    assert isinstance(box.children[1], widgets.Output)
    assert calls[-1] == (1.0, 1, "x", "f")       # drawn once on creation
    sliders[1].value = 3
    assert calls[-1] == (1.0, 3, "x", "f")       # and again on every change
    plt.close("all")


def test_explorer_rejects_bad_input():
    with pytest.raises(TypeError, match="plot_fn"):
        bw.explorer("not a function", a=(0, 1, 1))
    with pytest.raises(ValueError, match="at least one control"):
        bw.explorer(lambda fig, a: None, a=3)
    with pytest.raises(ValueError, match="min < max"):
        bw.explorer(lambda fig, a: None, a=(1.0, 0.0, 0.1))


def test_static_frames_renders_one_frame_per_value():
    seen = []

    def plot(fig, a, b):
        seen.append(a)
        fig.add_subplot().plot([0, 1], [b, a])

    html = bw.static_frames(plot, "a", [1, 2, 3], b=0, figsize=(2, 2), dpi=30)
    assert set(seen) >= {1, 2, 3}
    assert html.data.count("data:image/png;base64") >= 3
    with pytest.raises(ValueError, match="animated parameter"):
        bw.static_frames(plot, "a", [1], a=2)
    with pytest.raises(ValueError, match="at least one value"):
        bw.static_frames(plot, "a", [])


@pytest.mark.parametrize("name", list(bw.DISTRIBUTIONS))
def test_samples_have_the_stated_mean_and_std(name):
    x = bw.sample(name, (200_000,), torch.Generator().manual_seed(0))
    pop = bw.DISTRIBUTIONS[name]
    assert x.dtype == torch.float64
    assert abs(x.mean().item() - pop["mean"]) < 0.03
    assert abs(x.std().item() / pop["std"] - 1) < 0.01


def test_batch_mean_spread_is_sigma_over_sqrt_b():
    for name in bw.DISTRIBUTIONS:
        mean, var = bw.batch_statistics(name, 16, 20_000, torch.Generator().manual_seed(1))
        assert mean.shape == var.shape == (20_000,)
        assert abs(mean.std().item() / (bw.DISTRIBUTIONS[name]["std"] / math.sqrt(16)) - 1) < 0.03


def test_sample_and_batch_statistics_reject_bad_input():
    with pytest.raises(ValueError, match="unknown distribution"):
        bw.sample("cauchy", (3,))
    with pytest.raises(ValueError, match="batch_size >= 2"):
        bw.batch_statistics("gaussian", 1, 10)


def test_plot_bn_transform_output_has_mean_beta_and_std_gamma():
    fig = plt.figure()
    bw.plot_bn_transform(fig, "skewed", batch_size=64, gamma=2.0, beta=-1.0, n_batches=50)
    assert len(fig.axes) == 3
    label = fig.axes[1].get_xlabel()
    assert "mean -1.00" in label and "std 2.0" in label
    plt.close(fig)


def test_bn_transform_explorer_has_the_four_controls():
    box = bw.bn_transform_explorer()
    names = [w.description for w in box.children[0].children]
    assert names == ["distribution", "batch size", "gamma", "beta"]
    plt.close("all")
