"""The deep scalar chain y = x w_1 w_2 ... w_l and what one gradient step does to it.

Goodfellow, Bengio and Courville (Deep Learning, sec. 8.7.1) use this chain to show that gradient descent sees
only first-order effects: after the step w_i <- w_i - lr g_i the output is

    y(lr) = x (w_1 - lr g_1)(w_2 - lr g_2) ... (w_l - lr g_l),

a polynomial of degree l in the learning rate. Its coefficient of lr is -g^T g (what the gradient predicts);
the others (lr^2 g_1 g_2 w_3 ... w_l and its relatives) are what it misses. Everything here is exact algebra in
float64 NumPy. This is the code of the chapter "Higher-order effects" (chapters/higher_order.ipynb): the chain
experiments, the explorer's plot function and the chapter's two self-checks.
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch

from .. import hessian
from ..seeding import rng
from ..selfcheck import not_attempted, numeric_answer, ok, wrong

__all__ = [
    "chain_weights", "output", "chain_gradient", "step_polynomial", "one_step", "motion", "crossover_lr",
    "equal_weights_crossover", "plot_chain", "check_second_order", "check_crossover", "layer_groups",
    "curvature_split",
]


def _weights(w) -> np.ndarray:
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"w must be a sequence of numbers, got {type(w).__name__}") from None
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"w must be a non-empty 1-D sequence of weights, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("w must contain finite numbers only")
    return w


def _number(name: str, value, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be {'positive and ' if positive else ''}finite, got {value}")
    return value


def _finite(values, what: str):
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the {what} overflow float64: use fewer layers, smaller weights or a smaller lr")
    return values


def chain_weights(depth: int, scale: float, spread: float = 0.0, seed: int | None = None) -> np.ndarray:
    """``depth`` positive weights ``scale * exp(spread * z_i)`` with z_i standard normal (all equal to ``scale``
    when ``spread=0``); ``seed=None`` draws the z_i from the book's base seed (:mod:`bnbook.seeding`)."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    scale = _number("scale", scale, positive=True)
    spread = _number("spread", spread)
    if spread < 0:
        raise ValueError(f"spread must be >= 0, got {spread}")
    z = rng(seed).standard_normal(depth)
    return scale * np.exp(spread * z)


def output(w, x: float = 1.0) -> float:
    """y = x w_1 ... w_l."""
    return _number("x", x) * float(np.prod(_weights(w)))


def chain_gradient(w, x: float = 1.0) -> np.ndarray:
    """dy/dw_i = x times the product of all the *other* weights (prefix and suffix products, so a zero weight is
    fine)."""
    w, x = _weights(w), _number("x", x)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _finite
        before = np.concatenate([[1.0], np.cumprod(w[:-1])])
        after = np.concatenate([np.cumprod(w[::-1][:-1])[::-1], [1.0]])
        g = x * before * after
    return _finite(g, "gradients")


def step_polynomial(w, x: float = 1.0) -> np.ndarray:
    """Coefficients c_0, ..., c_l of y(lr) = x prod_i (w_i - lr g_i) = sum_k c_k lr^k.

    c_0 = y, c_1 = -g^T g (the first-order prediction per unit lr), c_2 = sum_{i<j} g_i g_j prod_{k != i,j} w_k.
    """
    w, g = _weights(w), chain_gradient(w, x)
    poly = np.array([_number("x", x)])
    with np.errstate(over="ignore", invalid="ignore"):
        for wi, gi in zip(w, g):
            # multiply by (w_i - lr g_i); poly[k] is the coefficient of lr^k
            poly = np.concatenate([poly * wi, [0.0]]) - np.concatenate([[0.0], poly * gi])
    return _finite(poly, "coefficients")


def one_step(w, lr: float, x: float = 1.0) -> dict:
    """What one gradient step of size ``lr`` on y does to y.

    Returns ``actual`` (y after the step minus y before, by direct multiplication), ``first`` (-lr g^T g),
    ``second`` (c_2 lr^2), ``terms`` (c_k lr^k for k = 1..l; they sum to ``actual``) and ``relative_error``
    (|sum of the terms of order >= 2| / |first|, computed from the terms, so it stays accurate when tiny).
    """
    w, lr = _weights(w), _number("lr", lr, positive=True)
    g = chain_gradient(w, x)
    coef = step_polynomial(w, x)
    with np.errstate(over="ignore", invalid="ignore"):
        terms = _finite(coef[1:] * lr ** np.arange(1, len(coef)), "terms")
    actual = _number("x", x) * float(np.prod(w - lr * g)) - output(w, x)
    first = float(terms[0])
    higher = float(terms[1:].sum())
    rel = abs(higher) / abs(first) if first != 0 else math.inf
    return {"actual": actual, "first": first, "second": float(terms[1]) if len(terms) > 1 else 0.0,
            "terms": terms, "relative_error": rel}


