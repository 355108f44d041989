"""Chapter "The Batch Normalization transform": its explorer and its exercises' self-checks.

The explorer (:func:`bn_transform_explorer`, plot function :func:`plot_bn_transform`, data
:func:`sample`) shows BN's output over many mini-batches and the noise of the batch
statistics. The self-checks follow the contract of :mod:`bnbook.selfcheck`:
:func:`check_batchnorm_forward`, :func:`check_batchnorm_backward` (against autograd and a
finite-difference gradient check, :func:`numerical_gradient` and :func:`rel_error`),
:func:`check_running_stats`, :func:`check_effective_batch`. :func:`speed_ratio` times two
implementations against each other in one run. Every check computes its expected value
from a case with PyTorch's own BN (or its autograd), never from a formula written out here.
"""
import math
import time

import ipywidgets as widgets
import numpy as np
import torch

from ..functional import bn_forward
from ..measure import batch_statistics, random_batches
from ..seeding import generator as seeded_generator
from ..selfcheck import as_tensor, call_answer, close, function_answer, numeric_answer, ok, wrong
from ..widgets import explorer

__all__ = ["DISTRIBUTIONS", "sample", "plot_bn_transform", "bn_transform_explorer",
           "check_batchnorm_forward", "check_batchnorm_backward", "numerical_gradient", "rel_error",
           "speed_ratio", "check_running_stats", "check_effective_batch"]


# --- exercise: the forward pass --------------------------------------------------------------

def _bn(x, gamma, beta, eps, *, correction=0, dim=0, eps_inside=True, sqrt=True):
    """Algorithm 1 and its usual mistakes, selected by the keyword arguments."""
    var, mean = torch.var_mean(x, dim=dim, correction=correction, keepdim=True)
    if not sqrt:
        scale = var + eps
    elif eps_inside:
        scale = torch.sqrt(var + eps)
    else:
        scale = torch.sqrt(var) + eps
    return gamma * (x - mean) / scale + beta


def _torch_bn(x, gamma, beta, eps):
    """PyTorch's training-mode BN of x, (N, C) or (N, C, H, W): the reference of the checks."""
    return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)


def _forward_case():
    """Six examples, four features: different means and scales, one with variance near eps."""
    g = torch.Generator().manual_seed(1502)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x = z * torch.tensor([2.0, 0.5, 3e-3, 5.0], dtype=torch.float64) + torch.tensor(
        [3.0, -2.0, 0.5, 10.0], dtype=torch.float64)
    gamma = torch.tensor([1.5, 0.5, 2.0, -1.0], dtype=torch.float64)
    beta = torch.tensor([0.3, -1.0, 2.0, 0.7], dtype=torch.float64)
    return x, gamma, beta


_FORWARD_MISTAKES = [
    (dict(correction=1), "you used the unbiased variance (divide by m-1); Algorithm 1 uses the biased "
                         "one, torch.var(x, dim=0, unbiased=False) or x.var(0, correction=0)"),
    (dict(eps=0.0), "eps is missing: divide by sqrt(var + eps), not sqrt(var)"),
    (dict(eps_inside=False), "eps is outside the square root: divide by sqrt(var + eps), "
                             "not sqrt(var) + eps"),
    (dict(sqrt=False), "the square root is missing: divide by the standard deviation "
                       "sqrt(var + eps), not by the variance"),
    (dict(dim=1), "you normalized over the wrong axis: the statistics are per feature, over the "
                  "batch (dim=0 of an (N, C) input), not per example"),
    (dict(swap=True), "gamma and beta are swapped: y = gamma * x_hat + beta"),
    (dict(affine=False), "you returned x_hat: multiply by gamma and add beta"),
]


