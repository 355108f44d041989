"""Probes the chapters share: what a layer sees, how large the gradients are, how curved the loss is.

* :func:`capture` and :func:`activation_percentiles` -- record a module's input or output ("Internal covariate
  shift": Ioffe and Szegedy's Fig. 1 percentiles; "The BN transform").
* :func:`grad_norms` -- gradient norm per parameter or per layer ("A smoother landscape", "BN in practice").
* :func:`accuracy` -- eval-mode accuracy ("Mini-batch SGD" and later).
* :func:`effective_rank` -- entropy-based rank of a representation ("BN in practice": rank collapse).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

WHERE = ("input", "output")


@contextmanager
def _mode(model: nn.Module, training: bool):
    """Run a block with ``model.train(training)`` and restore the previous mode afterwards."""
    was_training = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def capture(modules: dict[str, nn.Module], where: str = "output"):
    """Record what each module receives (``where='input'``, its first argument) or returns (``'output'``).

    Yields a dict that fills during forward passes inside the block, mapping each name to the detached tensor of
    the latest pass. Hooks are removed on exit.

    >>> with capture({"sig3": model.act3}, where="input") as seen:  # doctest: +SKIP
    ...     model(x)
    >>> seen["sig3"].shape  # doctest: +SKIP
    """
    if where not in WHERE:
        raise ValueError(f"unknown where {where!r}; allowed: 'input', 'output'")
    if not isinstance(modules, dict) or not all(isinstance(m, nn.Module) for m in modules.values()):
        raise TypeError("modules must be a dict mapping names to torch.nn.Module objects, "
                        "e.g. {'act3': model.act3}")
    seen: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0] if where == "input" else output).detach()
        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in modules.items()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def activations(model: nn.Module, x: torch.Tensor, module: nn.Module, where: str = "output",
                train_mode: bool = False) -> torch.Tensor:
    """One module's input or output when ``model`` processes ``x`` (eval mode unless ``train_mode``).

    ``train_mode=True`` normalizes with the statistics of ``x`` itself (BN's training behaviour); BN's running
    statistics are restored afterwards, so probing never changes the model.
    """
    buffers = [b.clone() for b in model.buffers()] if train_mode else []
    with _mode(model, train_mode), capture({"m": module}, where) as seen:
        model(x)
    for saved, b in zip(buffers, model.buffers()):
        b.copy_(saved)
    if "m" not in seen:
        raise ValueError("the module was not called during model(x); pass a module that is part of the model")
    return seen["m"]


def activation_percentiles(model: nn.Module, x: torch.Tensor, module: nn.Module, q=(15, 50, 85),
                           where: str = "output", unit: int | None = None, train_mode: bool = False) -> np.ndarray:
    """Percentiles ``q`` of a module's input or output over the examples in ``x``.

    ``unit=None`` pools all units; an index picks one unit (channel), as in Ioffe and Szegedy's Fig. 1, which
    tracks the 15th, 50th and 85th percentile of the input of one sigmoid during training. Returns a float array
    of ``len(q)``. Used by "Internal covariate shift".
    """
    q = np.asarray(q, dtype=float)
    if q.ndim != 1 or np.any((q < 0) | (q > 100)):
        raise ValueError(f"q must be a list of percentiles between 0 and 100, got {q.tolist()}")
    a = activations(model, x, module, where, train_mode)
    if unit is not None:
        if not -a.shape[1] <= unit < a.shape[1]:
            raise ValueError(f"unit {unit} is out of range: the layer has {a.shape[1]} units")
        a = a[:, unit]
    return np.percentile(a.double().numpy().ravel(), q)


def grad_norms(model: nn.Module, by: str = "parameter") -> dict[str, float]:
    """The L2 norm of the current gradient, per parameter (``'fc1.weight'``) or per module (``'fc1'``, all its
    parameters together). Call after ``loss.backward()``. Used by "A smoother landscape" and "BN in practice".
    """
    if by not in ("parameter", "module"):
        raise ValueError(f"unknown by {by!r}; allowed: 'parameter', 'module'")
    squares: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        key = name if by == "parameter" else name.rpartition(".")[0] or name
        squares[key] = squares.get(key, 0.0) + float(p.grad.detach().double().pow(2).sum())
    if not squares:
        raise ValueError("the model has no gradients yet; call loss.backward() first")
    return {k: v**0.5 for k, v in squares.items()}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` classified as ``y``, in eval mode (BN uses running statistics); the mode is restored."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    with _mode(model, False):
        return (model(x).argmax(dim=1) == y).float().mean().item()


def effective_rank(features: torch.Tensor, center: bool = False) -> float:
    """Effective rank of an ``(n, d)`` representation (Roy and Vetterli 2007): ``exp(H(p))`` with ``p`` the
    singular values normalized to sum to 1. Equals ``k`` for ``k`` equal non-zero singular values and 1 for a
    rank-one matrix. ``center=True`` first subtracts the mean over examples. Used by "BN in practice" to show
    rank collapse with depth (Daneshmand et al. 2020).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise ValueError("features must be a 2-D tensor of shape (n_examples, n_features)")
    f = features.detach().double()
    if center:
        f = f - f.mean(dim=0)
    s = torch.linalg.svdvals(f)
    if s.sum() == 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
