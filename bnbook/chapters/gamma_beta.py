"""Chapter "Are gamma and beta redundant?": what the two parameterizations change.

The algebra (folding gamma and beta into the next layer, BN into the previous one) is the
toolkit's :mod:`bnbook.folding`. This module holds the chapter's probes:
:func:`step_sources` splits one SGD step's change of a layer's batch mean and standard
deviation by the parameters that caused it (lower layers, the layer's weights and
gamma, its bias or beta), :func:`steps_to_target` times how fast gradient descent (on all layers,
or on some alone) gives a layer a target mean and scale (a :class:`bnbook.train.History`, so a
diverged descent is recorded like a diverged training run; :func:`predicted_steps_to_target` is the formula for BN), and
:func:`near_linear_fraction` measures how many sigmoid
inputs sit where the sigmoid is close to linear. :func:`plot_sigmoid_regime` is the
chapter's widget; ``check_*`` are its exercise self-checks.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import layer_of
from ..seeding import generator
from ..selfcheck import as_tensor, call_answer, close, function_answer, numeric_answer, ok, wrong
from ..train import History, divergence_limit, has_diverged

__all__ = [
    "GROUPS", "step_sources", "steps_to_target", "predicted_steps_to_target",
    "near_linear_threshold", "near_linear_fraction", "band_fraction",
    "plot_sigmoid_regime", "check_fold_next", "check_fold_previous", "check_threshold",
]


GROUPS = ("lower layers", "weights and gamma", "bias or beta")


def _groups(model, layer):
    """The parameters that can move the pre-activation of hidden layer ``layer`` (1-based)."""
    lower, weights, shift = [], [], []
    for name, _ in model.named_parameters():
        index = layer_of(name)
        if not (name.startswith(("fc", "norm")) and index.isdigit()):
            continue
        if int(index) < layer:
            lower.append(name)
        elif int(index) == layer:
            # fc.bias and BN's beta shift the layer; fc.weight and gamma scale and mix it
            (shift if name.endswith(".bias") else weights).append(name)
    return dict(zip(GROUPS, (lower, weights, shift)))


def _pre_activation(net, x, layer):
    """The input of activation ``layer`` when ``net`` processes ``x``, still attached to the graph
    (unlike :func:`bnbook.measure.capture`, which detaches). A :class:`bnbook.models.Net` runs only
    up to that activation; any other module runs whole, with a hook on ``act<layer>``."""
    name = f"act{layer}"
    if isinstance(net, nn.Sequential):
        for child_name, child in net.named_children():
            if child_name == name:
                return x
            x = child(x)
    captured = {}
    hook = getattr(net, name).register_forward_pre_hook(
        lambda m, inp: captured.setdefault("z", inp[0]))
    try:
        net(x)
    finally:
        hook.remove()
    return captured["z"]


def step_sources(model, x, y, lr, layer, loss=F.cross_entropy):
    """Split one SGD step's effect on hidden layer ``layer``'s pre-activation by its source.

    The pre-activation is the input of ``act<layer>`` in a :func:`bnbook.models.mlp` (BN's output
    when BN sits before the activation). We take the gradient of ``loss`` on the batch ``(x, y)``,
    apply the step ``-lr * grad`` to one group of parameters at a time (``GROUPS``: the lower
    layers; the layer's weights and gamma; its bias or beta) and to all of them together, and
    measure how much the batch mean and the batch standard deviation of each unit moved.

    Returns ``{"mean": {...}, "std": {...}}``; each maps every group and ``"all together"`` to the
    L2 norm (over units) of the change, and ``"interaction"`` to the norm of (change with all
    groups together - sum of the changes of the groups alone). Parameters are grouped by layer
    number, so with ``placement='after'`` the BN feeding ``fc<layer>`` (``norm<layer-1>``, its beta
    included) counts as a lower layer. Works on a float64 copy in
    training mode (batch statistics); the model is not changed. Goodfellow et al. (sec. 8.7.1):
    after BN the mean is beta's alone.
    """
    if not isinstance(model, nn.Module) or not hasattr(model, f"act{layer}"):
        raise ValueError(f"the model has no module act{layer}; pass a bnbook.models.mlp and a hidden "
                         f"layer number between 1 and its depth")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    net = copy.deepcopy(model).double().train()
    x = x.double()
    groups = _groups(net, layer)
    net.zero_grad()
    loss(net(x), y).backward()
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in net.named_parameters()}

    @torch.no_grad()
    def stats(names):
        for n, p in net.named_parameters():
            p.copy_(start[n] - lr * grads[n] if n in names else start[n])
        z = _pre_activation(net, x, layer)
        return z.mean(0), z.std(0, correction=0)

    base = stats(set())
    changes = {g: [s - s0 for s, s0 in zip(stats(set(names)), base)] for g, names in groups.items()}
    together = [s - s0 for s, s0 in zip(stats(set().union(*groups.values())), base)]
    out = {}
    for i, stat in enumerate(("mean", "std")):
        row = {g: changes[g][i].norm().item() for g in GROUPS}
        row["all together"] = together[i].norm().item()
        row["interaction"] = (together[i] - sum(changes[g][i] for g in GROUPS)).norm().item()
        out[stat] = row
    return out


def _pre_activation_loss(net, x, layer, target_mean, target_std):
    z = _pre_activation(net, x, layer)
    return ((z.mean(0) - target_mean) ** 2 + (z.std(0, correction=0) - target_std) ** 2).mean()


def steps_to_target(model, x, layer, target_mean, target_std, lr, max_steps=150, tol=1e-3, train=None):
    """Full-batch gradient descent on a copy of ``model`` until every unit of hidden layer ``layer``
    has the batch mean ``target_mean`` and standard deviation ``target_std`` of its pre-activation.

    The loss is the mean over units of ``(mean - target_mean)^2 + (std - target_std)^2`` on the fixed
    batch ``x`` (training mode). ``train`` names the layers whose parameters descend (e.g.
    ``("fc3",)``: only layer 3's weights and bias; the others stay frozen); None trains them all.
    Returns a :class:`bnbook.train.History` whose ``train_loss`` is this
    loss at ``steps`` 0, 1, ... (before each update); the descent stops at the first loss ``<= tol``
    (then ``history.first_step("train_loss", tol)`` is the number of updates it took), after
    ``max_steps`` updates (``first_step`` is None), or when the loss :func:`bnbook.train.has_diverged`
    (limit :func:`bnbook.train.divergence_limit` of the initial loss): ``history.diverged`` and
    ``diverged_at``, recorded, never raised. With BN before the activation the mean is beta's and the
    standard deviation gamma's alone; compare :func:`predicted_steps_to_target`.
    """
    if not hasattr(model, f"act{layer}"):
        raise ValueError(f"the model has no module act{layer}; pass a bnbook.models.mlp and a hidden "
                         f"layer number between 1 and its depth")
    if not (lr > 0 and tol > 0):
        raise ValueError(f"lr and tol must be positive, got lr={lr}, tol={tol}")
    net = copy.deepcopy(model).train()  # a copy: the descent changes the parameters
    params = _trained(net, train)
    opt = torch.optim.SGD(params, lr=lr)
    history, limit = History(lr=lr), None
    for step in range(max_steps + 1):
        loss = _pre_activation_loss(net, x, layer, target_mean, target_std)
        value = loss.item()
        limit = divergence_limit(value) if limit is None else limit
        if has_diverged(value, limit):
            history.diverged, history.diverged_at = True, step
            break
        history.steps.append(step)
        history.train_loss.append(value)
        if value <= tol or step == max_steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return history


def _trained(net, train):
    """The parameters of the layers named in ``train`` (all if None); the others are frozen."""
    if train is None:
        return list(net.parameters())
    if isinstance(train, str):
        train = (train,)
    layers = dict(net.named_children())
    unknown = [name for name in train if name not in layers]
    if unknown or not train:
        raise ValueError(f"train must name layers of the model, such as ('fc3',); got {train!r}, "
                         f"the model has {list(layers)}")
    for p in net.parameters():
        p.requires_grad_(False)
    params = [p for name in train for p in layers[name].parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def predicted_steps_to_target(lr, n_units, target_mean, target_std, tol=1e-3):
    """The step count of :func:`steps_to_target` for BN before the activation (gamma = 1, beta = 0 at
    the start), neglecting eps: each beta and gamma is a one-dimensional quadratic with gradient
    ``2 (beta - target_mean) / n_units``, so every error shrinks by ``r = 1 - 2 lr / n_units`` per step
    and the loss is ``r^(2k)`` times its initial value ``target_mean^2 + (1 - target_std)^2``.
    Returns ``math.inf`` where ``|r| >= 1`` (the loss never gets below ``tol``)."""
    r = abs(1.0 - 2.0 * lr / n_units)
    start = target_mean ** 2 + (1.0 - target_std) ** 2
    if start <= tol:
        return 0
    if r >= 1.0:
        return math.inf
    if r == 0.0:
        return 1
    return math.ceil(math.log(tol / start) / (2.0 * math.log(r)))


# --- the sigmoid's near-linear regime --------------------------------------------------------

def near_linear_threshold(slope=0.8):
    """The ``t`` for which the sigmoid's slope is at least ``slope`` times its maximum 1/4 exactly
    when ``|z| <= t``: from ``sigmoid'(z) / sigmoid'(0) = 1 / cosh(z/2)^2``, ``t = 2 arccosh(slope^-1/2)``."""
    if not 0 < slope < 1:
        raise ValueError(f"slope must be a fraction of the maximal slope, strictly between 0 and 1, got {slope}")
    return 2.0 * math.acosh(slope ** -0.5)


def near_linear_fraction(z, slope=0.8):
    """Fraction of the values ``z`` (sigmoid inputs) where the sigmoid's slope is at least ``slope``
    times its maximum, i.e. where the sigmoid is close to its tangent at 0."""
    z = torch.as_tensor(z)
    if z.numel() == 0:
        raise ValueError("z is empty")
    return (z.abs() <= near_linear_threshold(slope)).double().mean().item()


def band_fraction(gamma, beta=0.0, slope=0.8):
    """The fraction of ``gamma * x_hat + beta`` in the near-linear band when ``x_hat`` is standard normal:
    ``Phi((t - beta) / |gamma|) - Phi((-t - beta) / |gamma|)`` with ``t = near_linear_threshold(slope)``.
    Accepts numbers or arrays (broadcast); returns a float64 NumPy array."""
    t = near_linear_threshold(slope)
    g = torch.as_tensor(gamma, dtype=torch.float64).abs()
    b = torch.as_tensor(beta, dtype=torch.float64)
    if (g == 0).any():
        raise ValueError("gamma must be non-zero (gamma = 0 makes every input equal to beta)")
    return (torch.special.ndtr((t - b) / g) - torch.special.ndtr((-t - b) / g)).numpy()


def plot_sigmoid_regime(fig, gamma=1.0, beta=0.0, slope=0.8, n=4000, seed=None):
    """The widget: a BN-normalized unit ``gamma * x_hat + beta`` fed to a sigmoid.

    Left: the sigmoid, its tangent at 0 and the near-linear band; the histogram of the sigmoid's
    inputs (``n`` draws of a standard normal x_hat, from ``seed``: None is the book's base seed).
    Right: the histogram of its outputs. Returns the fraction of inputs in the near-linear band
    (also the title).
    """
    g = generator(seed)
    x_hat = torch.randn(n, generator=g, dtype=torch.float64)
    x_hat = (x_hat - x_hat.mean()) / x_hat.std(correction=0)
    z = gamma * x_hat + beta
    t = near_linear_threshold(slope)
    frac = near_linear_fraction(z, slope)
    ax_in, ax_out = fig.subplots(1, 2)
    grid = np.linspace(-8, 8, 400)
    ax_in.axvspan(-t, t, color="#009E73", alpha=0.15, label=f"slope >= {slope:.0%} of max")
    ax_in.plot(grid, 1 / (1 + np.exp(-grid)), color="k", label="sigmoid")
    ax_in.plot(grid, np.clip(0.5 + grid / 4, -0.1, 1.1), color="k", ls="--", lw=1, label="tangent at 0")
    ax_hist = ax_in.twinx()
    ax_hist.hist(z.numpy(), bins=60, range=(-8, 8), color="#0072B2", alpha=0.5)
    ax_hist.set_yticks([])
    ax_hist.grid(False)
    ax_in.set(xlim=(-8, 8), ylim=(-0.1, 1.1), xlabel=r"sigmoid input $\gamma\hat{x} + \beta$",
              title=f"{frac:.0%} of inputs in the near-linear band")
    ax_in.legend(loc="upper left", fontsize="small")
    ax_out.hist(torch.sigmoid(z).numpy(), bins=50, range=(0, 1), color="#0072B2")
    ax_out.set(xlabel="sigmoid output", yticks=[], title=f"gamma = {gamma:.2f}, beta = {beta:.2f}")
    fig.tight_layout()
    return frac


# --- exercise self-checks ------------------------------------------------------------------

def _case(seed):
    """A fixed test case (``seed`` is a constant on purpose: a check's case must not move with
    BNBOOK_SEED)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    gamma = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(4, generator=g, dtype=torch.float64)
    return w, b, gamma, beta


def _answer_pair(fn, args, signature):
    """``((W', b'), None)`` from the reader's function, or ``(None, verdict)`` naming what went wrong."""
    out, verdict = call_answer(fn, *(a.clone() for a in args), signature=signature)
    if verdict is not None:
        return None, verdict
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return None, wrong(f"return the pair (W2, b2), not {type(out).__name__} {out!r:.40}")
    pair = tuple(as_tensor(o) for o in out)
    if any(p is None for p in pair):
        return None, wrong("W2 and b2 must be tensors (or arrays) of numbers")
    return pair, None


def _close(a, b):
    return close(a, b, rtol=1e-9, atol=1e-12)


def check_fold_next(fn):
    """Check ``fn(W, b, gamma, beta) -> (W', b')`` with ``W (gamma * x_hat + beta) + b = W' x_hat + b'``
    for W of shape (out, in). Names the usual slips (gamma on the wrong side, beta forgotten)."""
    fn, verdict = function_answer(fn, "folding gamma and beta into the next layer",
                                  "check_fold_next(my_fold_next)")
    if fn is None:
        return verdict
    w, b, gamma, beta = _case(807)
    got, verdict = _answer_pair(fn, (w, b, gamma, beta),
                                "fn(W, b, gamma, beta) with W of shape (3, 4)")
    if got is None:
        return verdict
    new_w, new_b = got
    want_w, want_b = w * gamma, b + w @ beta
    if new_w.shape != want_w.shape or new_b.shape != want_b.shape:
        return wrong(f"W' should have W's shape {tuple(w.shape)} and b' b's shape {tuple(b.shape)}")
    if _close(new_w, want_w) and _close(new_b, want_b):
        return ok("W' = W diag(gamma) and b' = W beta + b: the same function, without gamma and beta")
    if _close(new_w, want_w):
        if _close(new_b, b):
            return wrong("W' is right but beta is lost: b' = W beta + b")
        if _close(new_b, b + w @ (gamma * beta)) or _close(new_b, b + (w * gamma) @ beta):
            return wrong("beta is added after gamma, so it is not scaled by it: b' = W beta + b")
        return wrong("W' is right, b' is not: b' = W beta + b")
    return wrong("W' is not right: W (gamma * x_hat) = (W diag(gamma)) x_hat")


def check_fold_previous(fn, eps=1e-5):
    """Check ``fn(W, b, mean, var, gamma, beta, eps) -> (W', b')`` such that eval-mode BN after the
    linear layer, ``gamma (W x + b - mean) / sqrt(var + eps) + beta``, equals ``W' x + b'``."""
    fn, verdict = function_answer(fn, "folding BN into the previous layer",
                                  "check_fold_previous(my_fold_previous)")
    if fn is None:
        return verdict
    w, b, _, _ = _case(808)
    g = torch.Generator().manual_seed(809)  # fixed, like _case
    mean = torch.randn(3, generator=g, dtype=torch.float64)
    var = torch.rand(3, generator=g, dtype=torch.float64) * 2 + 1e-4
    gamma = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(3, generator=g, dtype=torch.float64)
    got, verdict = _answer_pair(lambda *a: fn(*a, eps), (w, b, mean, var, gamma, beta),
                                f"fn(W, b, mean, var, gamma, beta, eps) with W of shape (3, 4), eps={eps}")
    if got is None:
        return verdict
    new_w, new_b = got
    s = gamma / torch.sqrt(var + eps)
    want_w, want_b = s[:, None] * w, s * (b - mean) + beta
    if new_w.shape != want_w.shape or new_b.shape != want_b.shape:
        return wrong(f"W' should have W's shape {tuple(w.shape)} and b' b's shape {tuple(b.shape)}")
    if _close(new_w, want_w) and _close(new_b, want_b):
        return ok("W' = diag(s) W and b' = s (b - mean) + beta with s = gamma / sqrt(var + eps)")
    if _close(new_w, gamma[:, None] * w / torch.sqrt(var)[:, None]):
        return wrong("eps is missing: divide by sqrt(var + eps)")
    if _close(new_w, (gamma / (var + eps))[:, None] * w):
        return wrong("divide by the standard deviation sqrt(var + eps), not by the variance")
    if _close(new_w, want_w):
        if _close(new_b, s * b + beta - mean):
            return wrong("the running mean is subtracted before scaling: b' = s (b - mean) + beta")
        if _close(new_b, s * (-mean) + beta):
            return wrong("the old bias b is lost: b' = s (b - mean) + beta")
        return wrong("W' is right, b' is not: b' = s (b - mean) + beta")
    return wrong("W' is not right: BN scales each OUTPUT of the linear layer, W' = diag(s) W "
                 "with s = gamma / sqrt(var + eps)")


def check_threshold(answer, slope=0.8):
    """Check the reader's ``t`` with sigmoid'(z) >= slope * sigmoid'(0) exactly when |z| <= t."""
    answer, verdict = numeric_answer(answer, "the near-linear threshold")
    if answer is None:
        return verdict
    t = near_linear_threshold(slope)
    if abs(answer - t) < 0.01:
        return ok(f"t = 2 arccosh(1/sqrt({slope})) = {t:.3f}")
    if abs(answer - t / 2) < 0.01:
        return wrong("sigmoid'(z) / sigmoid'(0) = 1 / cosh(z/2)^2: the argument is z/2, so double it")
    if abs(answer - math.acosh(1 / slope)) < 0.01 or abs(answer - 2 * math.acosh(1 / slope)) < 0.01:
        return wrong("the ratio is 1 / cosh(z/2)^2, squared: solve cosh(z/2) = 1/sqrt(slope)")
    return wrong(f"{answer} is not it: write sigmoid' = sigmoid (1 - sigmoid) as 1 / (4 cosh(z/2)^2)")
