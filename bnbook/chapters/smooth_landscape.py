"""Chapter "A smoother landscape": Santurkar et al.'s landscape measures along the gradient direction.

At parameters ``p`` with gradient ``g`` (of the loss on a fixed batch, BN in training mode), take points along
the gradient direction and record the loss and the gradient there (Santurkar et al. 2018, sec. 3.1):

* the **loss range**: max - min of the loss over the points ("variation of the loss");
* the **gradient change** ("gradient predictiveness"): ``||g(p') - g(p)||``, how far the gradient at the
  current point mispredicts the gradient after the step (small = predictive);
* the **effective smoothness** ``L_eff`` (Santurkar et al.'s "effective beta-smoothness"; the book writes L,
  see the notation page): the largest ``||g(p') - g(p)|| / ||p' - p||`` over the points.

Santurkar et al. step by ``eta * g`` for a range of learning rates ``eta`` (:func:`along_gradient` with
``matched=False``). A net with smaller gradients then moves a shorter distance, so part of any difference is
scale. ``matched=True`` moves every net the same distances ``s`` along the unit direction ``g / ||g||`` and
reports the gradient change relative to ``||g||``, which separates the scale from the shape.

The code of the chapter "A smoother landscape" (``chapters/smooth_landscape.ipynb``): these measures,
:func:`scale_invariance` (Ioffe and Szegedy's sec. 3.3 on a real net), the chapter's widget
(:func:`plot_landscape_explorer`) and its exercise self-checks. The loss as a function of the parameters comes
from the toolkit's :mod:`bnbook.hessian`.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..hessian import dot, gradient, loss_function
from ..measure import probing
from ..plots import color as default_color, seed_band
from ..selfcheck import call_answer, function_answer, not_attempted, numeric_answer, ok, wrong

__all__ = ["along_gradient", "summarize", "landscape_measures", "scale_invariance", "plot_landscape_explorer",
           "check_stable_lr", "check_effective_smoothness", "check_scale_invariance"]

MEASURES = ("loss_range", "grad_change", "rel_grad_change", "smoothness")


def _steps(step_sizes) -> np.ndarray:
    try:
        steps = np.asarray(step_sizes, dtype=float).ravel()
    except (TypeError, ValueError):
        steps = np.array([np.nan])
    if steps.size == 0 or not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise ValueError(f"step_sizes must be a non-empty sequence of positive numbers, got {step_sizes!r}")
    return np.sort(steps)


def along_gradient(model, x, y, step_sizes, matched: bool = False, loss=F.cross_entropy) -> dict:
    """The loss and the gradient at points along the (negative) gradient direction of ``model`` on ``(x, y)``.

    ``matched=False``: the points are ``p - eta * g`` for ``eta`` in ``step_sizes`` (learning rates, as Santurkar
    et al.); ``matched=True``: ``p - s * g / ||g||`` for distances ``s`` in ``step_sizes``. BN uses the statistics
    of ``x`` (training mode); the model is not changed. Returns arrays over the points: ``step`` (the step
    sizes, sorted), ``distance`` (``||p' - p||``), ``loss``, ``grad_change`` (``||g(p') - g(p)||``), and the
    scalars ``loss0`` and ``grad_norm`` (``||g(p)||``). A point where the loss is not finite gets NaN.
    """
    steps = _steps(step_sizes)
    f, params = loss_function(model, x, y, loss=loss)
    g = gradient(f, params)
    grad_norm = float(torch.sqrt(dot(g, g)))
    if not math.isfinite(grad_norm) or grad_norm == 0:
        raise ValueError(f"the gradient norm is {grad_norm}; the landscape along it is undefined")
    with torch.no_grad():
        loss0 = float(f(*params))
    scale = 1.0 / grad_norm if matched else 1.0
    out = {key: np.full(len(steps), np.nan) for key in ("loss", "grad_change")}
    for i, s in enumerate(steps):
        moved = tuple(p - (s * scale) * d for p, d in zip(params, g))
        with torch.no_grad():
            value = float(f(*moved))
        if not math.isfinite(value):
            continue
        g_moved = gradient(f, moved)
        change = float(torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(g_moved, g))))
        out["loss"][i], out["grad_change"][i] = value, change
    distance = steps * scale * grad_norm
    return {"step": steps, "distance": distance, **out, "loss0": loss0, "grad_norm": grad_norm}


def summarize(result: dict) -> dict[str, float]:
    """The three measures of one :func:`along_gradient` result (over its finite points).

    ``loss_range`` (max - min of the loss, including the starting point), ``grad_change`` (the largest
    ``||g(p') - g(p)||``), ``rel_grad_change`` (the same over ``||g(p)||``) and ``smoothness`` (the largest
    ``||g(p') - g(p)|| / ||p' - p||``, the effective smoothness constant L_eff, which Santurkar et al. call
    the effective beta-smoothness). NaN if no point is finite.
    """
    ok = np.isfinite(result["loss"]) & np.isfinite(result["grad_change"])
    if not ok.any():
        return {key: math.nan for key in MEASURES}
    losses = np.append(result["loss"][ok], result["loss0"])
    change = result["grad_change"][ok]
    return {"loss_range": float(losses.max() - losses.min()),
            "grad_change": float(change.max()),
            "rel_grad_change": float(change.max() / result["grad_norm"]),
            "smoothness": float((change / result["distance"][ok]).max())}


def landscape_measures(model, x, y, step_sizes, matched: bool = False, loss=F.cross_entropy) -> dict[str, float]:
    """:func:`summarize` of :func:`along_gradient`, plus ``grad_norm``: one row of the chapter's measurements."""
    result = along_gradient(model, x, y, step_sizes, matched=matched, loss=loss)
    return {**summarize(result), "grad_norm": result["grad_norm"]}


def scale_invariance(model, layer: str, x, y, a: float = 2.0, loss=F.cross_entropy) -> dict[str, float]:
    """Ioffe and Szegedy's sec. 3.3 on a real net: multiply the weight of ``layer`` (a name such as ``'fc2'``)
    by ``a`` and compare with the original, BN in training mode on ``(x, y)``; the model is not changed.

    Returns ``output_change`` (largest change of any output; 0 if the layer feeds BN, since BN(aWu) = BN(Wu)),
    ``grad_ratio`` (``||dL/d(aW)|| / ||dL/dW||``; ``1/a`` if the layer feeds BN), ``rel_update_ratio`` (the
    ratio of the relative update sizes ``||dL/dW|| / ||W||``; ``1/a^2``: the weight's effective learning rate)
    and ``radial`` (``|<W, dL/dW>| / (||W|| ||dL/dW||)``; 0 if the layer feeds BN, so the gradient is
    orthogonal to the weight and an SGD step can only make the weight longer).
    """
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not a > 0 or not math.isfinite(a):
        raise ValueError(f"a must be a positive number, got {a!r}")
    key = f"{layer}.weight"
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if key not in names:
        weights = [n[:-len('.weight')] for n in names if n.endswith(".weight")]
        raise ValueError(f"the model has no trainable layer {layer!r} with a weight; layers: {weights}")
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        dict(scaled.named_parameters())[key].mul_(a)
    rows = []
    for net in (model, scaled):
        f, params = loss_function(net, x, y, loss=loss)
        with torch.no_grad(), probing(net, train_mode=True):  # BN's running statistics are restored
            out = net(x)
        w, g = params[names.index(key)], gradient(f, params)[names.index(key)]
        rows.append((out, w, g))
    (out, w, g), (out_a, w_a, g_a) = rows
    return {"output_change": float((out - out_a).abs().max()),
            "grad_ratio": float(g_a.norm() / g.norm()),
            "rel_update_ratio": float((g_a.norm() / w_a.norm()) / (g.norm() / w.norm())),
            "radial": float((w * g).sum().abs() / (w.norm() * g.norm()))}


# --- the widget ---------------------------------------------------------------------------------------------------

def _nearest(values, value):
    values = list(values)
    return values[int(np.argmin([abs(math.log(v) - math.log(value)) for v in values]))]


def plot_landscape_explorer(fig, step, lr, curves, sweep, colors=None):
    """The chapter's explorer: ``step`` along the gradient, training at learning rate ``lr``.

    ``curves[variant]`` is an :func:`along_gradient` result (``matched=False``) per variant (e.g. ``'plain'``,
    ``'bn'``); ``sweep[variant][lr]`` a :class:`~bnbook.train.History`. Left: the loss along the gradient with
    the chosen step marked; middle: the gradient change there; right: the training loss at the learning rate of
    the sweep nearest ``lr`` (a diverged run is dotted and ends in an x, drawn by
    :func:`bnbook.plots.seed_band`). Draws into ``fig`` only.
    """
    colors = colors or {}
    ax_loss, ax_grad, ax_train = fig.subplots(1, 3)
    for variant, res in curves.items():
        c = colors.get(variant, default_color(variant))
        ok = np.isfinite(res["loss"])
        steps = np.concatenate([[0.0], res["step"][ok]])
        ax_loss.plot(steps, np.concatenate([[res["loss0"]], res["loss"][ok]]), color=c, label=variant)
        ax_grad.plot(res["step"][ok], res["grad_change"][ok], color=c, label=variant)
        near = int(np.argmin(np.abs(res["step"] - step)))
        if ok[near]:
            ax_loss.plot([res["step"][near]], [res["loss"][near]], "o", color=c)
            ax_grad.plot([res["step"][near]], [res["grad_change"][near]], "o", color=c)
    for ax in (ax_loss, ax_grad):
        ax.axvline(step, color="0.4", lw=1, ls="--")
        ax.set_xlabel(r"step size $\eta$ along $-g$")
    ax_loss.set(ylabel="loss", title="loss along the gradient", yscale="log")
    ax_grad.set(ylabel=r"$\|g(\theta-\eta g) - g(\theta)\|$", title="gradient change", yscale="log")
    ax_loss.legend()
    for variant, runs in sweep.items():
        c = colors.get(variant, default_color(variant))
        seed_band(ax_train, [runs[_nearest(runs, lr)]], metric="step_loss", label=variant, color=c)
    ax_train.set(xlabel="SGD step", ylabel="mini-batch loss", yscale="log",
                 title=f"training, lr = {_nearest(next(iter(sweep.values())), lr):g}")
    fig.tight_layout()


# --- exercise self-checks -----------------------------------------------------------------------------------------

def check_stable_lr(answer, lam: float):
    """Exercise: the largest learning rate for which gradient descent on ``f(x) = lam / 2 x^2`` converges."""
    value, verdict = numeric_answer(answer, "the largest stable learning rate")
    if value is None:
        return verdict
    right = 2.0 / lam
    if math.isclose(value, right, rel_tol=1e-3):
        return ok(f"lr < 2 / lambda = {right:.4g}: each step multiplies x by (1 - lr lambda), which must lie "
                   "in (-1, 1)")
    if math.isclose(value, 1.0 / lam, rel_tol=1e-3):
        return wrong("1 / lambda is the step that jumps straight to the minimum; larger steps overshoot but still "
                      "converge as long as |1 - lr lambda| < 1")
    return wrong(f"{value:.4g} is not it: write one step as x <- (1 - lr lambda) x and ask when |1 - lr lambda| < 1")


def check_effective_smoothness(fn):
    """Exercise: ``fn(distance, grad_change)`` returns the effective smoothness L_eff of arrays over points."""
    fn, verdict = function_answer(fn, "your effective_smoothness(distance, grad_change)",
                                  "check_effective_smoothness(effective_smoothness)")
    if fn is None:
        return verdict
    distance = np.array([0.1, 0.2, 0.4, 0.8])
    change = np.array([0.05, 0.3, 0.4, 0.6])
    result, verdict = call_answer(fn, distance, change, signature="fn(distance, grad_change) with two arrays of 4")
    if verdict is not None:
        return verdict
    if result is None:
        return wrong("your function returned None: return the effective smoothness, one number")
    value, verdict = numeric_answer(result, "the value your function returned")
    if value is None:
        return verdict
    if math.isclose(value, 1.5, rel_tol=1e-6):
        return ok("the largest ratio of gradient change to distance moved: 1.5 here")
    if math.isclose(value, 0.6 / 0.8, rel_tol=1e-6):
        return wrong("that is the ratio at the farthest point only; L_eff is the largest ratio over all points")
    if math.isclose(value, 0.6 / 0.1, rel_tol=1e-6):
        return wrong("that divides the largest change by the smallest distance; take the ratio point by point")
    return wrong(f"got {value:.4g}; compute grad_change / distance at every point and take the largest")


def check_scale_invariance(grad_factor, rel_update_factor, a: float = 2.0):
    """Exercise: scaling a weight that feeds BN by ``a`` multiplies its gradient by ? and its relative update by ?

    Both answers are numbers; None in either is "not attempted".
    """
    if grad_factor is None or rel_update_factor is None:
        return not_attempted("the two factors (gradient, relative update)")
    g, verdict = numeric_answer(grad_factor, "the factor of the gradient")
    if g is None:
        return verdict
    r, verdict = numeric_answer(rel_update_factor, "the factor of the relative update")
    if r is None:
        return verdict
    ok_g, ok_r = math.isclose(g, 1 / a, rel_tol=1e-3), math.isclose(r, 1 / a**2, rel_tol=1e-3)
    if ok_g and ok_r:
        return ok(f"gradient x 1/a = {1 / a:g}, relative update x 1/a^2 = {1 / a**2:g}")
    if not ok_g:
        return wrong(f"gradient factor {g:g} is off: differentiate BN((a W) u) = BN(W u) with respect to a W")
    return wrong(f"relative update factor {r:g} is off: the update shrinks by 1/a and the weight grows by a")