def check_batchnorm_forward(fn, eps=1e-5):
    """Check ``fn(x, gamma, beta, eps) -> y``, Algorithm 1 on float64 tensors of shape (N, C) and (N, C, H, W).

    ``fn`` may return ``y`` or a tuple ``(y, cache)``, as torch or NumPy arrays. The expected
    output is PyTorch's ``batch_norm`` of the same case. On a wrong answer the message names
    the likely mistake: unbiased variance, eps missing or outside the square root, no square
    root, the wrong axis, gamma and beta swapped, no scale and shift, a hard-coded eps, an
    input modified in place, or a function that handles (N, C) but not convolution maps.
    """
    fn, verdict = function_answer(fn, "the forward pass", "check_batchnorm_forward(my_forward)")
    if fn is None:
        return verdict
    x, gamma, beta = _forward_case()
    x_before = x.clone()
    out, verdict = call_answer(fn, x, gamma, beta, eps, signature=(
        f"fn(x, gamma, beta, eps) with x of shape {tuple(x.shape)}, gamma and beta of shape "
        f"{tuple(gamma.shape)}"))
    if verdict is not None:
        return verdict
    y = as_tensor(out)
    if not torch.equal(x, x_before):
        return wrong("your function changed its input x in place; compute a new tensor instead")
    want = _torch_bn(x, gamma, beta, eps)
    if y is None or y.shape != want.shape:
        return wrong(f"the output should have the input's shape {tuple(want.shape)}, got "
                      f"{None if y is None else tuple(y.shape)}")
    if not torch.isfinite(y).all():
        return wrong("the output contains NaN or inf; is there a division by zero?")
    if close(y, want):
        other, _ = call_answer(fn, x, gamma, beta, 1e-2, signature="fn(x, gamma, beta, eps=1e-2)")
        if not close(as_tensor(other), _torch_bn(x, gamma, beta, 1e-2)):
            return wrong("right for eps=1e-5 but not for eps=1e-2: use the eps argument, "
                          "don't hard-code it")
        return _check_conv_forward(fn, eps)
    for change, message in _FORWARD_MISTAKES:
        change = dict(change)
        g, b = (beta, gamma) if change.pop("swap", False) else (gamma, beta)
        if not change.pop("affine", True):
            g, b = 1.0, 0.0
        if close(y, _bn(x, g, b, change.pop("eps", eps), **change)):
            return wrong(message)
    err = (y - want).abs().max().item()
    return wrong(f"the output differs from Algorithm 1 (largest difference {err:.3g}); compare "
                  f"step by step: batch mean, biased variance, x_hat, gamma * x_hat + beta")


def _check_conv_forward(fn, eps):
    """The second half of check_batchnorm_forward: the same fn on convolution maps (N, C, H, W)."""
    g = torch.Generator().manual_seed(1504)
    maps = torch.randn(5, 3, 4, 2, generator=g, dtype=torch.float64) * 2.0 + 1.0
    gamma = torch.tensor([1.5, 0.5, -1.0], dtype=torch.float64)
    beta = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    out, verdict = call_answer(fn, maps, gamma, beta, eps, signature=(
        f"fn(x, gamma, beta, eps) with x of shape {tuple(maps.shape)} (N, C, H, W), gamma and beta "
        f"of shape {tuple(gamma.shape)}"))
    if verdict is not None:
        return wrong("right for (N, C) input, but not for convolution maps (N, C, H, W): see the "
                     "message above; the statistics are per channel over dims 0, 2 and 3, and gamma, "
                     "beta must be viewed as (1, C, 1, 1) to broadcast")
    if close(as_tensor(out), _torch_bn(maps, gamma, beta, eps)):
        return ok("your forward pass matches Algorithm 1, for fully connected layers and convolutions")
    return wrong("right for (N, C) input, but not for convolution maps (N, C, H, W): the statistics "
                 "are per channel over the batch AND the positions (dims 0, 2 and 3), and gamma, beta "
                 "must be viewed as (1, C, 1, 1)")


# --- exercise: the backward pass ----------------------------------------------------------

def numerical_gradient(f, inputs, h=1e-5):
    """Central-difference gradients of the scalar ``f(*inputs)`` with respect to each input (float64).

    Each entry is ``(f(.. t + h ..) - f(.. t - h ..)) / (2 h)``, one entry at a time, as in
    CS231n's gradient check; the inputs are not modified.
    """
    inputs = [t.detach().to(torch.float64).clone() for t in inputs]
    grads = []
    for t in inputs:
        grad = torch.zeros_like(t)
        flat, gflat = t.view(-1), grad.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = float(f(*inputs))
            flat[i] = old - h
            down = float(f(*inputs))
            flat[i] = old
            gflat[i] = (up - down) / (2 * h)
        grads.append(grad)
    return grads