def motion(w, x: float = 1.0) -> dict:
    """Read y(t) = x prod_i (w_i - t g_i) as a motion in time t (the learning rate is the time step).

    ``position`` y(0), ``velocity`` y'(0) = -g^T g, ``acceleration`` y''(0) = 2 c_2, and ``time_scale``
    |velocity| / |acceleration|: how long the velocity stays roughly constant (inf without acceleration).
    """
    coef = step_polynomial(w, x)
    velocity = float(coef[1])
    acceleration = 2.0 * float(coef[2]) if len(coef) > 2 else 0.0
    tau = abs(velocity) / abs(acceleration) if acceleration != 0 else math.inf
    return {"position": float(coef[0]), "velocity": velocity, "acceleration": acceleration,
            "time_scale": tau}


def crossover_lr(w, x: float = 1.0) -> float:
    """The learning rate at which the second-order term is as large as the first: |c_1| / |c_2|
    (twice the time scale of :func:`motion`)."""
    coef = step_polynomial(w, x)
    if len(coef) < 3 or coef[2] == 0:
        return math.inf
    return abs(float(coef[1])) / abs(float(coef[2]))


def equal_weights_crossover(depth: int, scale: float) -> float:
    """:func:`crossover_lr` in closed form for ``depth`` weights all equal to ``scale`` (x = 1):
    2 / ((depth - 1) scale^(depth - 2))."""
    chain_weights(depth, scale)  # validates
    if depth < 2:
        return math.inf
    return 2.0 / ((depth - 1) * scale ** (depth - 2))


# --- the widget's plot function -------------------------------------------------------------------

