"""Second-order probes: Hessian-vector products, the top Hessian eigenvalue, and the terms of a step's Taylor expansion.

Everything works on a loss written as a *function of the parameters*, ``f(*params) -> scalar``, so that
``torch.autograd.functional.vhp`` can differentiate it twice; the Hessian itself is never formed.
:func:`loss_function` turns a model and a fixed batch into such a function.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import vhp
from torch.func import functional_call

from .measure import probing
from .seeding import generator

Params = tuple[torch.Tensor, ...]


def loss_function(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Callable = F.cross_entropy,
                  train_mode: bool = True) -> tuple[Callable[..., torch.Tensor], Params]:
    """``(f, params)``: the loss of ``model`` on the batch ``(x, y)`` as a function of its trainable parameters.

    ``f(*tensors)`` runs the model with its parameters replaced by ``tensors`` (``torch.func.functional_call``);
    ``params`` are the current values (detached copies), so ``f(*params)`` is today's loss. ``train_mode=True``
    normalizes with the statistics of ``x`` (the loss BN trains on); BN's running statistics are copied for every
    call, so probing never changes the model.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("the model has no trainable parameters")
    params = tuple(p.detach().clone() for n, p in model.named_parameters() if p.requires_grad)
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def f(*tensors: torch.Tensor) -> torch.Tensor:
        state = {**{n: b.clone() for n, b in buffers.items()}, **dict(zip(names, tensors))}
        with probing(model, train_mode):
            return loss(functional_call(model, state, (x,)), y)
    return f, params


def _check(f, params) -> Params:
    params = tuple(params)
    if not params or not all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in params):
        raise ValueError("params must be a non-empty sequence of floating-point tensors")
    out = f(*params)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise ValueError("f(*params) must return a scalar tensor")
    return params


def dot(a: Params, b: Params) -> torch.Tensor:
    """The inner product of two parameter tuples, sum of the elementwise products."""
    return sum((u * v).sum() for u, v in zip(a, b))


def gradient(f, params) -> Params:
    """The gradient of ``f`` at ``params``, one tensor per parameter."""
    params = _check(f, params)
    inputs = tuple(p.detach().requires_grad_(True) for p in params)
    return tuple(g.detach() for g in torch.autograd.grad(f(*inputs), inputs))


def hvp(f, params, v) -> Params:
    """The Hessian of ``f`` at ``params`` times ``v`` (same shapes as ``params``), by double backward.

    ``vhp`` computes v^T H, which equals H v because the Hessian is symmetric.
    """
    params = _check(f, params)
    v = tuple(v)
    if len(v) != len(params) or any(u.shape != p.shape for u, p in zip(v, params)):
        raise ValueError("v must have one tensor per parameter, each of the parameter's shape")
    return vhp(f, params, v)[1]


def curvature(f, params, direction) -> float:
    """The curvature of ``f`` along ``direction``: d^T H d / d^T d (a Rayleigh quotient of the Hessian)."""
    direction = tuple(direction)
    norm2 = float(dot(direction, direction))
    if norm2 == 0:
        raise ValueError("direction must not be zero")
    return float(dot(direction, hvp(f, params, direction))) / norm2


def top_eigenvalue(f, params, iters: int = 20, seed: int | None = None, tol: float = 1e-4) -> float:
    """The Hessian eigenvalue of largest magnitude at ``params``, by power iteration on Hessian-vector products.

    Stops after ``iters`` products or when the estimate changes by less than ``tol`` (relative). For gradient
    descent on a quadratic, steps larger than 2 / this value diverge. The random start vector comes from
    ``seed`` (None: the book's base seed, see :mod:`bnbook.seeding`).
    """
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    params = _check(f, params)
    gen = generator(seed)
    v = tuple(torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params)
    estimate = 0.0
    for _ in range(iters):
        norm = torch.sqrt(dot(v, v))
        if norm == 0:  # v lies in the Hessian's null space
            return 0.0
        v = tuple(u / norm for u in v)
        hv = vhp(f, params, v)[1]
        new = float(dot(v, hv))
        converged = abs(new - estimate) <= tol * abs(new)
        estimate, v = new, hv
        if converged:
            break
    return estimate


def taylor_terms(f, params, lr: float) -> dict[str, float]:
    """The terms of the loss change of one gradient step of size ``lr``, and the change itself.

    With g the gradient and H the Hessian, f(p - lr g) - f(p) = -lr g^T g + 1/2 lr^2 g^T H g + ...; returns
    ``first`` (-lr g^T g), ``second`` (1/2 lr^2 g^T H g) and ``actual`` (the measured change).
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    params = _check(f, params)
    g = gradient(f, params)
    g2 = float(dot(g, g))
    gHg = float(dot(g, hvp(f, params, g)))
    with torch.no_grad():
        actual = float(f(*(p - lr * d for p, d in zip(params, g))) - f(*params))
    return {"first": -lr * g2, "second": 0.5 * lr**2 * gHg, "actual": actual}