def rel_error(a, b):
    """CS231n's relative error: the largest ``|a - b| / max(1e-8, |a| + |b|)`` over the entries."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).abs() / (a.abs() + b.abs()).clamp(min=1e-8)).max().item()


def _backward_case():
    """Eight examples, four features of different means and scales, an upstream gradient."""
    g = torch.Generator().manual_seed(1505)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64) * torch.tensor(
        [2.0, 0.5, 0.1, 5.0], dtype=torch.float64) + torch.tensor([3.0, -2.0, 0.5, 10.0], dtype=torch.float64)
    gamma = torch.tensor([1.5, 0.5, 2.0, -1.0], dtype=torch.float64)
    dy = torch.randn(8, 4, generator=g, dtype=torch.float64)
    return dy, x, gamma


def _autograd_grads(dy, x, gamma, eps, cut=()):
    """Autograd's (dx, dgamma, dbeta) of sum(dy * BN(x)); ``cut`` detaches paths to make the usual mistakes:
    "mean", "var" (x reaches the loss without that path), "unbiased" (var divides by m - 1)."""
    x = x.clone().requires_grad_()
    gamma = gamma.clone().requires_grad_()
    beta = torch.zeros_like(gamma, requires_grad=True)
    if not cut:
        y = _torch_bn(x, gamma, beta, eps)
    else:
        mu = x.mean(0).detach() if "mean" in cut else x.mean(0)
        var = x.var(0, correction=1 if "unbiased" in cut else 0)
        var = var.detach() if "var" in cut else var
        y = gamma * (x - mu) / torch.sqrt(var + eps) + beta
    y.backward(dy)
    return x.grad, gamma.grad, beta.grad


_BACKWARD_MISTAKES = [
    (("mean", "var"), "dx has only the direct path dL/dx_hat / sqrt(var + eps): x also reaches the "
                      "loss through the batch mean and the batch variance"),
    (("var",), "dx misses the path through the batch variance (dL/dvar and dvar/dx_i)"),
    (("mean",), "dx misses the path through the batch mean (dL/dmu and dmu/dx_i = 1/m)"),
    (("unbiased",), "your forward statistics divide by m - 1: BN's batch variance is the biased one"),
]


def _grads_of(out):
    """A reader's (dx, dgamma, dbeta) as float64 tensors, or None."""
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        return None
    grads = [as_tensor(t) for t in out]
    return None if any(t is None for t in grads) else grads


def _wrong_gradient(grads, want, dy, x, gamma, eps):
    """Name the likely mistake of gradients that differ from autograd's ``want``."""
    dx, dgamma, dbeta = grads
    if close(dgamma, want[2]) and close(dbeta, want[1]):
        return wrong("dgamma and dbeta are swapped: dgamma = sum(dy * x_hat), dbeta = sum(dy)")
    if not close(dbeta, want[2]):
        return wrong("dbeta is wrong: beta is added to every output, so its gradient sums dy over the batch")
    if not close(dgamma, want[1]):
        return wrong("dgamma is wrong: gamma multiplies x_hat, so its gradient sums dy * x_hat over the batch")
    for cut, message in _BACKWARD_MISTAKES:
        if close(dx, _autograd_grads(dy, x, gamma, eps, cut)[0]):
            return wrong(message)
    if close(dx, _autograd_grads(dy, x, torch.ones_like(gamma), eps)[0]):
        return wrong("dx misses gamma: dL/dx_hat = dL/dy * gamma")
    return wrong(f"dgamma and dbeta are right, dx is not (relative error {rel_error(dx, want[0]):.1e}); "
                 "follow the three paths of x: direct, through the mean, through the variance")


