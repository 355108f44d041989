"""Internal covariate shift (ICS): how much a layer's input distribution, and its gradient, move in training.

Chapter "Internal covariate shift". Two views of the same idea:

* Ioffe and Szegedy's (2015, Fig. 1): the 15/50/85th percentiles of a unit's input over training.
  :func:`percentile_probe` is a :func:`bnbook.train.train` callback that records them for every unit of a
  layer (``History.probe_series`` stacks what it recorded), :func:`drift` summarizes how far they moved.
* Santurkar et al.'s (2018, Def. 2.1): ``||G - G'||``, where ``G`` is a layer's gradient and ``G'`` the same
  layer's gradient on the same batch after the layers *below* it took their gradient step
  (:func:`ics_per_layer`).

  :func:`ics_summary` condenses many layers and probes into one number per measure, and
  :func:`gaussian_linear_task` is the synthetic regression of their deep-linear-network experiment.

Plus the self-checks of the chapter's exercises.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import hessian, measure
from ..data import Dataset
from ..models import layer_of
from ..seeding import generator
from ..selfcheck import not_attempted, ok, wrong

__all__ = ["percentile_probe", "drift", "ics_per_layer", "ics_summary", "gaussian_linear_task",
           "check_two_layer_ics", "check_bn_percentiles", "check_noise_before_bn"]


# --- Ioffe and Szegedy's view: percentiles over training ---------------------------------------------------------

def percentile_probe(x: torch.Tensor, module: str, q=(15, 50, 85), where: str = "input") -> Callable:
    """A ``train(..., callback=...)`` probe: per-unit percentiles ``q`` of ``model.<module>``'s input on ``x``.

    The module is named (e.g. ``'act3'``, the last hidden sigmoid of :func:`bnbook.models.mlp`) so one probe
    serves every model of a multi-seed run. The model runs in training mode on all of ``x`` at once: BN
    normalizes with the statistics of ``x``, which is what the layer sees while it trains (noisy layers draw
    fresh noise); running statistics are restored. Each call returns an array of shape ``(len(q), units)``.
    """
    q = torch.as_tensor(q, dtype=torch.float64)
    if q.dim() != 1 or not len(q) or bool(((q < 0) | (q > 100)).any()):
        raise ValueError(f"q must be a list of percentiles between 0 and 100, got {q.tolist()}")
    if not isinstance(module, str):
        raise TypeError(f"module must be the name of a layer such as 'act3', got {type(module).__name__}")

    def probe(model, step):
        if not hasattr(model, module):
            raise ValueError(f"the model has no layer named {module!r}")
        a = measure.activations(model, x, getattr(model, module), where, train_mode=True)
        return torch.quantile(a.double().flatten(1), q / 100, dim=0).numpy()
    return probe


def drift(track: np.ndarray) -> dict[str, float]:
    """How far the percentiles of each unit moved over training, as medians over the units.

    ``track`` is ``(T, 3, units)`` holding the 15/50/85th percentiles (or ``(T, 3)`` for one unit).

    * ``median_range``: max minus min over time of the 50th percentile (slow drift and fast jumps alike);
    * ``median_step``: mean absolute change of the 50th percentile between consecutive probes (fast jumps);
    * ``spread_ratio``: largest over smallest 15-85 spread over time (1 = the width never changed).
    """
    track = np.asarray(track, dtype=float)
    if track.ndim == 2:
        track = track[:, :, None]
    if track.ndim != 3 or track.shape[1] != 3 or track.shape[0] < 2:
        raise ValueError(f"track must have shape (T >= 2, 3, units), got {track.shape}")
    mid, spread = track[:, 1], track[:, 2] - track[:, 0]
    tiny = 1e-12  # a unit whose spread is exactly 0 at some time would give an infinite ratio
    return {"median_range": float(np.median(mid.max(0) - mid.min(0))),
            "median_step": float(np.median(np.abs(np.diff(mid, axis=0)).mean(0))),
            "spread_ratio": float(np.median(spread.max(0) / np.maximum(spread.min(0), tiny)))}


# --- Santurkar et al.'s view: the change of a layer's gradient -----------------------------------------------------

def ics_per_layer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, loss: Callable = F.cross_entropy,
        train_mode: bool = True, layers=None) -> list[dict]:
    """Santurkar et al.'s internal covariate shift (Def. 2.1) of every layer above the first, on one batch.

    For layer ``i``, ``G`` is the gradient of the loss with respect to its parameters and ``G'`` the same gradient
    after every layer below ``i`` took its SGD step ``-lr * gradient`` (layer ``i`` and those above unchanged,
    same batch). Returns one dict per layer, bottom to top: ``layer``, ``l2`` (``||G - G'||``, Santurkar et al.'s
    measure), ``grad_norm`` (``||G||``), ``relative`` (``||G - G'|| / ||G||``, so ``l2 = relative * grad_norm``:
    BN changes gradient sizes, and the raw norm alone mixes in scale) and ``cosine`` (between ``G`` and ``G'``,
    their other measure; 1 means no change of direction). Layers are grouped by :func:`layer_of`; ``layers``
    (names such as ``'5'`` or ``'out'``) restricts the measurement to some of them, each costing one more
    gradient. The model is not changed. For models that draw noise in training mode, ``G`` and ``G'`` would
    see different noise: measure those with ``train_mode=False`` or not at all.
    """
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    f, params = hessian.loss_function(model, x, y, loss, train_mode)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    owner = [layer_of(n) for n in names]
    all_layers = list(dict.fromkeys(owner))
    if len(all_layers) < 2:
        raise ValueError(f"ICS needs at least two layers; found {all_layers}")
    wanted = all_layers[1:] if layers is None else [str(name) for name in layers]
    unknown = [name for name in wanted if name not in all_layers[1:]]
    if unknown:
        raise ValueError(f"layers {unknown} are not layers above the first; choose from {all_layers[1:]}")
    grad = hessian.gradient(f, params)
    rows = []
    for layer in wanted:
        k = all_layers.index(layer)
        below = set(all_layers[:k])
        moved = tuple(p - lr * g if o in below else p for p, g, o in zip(params, grad, owner))
        grad_after = hessian.gradient(f, moved)
        g = torch.cat([t.flatten() for t, o in zip(grad, owner) if o == layer]).double()
        g2 = torch.cat([t.flatten() for t, o in zip(grad_after, owner) if o == layer]).double()
        l2, norm = float((g - g2).norm()), float(g.norm())
        denom = norm * float(g2.norm())
        rows.append({"layer": layer, "l2": l2, "grad_norm": norm,
                     "relative": l2 / norm if norm else math.nan,
                     "cosine": float(g @ g2) / denom if denom else math.nan})
    return rows


def ics_summary(rows: list[dict]) -> dict[str, float]:
    """One number per measure over many rows of :func:`ics_per_layer` (layers, probes): the geometric means of
    ``l2``, ``grad_norm`` and ``relative`` (so ``l2 = relative * grad_norm`` holds for the summaries too, and
    ratios of two networks' summaries split exactly into a gradient-size part and a relative part) and the
    arithmetic mean of ``cosine``. Rows with a zero or non-finite value are left out of the geometric means."""
    rows = list(rows)
    if not rows:
        raise ValueError("ics_summary needs at least one row of ics_per_layer")
    usable = [r for r in rows if all(math.isfinite(r[k]) and r[k] > 0 for k in ("l2", "grad_norm"))]
    if not usable:
        raise ValueError("every row has a zero or non-finite gradient change")
    out = {k: float(np.exp(np.mean([math.log(r[k]) for r in usable]))) for k in ("l2", "grad_norm")}
    out["relative"] = out["l2"] / out["grad_norm"]
    out["cosine"] = float(np.nanmean([r["cosine"] for r in rows]))
    return out


def gaussian_linear_task(n: int = 1000, d: int = 10, seed: int | None = None) -> Dataset:
    """Santurkar et al.'s deep-linear-network task: ``x ~ N(0, I_d)`` and the target ``y = A x`` for one random
    Gaussian ``d x d`` matrix ``A`` (entries N(0, 1)); ``n`` training and ``n`` test examples, drawn from
    :func:`bnbook.seeding.generator` (``seed=None``: the book's base seed)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    gen = generator(seed)
    a = torch.randn(d, d, generator=gen)
    x = torch.randn(2 * n, d, generator=gen)
    y = x @ a.T
    return Dataset(x[:n], y[:n], x[n:], y[n:], f"Gaussian linear task (d={d})", 0)


# --- exercise self-checks ------------------------------------------------------------------------------------------

def _two_layer_ics(w1, w2, x, y, lr):
    """|G - G'| for layer 2 of yhat = w2 * w1 * x with loss (yhat - y)^2 / 2 (all scalars)."""
    r = w2 * w1 * x - y
    g1, g2 = r * w2 * x, r * w1 * x
    w1_new = w1 - lr * g1
    g2_after = (w2 * w1_new * x - y) * w1_new * x
    return abs(g2 - g2_after)


def check_two_layer_ics(fn):
    """Exercise: ``fn(w1, w2, x, y, lr)`` returns the ICS of layer 2 of the scalar chain ``yhat = w2 w1 x``."""
    if fn is None:
        return not_attempted("your two_layer_ics(w1, w2, x, y, lr)")
    if not callable(fn):
        return wrong(f"expected a function two_layer_ics(w1, w2, x, y, lr), got {type(fn).__name__}")
    cases = [(0.5, 2.0, 1.5, 1.0, 0.1), (-1.0, 0.3, 2.0, 0.5, 0.05), (2.0, -1.5, 0.5, -1.0, 0.2)]
    for case in cases:
        try:
            value = float(fn(*case))
        except Exception as err:  # the reader's code: report, never raise
            return wrong(f"your function raised {type(err).__name__}: {err}")
        right = _two_layer_ics(*case)
        if math.isclose(value, right, rel_tol=1e-6, abs_tol=1e-12):
            continue
        w1, w2, x, y, lr = case
        r = w2 * w1 * x - y
        w1_new, w2_new = w1 - lr * r * w2 * x, w2 - lr * r * w1 * x
        moved_both = abs(r * w1 * x - (w2_new * w1_new * x - y) * w1_new * x)
        if math.isclose(value, moved_both, rel_tol=1e-6):
            return wrong("you also moved w2; Def. 2.1 updates only the layers *below* layer 2")
        return wrong(f"for (w1, w2, x, y, lr) = {case} expected {right:.6g}, got {value:.6g}: compute "
                      "g2 = (w2 w1 x - y) w1 x, move w1 by -lr g1, recompute g2, take the absolute difference")
    return ok("G' differs from G because w1 moved: |G - G'| matches on three cases")


def check_bn_percentiles(answer, gamma: float = 1.5, beta: float = -0.5):
    """Exercise: the 15/50/85th percentiles of ``gamma * x_hat + beta`` for Gaussian ``x_hat``."""
    if answer is None:
        return not_attempted("your three percentiles")
    try:
        values = [float(v) for v in answer]
    except (TypeError, ValueError):
        return wrong("expected three numbers (15th, 50th, 85th percentile)")
    if len(values) != 3:
        return wrong(f"expected three numbers, got {len(values)}")
    z = 1.0364333894937898  # the 85th percentile of N(0, 1)
    right = [beta - abs(gamma) * z, beta, beta + abs(gamma) * z]
    if all(math.isclose(v, r, abs_tol=0.01) for v, r in zip(values, right)):
        return ok(f"beta -/+ 1.036 |gamma| around beta: {right[0]:.3f}, {right[1]:.3f}, {right[2]:.3f}; "
                   "only gamma and beta decide them, not the layers below")
    if math.isclose(values[1], 0.0, abs_tol=0.01) and beta != 0:
        return wrong("the median is not 0 after the shift: the output of BN has mean beta")
    if all(math.isclose(v, r, abs_tol=0.01) for v, r in zip(values, [beta - 1, beta, beta + 1])):
        return wrong("the 15th and 85th percentiles of N(0, 1) are -/+1.036, not -/+1, and scale with gamma")
    return wrong(f"expected about {right[0]:.3f}, {right[1]:.3f}, {right[2]:.3f}: the percentiles of N(0, 1) "
                  "are -1.036, 0, 1.036; scale by gamma and shift by beta")


def check_noise_before_bn(answer):
    """Exercise: which part of :class:`bnbook.layers.DistributionNoise` survives a BN layer placed after it?"""
    options = {"scale", "shift", "jitter", "all", "none"}
    if answer is None:
        return not_attempted("your answer ('scale', 'shift', 'jitter', 'all' or 'none')")
    if not isinstance(answer, str) or answer.strip().lower() not in options:
        return wrong(f"answer with one of {sorted(options)}")
    answer = answer.strip().lower()
    if answer == "jitter":
        return ok("BN(s x + m) = BN(x) for a scale s > 0 and shift m shared by the batch; only the per-example "
                   "jitter gets through")
    if answer in ("scale", "shift", "all"):
        return wrong("the scale and the shift are the same for every example of the batch; what does BN do to "
                      "a common scale and offset?")
    return wrong("the jitter differs from example to example, so the batch statistics cannot remove it")
