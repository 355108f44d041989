"""Chapter "Where to put BN": placement, scale and shift, and the bias before BN.

:func:`variant` builds the chapter's networks (an MLP or the small CNN, with BN before or after the
ReLU, with or without gamma and beta); :func:`population_accuracy` evaluates a trained network with
BN statistics recomputed on the whole training set, which separates what a placement does to the
learned weights from the lag of the running averages. :func:`with_bias_before_norm` puts back the
bias that the book's models drop in front of BN, so the chapter can show that it never learns;
:func:`relu_bn_moments` is the arithmetic of the next layer's input. :func:`plot_seed_spread` and
:func:`plot_next_input` (the widget) draw; ``check_*`` are the exercises' self-checks.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from ..layers import BatchNorm1d
from ..models import mlp, small_cnn
from ..seeding import generator
from ..selfcheck import call_answer, function_answer, numeric_answer, ok, wrong

__all__ = [
    "VARIANTS", "variant", "population_accuracy", "with_bias_before_norm", "relu_bn_moments",
    "plot_seed_spread", "plot_next_input", "check_positive_fraction", "check_strip_bias",
]

# label -> (placement, affine): the four cells of the CaffeNet table
VARIANTS = {
    "before": ("before", True),
    "before, no gamma/beta": ("before", False),
    "after": ("after", True),
    "after, no gamma/beta": ("after", False),
}
ARCHS = ("mlp", "cnn")


def variant(arch: str, label: str, width: int = 8, hidden=(64, 64, 64)):
    """A factory (no arguments, for :func:`bnbook.train.run_seeds`) of one of the chapter's networks.

    ``arch`` is ``'mlp'`` (:func:`bnbook.models.mlp` 64-``hidden``-10, ReLU) or ``'cnn'``
    (:func:`bnbook.models.small_cnn` with ``width`` channels, BatchNorm2d); ``label`` is a key of
    :data:`VARIANTS`. As in :func:`bnbook.models.mlp`, a layer directly followed by BN has no bias.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if label not in VARIANTS:
        raise ValueError(f"unknown variant {label!r}; the variants are {list(VARIANTS)}")
    placement, affine = VARIANTS[label]
    if arch == "mlp":
        return lambda: mlp(64, hidden, 10, activation="relu", norm="bn", placement=placement, affine=affine)
    return lambda: small_cnn(1, 10, norm="bn", width=width, placement=placement, affine=affine)


def population_accuracy(model: nn.Module, x_train, x_test, y_test) -> float:
    """Test accuracy in eval mode after replacing every BN layer's running statistics by the statistics
    of the whole training set ``x_train`` (one forward pass in training mode with momentum 1).

    The model itself is not changed (the pass runs on a copy). Running averages trail the parameters
    by roughly ``1 / momentum`` steps; this accuracy is what the learned weights give without that lag.
    """
    net = copy.deepcopy(model)
    norms = [m for m in net.modules() if getattr(m, "running_mean", None) is not None]
    if not norms:
        raise ValueError("the model has no BN layer with running statistics")
    for m in norms:
        m.momentum = 1.0
    with torch.no_grad():
        net.train()
        net(x_train)
        net.eval()
        return (net(x_test).argmax(dim=1) == y_test).double().mean().item()


def with_bias_before_norm(model: nn.Module, std: float = 1.0, seed: int | None = None) -> nn.Module:
    """A copy of a :class:`bnbook.models.Net` in which every ``fc``/``conv`` layer directly followed by BN
    gets back the bias that the book's models drop, drawn from N(0, ``std``^2) (``seed``: None is the
    book's base seed). Everything else (weights, BN parameters and buffers) is copied unchanged, so in
    training mode the copy computes exactly what the original computes (BN subtracts the bias again).
    """
    net = copy.deepcopy(model)
    names = [name for name, _ in net.named_children()]
    g = generator(seed)
    added = 0
    for name, nxt in zip(names, names[1:]):
        layer = getattr(net, name)
        if not (name.startswith(("fc", "conv")) and nxt.startswith("norm")) or layer.bias is not None:
            continue
        layer.bias = nn.Parameter(std * torch.randn(layer.out_channels if isinstance(layer, nn.Conv2d)
                                                    else layer.out_features, generator=g,
                                                    dtype=layer.weight.dtype))
        added += 1
    if not added:
        raise ValueError("the model has no fc/conv layer without bias directly followed by a norm layer "
                         "(build it with norm='bn', placement='before')")
    return net


