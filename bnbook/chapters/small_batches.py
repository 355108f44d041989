"""Chapter "Small batches and the alternatives": BN against normalizers without batch statistics.

The layers themselves are the toolkit's (:class:`bnbook.LayerNorm`, :class:`bnbook.GroupNorm`,
:func:`bnbook.functional.normalize_backward`; ``norm='ln'``, ``'gn'``, ``'in'`` in
:mod:`bnbook.models`). This module holds the chapter's experiment and probes:
:data:`AXES` names the axes each normalizer averages over, :func:`batch_size_sweep` trains a
model at several batch sizes for the same number of examples seen (Wu and He's Fig. 1 in
miniature), :func:`batch_mode_accuracy` scores a BN net the way it was trained (batch statistics of
mini-batches of a given size), :func:`std_error` measures how far a BN layer's batch standard
deviation strays from the population's when it pools ``batch x positions`` values, and
:func:`plot_jitter` is the chapter's widget. ``check_*`` are its exercise self-checks.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import batches
from ..functional import normalize_backward, normalize_forward
from ..measure import probing, random_batches
from ..seeding import generator
from ..selfcheck import as_tensor, call_answer, close, function_answer, not_attempted, ok, wrong
from ..train import run_seeds

__all__ = [
    "AXES", "axes_of", "batch_size_sweep", "batch_mode_accuracy", "std_error", "plot_jitter",
    "check_layer_norm_backward", "check_axes",
]

# The axes of an (N, C, H, W) tensor each normalizer averages over (GN: C split into groups first).
AXES = {"batch norm": (0, 2, 3), "layer norm": (1, 2, 3), "instance norm": (2, 3)}


def axes_of(kind: str, ndim: int = 4) -> tuple[int, ...]:
    """The axes ``kind`` ('batch norm', 'layer norm', 'instance norm') averages over, for an input of ``ndim``
    dimensions ``(N, C, *positions)``; ``ndim=2`` is a fully connected layer's ``(N, C)``."""
    if kind not in AXES:
        raise ValueError(f"unknown normalizer {kind!r}; known: {', '.join(map(repr, AXES))}")
    if ndim < 2:
        raise ValueError(f"ndim must be at least 2 (N, C, ...), got {ndim}")
    positions = tuple(range(2, ndim))
    return {"batch norm": (0, *positions), "layer norm": (1, *positions), "instance norm": positions}[kind]


# --- the experiment ----------------------------------------------------------------------------------

@torch.no_grad()
def batch_mode_accuracy(model, x, y, batch_size, seed=None):
    """Accuracy on ``(x, y)`` in training mode, i.e. with BN normalizing each mini-batch of ``batch_size``
    examples by its own statistics (the function the net was trained as). Batches in a shuffled order from
    ``seed`` (None: the book's base seed); a last short batch is dropped. Mode and running statistics are
    restored (:func:`bnbook.measure.probing`)."""
    correct = total = 0
    with probing(model, train_mode=True):
        for xb, yb in batches(x, y, batch_size, generator(seed)):
            correct += (model(xb).argmax(dim=1) == yb).sum().item()
            total += len(yb)
    return correct / total