def check_batchnorm_backward(fn, eps=1e-5):
    """Check ``fn(dy, x, gamma, eps) -> (dx, dgamma, dbeta)``, BN's backward pass for x of shape (N, C).

    The gradients are those of the loss ``sum(dy * y)`` with ``y = gamma * x_hat + beta``; ``fn``
    recomputes whatever it needs of the forward pass. They are compared with autograd through
    PyTorch's ``batch_norm`` and with a finite-difference gradient check in float64
    (:func:`numerical_gradient`); the relative errors (:func:`rel_error`) are reported, as in
    CS231n's lab: a right answer has 1e-8 or better against finite differences. On a wrong
    answer the message names the likely mistake (a missing path through the mean or the
    variance, gamma missing, dgamma and dbeta swapped, a hard-coded eps).
    """
    fn, verdict = function_answer(fn, "the backward pass", "check_batchnorm_backward(my_backward)")
    if fn is None:
        return verdict
    dy, x, gamma = _backward_case()
    before = [t.clone() for t in (dy, x, gamma)]
    out, verdict = call_answer(fn, dy, x, gamma, eps, signature=(
        f"fn(dy, x, gamma, eps) with dy and x of shape {tuple(x.shape)}, gamma of shape {tuple(gamma.shape)}"))
    if verdict is not None:
        return verdict
    grads = _grads_of(out)
    if grads is None:
        return wrong(f"return the three gradients (dx, dgamma, dbeta), got {type(out).__name__} {out!r:.60}")
    if not all(torch.equal(a, b) for a, b in zip((dy, x, gamma), before)):
        return wrong("your function changed dy, x or gamma in place; compute new tensors instead")
    want = _autograd_grads(dy, x, gamma, eps)
    shapes = [tuple(t.shape) for t in want]
    if [tuple(t.shape) for t in grads] != shapes:
        return wrong(f"the gradients should have shapes {shapes} (like x, gamma and beta), got "
                     f"{[tuple(t.shape) for t in grads]}")
    if not all(torch.isfinite(t).all() for t in grads):
        return wrong("a gradient contains NaN or inf; is there a division by zero?")
    if not all(close(a, b, rtol=1e-7, atol=1e-10) for a, b in zip(grads, want)):
        return _wrong_gradient(grads, want, dy, x, gamma, eps)
    other, _ = call_answer(fn, dy, x, gamma, 1e-1, signature="fn(dy, x, gamma, eps=0.1)")
    other = _grads_of(other)
    if other is None or not all(close(a, b, rtol=1e-7, atol=1e-10)
                                for a, b in zip(other, _autograd_grads(dy, x, gamma, 1e-1))):
        return wrong("right for eps=1e-5 but not for eps=0.1: use the eps argument, don't hard-code it")
    numeric = numerical_gradient(
        lambda x_, g_, b_: (dy * _torch_bn(x_, g_, b_, eps)).sum(), (x, gamma, torch.zeros_like(gamma)))
    errors = [rel_error(a, b) for a, b in zip(grads, numeric)]
    if max(errors) > 1e-6:
        return wrong("your gradients agree with autograd but not with finite differences (relative errors "
                     + ", ".join(f"{e:.1e}" for e in errors) + ")")
    auto = max(rel_error(a, b) for a, b in zip(grads, want))
    return ok("your backward pass is right: relative error against autograd "
              f"{auto:.1e}; against finite differences {errors[0]:.1e} (dx), "
              f"{errors[1]:.1e} (dgamma), {errors[2]:.1e} (dbeta)")


def speed_ratio(slow, fast, *args, repeats=30):
    """How many times longer ``slow(*args)`` takes than ``fast(*args)``, timed in the same run.

    The two calls alternate (after three warm-up rounds) and the ratio is of the fastest times, the
    ones least disturbed by other work on the machine. A ratio, never an absolute time, is what
    transfers from one computer to another.
    """
    times = {slow: [], fast: []}
    for rep in range(repeats + 3):
        for f in (slow, fast):
            start = time.perf_counter()
            f(*args)
            if rep >= 3:
                times[f].append(time.perf_counter() - start)
    return min(times[slow]) / min(times[fast])


# --- exercise: running statistics ---------------------------------------------------------