def relu_bn_moments():
    """The next layer's input for a standard normal pre-activation ``z``, in closed form.

    Returns a dict: ``relu_mean`` = E[ReLU(z)] = 1/sqrt(2 pi), ``relu_std`` = sqrt(1/2 - 1/(2 pi)),
    ``before_positive`` = P(ReLU(z) > 0) = 1/2 (BN before the ReLU, gamma = 1, beta = 0), and
    ``after_positive`` = P(BN(ReLU(z)) > 0) = P(z > 1/sqrt(2 pi)) (BN after the ReLU), and ``after_floor``,
    the value BN maps the ReLU's zeros to, ``-relu_mean / relu_std``.
    """
    mean = 1.0 / math.sqrt(2.0 * math.pi)
    std = math.sqrt(0.5 - 1.0 / (2.0 * math.pi))
    after = 0.5 * math.erfc(mean / math.sqrt(2.0))
    return {"relu_mean": mean, "relu_std": std, "before_positive": 0.5, "after_positive": after,
            "after_floor": -mean / std}


# --- plots -----------------------------------------------------------------------------------

def plot_seed_spread(ax, finals: dict, colors: dict | None = None, reference: float | None = None):
    """One column of dots per variant (``finals``: label -> one value per seed, the same seeds in the same
    order), each seed's dots joined by a thin grey line so paired runs can be followed, and a black bar at
    each variant's mean. Returns ``ax``."""
    labels = list(finals)
    rows = [np.asarray(finals[k], float).ravel() for k in labels]
    if not rows or len({len(r) for r in rows}) != 1:
        raise ValueError(f"every variant needs the same number of seeds, got {[len(r) for r in rows]}")
    values = np.stack(rows)
    x = np.arange(len(labels))
    for seed_values in values.T:
        ax.plot(x, seed_values, color="0.75", lw=0.8, zorder=1)
    for i, label in enumerate(labels):
        c = (colors or {}).get(label, "k")
        ax.scatter(np.full(values.shape[1], i), values[i], color=c, s=28, zorder=2)
        ax.plot([i - 0.25, i + 0.25], [values[i].mean()] * 2, color="k", lw=2.5, zorder=3)
    if reference is not None:
        ax.axhline(reference, color="0.4", ls=":", lw=1)
    ax.set_xticks(x, [label.replace(", ", ",\n") for label in labels])
    return ax


def plot_next_input(fig, gamma: float = 1.0, beta: float = 0.0, n: int = 4000, seed: int | None = None):
    """The widget: what the layer after BN and ReLU receives, for the two placements.

    ``z`` is a standard normal pre-activation (``n`` draws, ``seed``: None is the book's base seed).
    Left, BN before the ReLU: ``ReLU(gamma * BN(z) + beta)``. Right, BN after the ReLU:
    ``gamma * BN(ReLU(z)) + beta``. Each panel's title gives the fraction of positive values and the
    mean. Returns ``{"before": fraction positive, "after": fraction positive}``.
    """
    g = generator(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64)

    def bn(v):
        return (v - v.mean()) / v.std(correction=0)

    inputs = {"before": torch.relu(gamma * bn(z) + beta), "after": gamma * bn(torch.relu(z)) + beta}
    titles = {"before": r"BN before ReLU: ReLU($\gamma$ BN(z) + $\beta$)",
              "after": r"BN after ReLU: $\gamma$ BN(ReLU(z)) + $\beta$"}
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    fractions, tallest = {}, []
    for ax, (where, v) in zip(axes, inputs.items()):
        fractions[where] = (v > 0).double().mean().item()
        counts, edges, _ = ax.hist(v.numpy(), bins=80, range=(-4, 6),
                                   color="#0072B2" if where == "before" else "#56B4E9")
        # the ReLU's zeros pile up in one bin: clip the axis above the rest, label the pile
        spike = int(np.argmax(counts))
        floor = v.min().item()  # the ReLU's zeros, after BN's shift and scale (gamma > 0)
        ax.annotate(f"{int((v == floor).sum())} values\nat {floor:.2f}", xy=(edges[spike], 1.0),
                    xycoords=("data", "axes fraction"), xytext=(-12, -24), textcoords="offset points",
                    ha="right", fontsize="small", arrowprops=dict(arrowstyle="->", lw=0.8))
        tallest.append(np.sort(counts)[-2])
        ax.axvline(0, color="k", lw=0.8)
        ax.axvline(v.mean().item(), color="#D55E00", ls="--", lw=1.2, label="mean")
        ax.set(title=f"{titles[where]}\n{fractions[where]:.0%} positive, mean {v.mean().item():.2f}",
               xlabel="input of the next layer")
    axes[0].set_ylim(0, 1.4 * max(tallest))
    axes[0].set_ylabel(f"count (of {n})")
    axes[1].legend(loc="center right", fontsize="small")
    fig.set_layout_engine("constrained")
    return fractions


# --- exercise self-checks --------------------------------------------------------------------

