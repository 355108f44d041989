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

The BN transform's own explorer is :func:`bn_transform_explorer`; its plot
function is :func:`plot_bn_transform`, its data :func:`sample`.
"""
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML
from matplotlib.animation import FuncAnimation

from .functional import bn_forward

__all__ = [
    "explorer", "static_frames",
    "DISTRIBUTIONS", "sample", "batch_statistics", "plot_bn_transform", "bn_transform_explorer",
]


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
    return HTML(html)


# --- the BN transform explorer ------------------------------------------------------------

# Populations with mean and standard deviation far from 0 and 1, so normalizing visibly matters.
DISTRIBUTIONS = {
    "gaussian": dict(mean=2.0, std=1.5),
    "uniform": dict(mean=2.0, std=6.0 / math.sqrt(12.0)),   # U(-1, 5)
    "skewed": dict(mean=2.5, std=1.5),                      # 1 + Exponential(scale 1.5)
    "bimodal": dict(mean=1.5, std=math.sqrt(0.25 + 6.25)),  # N(-1, .5^2) and N(4, .5^2), equal weights
}


def sample(distribution, shape, generator=None):
    """Draw float64 samples of one of :data:`DISTRIBUTIONS` (a torch tensor of ``shape``)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {sorted(DISTRIBUTIONS)}")
    g = generator
    if distribution == "gaussian":
        return 2.0 + 1.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    if distribution == "uniform":
        return -1.0 + 6.0 * torch.rand(shape, generator=g, dtype=torch.float64)
    if distribution == "skewed":
        u = torch.rand(shape, generator=g, dtype=torch.float64)
        return 1.0 - 1.5 * torch.log1p(-u)
    side = torch.rand(shape, generator=g, dtype=torch.float64) < 0.5
    return torch.where(side, -1.0, 4.0) + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)


def batch_statistics(distribution, batch_size, n_batches, generator=None):
    """Batch means and biased batch variances of ``n_batches`` independent mini-batches."""
    if batch_size < 2:
        raise ValueError(f"a batch variance needs batch_size >= 2, got {batch_size}")
    x = sample(distribution, (n_batches, batch_size), generator)
    var, mean = torch.var_mean(x, dim=1, correction=0)
    return mean, var


def _normalize_batches(x, gamma, beta):
    """Algorithm 1 applied to each row of x (one row = one mini-batch of one feature).

    The rows of x are the columns of x.T, which bnbook's BN treats as separate features.
    """
    return gamma * bn_forward(x.T)[0].T + beta


BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)


def plot_bn_transform(fig, distribution="gaussian", batch_size=16, gamma=1.0, beta=0.0,
                      n_batches=400, seed=0):
    """Three panels: the input, the output of BN over many mini-batches, the batch-statistic noise.

    The output histogram pools ``n_batches`` mini-batches, each normalized with its own
    mean and variance; its shape is the input's shape (BN shifts and scales, it does not
    make data Gaussian) and its mean and standard deviation are beta and about gamma.
    The right panel shows how much the batch mean and the batch standard deviation vary
    from one mini-batch to the next, against batch size, for the chosen distribution.
    """
    g = torch.Generator().manual_seed(seed)
    pop = DISTRIBUTIONS[distribution]
    x = sample(distribution, (n_batches, batch_size), g)
    y = _normalize_batches(x, gamma, beta)
    ax_in, ax_out, ax_noise = fig.subplots(1, 3)

    ax_in.hist(x.flatten().numpy(), bins=40, density=True, color="0.6")
    ax_in.axvline(pop["mean"], color="k", lw=1)
    ax_in.set_title(f"input x ({distribution})")
    ax_in.set_xlabel("x")

    ax_out.hist(y.flatten().numpy(), bins=40, density=True, color="C0")
    ax_out.axvline(beta, color="k", lw=1)
    ax_out.set_title(f"output y, batch size {batch_size}")
    mean, std = round(y.mean().item(), 2) + 0.0, y.std().item()   # + 0.0 turns -0.0 into 0.0
    ax_out.set_xlabel(f"y   (mean {mean:.2f}, std {std:.2f})")
    ax_out.set_xlim(beta - 4 * max(abs(gamma), 0.25), beta + 4 * max(abs(gamma), 0.25))

    sizes = np.array(BATCH_SIZES)
    sd_mean, sd_std = [], []
    for b in sizes:
        mean, var = batch_statistics(distribution, int(b), n_batches, g)
        sd_mean.append(mean.std().item() / pop["std"])
        sd_std.append(var.sqrt().std().item() / pop["std"])
    ax_noise.loglog(sizes, sd_mean, "o-", label="batch mean")
    ax_noise.loglog(sizes, sd_std, "s-", label="batch std")
    ax_noise.loglog(sizes, 1 / np.sqrt(sizes), "k--", lw=1, label=r"$1/\sqrt{B}$")
    ax_noise.axvline(batch_size, color="C3", lw=1)
    ax_noise.set_xticks(sizes[::2], [str(b) for b in sizes[::2]])
    ax_noise.set_yticks([0.03, 0.1, 0.3, 1.0], ["0.03", "0.1", "0.3", "1"])
    ax_noise.minorticks_off()
    ax_noise.set_xlabel("batch size B")
    ax_noise.set_ylabel(r"spread across batches / $\sigma$")
    ax_noise.set_title("batch-statistic noise")
    ax_noise.legend(fontsize="small")
    fig.tight_layout()


def bn_transform_explorer():
    """The chapter's widget: distribution, batch size, gamma and beta in; the three panels out."""
    return explorer(
        plot_bn_transform,
        figsize=(10, 3.2),
        distribution=list(DISTRIBUTIONS),
        batch_size=widgets.SelectionSlider(options=list(BATCH_SIZES), value=16, description="batch size",
                                           continuous_update=False),
        gamma=widgets.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1, description="gamma",
                                  continuous_update=False),
        beta=widgets.FloatSlider(value=0.0, min=-2.0, max=2.0, step=0.1, description="beta",
                                 continuous_update=False),
    )
