"""Internal covariate shift (ICS): how much a layer's input distribution, and its gradient, move in training.

Chapter "Internal covariate shift". Two views of the same idea:

* Ioffe and Szegedy's (2015, Fig. 1): the 15/50/85th percentiles of a unit's input over training.
  :func:`percentile_probe` is a :func:`bnbook.train.train` callback that records them for every unit of a
  layer, :func:`percentile_track` stacks what it recorded, :func:`drift` summarizes how far they moved.
* Santurkar et al.'s (2018, Def. 2.1): ``||G - G'||``, where ``G`` is a layer's gradient and ``G'`` the same
  layer's gradient on the same batch after the layers *below* it took their gradient step (:func:`ics`).

Plus the self-checks of the chapter's exercises.
"""
from __future__ import annotations

import math
import re
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import hessian, measure
from .exercises import _not_attempted, _ok, _wrong
from .train import History

__all__ = ["percentile_probe", "percentile_track", "drift", "layer_of", "ics",
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


def percentile_track(history: History, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, track)`` from a run probed with :func:`percentile_probe`; ``track`` is ``(T, len(q), units)``.

    If the callback returned dicts, ``key`` names the entry that holds the percentiles.
    """
    if not history.probes:
        raise ValueError("the history has no probes; train with callback=percentile_probe(...)")
    values = [p if key is None else p[key] for _, p in history.probes]
    steps = np.array([s for s, _ in history.probes], dtype=float)
    return steps, np.stack([np.asarray(v, dtype=float) for v in values])


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

def layer_of(parameter_name: str) -> str:
    """The layer a parameter belongs to: ``'fc2.weight'`` and ``'norm2.bias'`` -> ``'2'``, ``'out.bias'`` ->
    ``'out'``. A layer of :func:`bnbook.models.mlp` is its linear map together with its normalization."""
    top = parameter_name.split(".", 1)[0]
    match = re.search(r"(\d+)$", top)
    return match[1] if match else top


def ics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, loss: Callable = F.cross_entropy,
        train_mode: bool = True) -> list[dict]:
    """Santurkar et al.'s internal covariate shift (Def. 2.1) of every layer above the first, on one batch.

    For layer ``i``, ``G`` is the gradient of the loss with respect to its parameters and ``G'`` the same gradient
    after every layer below ``i`` took its SGD step ``-lr * gradient`` (layer ``i`` and those above unchanged,
    same batch). Returns one dict per layer, bottom to top: ``layer``, ``l2`` (``||G - G'||``), ``relative``
    (``||G - G'|| / ||G||``: BN changes gradient sizes, so the raw norm alone mixes in scale) and ``cosine``
    (between ``G`` and ``G'``). Layers are grouped by :func:`layer_of`. The model is not changed. For models that
    draw noise in training mode, ``G`` and ``G'`` would see different noise: measure those with
    ``train_mode=False`` or not at all. Used by "Internal covariate shift".
    """
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    f, params = hessian.loss_function(model, x, y, loss, train_mode)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    owner = [layer_of(n) for n in names]
    layers = list(dict.fromkeys(owner))
    if len(layers) < 2:
        raise ValueError(f"ICS needs at least two layers; found {layers}")
    grad = hessian.gradient(f, params)
    rows = []
    for k, layer in enumerate(layers[1:], start=1):
        below = set(layers[:k])
        moved = tuple(p - lr * g if o in below else p for p, g, o in zip(params, grad, owner))
        grad_after = hessian.gradient(f, moved)
        g = torch.cat([t.flatten() for t, o in zip(grad, owner) if o == layer]).double()
        g2 = torch.cat([t.flatten() for t, o in zip(grad_after, owner) if o == layer]).double()
        l2, norm = float((g - g2).norm()), float(g.norm())
        denom = norm * float(g2.norm())
        rows.append({"layer": layer, "l2": l2, "relative": l2 / norm if norm else math.nan,
                     "cosine": float(g @ g2) / denom if denom else math.nan})
    return rows


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
        return _not_attempted("your two_layer_ics(w1, w2, x, y, lr)")
    if not callable(fn):
        return _wrong(f"expected a function two_layer_ics(w1, w2, x, y, lr), got {type(fn).__name__}")
    cases = [(0.5, 2.0, 1.5, 1.0, 0.1), (-1.0, 0.3, 2.0, 0.5, 0.05), (2.0, -1.5, 0.5, -1.0, 0.2)]
    for case in cases:
        try:
            value = float(fn(*case))
        except Exception as err:  # the reader's code: report, never raise
            return _wrong(f"your function raised {type(err).__name__}: {err}")
        right = _two_layer_ics(*case)
        if math.isclose(value, right, rel_tol=1e-6, abs_tol=1e-12):
            continue
        w1, w2, x, y, lr = case
        r = w2 * w1 * x - y
        w1_new, w2_new = w1 - lr * r * w2 * x, w2 - lr * r * w1 * x
        moved_both = abs(r * w1 * x - (w2_new * w1_new * x - y) * w1_new * x)
        if math.isclose(value, moved_both, rel_tol=1e-6):
            return _wrong("you also moved w2; Def. 2.1 updates only the layers *below* layer 2")
        return _wrong(f"for (w1, w2, x, y, lr) = {case} expected {right:.6g}, got {value:.6g}: compute "
                      "g2 = (w2 w1 x - y) w1 x, move w1 by -lr g1, recompute g2, take the absolute difference")
    return _ok("G' differs from G because w1 moved: |G - G'| matches on three cases")


def check_bn_percentiles(answer, gamma: float = 1.5, beta: float = -0.5):
    """Exercise: the 15/50/85th percentiles of ``gamma * x_hat + beta`` for Gaussian ``x_hat``."""
    if answer is None:
        return _not_attempted("your three percentiles")
    try:
        values = [float(v) for v in answer]
    except (TypeError, ValueError):
        return _wrong("expected three numbers (15th, 50th, 85th percentile)")
    if len(values) != 3:
        return _wrong(f"expected three numbers, got {len(values)}")
    z = 1.0364333894937898  # the 85th percentile of N(0, 1)
    right = [beta - abs(gamma) * z, beta, beta + abs(gamma) * z]
    if all(math.isclose(v, r, abs_tol=0.01) for v, r in zip(values, right)):
        return _ok(f"beta -/+ 1.036 |gamma| around beta: {right[0]:.3f}, {right[1]:.3f}, {right[2]:.3f}; "
                   "only gamma and beta decide them, not the layers below")
    if math.isclose(values[1], 0.0, abs_tol=0.01) and beta != 0:
        return _wrong("the median is not 0 after the shift: the output of BN has mean beta")
    if all(math.isclose(v, r, abs_tol=0.01) for v, r in zip(values, [beta - 1, beta, beta + 1])):
        return _wrong("the 15th and 85th percentiles of N(0, 1) are -/+1.036, not -/+1, and scale with gamma")
    return _wrong(f"expected about {right[0]:.3f}, {right[1]:.3f}, {right[2]:.3f}: the percentiles of N(0, 1) "
                  "are -1.036, 0, 1.036; scale by gamma and shift by beta")


def check_noise_before_bn(answer):
    """Exercise: which part of :class:`bnbook.layers.DistributionNoise` survives a BN layer placed after it?"""
    options = {"scale", "shift", "jitter", "all", "none"}
    if answer is None:
        return _not_attempted("your answer ('scale', 'shift', 'jitter', 'all' or 'none')")
    if not isinstance(answer, str) or answer.strip().lower() not in options:
        return _wrong(f"answer with one of {sorted(options)}")
    answer = answer.strip().lower()
    if answer == "jitter":
        return _ok("BN(s x + m) = BN(x) for a scale s > 0 and shift m shared by the batch; only the per-example "
                   "jitter gets through")
    if answer in ("scale", "shift", "all"):
        return _wrong("the scale and the shift are the same for every example of the batch; what does BN do to "
                      "a common scale and offset?")
    return _wrong("the jitter differs from example to example, so the batch statistics cannot remove it")