def plot_chain(fig, depth: int = 10, scale: float = 1.0, log10_lr: float = -2.0, spread: float = 0.0,
               seed: int | None = None):
    """Two panels for one chain (:func:`chain_weights` with ``seed``) and one step of size 10**log10_lr.

    Left: the change of y after one step divided by the first-order prediction, over a range of step sizes:
    exact, first order (1 by definition) and first + second order. Right: the size of each order's term
    relative to the first-order term at the chosen step.
    """
    w = chain_weights(int(depth), scale, spread, seed)
    lr = 10.0 ** float(log10_lr)
    y, g = output(w), chain_gradient(w)
    coef = step_polynomial(w)
    grid = lr * np.logspace(-2, 2, 81)
    with np.errstate(over="ignore", invalid="ignore"):
        exact = np.array([np.prod(w - e * g) - y for e in grid]) / (coef[1] * grid)
    second = 1 + (coef[2] / coef[1] * grid if len(coef) > 2 else 0 * grid)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(grid, np.clip(exact, -2.5, 2.5), "k-", lw=2, label="exact")
    ax1.plot(grid, np.ones_like(grid), "C0--", label="first order")
    ax1.plot(grid, np.clip(second, -2.5, 2.5), "C1:", lw=2, label="first + second")
    ax1.axvline(lr, color="C3", lw=1)
    ax1.axhline(0, color="0.7", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_ylim(-2.2, 2.2)
    ax1.set(xlabel="learning rate (step size)", ylabel="change of y / first-order prediction",
            title=f"depth {int(depth)}, crossover lr = {crossover_lr(w):.2g}")
    ax1.legend(fontsize="small", loc="lower left")
    terms = one_step(w, lr)["terms"]
    size = np.abs(terms) / abs(terms[0])
    ks = np.arange(1, len(terms) + 1)
    ax2.bar(ks, np.maximum(size, 1e-30), color=["C0"] + ["C1"] * (len(ks) - 1))
    ax2.axhline(1.0, color="0.5", lw=1, ls="--")
    ax2.set_yscale("log")
    ax2.set_ylim(max(1e-20, size[size > 0].min() / 10), max(10.0, size.max() * 10))
    ax2.set(xlabel="order k", ylabel="|k-th order term| / |first-order term|",
            title=f"lr = {lr:.2g}: exact / first order = {one_step(w, lr)['actual'] / terms[0]:.3g}")
    fig.tight_layout()


# --- self-checks for the exercises ----------------------------------------------------------------

_SECOND_ORDER_CASES = ([1.3, 0.7, 2.0, -0.5, 1.1], [0.9, 1.2, 1.1], [2.0, 0.5, 1.5, 1.0, 0.8, 1.25])


def check_second_order(fn) -> bool | None:
    """Check ``fn(w, x) -> c_2``, the coefficient of lr^2 in y after one step, on a few chains."""
    if fn is None:
        return not_attempted("the second-order coefficient")
    if not callable(fn):
        return wrong(f"expected a function second_order(w, x), got {type(fn).__name__}")
    for w in _SECOND_ORDER_CASES:
        w = np.array(w)
        want = step_polynomial(w, 0.8)[2]
        try:
            got = float(fn(w.copy(), 0.8))
        except Exception as err:  # the reader's code: report, never raise
            return wrong(f"your function raised {type(err).__name__}: {err}")
        if math.isclose(got, want, rel_tol=1e-8):
            continue
        g = chain_gradient(w, 0.8)
        pair = g[0] * g[1] * np.prod(w[2:])  # the pair (1, 2) only
        if math.isclose(got, 2 * want, rel_tol=1e-8):
            return wrong("twice the right value: sum over pairs i < j, not over all i != j")
        if math.isclose(got, -want, rel_tol=1e-8):
            return wrong("the sign is wrong: each factor is (w_i - lr g_i), so two factors of -lr give +lr^2")
        if any(math.isclose(got, p, rel_tol=1e-8) for p in (pair, 0.8 * pair)):
            return wrong("that is only the pair (1, 2) that Goodfellow et al. write out; "
                          "every pair i < j contributes")
        return wrong(f"for w = {w.tolist()} and x = 0.8 the coefficient is {want:.6g}, you returned {got:.6g}")
    return ok("right: c_2 = sum over pairs i<j of g_i g_j times the other weights")


def check_crossover(answer, depth: int = 12, scale: float = 1.2) -> bool | None:
    """Check the learning rate at which the second-order term equals the first, for ``depth`` equal weights
    ``scale`` and x = 1."""
    answer, verdict = numeric_answer(answer, "the crossover learning rate")
    if answer is None:
        return verdict
    want = equal_weights_crossover(depth, scale)
    if math.isclose(answer, want, rel_tol=0.01):
        return ok(f"right: lr = 2 / ((D - 1) s^(D - 2)) = {want:.4g}")
    if math.isclose(answer, want / 2, rel_tol=0.01):
        return wrong("half the right value: there are D(D-1)/2 pairs, not D(D-1)")
    if math.isclose(answer, want * 2, rel_tol=0.01):
        return wrong("twice the right value: count each pair once, there are D(D-1)/2 pairs")
    if math.isclose(answer, want / scale, rel_tol=0.01) or math.isclose(answer, want * scale, rel_tol=0.01):
        return wrong("off by one factor of the scale: g_i = s^(D-1), c_1 = -D s^(2D-2), "
                      "c_2 = D(D-1)/2 s^(3D-4)")
    return wrong(f"not quite: compare c_1 = -g^T g with c_2 for equal weights (you gave {answer:.4g})")


# --- within-layer and cross-layer curvature of a network ------------------------------------------

def layer_groups(model) -> list[list[int]]:
    """The trainable parameters of ``model`` grouped by layer, as lists of indices into the parameter tuple of
    :func:`bnbook.hessian.loss_function`: a layer is a module name's trailing number (``fc3`` and ``norm3``
    form layer 3); a name without one (``out``) is a layer of its own."""
    groups: dict[str, list[int]] = {}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for i, name in enumerate(names):
        module = name.split(".")[-2] if "." in name else name
        key = re.search(r"\d*$", module)[0] or module
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def curvature_split(f, params, direction, groups) -> dict:
    """Split d^T H d into the layers' diagonal blocks and the rest (H the Hessian of ``f`` at ``params``).

    For each layer k the direction is set to zero outside the layer, d_k; the Hessian-vector product H d_k,
    projected back onto the layer, gives the within-layer term d_k^T H_kk d_k. Returns ``total`` (d^T H d),
    ``within`` (one term per layer), ``cross`` (total minus their sum: the off-diagonal blocks, the
    interactions between layers) and ``cross_share`` (|cross| / (|sum of within| + |cross|), in [0, 1]).
    """
    direction = tuple(direction)
    flat = sorted(i for g in groups for i in g)
    if flat != list(range(len(direction))):
        raise ValueError("groups must cover every parameter index exactly once")
    total = float(hessian.dot(direction, hessian.hvp(f, params, direction)))
    within = []
    for group in groups:
        part = tuple(d if i in group else torch.zeros_like(d) for i, d in enumerate(direction))
        within.append(float(hessian.dot(part, hessian.hvp(f, params, part))))
    cross = total - sum(within)
    scale = abs(sum(within)) + abs(cross)
    return {"total": total, "within": within, "cross": cross,
            "cross_share": abs(cross) / scale if scale else 0.0}
