"""Folding BN's parameters into linear layers, and what the parameterization changes.

Chapter "Are gamma and beta redundant?". The reader's algebra,
``W (gamma * x_hat + beta) + b = W' x_hat + b'``, is :func:`fold_affine_into_next` (and
:func:`fold_affine` for a whole net); BN in eval mode is an affine map and merges into
the linear layer before it, :func:`fold_bn_into_previous` (:func:`fold_for_inference`
for a whole net, what deployment tools do). Both return new modules and leave the
originals untouched.

What differs between the two parameterizations is how gradient descent moves them:
:func:`step_sources` splits one SGD step's change of a layer's batch mean and standard
deviation by the parameters that caused it (lower layers, the layer's weights and
gamma, its bias or beta), :func:`steps_to_target` times how fast gradient descent gives a layer a
target mean and scale, and :func:`near_linear_fraction` measures how many sigmoid
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

from .exercises import _not_attempted, _numeric_answer, _ok, _wrong
from .layers import BatchNorm1d

__all__ = [
    "fold_affine_into_next", "fold_affine", "fold_bn_into_previous", "fold_for_inference",
    "max_output_gap", "GROUPS", "step_sources", "steps_to_target", "predicted_steps",
    "near_linear_threshold", "near_linear_fraction", "band_fraction",
    "plot_sigmoid_regime", "check_fold_next", "check_fold_previous", "check_threshold",
]

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
        was, saved = net.training, copy.deepcopy(list(net.buffers()))
        net.train(train_mode)
        outs.append(net(x))
        for buf, old in zip(net.buffers(), saved):
            buf.copy_(old)
        net.train(was)
    return (outs[0] - outs[1]).abs().max().item()


# --- what one gradient step moves ------------------------------------------------------------

GROUPS = ("lower layers", "weights and gamma", "bias or beta")


def _groups(model, layer):
    """The parameters that can move the pre-activation of hidden layer ``layer`` (1-based)."""
    lower, weights, shift = [], [], []
    for name, p in model.named_parameters():
        module, _, kind = name.rpartition(".")
        prefix = module.rstrip("0123456789")
        index = module[len(prefix):]
        if prefix not in ("fc", "norm") or not index:
            continue
        k = int(index)
        if k < layer:
            lower.append(name)
        elif k == layer:
            # fc.bias and BN's beta shift the layer; fc.weight and gamma scale and mix it
            (shift if kind == "bias" else weights).append(name)
    return dict(zip(GROUPS, (lower, weights, shift)))


def _pre_activation(net, x, layer):
    """The input of activation ``layer`` when ``net`` processes ``x``, still attached to the graph
    (unlike :func:`bnbook.measure.capture`, which detaches)."""
    captured = {}
    hook = getattr(net, f"act{layer}").register_forward_pre_hook(
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


def steps_to_target(model, x, layer, target_mean, target_std, lr, max_steps=150, tol=1e-3):
    """Full-batch gradient descent on a copy of ``model`` until every unit of hidden layer ``layer``
    has the batch mean ``target_mean`` and standard deviation ``target_std`` of its pre-activation.

    The loss is the mean over units of ``(mean - target_mean)^2 + (std - target_std)^2`` on the fixed
    batch ``x`` (training mode). Returns the number of updates after which the loss is below ``tol``,
    ``max_steps + 1`` if it never gets there, and ``None`` if the loss diverges (non-finite or above
    10^4, recorded, never raised). With BN before the activation the mean is beta's and the standard
    deviation gamma's alone; compare :func:`predicted_steps`.
    """
    if not hasattr(model, f"act{layer}"):
        raise ValueError(f"the model has no module act{layer}; pass a bnbook.models.mlp and a hidden "
                         f"layer number between 1 and its depth")
    if not (lr > 0 and tol > 0):
        raise ValueError(f"lr and tol must be positive, got lr={lr}, tol={tol}")
    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for step in range(max_steps + 1):
        loss = _pre_activation_loss(net, x, layer, target_mean, target_std)
        value = loss.item()
        if not (math.isfinite(value) and value <= 1e4):
            return None
        if value < tol:
            return step
        opt.zero_grad()
        loss.backward()
        opt.step()
    return max_steps + 1


def predicted_steps(lr, n_units, target_mean, target_std, tol=1e-3):
    """The step count of :func:`steps_to_target` for BN before the activation (gamma = 1, beta = 0 at
    the start), neglecting eps: each beta and gamma is a one-dimensional quadratic with gradient
    ``2 (beta - target_mean) / n_units``, so every error shrinks by ``r = 1 - 2 lr / n_units`` per step
    and the loss is ``r^(2k)`` times its initial value ``target_mean^2 + (1 - target_std)^2``.
    Returns None where ``|r| >= 1`` (no convergence)."""
    r = abs(1.0 - 2.0 * lr / n_units)
    start = target_mean ** 2 + (1.0 - target_std) ** 2
    if start < tol:
        return 0
    if r >= 1.0:
        return None
    if r == 0.0:
        return 1
    return math.floor(math.log(tol / start) / (2.0 * math.log(r))) + 1


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


def plot_sigmoid_regime(fig, gamma=1.0, beta=0.0, slope=0.8, n=4000, seed=0):
    """The widget: a BN-normalized unit ``gamma * x_hat + beta`` fed to a sigmoid.

    Left: the sigmoid, its tangent at 0 and the near-linear band; the histogram of the sigmoid's
    inputs (x_hat standard normal). Right: the histogram of its outputs. The title gives the
    fraction of inputs in the near-linear band.
    """
    g = torch.Generator().manual_seed(seed)
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


# --- exercise self-checks (the pattern of bnbook.exercises) ----------------------------------

def _case(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    gamma = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(4, generator=g, dtype=torch.float64)
    return w, b, gamma, beta


def _answer_pair(fn, *args):
    try:
        out = fn(*(a.clone() for a in args))
    except Exception as err:  # the reader's code: report, never crash the notebook
        return None, f"your function raised {type(err).__name__}: {err}"
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return None, "return the pair (new_W, new_b)"
    return tuple(torch.as_tensor(o).to(torch.float64) for o in out), None


def _close(a, b):
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def check_fold_next(fn):
    """Check ``fn(W, b, gamma, beta) -> (W', b')`` with ``W (gamma * x_hat + beta) + b = W' x_hat + b'``
    for W of shape (out, in). Names the usual slips (gamma on the wrong side, beta forgotten)."""
    if fn is None:
        return _not_attempted("folding gamma and beta into the next layer")
    if not callable(fn):
        raise TypeError(f"pass your function itself, e.g. check_fold_next(my_fold), not {type(fn).__name__}")
    w, b, gamma, beta = _case(807)
    got, problem = _answer_pair(fn, w, b, gamma, beta)
    if problem:
        return _wrong(problem)
    new_w, new_b = got
    want_w, want_b = w * gamma, b + w @ beta
    if new_w.shape != want_w.shape or new_b.shape != want_b.shape:
        return _wrong(f"W' should have W's shape {tuple(w.shape)} and b' b's shape {tuple(b.shape)}")
    if _close(new_w, want_w) and _close(new_b, want_b):
        return _ok("W' = W diag(gamma) and b' = W beta + b: the same function, without gamma and beta")
    if _close(new_w, want_w):
        if _close(new_b, b):
            return _wrong("W' is right but beta is lost: b' = W beta + b")
        if _close(new_b, b + w @ (gamma * beta)) or _close(new_b, b + (w * gamma) @ beta):
            return _wrong("beta is added after gamma, so it is not scaled by it: b' = W beta + b")
        return _wrong("W' is right, b' is not: b' = W beta + b")
    return _wrong("W' is not right: W (gamma * x_hat) = (W diag(gamma)) x_hat")


def check_fold_previous(fn, eps=1e-5):
    """Check ``fn(W, b, mean, var, gamma, beta, eps) -> (W', b')`` such that eval-mode BN after the
    linear layer, ``gamma (W x + b - mean) / sqrt(var + eps) + beta``, equals ``W' x + b'``."""
    if fn is None:
        return _not_attempted("folding BN into the previous layer")
    if not callable(fn):
        raise TypeError(f"pass your function itself, e.g. check_fold_previous(my_fold), not {type(fn).__name__}")
    w, b, _, _ = _case(808)
    g = torch.Generator().manual_seed(809)
    mean = torch.randn(3, generator=g, dtype=torch.float64)
    var = torch.rand(3, generator=g, dtype=torch.float64) * 2 + 1e-4
    gamma = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(3, generator=g, dtype=torch.float64)
    got, problem = _answer_pair(lambda *a: fn(*a, eps), w, b, mean, var, gamma, beta)
    if problem:
        return _wrong(problem)
    new_w, new_b = got
    s = gamma / torch.sqrt(var + eps)
    want_w, want_b = s[:, None] * w, s * (b - mean) + beta
    if new_w.shape != want_w.shape or new_b.shape != want_b.shape:
        return _wrong(f"W' should have W's shape {tuple(w.shape)} and b' b's shape {tuple(b.shape)}")
    if _close(new_w, want_w) and _close(new_b, want_b):
        return _ok("W' = diag(s) W and b' = s (b - mean) + beta with s = gamma / sqrt(var + eps)")
    if _close(new_w, gamma[:, None] * w / torch.sqrt(var)[:, None]):
        return _wrong("eps is missing: divide by sqrt(var + eps)")
    if _close(new_w, (gamma / (var + eps))[:, None] * w):
        return _wrong("divide by the standard deviation sqrt(var + eps), not by the variance")
    if _close(new_w, want_w):
        if _close(new_b, s * b + beta - mean):
            return _wrong("the running mean is subtracted before scaling: b' = s (b - mean) + beta")
        if _close(new_b, s * (-mean) + beta):
            return _wrong("the old bias b is lost: b' = s (b - mean) + beta")
        return _wrong("W' is right, b' is not: b' = s (b - mean) + beta")
    return _wrong("W' is not right: BN scales each OUTPUT of the linear layer, W' = diag(s) W "
                       "with s = gamma / sqrt(var + eps)")


def check_threshold(answer, slope=0.8):
    """Check the reader's ``t`` with sigmoid'(z) >= slope * sigmoid'(0) exactly when |z| <= t."""
    answer, verdict = _numeric_answer(answer, "the near-linear threshold")
    if answer is None:
        return verdict
    t = near_linear_threshold(slope)
    if abs(answer - t) < 0.01:
        return _ok(f"t = 2 arccosh(1/sqrt({slope})) = {t:.3f}")
    if abs(answer - t / 2) < 0.01:
        return _wrong("sigmoid'(z) / sigmoid'(0) = 1 / cosh(z/2)^2: the argument is z/2, so double it")
    if abs(answer - math.acosh(1 / slope)) < 0.01 or abs(answer - 2 * math.acosh(1 / slope)) < 0.01:
        return _wrong("the ratio is 1 / cosh(z/2)^2, squared: solve cosh(z/2) = 1/sqrt(slope)")
    return _wrong(f"{answer} is not it: write sigmoid' = sigmoid (1 - sigmoid) as 1 / (4 cosh(z/2)^2)")