def check_running_stats(fn, momentum=0.1):
    """Check ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` for x of shape (N, C).

    The reference is torch's convention (also bnbook's): new = (1 - momentum) * old +
    momentum * batch statistic, with the unbiased m/(m-1) batch variance. ``fn`` may also
    update the two tensors in place and return None.
    """
    fn, verdict = function_answer(fn, "the running-statistics update", "check_running_stats(my_update)")
    if fn is None:
        return verdict
    g = torch.Generator().manual_seed(1503)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2.0 + 1.0
    old_mean = torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64)
    old_var = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    want_mean, want_var = old_mean.clone(), old_var.clone()
    torch.nn.functional.batch_norm(x, want_mean, want_var, training=True, momentum=momentum)

    rm, rv = old_mean.clone(), old_var.clone()
    out, verdict = call_answer(fn, rm, rv, x.clone(), momentum, signature=(
        f"fn(running_mean, running_var, x, momentum) with x of shape {tuple(x.shape)}"))
    if verdict is not None:
        return verdict
    if out is None:
        new_mean, new_var = rm, rv
    elif isinstance(out, (tuple, list)) and len(out) == 2:
        new_mean, new_var = as_tensor(out[0]), as_tensor(out[1])
    else:
        return wrong("return the pair (new_mean, new_var), or update the tensors in place and return None")

    var_b, mean_b = torch.var_mean(x, dim=0, correction=0)
    var_u = torch.var(x, dim=0, correction=1)
    mean_ok = close(new_mean, want_mean)
    if mean_ok and close(new_var, want_var):
        return ok("your running mean and running variance match torch.nn.BatchNorm1d")
    if close(new_mean, momentum * old_mean + (1 - momentum) * mean_b):
        return wrong("momentum is the weight of the NEW batch statistic in PyTorch: "
                      "new = (1 - momentum) * old + momentum * batch value (Keras uses the opposite)")
    if close(new_mean, mean_b):
        return wrong("you replaced the running mean by the batch mean; average it with the old value")
    if not mean_ok:
        return wrong("the running mean is wrong: new = (1 - momentum) * old + momentum * batch mean")
    if close(new_var, (1 - momentum) * old_var + momentum * var_b):
        return wrong("the running variance uses the biased batch variance; Algorithm 2 uses the "
                      "unbiased estimate m/(m-1) * var_B")
    if close(new_var, momentum * old_var + (1 - momentum) * var_u):
        return wrong("for the variance, momentum weights the NEW batch value: "
                      "new = (1 - momentum) * old + momentum * batch value")
    return wrong("the running mean is right, the running variance is not: "
                  "new = (1 - momentum) * old + momentum * m/(m-1) * var_B")


# --- exercise: effective batch of BatchNorm2d ------------------------------------------------

def check_effective_batch(answer, N, C, H, W):
    """Check how many numbers BatchNorm2d averages per channel for an (N, C, H, W) input: N*H*W."""
    answer, verdict = numeric_answer(answer, "the effective batch size")
    if answer is None:
        return verdict
    maps = torch.zeros(N, C, H, W)
    shared = maps[:, 0].numel()   # the values that share channel 0's mean
    if answer == shared:
        return ok(f"m = {shared} values per channel (Ioffe and Szegedy, sec. 3.2)")
    hints = [
        (N, "that is the number of examples; BatchNorm2d also averages over every spatial position"),
        (N * C * H * W, "the statistics are per channel, so the C channels are not pooled together"),
        (H * W, "that is one example's feature map; the batch dimension is pooled as well"),
        (C * H * W, "that is the size of one example; BN pools over the batch, per channel"),
        (N * C, "BatchNorm2d pools over positions, not over channels"),
        (C, "that is the number of statistics (one mean per channel), not how many values each averages"),
    ]
    for value, message in hints:
        if answer == value:
            return wrong(f"{answer}: {message}")
    return wrong(f"{answer} is not it; count the values sharing one channel's mean in an "
                  f"input of shape ({N}, {C}, {H}, {W})")


# --- the BN transform explorer ------------------------------------------------------------

# Populations with mean and standard deviation far from 0 and 1, so normalizing visibly matters.
DISTRIBUTIONS = {
    "gaussian": dict(mean=2.0, std=1.5),
    "uniform": dict(mean=2.0, std=6.0 / math.sqrt(12.0)),   # U(-1, 5)
    "skewed": dict(mean=2.5, std=1.5),                      # 1 + Exponential(scale 1.5)
    "bimodal": dict(mean=1.5, std=math.sqrt(0.25 + 6.25)),  # N(-1, .5^2) and N(4, .5^2), equal weights
}


