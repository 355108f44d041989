"""Probes the chapters share: what a layer sees, how large the gradients are, what BN's batches estimate.

* :func:`probing` -- the one way to look inside a model without side effects: mode and buffers (BN's running
  statistics) are restored on exit, also after an exception.
* :func:`capture` and :func:`activations` -- a module's input or output.
* :func:`grad_norms` -- gradient norm per parameter or per module.
* :func:`accuracy` -- eval-mode accuracy.
* :func:`random_batches` and :func:`batch_statistics` -- the statistics BN would compute on random mini-batches.
* :func:`effective_rank` -- entropy-based rank of a representation (rank collapse, Daneshmand et al. 2020).
* :func:`stable_rank` -- ``||H||_F^2 / ||H||_2^2``, the rank measure that does not count tiny singular values.

Second-order probes (Hessian-vector products) are in :mod:`bnbook.hessian`.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

WHERE = ("input", "output")


@contextmanager
def probing(model: nn.Module, train_mode: bool = False):
    """Run a block with ``model.train(train_mode)``; restore every module's mode and every buffer on exit.

    Inside, a forward pass in train mode may update BN's running statistics (and ``num_batches_tracked``);
    they are copied back afterwards, also when the block raises, so a probe leaves the model as it found it.
    Parameters are not saved: a probe that must change them works on a copy.

    >>> with probing(model, train_mode=True):  # doctest: +SKIP
    ...     out = model(x)        # normalized with the statistics of x
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.train(train_mode)
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, was_training in modes:
            m.training = was_training


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
    with probing(model, train_mode), capture({"m": module}, where) as seen:
        model(x)
    if "m" not in seen:
        raise ValueError("the module was not called during model(x); pass a module that is part of the model")
    return seen["m"]


def grad_norms(model: nn.Module, by: str = "parameter") -> dict[str, float]:
    """The L2 norm of the current gradient, per parameter (``'fc1.weight'``) or per module (``'fc1'``, all its
    parameters together). Call after ``loss.backward()``.
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
    with probing(model, train_mode=False):
        return (model(x).argmax(dim=1) == y).float().mean().item()


def random_batches(n: int, batch_size: int, n_batches: int, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """``(n_batches, batch_size)`` indices: each row a uniformly random set of distinct indices below ``n``.

    The indices of the ``batch_size`` largest of ``n`` i.i.d. uniform numbers form a uniform random subset; this
    draws all rows at once instead of one ``randperm`` per row.
    """
    for name, value in [("n", n), ("batch_size", batch_size), ("n_batches", n_batches)]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} examples available")
    return torch.rand(n_batches, n, generator=generator).topk(batch_size, dim=1).indices


def batch_statistics(values: torch.Tensor, batch_size: int, n_batches: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and biased variances of ``n_batches`` random mini-batches of ``batch_size`` rows of ``values``.

    ``values`` is ``(N,)`` or ``(N, C)`` (a population sample, or a hidden layer's pre-activations on the
    training set); the rows of a batch are distinct. Returns ``(means, variances)`` of shape ``(n_batches,)`` or
    ``(n_batches, C)``: the statistics BN (Algorithm 1) normalizes each of those batches with.
    """
    if not isinstance(values, torch.Tensor) or values.ndim not in (1, 2):
        raise ValueError("values must be a 1-D or 2-D torch tensor (examples first)")
    idx = random_batches(len(values), batch_size, n_batches, generator)
    var, mean = torch.var_mean(values[idx], dim=1, correction=0)
    return mean, var


def _singular_values(features: torch.Tensor, center: bool) -> torch.Tensor:
    """The singular values (float64) of an ``(n, d)`` representation, centred over examples if asked."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise ValueError("features must be a 2-D tensor of shape (n_examples, n_features)")
    f = features.detach().double()
    if center:
        f = f - f.mean(dim=0)
    return torch.linalg.svdvals(f)


def effective_rank(features: torch.Tensor, center: bool = False) -> float:
    """Effective rank of an ``(n, d)`` representation (Roy and Vetterli 2007): ``exp(H(p))`` with ``p`` the
    singular values normalized to sum to 1. Equals ``k`` for ``k`` equal non-zero singular values and 1 for a
    rank-one matrix. ``center=True`` first subtracts the mean over examples.
    """
    s = _singular_values(features, center)
    if s.sum() == 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def stable_rank(features: torch.Tensor, center: bool = False) -> float:
    """Stable rank of an ``(n, d)`` representation: ``||H||_F^2 / ||H||_2^2 = sum_i s_i^2 / s_1^2``.

    At most the rank, equal to ``k`` for ``k`` equal non-zero singular values and to 1 for a rank-one matrix;
    unlike the rank it barely counts singular values much smaller than the largest, so it measures how close a
    representation is to rank one (rank collapse, chapter "Deep networks at initialization"). Invariant to the
    scale of ``features``; computed in float64. ``center=True`` first subtracts the mean over examples. Returns
    0.0 for a zero matrix.
    """
    s = _singular_values(features, center)
    if s[0] == 0:
        return 0.0
    return float((s**2).sum() / s[0] ** 2)
