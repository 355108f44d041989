"""Interactive explorers, each with a static counterpart for the HTML book.

Chapter "The Batch Normalization transform" sets the pattern every chapter follows:

1. write a *plot function* ``plot_fn(fig, **params)`` that draws into the figure it
   is given (and creates nothing else);
2. ``explorer(plot_fn, **controls)`` wires sliders/dropdowns to it for Jupyter,
   Binder and Colab (a live widget; in the built HTML it shows its executed state);
3. ``static_frames(plot_fn, "param", values, **fixed)`` renders the same plot for a
   few values of one parameter as a scrubbable animation (matplotlib's
   ``to_jshtml``), which still teaches when no kernel is running.

Controls are ipywidgets or short-hands: a tuple ``(min, max, step)`` makes a
slider (integer if all three are ints), a list makes a dropdown, anything else is
passed to the plot function as a fixed value.

Each chapter's own plot functions and explorers live in ``bnbook.chapters.<chapter>``.
"""
import re

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import HTML
from matplotlib.animation import FuncAnimation


__all__ = ["explorer", "static_frames"]


# --- the generic scaffold ---------------------------------------------------------------

def _as_widget(name, spec):
    """A control from an ipywidget or a short-hand; None for a fixed value."""
    if isinstance(spec, widgets.ValueWidget):
        if not spec.description:
            spec.description = name
        return spec
    style = {"description_width": "initial"}
    if isinstance(spec, tuple) and len(spec) == 3 and all(isinstance(v, (int, float)) for v in spec):
        lo, hi, step = spec
        if not lo < hi:
            raise ValueError(f"control {name!r}: slider needs min < max, got {spec}")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            return widgets.IntSlider(value=lo, min=lo, max=hi, step=step, description=name,
                                     continuous_update=False, style=style)
        return widgets.FloatSlider(value=(lo + hi) / 2, min=lo, max=hi, step=step, description=name,
                                   continuous_update=False, style=style)
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"control {name!r}: a dropdown needs at least one option")
        return widgets.Dropdown(options=spec, value=spec[0], description=name, style=style)
    return None


def explorer(plot_fn, *, figsize=(9, 3), **controls):
    """Wire controls to ``plot_fn(fig, **params)``; returns the widget to display.

    Each change of a control redraws a fresh figure of size ``figsize`` into an
    Output area. Example (any chapter)::

        def plot(fig, a, kind):
            ax = fig.add_subplot()
            ...
        explorer(plot, a=(0.0, 2.0, 0.1), kind=["x", "y"])
    """
    if not callable(plot_fn):
        raise TypeError(f"plot_fn must be a function plot_fn(fig, **params), got {type(plot_fn).__name__}")
    live, fixed = {}, {}
    for name, spec in controls.items():
        w = _as_widget(name, spec)
        if w is None:
            fixed[name] = spec
        else:
            live[name] = w
    if not live:
        raise ValueError("explorer needs at least one control (a widget, a (min, max, step) tuple or a list)")

    def draw(**params):
        fig = plt.figure(figsize=figsize)
        plot_fn(fig, **fixed, **params)
        plt.show()

    out = widgets.interactive_output(draw, live)
    return widgets.VBox([widgets.HBox(list(live.values()), layout={"flex_flow": "row wrap"}), out])


def static_frames(plot_fn, param, values, *, figsize=(9, 3), dpi=60, interval=900, **fixed):
    """The static counterpart of :func:`explorer`: one frame per value of ``param``.

    Returns an ``IPython.display.HTML`` holding a matplotlib jshtml animation the
    reader can scrub without a kernel. Frames are PNGs embedded in the page, so keep
    ``values`` short (5 to 10) and ``dpi`` low: about 15 to 40 kB per frame.
    """
    values = list(values)
    if not values:
        raise ValueError(f"static_frames needs at least one value of {param!r}")
    if not callable(plot_fn):
        raise TypeError(f"plot_fn must be a function plot_fn(fig, **params), got {type(plot_fn).__name__}")
    if param in fixed:
        raise ValueError(f"{param!r} is the animated parameter; do not also pass it as a fixed value")
    fig = plt.figure(figsize=figsize, dpi=dpi)

    def frame(i):
        fig.clear()
        plot_fn(fig, **fixed, **{param: values[i]})
        return []

    anim = FuncAnimation(fig, frame, frames=len(values), interval=interval, blit=False)
    with plt.rc_context({"savefig.dpi": dpi}):  # to_jshtml saves frames at savefig.dpi, not fig.dpi
        html = anim.to_jshtml(default_mode="once")
    plt.close(fig)  # otherwise the inline backend also shows the last frame
    # matplotlib links Font Awesome 4's stylesheet from a CDN for its buttons' icons; the book's
    # theme (and ipywidgets in Jupyter) already provide Font Awesome, and pages load nothing remote.
    return HTML(re.sub(r'<link[^>]*font-awesome[^>]*>', "", html))