def sample(distribution, shape, generator=None):
    """Draw float64 samples of one of :data:`DISTRIBUTIONS` (a torch tensor of ``shape``)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {sorted(DISTRIBUTIONS)}")
    g = generator
    if distribution == "gaussian":
        return 2.0 + 1.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    if distribution == "uniform":
        return -1.0 + 6.0 * torch.rand(shape, generator=g, dtype=torch.float64)
    if distribution == "skewed":
        u = torch.rand(shape, generator=g, dtype=torch.float64)
        return 1.0 - 1.5 * torch.log1p(-u)
    side = torch.rand(shape, generator=g, dtype=torch.float64) < 0.5
    return torch.where(side, -1.0, 4.0) + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)


def _normalize_batches(x, gamma, beta):
    """Algorithm 1 applied to each row of x (one row = one mini-batch of one feature).

    The rows of x are the columns of x.T, which bnbook's BN treats as separate features.
    """
    return gamma * bn_forward(x.T)[0].T + beta


BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
POOL_SIZE = 4096   # the explorer's "training set": every mini-batch is drawn from these values


def plot_bn_transform(fig, distribution="gaussian", batch_size=16, gamma=1.0, beta=0.0,
                      n_batches=400, seed=None):
    """Three panels: the input, the output of BN over many mini-batches, the batch-statistic noise.

    A training set of :data:`POOL_SIZE` values is drawn from ``distribution`` (with
    :func:`bnbook.seeding.generator` ``(seed)``: None follows ``BNBOOK_SEED``), and
    ``n_batches`` random mini-batches of it (:func:`bnbook.measure.random_batches`).
    The output histogram pools those mini-batches, each normalized with its own
    mean and variance; its shape is the input's shape (BN shifts and scales, it does not
    make data Gaussian) and its mean and standard deviation are beta and about gamma.
    The right panel shows how much the batch mean and the batch standard deviation vary
    from one mini-batch to the next (:func:`bnbook.measure.batch_statistics`), in units of
    the training set's standard deviation, against batch size.
    """
    if batch_size < 2:
        raise ValueError(f"a batch variance needs batch_size >= 2, got {batch_size}")
    g = seeded_generator(seed)
    pool = sample(distribution, (POOL_SIZE,), g)
    pop = DISTRIBUTIONS[distribution]
    x = pool[random_batches(POOL_SIZE, batch_size, n_batches, g)]
    y = _normalize_batches(x, gamma, beta)
    ax_in, ax_out, ax_noise = fig.subplots(1, 3)

    ax_in.hist(x.flatten().numpy(), bins=40, density=True, color="0.6")
    ax_in.axvline(pop["mean"], color="k", lw=1)
    ax_in.set_title(f"input x ({distribution})")
    ax_in.set_xlabel("x")

    ax_out.hist(y.flatten().numpy(), bins=40, density=True, color="C0")
    ax_out.axvline(beta, color="k", lw=1)
    ax_out.set_title(f"output y, batch size {batch_size}")
    mean, std = round(y.mean().item(), 2) + 0.0, y.std().item()   # + 0.0 turns -0.0 into 0.0
    ax_out.set_xlabel(f"y   (mean {mean:.2f}, std {std:.2f})")
    ax_out.set_xlim(beta - 4 * max(abs(gamma), 0.25), beta + 4 * max(abs(gamma), 0.25))

    sizes = np.array(BATCH_SIZES)
    sigma = pool.std(correction=0).item()
    sd_mean, sd_std = [], []
    for b in sizes:
        mean, var = batch_statistics(pool, int(b), n_batches, g)
        sd_mean.append(mean.std().item() / sigma)
        sd_std.append(var.sqrt().std().item() / sigma)
    ax_noise.loglog(sizes, sd_mean, "o-", label="batch mean")
    ax_noise.loglog(sizes, sd_std, "s-", label="batch std")
    ax_noise.loglog(sizes, 1 / np.sqrt(sizes), "k--", lw=1, label=r"$1/\sqrt{B}$")
    ax_noise.axvline(batch_size, color="C3", lw=1)
    ax_noise.set_xticks(sizes[::2], [str(b) for b in sizes[::2]])
    ax_noise.set_yticks([0.03, 0.1, 0.3, 1.0], ["0.03", "0.1", "0.3", "1"])
    ax_noise.minorticks_off()
    ax_noise.set_xlabel("batch size B")
    ax_noise.set_ylabel(r"spread across batches / $\sigma$")
    ax_noise.set_title("batch-statistic noise")
    ax_noise.legend(fontsize="small")
    fig.tight_layout()


def bn_transform_explorer():
    """The chapter's widget: distribution, batch size, gamma and beta in; the three panels out."""
    return explorer(
        plot_bn_transform,
        figsize=(10, 3.2),
        distribution=list(DISTRIBUTIONS),
        batch_size=widgets.SelectionSlider(options=list(BATCH_SIZES), value=16, description="batch size",
                                           continuous_update=False),
        gamma=widgets.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1, description="gamma",
                                  continuous_update=False),
        beta=widgets.FloatSlider(value=0.0, min=-2.0, max=2.0, step=0.1, description="beta",
                                 continuous_update=False),
    )
