"""Chapter "BN, dropout and noise": the variance shift of dropout before BN, and BN's own noise.

The models: :func:`dropout_mlp` places dropout (or Li et al.'s uniform "Uout" noise,
:class:`UniformNoise`) directly before each BN, before each linear layer (so a linear layer
sits between dropout and the next BN), or only after the last BN; its ``ghost`` option
swaps BN for :class:`GhostBatchNorm1d` (Hoffer et al.'s ghost batches). The probes:
:func:`variance_shift` measures how far BN's running variance (what eval mode divides by)
is from the variance the layer actually receives in eval mode, :func:`predicted_shift` is
the formula for it, and :func:`recalibrated` recomputes BN's statistics with the noise
switched off (Li et al.'s check that the shift is what costs accuracy).
:func:`plot_shift` is the chapter's explorer; ``check_*`` are its exercise self-checks.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from ..data import batches
from ..layers import BatchNorm1d
from ..measure import activations
from ..models import Net
from ..seeding import generator, resolve
from ..selfcheck import as_tensor, call_answer, close, function_answer, near, numeric_answer, ok, wrong

__all__ = [
    "PLACEMENTS", "UniformNoise", "GhostBatchNorm1d", "dropout_mlp", "noise_variance", "predicted_shift",
    "variance_shift", "input_moments", "recalibrated", "plot_shift", "check_shift_formula", "check_ghost_norm",
    "check_uout_beta",
]

# where the noise goes: directly before each BN; after each activation, so that the next linear
# layer sits between the noise and the next BN; or only once, after the last BN (Li et al.'s fix)
PLACEMENTS = ("before BN", "before linear", "after last BN")


class UniformNoise(nn.Module):
    """Li et al.'s "Uout": ``x * (1 + r)`` with ``r ~ U(-beta, beta)`` per value, in training mode only.

    Like dropout, the noise has mean 1 (eval mode is the identity); its variance is ``beta^2 / 3``
    (dropout's is ``p / (1 - p)``), see :func:`noise_variance`.
    """

    def __init__(self, beta: float):
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        self.beta = float(beta)

    def forward(self, x):
        if not self.training or self.beta == 0:
            return x
        return x * (1 + self.beta * (2 * torch.rand_like(x) - 1))

    def extra_repr(self):
        return f"beta={self.beta}"


class GhostBatchNorm1d(BatchNorm1d):
    """:class:`bnbook.BatchNorm1d` that, in training mode, normalizes each consecutive chunk of
    ``ghost_size`` examples with that chunk's own statistics (Hoffer, Hubara and Soudry 2017).

    A batch of 64 with ``ghost_size=8`` is normalized as 8 "ghost" batches of 8, so the noise of
    the batch statistics is that of a batch of 8 while the gradient step still averages 64
    examples. The running averages are updated once per batch with the average of the chunks'
    statistics (unbiased variances); eval mode is plain BN. The batch size must be a multiple of
    ``ghost_size``. Input of shape (N, C).
    """

    def __init__(self, num_features, ghost_size: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if isinstance(ghost_size, bool) or not isinstance(ghost_size, int) or ghost_size < 2:
            raise ValueError(f"ghost_size must be an integer >= 2 (a batch of one has no variance), "
                             f"got {ghost_size!r}")
        self.ghost_size = ghost_size

    def forward(self, x):
        if not self.training or len(x) <= self.ghost_size:
            return super().forward(x)
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}), got {tuple(x.shape)}")
        if len(x) % self.ghost_size:
            raise ValueError(f"the batch size {len(x)} is not a multiple of ghost_size={self.ghost_size}")
        chunks = x.reshape(-1, self.ghost_size, self.num_features)
        mean, var = chunks.mean(1, keepdim=True), chunks.var(1, unbiased=False, keepdim=True)
        y = ((chunks - mean) / torch.sqrt(var + self.eps)).reshape_as(x)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            with torch.no_grad():
                unbiased = var * self.ghost_size / (self.ghost_size - 1)
                self.running_mean.lerp_(mean.mean(0).squeeze(0), m)
                self.running_var.lerp_(unbiased.mean(0).squeeze(0), m)
        return y if self.weight is None else y * self.weight + self.bias

    def extra_repr(self):
        return super().extra_repr() + f", ghost_size={self.ghost_size}"


def _noise(kind, p):
    if kind == "dropout":
        return nn.Dropout(p)
    if kind == "uout":
        return UniformNoise(p)
    raise ValueError(f"unknown noise {kind!r}; allowed: 'dropout', 'uout'")


def dropout_mlp(in_features: int, hidden, out_features: int, p: float = 0.0, where: str = "before BN",
                noise: str = "dropout", norm: bool = True, ghost: int | None = None) -> Net:
    """A ReLU MLP ``fc -> BN -> ReLU`` per hidden layer (BN before the activation, as in Ioffe and
    Szegedy), with noise at one of :data:`PLACEMENTS`.

    ``p`` is dropout's drop probability (``noise='dropout'``) or Uout's ``beta`` (``noise='uout'``);
    ``p=0`` adds no noise layer. The noise modules are called ``drop1``, ``drop2``, ...: with
    ``where='before BN'`` each sits between ``fc<i>`` and ``norm<i>``; with ``'before linear'`` after
    ``act<i>``; with ``'after last BN'`` only after the last activation, before ``out``.
    ``norm=False`` leaves BN out (then the linear layers keep their biases); ``ghost`` uses
    :class:`GhostBatchNorm1d` with that ghost batch size.
    """
    if where not in PLACEMENTS:
        raise ValueError(f"unknown where {where!r}; allowed: {', '.join(map(repr, PLACEMENTS))}")
    if not 0.0 <= p < (1.0 if noise == "dropout" else math.inf):
        raise ValueError(f"p must be in [0, 1) for dropout and >= 0 for uout, got {p}")
    hidden = list(hidden)
    layers, width = OrderedDict(), in_features
    for i, h in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, h, bias=not norm)
        if p and where == "before BN":
            layers[f"drop{i}"] = _noise(noise, p)
        if norm:
            layers[f"norm{i}"] = BatchNorm1d(h) if ghost is None else GhostBatchNorm1d(h, ghost)
        layers[f"act{i}"] = nn.ReLU()
        if p and (where == "before linear" or (where == "after last BN" and i == len(hidden))):
            layers[f"drop{i}"] = _noise(noise, p)
        width = h
    layers["out"] = nn.Linear(width, out_features)
    return Net(layers)


def noise_variance(p: float, noise: str = "dropout") -> float:
    """The variance of the multiplicative noise: ``p / (1 - p)`` for dropout (the kept values are
    scaled by ``1 / (1 - p)``), ``p^2 / 3`` for Uout with ``beta = p``. Both have mean 1."""
    if noise == "dropout":
        return p / (1 - p)
    if noise == "uout":
        return p ** 2 / 3
    raise ValueError(f"unknown noise {noise!r}; allowed: 'dropout', 'uout'")


def predicted_shift(noise_var, mean, var):
    """BN's running variance over the variance it sees in eval mode, for mean-1 multiplicative noise of
    variance ``noise_var`` directly before BN, on a unit with eval-mode mean ``mean`` and variance ``var``:
    ``1 + noise_var * (1 + mean^2 / var)`` (``1 / (1 - p)`` for dropout on a zero-mean unit)."""
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    return 1 + noise_var * (1 + mean ** 2 / var)


def variance_shift(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """Per BN layer of ``model``, per unit: ``running_var / var``, where ``var`` is the variance of the
    layer's input when ``model`` processes ``x`` in eval mode (noise off) -- what the layer receives at
    test time. 1 means no shift; Li et al. (2019) call a ratio above 1 the variance shift."""
    out = []
    for bn in [m for m in model.modules() if isinstance(m, BatchNorm1d)]:
        seen = activations(model, x, bn, where="input")
        out.append((bn.running_var / seen.var(0)).numpy())
    if not out:
        raise ValueError("the model has no BatchNorm1d layer")
    return out


def input_moments(model: nn.Module, x: torch.Tensor, module: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode mean and variance (per unit) of ``module``'s input when ``model`` processes ``x``."""
    seen = activations(model, x, module, where="input")
    return seen.mean(0).numpy(), seen.var(0).numpy()


NOISE_MODULES = (nn.Dropout, UniformNoise)


@torch.no_grad()
def recalibrated(model: nn.Module, x: torch.Tensor, batch_size: int = 64, noise: bool = False,
                 seed: int | None = None) -> nn.Module:
    """A copy of ``model`` whose BN layers hold statistics of ``x`` recomputed over its mini-batches of
    ``batch_size`` (cumulative averages; order fixed by ``seed``); the model itself is not changed.

    ``noise=False`` (the default) switches dropout and Uout off while BN collects the statistics: the
    statistics eval mode should use. Li et al. (2019) recompute BN's statistics this way to show that the
    variance shift is what costs accuracy. ``noise=True`` keeps the noise on, as in training: the
    statistics training gives BN for these weights, without any weight update (the chapter's check of
    :func:`predicted_shift`).
    """
    net = copy.deepcopy(model).eval()
    norms = [m for m in net.modules() if isinstance(m, BatchNorm1d)]
    if not norms:
        raise ValueError("the model has no BatchNorm1d layer to recalibrate")
    for m in net.modules():
        if isinstance(m, NOISE_MODULES):
            m.train(noise)
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(resolve(seed))
        for xb, _ in batches(x, x, min(batch_size, len(x)), generator(seed)):
            net(xb)
    for bn, old in zip(norms, [m for m in model.modules() if isinstance(m, BatchNorm1d)]):
        bn.momentum = old.momentum
    return net.eval()


def plot_shift(fig, p: float = 0.5, mean: float = 0.0, n: int = 40000):
    """Explorer: one unit with eval-mode mean ``mean`` and variance 1, dropout ``p`` directly before BN.

    Left: the unit's values in training mode (with dropout) and in eval mode. Right: BN's output in eval
    mode, normalized with the training-mode statistics, against the standard normal it was trained to
    give. Returns the measured ratio of the two variances (training over eval).
    """
    g = generator()
    x = mean + torch.randn(n, generator=g)
    keep = (torch.rand(n, generator=g) >= p).float()
    train_values = x * keep / (1 - p)
    ratio = (train_values.var() / x.var()).item()
    eval_out = (x - train_values.mean()) / train_values.std()
    ax1, ax2 = fig.subplots(1, 2)
    bins = np.linspace(-6, 6 + 2 * mean, 60)
    ax1.hist(train_values.numpy(), bins=bins, alpha=0.5, density=True, label="training (dropout on)")
    ax1.hist(x.numpy(), bins=bins, alpha=0.5, density=True, label="eval (dropout off)")
    ax1.set(xlabel="BN's input", ylabel="density", title=f"variance ratio {ratio:.2f}")
    ax1.legend(fontsize="small")
    grid = np.linspace(-4, 4, 200)
    ax2.hist(eval_out.numpy(), bins=np.linspace(-4, 4, 50), density=True, color="C1", alpha=0.6,
             label="eval-mode output")
    ax2.plot(grid, np.exp(-grid ** 2 / 2) / math.sqrt(2 * math.pi), "k", lw=1.5, label="standard normal")
    ax2.set(xlabel="BN's output (gamma = 1, beta = 0)", title=f"eval std {eval_out.std():.2f}")
    ax2.legend(fontsize="small")
    return ratio


# --- self-checks ------------------------------------------------------------------------------------

def check_shift_formula(fn) -> bool | None:
    """Exercise: ``fn(p, mean, var)``, the predicted variance shift of dropout ``p`` directly before BN."""
    fn, verdict = function_answer(fn, "your shift formula", "check_shift_formula(my_shift)")
    if fn is None:
        return verdict
    cases = [(0.5, 0.0, 1.0), (0.1, 0.0, 2.0), (0.3, 1.0, 1.0), (0.5, -2.0, 0.5), (0.2, 0.5, 4.0)]
    for p, m, v in cases:
        got, verdict = call_answer(fn, p, m, v, signature="fn(p, mean, var) with numbers")
        if verdict is not None:
            return verdict
        if got is None:
            return wrong(f"your function returned None for fn({p}, {m}, {v}); return the ratio (a number)")
        value, verdict = numeric_answer(got, f"fn({p}, {m}, {v})")
        if value is None:
            return False
        want = float(predicted_shift(noise_variance(p), m, v))
        if not near(value, want, 1e-6):
            hint = (" (1/(1-p) holds for a zero-mean unit only: dropout also scales the mean's square)"
                    if m != 0 and near(value, 1 / (1 - p), 1e-6) else "")
            return wrong(f"fn({p}, {m}, {v}) = {value:.4g}, expected {want:.4g}{hint}")
    return ok("your formula matches the variance shift on every test case")


def check_ghost_norm(fn) -> bool | None:
    """Exercise: ``fn(x, ghost_size)`` normalizes each chunk of ``ghost_size`` rows with its own statistics."""
    fn, verdict = function_answer(fn, "your ghost batch normalization", "check_ghost_norm(my_ghost_norm)")
    if fn is None:
        return verdict
    x = torch.randn(12, 3, generator=generator(1), dtype=torch.float64) * 3 + 1
    for size in (4, 6, 12):
        got, verdict = call_answer(fn, x.clone(), size, signature="fn(x, ghost_size) with x of shape (12, 3)")
        if verdict is not None:
            return verdict
        got = as_tensor(got)
        chunks = x.split(size)
        want = torch.cat([(c - c.mean(0)) / torch.sqrt(c.var(0, unbiased=False) + 1e-5) for c in chunks])
        if got is None or got.shape != want.shape:
            return wrong(f"expected a tensor of shape {tuple(want.shape)}, got "
                         f"{None if got is None else tuple(got.shape)}")
        if not close(got, want, rtol=1e-4, atol=1e-4):
            whole = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
            if close(got, whole, rtol=1e-4, atol=1e-4):
                return wrong(f"with ghost_size={size} you normalized the whole batch at once; "
                             "each chunk of ghost_size rows needs its own mean and variance")
            return wrong(f"with ghost_size={size} the output differs from (x - mean) / sqrt(var + 1e-5) "
                         "per chunk (biased variance, as BN in training mode)")
    return ok("each ghost batch is normalized with its own statistics")


def check_uout_beta(answer, p: float = 0.5) -> bool | None:
    """Exercise: the Uout ``beta`` whose noise has the variance of dropout with drop probability ``p``."""
    value, verdict = numeric_answer(answer, "your beta")
    if value is None:
        return verdict
    want = math.sqrt(3 * p / (1 - p))
    if near(value, want, 1e-3):
        return ok(f"beta = {want:.4f}: Uout then shifts BN's variance exactly as much as dropout {p}")
    if near(value, math.sqrt(p / (1 - p)), 1e-3):
        return wrong("that beta has the standard deviation of dropout's noise; U(-beta, beta) has "
                     "variance beta^2 / 3, not beta^2")
    return wrong(f"beta = {value:g} gives noise variance {value ** 2 / 3:.4g}; dropout {p} has {p / (1 - p):.4g}")
