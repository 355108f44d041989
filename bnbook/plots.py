"""One figure style and the few plot types that recur across chapters.

* :func:`use_style` -- readable sizes, no top/right spines, one colour per variant (:data:`COLORS`).
* :func:`seed_band` -- median and min-max band over seeds; diverged runs are drawn apart and marked with an x.
* :func:`percentile_bands` -- 15/50/85th percentiles over training ("Internal covariate shift", Ioffe Fig. 1).
* :func:`sweep` -- a final metric against a hyperparameter such as the learning rate ("A smoother landscape",
  "BN in practice").

Every function draws on an axis you pass and returns it (:func:`subplots` makes styled ones); nothing calls
``plt.show``. No NaN or infinite value is ever handed to matplotlib.
"""
from __future__ import annotations

import numpy as np
import matplotlib as mpl
import matplotlib.pyplot as plt

from .train import History, check_metric

# One colour per variant, the same in every chapter (Okabe-Ito, readable for colour-blind readers).
COLORS = {
    "plain": "#7f7f7f",
    "bn": "#0072B2",
    "bn_before": "#0072B2",
    "bn_after": "#56B4E9",
    "bn_noaffine": "#009E73",
    "noisy_bn": "#E69F00",
    "ln": "#CC79A7",
    "skipinit": "#D55E00",
    "standardized": "#009E73",
    "raw": "#7f7f7f",
}
DIVERGED_MARKER = dict(marker="x", markersize=9, markeredgewidth=2, linestyle="none")

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 2.0,
}


def use_style() -> None:
    """Apply the book's figure style (matplotlib rcParams). Every chapter calls it once at the top."""
    mpl.rcParams.update(STYLE)


def color(variant: str) -> str:
    """The book's colour for a variant name such as ``'bn'`` or ``'plain'`` (black if unknown)."""
    return COLORS.get(variant, "#000000")


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``plt.subplots`` in the book's style, sized for ``ncols`` panels side by side; returns ``(fig, axes)``."""
    use_style()
    width, height = STYLE["figure.figsize"]
    kwargs.setdefault("figsize", (min(width * ncols, 13.0), height * nrows))
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, **kwargs)


def _runs(runs, metric: str, x):
    """Normalize runs to ``(x, [(values, diverged_at_x or None), ...])``; drop everything non-finite."""
    if isinstance(runs, History) or (isinstance(runs, np.ndarray) and runs.ndim == 1):
        runs = [runs]
    if len(runs) == 0:
        raise ValueError("seed_band needs at least one run")
    out = []
    n_histories = sum(isinstance(r, History) for r in runs)
    if 0 < n_histories < len(runs):
        raise TypeError("runs must be all History objects or all arrays, not a mix")
    if n_histories:
        if metric != "step_loss":
            check_metric(metric)
        for h in runs:
            ys = np.asarray(getattr(h, metric), float)
            xs = np.arange(1.0, len(ys) + 1) if metric == "step_loss" else np.asarray(h.steps, float)
            out.append((xs, ys, h.diverged_at if h.diverged else None))
        return out
    for r in runs:
        ys = np.asarray(r, dtype=float)
        if ys.ndim != 1:
            raise ValueError(f"each run must be a History or a 1-D array, got shape {ys.shape}")
        xs = np.arange(len(ys), dtype=float) if x is None else np.asarray(x, dtype=float)
        if len(xs) != len(ys):
            raise ValueError(f"x has {len(xs)} points but a run has {len(ys)}")
        bad = ~np.isfinite(ys)
        if bad.any():  # an array run diverges at its first non-finite value
            first = int(np.argmax(bad))
            out.append((xs[:first], ys[:first], xs[first]))
        else:
            out.append((xs, ys, None))
    return out