def check_positive_fraction(answer):
    """Check the predicted fraction of positive inputs of the next layer when BN (gamma = 1, beta = 0)
    follows a ReLU whose input is standard normal: P(z > 1/sqrt(2 pi)) = 0.345."""
    value, verdict = numeric_answer(answer, "the fraction of positive inputs")
    if value is None:
        return verdict
    want = relu_bn_moments()["after_positive"]
    if abs(value - want) < 0.005:
        return ok(f"BN(ReLU(z)) > 0 exactly when ReLU(z) is above its mean 1/sqrt(2 pi), i.e. z > 0.399: "
                  f"{want:.3f} of the inputs")
    if value > 1 or value < 0:
        return wrong("a fraction is between 0 and 1 (use 0.3, not 30)")
    if abs(value - 0.5) < 0.005:
        return wrong("0.5 is BN *before* the ReLU. After it, BN subtracts the ReLU's mean: which values of "
                     "ReLU(z) are above their mean?")
    if abs(value - 0.25) < 0.005:
        return wrong("not half of the positive half: BN moves the threshold to the ReLU's mean E[ReLU(z)]")
    return wrong("BN(ReLU(z)) > 0 exactly when ReLU(z) > E[ReLU(z)]; compute E[ReLU(z)] for a standard "
                 "normal z, then P(z > E[ReLU(z)])")


def _strip_case():
    """A fixed Linear + BN pair with a bias and running statistics far from their initial values (the
    seed is a constant on purpose: a check's case must not move with BNBOOK_SEED)."""
    g = torch.Generator().manual_seed(1017)
    linear = nn.Linear(5, 4).double()
    bn = BatchNorm1d(4).double()
    with torch.no_grad():
        linear.weight.copy_(torch.randn(4, 5, generator=g, dtype=torch.float64))
        linear.bias.copy_(3 * torch.randn(4, generator=g, dtype=torch.float64))
        bn.weight.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
        bn.running_mean.copy_(linear.bias + 0.3 * torch.randn(4, generator=g, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
    x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    return linear, bn, x


def _outputs(linear, bn, x, training):
    bn.train(training)
    with torch.no_grad():
        if training:  # a training-mode pass must not change the buffers we compare
            saved = (bn.running_mean.clone(), bn.running_var.clone())
        out = bn(linear(x))
        if training:
            bn.running_mean.copy_(saved[0])
            bn.running_var.copy_(saved[1])
    return out


def check_strip_bias(fn):
    """Check ``fn(linear, bn) -> (linear2, bn2)``: ``linear2`` has no bias, and the pair computes what
    ``bn(linear(x))`` computes, in training mode and in eval mode (running statistics)."""
    fn, verdict = function_answer(fn, "dropping the bias before BN", "check_strip_bias(my_strip_bias)")
    if fn is None:
        return verdict
    linear, bn, x = _strip_case()
    want = {mode: _outputs(linear, bn, x, mode) for mode in (True, False)}
    out, verdict = call_answer(fn, copy.deepcopy(linear), copy.deepcopy(bn),
                               signature="fn(linear, bn) with an nn.Linear(5, 4) and a BatchNorm1d(4), float64")
    if verdict is not None:
        return verdict
    if not (isinstance(out, (tuple, list)) and len(out) == 2
            and all(isinstance(m, nn.Module) for m in out)):
        return wrong(f"return the pair (linear2, bn2) of modules, not {type(out).__name__} {out!r:.40}")
    linear2, bn2 = out
    if getattr(linear2, "bias", None) is not None:
        return wrong("linear2 still has a bias: build nn.Linear(..., bias=False) (or set its bias to None)")
    if not hasattr(bn2, "running_mean") or bn2.running_mean is None:
        return wrong("bn2 must be a BN layer with running statistics (copy the one you were given)")
    try:
        got = {mode: _outputs(linear2, bn2, x, mode) for mode in (True, False)}
    except Exception as err:  # the reader's modules: report, never crash
        return wrong(f"running x through your pair raised {type(err).__name__}: {err}")
    same = {mode: got[mode].shape == want[mode].shape and torch.allclose(got[mode], want[mode], atol=1e-9)
            for mode in (True, False)}
    if same[True] and same[False]:
        return ok("the same outputs in both modes: the bias moved into the running mean (running_mean - b)")
    if not same[True]:
        return wrong("in training mode the outputs differ: keep linear's weight and BN's gamma and beta "
                     "as they are, only the bias goes")
    shift = bn.running_mean - linear.bias
    if torch.allclose(bn2.running_mean, bn.running_mean):
        return wrong("training mode is right, eval mode is not: the running mean still contains the old "
                     "bias (it averaged W x + b); subtract b from it")
    if torch.allclose(bn2.running_mean, bn.running_mean + linear.bias):
        return wrong("subtract the bias from the running mean, do not add it")
    if not torch.allclose(bn2.running_mean, shift):
        return wrong("eval mode differs: the new running mean should be running_mean - bias")
    return wrong("eval mode differs: keep running_var, gamma and beta unchanged")
