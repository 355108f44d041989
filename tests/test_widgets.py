"""The widget scaffold wires controls to plot functions; the BN explorer's data are right."""

import ipywidgets as widgets
import matplotlib
import pytest

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


