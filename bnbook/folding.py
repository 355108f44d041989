"""Folding BN's parameters into linear layers, and what the parameterization changes.

The reader's algebra from "Are gamma and beta redundant?",
``W (gamma * x_hat + beta) + b = W' x_hat + b'``, is :func:`fold_affine_into_next` (and
:func:`fold_affine` for a whole net); BN in eval mode is an affine map and merges into
the linear layer before it, :func:`fold_bn_into_previous` (:func:`fold_for_inference`
for a whole net, what deployment tools do). Both return new modules and leave the
originals untouched.

What differs between the two parameterizations (how gradient descent moves them) is the
chapter's own code, in :mod:`bnbook.chapters.gamma_beta`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .layers import BatchNorm1d
from .measure import probing

__all__ = ["fold_affine_into_next", "fold_affine", "fold_bn_into_previous", "fold_for_inference",
           "max_output_gap"]

_BN_TYPES = (BatchNorm1d, nn.BatchNorm1d)


# --- the algebra -----------------------------------------------------------------------------

def _check_pair(first, second, first_kind, second_kind):
    kinds = {"BN": _BN_TYPES, "Linear": (nn.Linear,)}
    for module, kind in [(first, first_kind), (second, second_kind)]:
        if not isinstance(module, kinds[kind]):
            raise TypeError(f"expected a {kind} layer ({' or '.join(t.__name__ for t in kinds[kind])}), "
                            f"got {type(module).__name__}")
    n_bn = first.num_features if first_kind == "BN" else second.num_features
    n_lin = second.in_features if second_kind == "Linear" else first.out_features
    if n_bn != n_lin:
        raise ValueError(f"the BN layer has {n_bn} features but the linear layer has {n_lin} "
                         f"{'inputs' if second_kind == 'Linear' else 'outputs'}")


def _gamma_beta(norm, dtype):
    """gamma and beta of a BN layer; 1 and 0 where it has none (affine=False, or bias=False)."""
    ones = torch.ones(norm.num_features, dtype=dtype)
    gamma = norm.weight.detach() if norm.weight is not None else ones
    beta = norm.bias.detach() if norm.bias is not None else torch.zeros_like(ones)
    return gamma, beta


def _linear(weight, bias):
    lin = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(bias)
    return lin


def fold_affine_into_next(norm, linear):
    """Move BN's gamma and beta into the linear layer that follows it.

    ``linear(norm(x))`` equals ``new_linear(new_norm(x))`` in training *and* eval mode, where
    ``new_norm`` is the same BN without affine parameters (same running statistics) and
    ``new_linear`` has ``W' = W diag(gamma)`` and ``b' = W beta + b``. Returns
    ``(new_norm, new_linear)``.
    """
    _check_pair(norm, linear, "BN", "Linear")
    if hasattr(norm, "noise"):
        raise ValueError("a noisy BN adds noise after gamma and beta in training mode; it cannot be folded")
    w = linear.weight.detach()
    gamma, beta = _gamma_beta(norm, w.dtype)
    b = linear.bias.detach() if linear.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    new_norm = type(norm)(norm.num_features, eps=norm.eps, momentum=norm.momentum, affine=False,
                          track_running_stats=norm.track_running_stats, dtype=w.dtype)
    if norm.track_running_stats:
        new_norm.load_state_dict({k: v for k, v in norm.state_dict().items()
                                  if k not in ("weight", "bias")})
    new_norm.train(norm.training)
    return new_norm, _linear(w * gamma, b + w @ beta)


def fold_bn_into_previous(linear, norm):
    """Merge an eval-mode BN into the linear layer before it: one linear layer for inference.

    In eval mode BN is the affine map ``gamma (z - running_mean) / sqrt(running_var + eps) + beta``,
    so ``norm(linear(x))`` equals ``new_linear(x)`` with ``W' = diag(s) W`` and
    ``b' = s (b - running_mean) + beta``, ``s = gamma / sqrt(running_var + eps)``. Training mode
    normalizes with batch statistics, which no fixed linear layer can do.
    """
    _check_pair(linear, norm, "Linear", "BN")
    if norm.running_mean is None:
        raise ValueError("the BN layer keeps no running statistics (track_running_stats=False), so "
                         "in eval mode it still uses batch statistics and cannot be folded")
    w = linear.weight.detach()
    gamma, beta = _gamma_beta(norm, w.dtype)
    b = linear.bias.detach() if linear.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    s = gamma / torch.sqrt(norm.running_var + norm.eps)
    return _linear(s[:, None] * w, s * (b - norm.running_mean) + beta)


def _pairs(model, first_types, second_types):
    """Names (a, b) of children where a of first_types is followed by b of second_types
    (nn.Identity in between is skipped)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential such as bnbook.models.mlp(...), got "
                        f"{type(model).__name__}")
    names = [n for n, m in model.named_children() if not isinstance(m, nn.Identity)]
    return [(a, b) for a, b in zip(names, names[1:])
            if isinstance(model._modules[a], first_types) and isinstance(model._modules[b], second_types)]


def fold_affine(model):
    """A copy of ``model`` in which every BN directly followed by a linear layer has lost its
    gamma and beta to that layer (:func:`fold_affine_into_next`). Same function, fewer parameters.

    In :func:`bnbook.models.mlp` BN feeds a linear layer with ``placement='after'``
    (``fc -> act -> norm -> fc``), or with ``activation='identity'``.
    """
    pairs = _pairs(model, _BN_TYPES, (nn.Linear,))
    if not pairs:
        raise ValueError("no BN layer is directly followed by a linear layer; with an activation "
                         "between them (placement='before') gamma and beta cannot be folded")
    folded = copy.deepcopy(model)
    for a, b in pairs:
        new_norm, new_linear = fold_affine_into_next(folded._modules[a], folded._modules[b])
        folded._modules[a], folded._modules[b] = new_norm, new_linear
    return folded


def fold_for_inference(model):
    """A copy of ``model`` in eval mode with every BN merged into the linear layer before it
    (:func:`fold_bn_into_previous`) and replaced by ``nn.Identity``: the deployed network."""
    pairs = _pairs(model, (nn.Linear,), _BN_TYPES)
    if not pairs:
        raise ValueError("no linear layer is directly followed by a BN layer; with an activation "
                         "between them (placement='after') BN cannot be merged into the previous layer")
    folded = copy.deepcopy(model).eval()
    for a, b in pairs:
        folded._modules[a] = fold_bn_into_previous(folded._modules[a], folded._modules[b])
        folded._modules[b] = nn.Identity()
    return folded.eval()


@torch.no_grad()
def max_output_gap(a, b, x, train_mode=False):
    """Largest absolute difference between the outputs of nets ``a`` and ``b`` on ``x``.

    ``train_mode=True`` compares them with batch statistics; both nets' running statistics are
    restored afterwards and their modes are left as they were.
    """
    outs = []
    for net in (a, b):
        with probing(net, train_mode):
            outs.append(net(x))
    return (outs[0] - outs[1]).abs().max().item()