def seed_band(ax, runs, x=None, label: str | None = None, color: str | None = None, metric: str = "test_acc",
              alpha: float = 0.2):
    """The median over seeds as a line and the min-max range as a band.

    ``runs`` is a list of :class:`~bnbook.train.History` (``metric`` picks the curve: an evaluated metric such
    as ``'test_acc'``, or ``'step_loss'`` for the loss of every mini-batch) or of equal-length 1-D
    arrays (``x`` gives their x values; a run with a NaN or infinity counts as diverged there). Diverged runs are
    left out of the band: their curve up to the divergence is dotted and an x marks where they diverged.
    Returns ``ax``.
    """
    runs = _runs(runs, metric, x)
    color = color or "#000000"
    ok = [(xs, ys) for xs, ys, at in runs if at is None]
    lengths = {len(ys) for _, ys in ok}
    if len(lengths) > 1:
        raise ValueError(f"runs that did not diverge must have the same length, got lengths {sorted(lengths)}")
    n_div = len(runs) - len(ok)
    if ok:
        xs, ys = ok[0][0], np.stack([ys for _, ys in ok])
        text = label if not n_div or label is None else f"{label} ({n_div}/{len(runs)} diverged)"
        ax.plot(xs, np.median(ys, axis=0), color=color, label=text)
        if len(ok) > 1:
            ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=color, alpha=alpha, linewidth=0)
    marker_label = f"{label} (all {n_div} diverged)" if label and not ok else None
    for xs, ys, at in (r for r in runs if r[2] is not None):
        ax.plot(xs, ys, color=color, linestyle=":", linewidth=1.2)
        # at the last finite value, or at the bottom of the axis if the run diverged before its first evaluation
        y, where = (ys[-1], ax.transData) if len(ys) else (0.0, ax.get_xaxis_transform())
        ax.plot([at], [y], color=color, transform=where, clip_on=False, label=marker_label, **DIVERGED_MARKER)
        marker_label = None
    return ax


def percentile_bands(ax, steps, p15, p50, p85, color: str | None = None, label: str | None = None,
                     alpha: float = 0.2):
    """Median line between the 15th and 85th percentile band, as in Ioffe and Szegedy's Fig. 1(b, c).

    Accepts three sequences of equal length (e.g. the percentiles a probe recorded during training).
    Non-finite points are skipped. Returns ``ax``.
    """
    steps, lo, mid, hi = (np.asarray(a, dtype=float) for a in (steps, p15, p50, p85))
    if not len(steps) == len(lo) == len(mid) == len(hi):
        raise ValueError(f"steps and the three percentile series must have the same length, got "
                         f"{len(steps)}, {len(lo)}, {len(mid)}, {len(hi)}")
    keep = np.isfinite(steps) & np.isfinite(lo) & np.isfinite(mid) & np.isfinite(hi)
    color = color or "#000000"
    ax.fill_between(steps[keep], lo[keep], hi[keep], color=color, alpha=alpha, linewidth=0)
    for series in (lo, hi):
        ax.plot(steps[keep], series[keep], color=color, linewidth=0.8)
    ax.plot(steps[keep], mid[keep], color=color, label=label)
    return ax


def sweep(ax, values, runs_per_value, metric: str = "test_acc", label: str | None = None,
          color: str | None = None, log: bool = True, row: int = 0):
    """A final metric (median over seeds, min-max error bars) against a hyperparameter such as the learning rate.

    ``runs_per_value[i]`` is the list of :class:`~bnbook.train.History` trained with ``values[i]``; ``metric`` is
    an evaluated metric (its final value) or a function of a History (e.g. ``lambda h: h.first_step(...)``),
    NaN or None for a diverged run. The point is
    the median over the seeds that did not diverge; where some seeds diverged it is annotated "k/n div."; where
    all diverged an x marks the value near the bottom of the axes. ``row`` lifts those x marks (row 0 lowest) so
    that several curves on one axes keep their markers apart. Returns ``ax``.
    """
    if not callable(metric):
        check_metric(metric)
    if len(values) != len(runs_per_value):
        raise ValueError(f"got {len(values)} values but {len(runs_per_value)} lists of runs")
    value_of = metric if callable(metric) else (lambda h: h.final(metric))
    color = color or "#000000"
    good_x, med, lo, hi, bad_x = [], [], [], [], []
    for v, runs in zip(values, runs_per_value):
        finals = [f for f in (value_of(h) for h in runs if not h.diverged) if f is not None and np.isfinite(f)]
        if not finals:
            bad_x.append(v)
            continue
        good_x.append(v)
        med.append(np.median(finals))
        lo.append(np.median(finals) - min(finals))
        hi.append(max(finals) - np.median(finals))
        if len(finals) < len(runs):
            ax.annotate(f"{len(runs) - len(finals)}/{len(runs)} div.", (v, med[-1]), textcoords="offset points",
                        xytext=(4, 4), fontsize="x-small", color=color)
    if good_x:
        ax.errorbar(good_x, med, yerr=[lo, hi], color=color, marker="o", capsize=3, label=label)
    if bad_x:
        ax.plot(bad_x, [0.03 + 0.06 * row] * len(bad_x), color=color, transform=ax.get_xaxis_transform(),
                clip_on=False, **DIVERGED_MARKER, label=f"{label}: diverged" if label else "diverged")
    if log:
        ax.set_xscale("log")
    return ax