def batch_size_sweep(make_model, data, sizes, seeds, epochs=1, lr_per_32=0.3, batch_mode=False):
    """Train ``make_model()`` at each batch size for the same number of examples seen.

    Each run takes ``epochs * (n_train // B)`` SGD steps with the linearly scaled learning rate
    ``lr_per_32 * B / 32`` (Goyal et al.'s rule, which Wu and He use), one run per seed. Returns
    ``{B: Runs}`` (:class:`bnbook.train.Runs`; eval-mode test accuracy in ``runs.final()``). With
    ``batch_mode=True`` each Runs also gets ``batch_mode``: the test accuracy in training mode with batches
    of B (:func:`batch_mode_accuracy`), one per seed.
    """
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 2 for b in sizes):
        raise ValueError(f"sizes must be batch sizes of at least 2 (BN needs two values), got {sizes!r}")
    if not (epochs > 0 and lr_per_32 > 0):
        raise ValueError(f"epochs and lr_per_32 must be positive, got {epochs}, {lr_per_32}")
    out = {}
    for size in sizes:
        steps = max(1, round(epochs * (len(data.x_train) // size)))
        runs = run_seeds(make_model, data, seeds, steps=steps, lr=lr_per_32 * size / 32,
                         batch_size=size, eval_every=steps, progress=False)
        if batch_mode:
            runs.batch_mode = np.array([batch_mode_accuracy(m, data.x_test, data.y_test, size, s)
                                        for m, s in zip(runs.models, runs.seeds)])
        out[size] = runs
    return out


def std_error(values, batch_size, n_batches=200, generator=None):
    """How far BN's batch standard deviation strays from the population's, per channel.

    ``values`` is a BN layer's input on a data set: ``(N, C)`` (fully connected) or ``(N, C, *positions)``
    (conv maps, where BN pools each channel over the batch and the positions). Draws ``n_batches`` random
    batches of ``batch_size`` examples and returns the median over batches and channels of
    ``|sigma_B / sigma - 1|``, with ``sigma`` the standard deviation over all N examples (and positions).
    """
    if not isinstance(values, torch.Tensor) or values.dim() < 2:
        raise ValueError("values must be a tensor of shape (N, C) or (N, C, *positions)")
    flat = values.detach().double().transpose(0, 1).reshape(values.shape[1], len(values), -1)  # (C, N, P)
    sigma = flat.reshape(len(flat), -1).std(dim=1, correction=0)
    idx = random_batches(len(values), batch_size, n_batches, generator)  # (n_batches, B)
    picked = flat[:, idx].reshape(len(flat), n_batches, -1)  # (C, n_batches, B * P)
    sigma_b = picked.std(dim=2, correction=0)
    keep = sigma > 1e-8  # a channel that never varies has nothing to estimate
    return (sigma_b[keep] / sigma[keep, None] - 1).abs().median().item()


# --- the widget ----------------------------------------------------------------------------------

def plot_jitter(fig, batch_size=2, positions=1, n_draws=400, seed=None):
    """The widget: what BN makes of one example, depending on who shares its batch.

    A unit's values are standard normal; one example has the value 1.0. We put it in ``n_draws`` random
    batches of ``batch_size`` examples, each with ``positions`` values per example (a conv channel's
    positions; 1 for a fully connected unit), and normalize with the batch statistics. Left: the
    histogram of that example's normalized value (eval mode would always give 1.0). Right: every
    normalized value of all batches. Returns the standard deviation of the example's normalized value.
    """
    if batch_size < 2 and positions < 2:
        raise ValueError("BN needs at least two values per channel: batch_size * positions >= 2")
    g = generator(seed)
    values = torch.randn(n_draws, batch_size, positions, generator=g, dtype=torch.float64)
    values[:, 0, 0] = 1.0
    x_hat, _ = normalize_forward(values, [1, 2], 1e-5)
    mine = x_hat[:, 0, 0]
    jitter = mine.std().item()
    ax_me, ax_all = fig.subplots(1, 2, sharex=True)
    ax_me.hist(mine.numpy(), bins=40, range=(-4, 4), color="#0072B2")
    ax_me.axvline(1.0, color="k", ls="--", lw=1, label="eval mode (population statistics)")
    ax_me.set(xlabel="normalized value of the example with value 1.0", ylabel="batches", yticks=[],
              title=f"spread {jitter:.2f} (B = {batch_size}, {batch_size * positions} values pooled)")
    ax_me.legend(loc="upper left", fontsize="small")
    ax_all.hist(x_hat.flatten().numpy(), bins=60, range=(-4, 4), color="#7f7f7f")
    ax_all.set(xlabel="every normalized value", yticks=[], title="what the next layer sees")
    return jitter


# --- exercise self-checks ------------------------------------------------------------------

def _ln_case():
    """A fixed test case (constant seed on purpose: a check's case must not move with BNBOOK_SEED)."""
    g = torch.Generator().manual_seed(1017)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64) * 2 + 0.5
    gamma = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    dy = torch.randn(5, 7, generator=g, dtype=torch.float64)
    return x, gamma, dy


def check_layer_norm_backward(fn, eps=1e-5):
    """Check ``fn(dy, x, gamma, eps) -> dx`` for ``y = gamma * layer_norm(x) + beta`` over the last dimension of
    ``x`` of shape (N, D), against autograd. Names the usual slips (BN's axis, gamma forgotten)."""
    fn, verdict = function_answer(fn, "the LayerNorm backward pass", "check_layer_norm_backward(my_ln_backward)")
    if fn is None:
        return verdict
    x, gamma, dy = _ln_case()
    out, verdict = call_answer(fn, dy.clone(), x.clone(), gamma.clone(), eps,
                               signature=f"fn(dy, x, gamma, eps) with x of shape (5, 7), eps={eps}")
    if verdict is not None:
        return verdict
    dx = as_tensor(out)
    if dx is None:
        return wrong("return dx as a tensor (or array) of numbers")
    if dx.shape != x.shape:
        return wrong(f"dx must have x's shape {tuple(x.shape)}, got {tuple(dx.shape)}")
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.layer_norm(xr, (7,), gamma, None, eps).backward(dy)
    if close(dx, xr.grad, rtol=1e-7, atol=1e-10):
        return ok("dx = inv_std * (d - mean(d) - x_hat * mean(d * x_hat)) with d = gamma * dy, the means over "
                  "each example's features: BN's formula on the other axis")
    x_hat, inv_std = normalize_forward(x, [1], eps)
    bn_hat, bn_inv = normalize_forward(x, [0], eps)
    if close(dx, normalize_backward(dy * gamma, bn_hat, bn_inv, [0]), rtol=1e-7, atol=1e-10):
        return wrong("that is BN's backward (means over the batch, dim 0): LayerNorm averages over each "
                     "example's features, dim 1")
    if close(dx, normalize_backward(dy, x_hat, inv_std, [1]), rtol=1e-7, atol=1e-10):
        return wrong("gamma is missing: the gradient reaching x_hat is gamma * dy")
    if close(dx, inv_std * dy * gamma, rtol=1e-7, atol=1e-10):
        return wrong("the mean and the variance depend on x too: subtract mean(d) and x_hat * mean(d * x_hat)")
    return wrong("dx does not match autograd; start from d = gamma * dy and the BN backward formula, with the "
                 "means over dim 1")


def check_axes(answer):
    """Check a dict ``{'batch norm': axes, 'layer norm': axes, 'instance norm': axes}`` for an (N, C, H, W)
    input, each a tuple of the dimensions the normalizer averages over."""
    if answer is None:
        return not_attempted("the axes of each normalizer")
    if not isinstance(answer, dict):
        return wrong(f"give a dict like {{'batch norm': (0, 2, 3), ...}}, not a {type(answer).__name__}")
    missing = [k for k in AXES if k not in answer]
    if missing:
        return wrong(f"the dict lacks {', '.join(map(repr, missing))}")
    for kind, want in AXES.items():
        try:
            got = tuple(sorted(int(a) % 4 for a in answer[kind]))
        except (TypeError, ValueError):
            return wrong(f"{kind}: give a tuple of dimension numbers, got {answer[kind]!r:.40}")
        if got == want:
            continue
        if kind == "batch norm" and got == (0,):
            return wrong("batch norm on conv maps averages over the positions too (dims 0, 2, 3): one mean per "
                         "channel")
        if 0 in got and kind != "batch norm":
            return wrong(f"{kind} never averages over the batch (dim 0): each example is normalized alone")
        return wrong(f"{kind}: {got} is not it; which values share one mean in the output?")
    return ok("BN (0, 2, 3): one mean per channel; LN (1, 2, 3): one per example; IN (2, 3): one per example "
              "and channel; GN sits between LN and IN")
