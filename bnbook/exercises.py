"""Self-checks for the exercises: run the reader's answer, say what is right or likely wrong.

The pattern every chapter follows (chapter "The Batch Normalization transform" is the
first): the exercise cell gives the reader a placeholder and a check::

    my_forward = None  # replace None by your function
    check_batchnorm_forward(my_forward)

A check prints ``✔ ...`` and returns True for a right answer; prints ``✘ ...`` with the
likely mistake and returns False for a wrong one; and for ``None`` (not attempted yet)
prints a hint and returns None. It never raises for a wrong answer, so a chapter with
unanswered exercises still executes top to bottom (nbval, the HTML build); the worked
answer sits in the exercise's ``solution`` dropdown.

Checks used by chapter "The Batch Normalization transform":
:func:`check_batchnorm_forward`, :func:`check_running_stats`, :func:`check_effective_batch`.
"""
import torch

__all__ = ["check_batchnorm_forward", "check_running_stats", "check_effective_batch"]


def _ok(text):
    print(f"✔ {text}")
    return True


def _wrong(text):
    print(f"✘ {text}")
    return False


def _not_attempted(name):
    print(f"… {name} is not attempted yet: replace None by your answer and run the cell again.")
    return None


def _numeric_answer(answer, what):
    """``(value, None)`` for a numeric answer, else ``(None, verdict)`` after saying why: "not attempted"
    for ``None``, a wrong answer for anything that is not a number. Every numeric self-check starts here."""
    if answer is None:
        return None, _not_attempted(what)
    if not isinstance(answer, (bool, str)):
        try:
            return float(answer), None
        except (TypeError, ValueError):
            pass
    return None, _wrong(f"{what}: expected a number, got {type(answer).__name__}")


def _as_tensor(value):
    """The first element of a tuple (so ``return y, cache`` is fine), as a float64 tensor."""
    if isinstance(value, (tuple, list)) and value and not isinstance(value[0], (int, float)):
        value = value[0]
    return torch.as_tensor(value).to(torch.float64) if value is not None else None


def _close(a, b):
    return a is not None and a.shape == b.shape and torch.allclose(a, b, rtol=1e-6, atol=1e-8)


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
    """Check ``fn(x, gamma, beta, eps) -> y``, Algorithm 1 on a 2-D (N, C) float64 tensor.

    ``fn`` may return ``y`` or a tuple ``(y, cache)``, as torch or NumPy arrays.
    On a wrong answer the message names the likely mistake: unbiased variance, eps missing
    or outside the square root, no square root, the wrong axis, gamma and beta swapped,
    no scale and shift, a hard-coded eps, or an input modified in place.
    """
    if fn is None:
        return _not_attempted("the forward pass")
    if not callable(fn):
        raise TypeError(f"pass your function itself, e.g. check_batchnorm_forward(my_forward), "
                        f"not {type(fn).__name__}")
    x, gamma, beta = _forward_case()
    x_before = x.clone()
    try:
        y = _as_tensor(fn(x, gamma, beta, eps))
    except Exception as err:  # the reader's code: report, don't crash the notebook
        return _wrong(f"your function raised {type(err).__name__}: {err}  "
                      f"(it is called as fn(x, gamma, beta, eps) with x of shape {tuple(x.shape)}, "
                      f"gamma and beta of shape {tuple(gamma.shape)})")
    if not torch.equal(x, x_before):
        return _wrong("your function changed its input x in place; compute a new tensor instead")
    want = _bn(x, gamma, beta, eps)
    if y is None or y.shape != want.shape:
        return _wrong(f"the output should have the input's shape {tuple(want.shape)}, got "
                      f"{None if y is None else tuple(y.shape)}")
    if not torch.isfinite(y).all():
        return _wrong("the output contains NaN or inf; is there a division by zero?")
    if _close(y, want):
        if not _close(_as_tensor(fn(x, gamma, beta, 1e-2)), _bn(x, gamma, beta, 1e-2)):
            return _wrong("right for eps=1e-5 but not for eps=1e-2: use the eps argument, "
                          "don't hard-code it")
        return _ok("your forward pass matches Algorithm 1")
    for change, message in _FORWARD_MISTAKES:
        change = dict(change)
        g, b = (beta, gamma) if change.pop("swap", False) else (gamma, beta)
        if not change.pop("affine", True):
            g, b = 1.0, 0.0
        if _close(y, _bn(x, g, b, change.pop("eps", eps), **change)):
            return _wrong(message)
    err = (y - want).abs().max().item()
    return _wrong(f"the output differs from Algorithm 1 (largest difference {err:.3g}); compare "
                  f"step by step: batch mean, biased variance, x_hat, gamma * x_hat + beta")


# --- exercise: running statistics ---------------------------------------------------------

def check_running_stats(fn, momentum=0.1):
    """Check ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` for x of shape (N, C).

    The reference is torch's convention (also bnbook's): new = (1 - momentum) * old +
    momentum * batch statistic, with the unbiased m/(m-1) batch variance. ``fn`` may also
    update the two tensors in place and return None.
    """
    if fn is None:
        return _not_attempted("the running-statistics update")
    if not callable(fn):
        raise TypeError(f"pass your function itself, e.g. check_running_stats(my_update), "
                        f"not {type(fn).__name__}")
    g = torch.Generator().manual_seed(1503)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2.0 + 1.0
    old_mean = torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64)
    old_var = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    want_mean, want_var = old_mean.clone(), old_var.clone()
    torch.nn.functional.batch_norm(x, want_mean, want_var, training=True, momentum=momentum)

    rm, rv = old_mean.clone(), old_var.clone()
    try:
        out = fn(rm, rv, x.clone(), momentum)
    except Exception as err:
        return _wrong(f"your function raised {type(err).__name__}: {err}  (it is called as "
                      f"fn(running_mean, running_var, x, momentum) with x of shape {tuple(x.shape)})")
    if out is None:
        new_mean, new_var = rm, rv
    elif isinstance(out, (tuple, list)) and len(out) == 2:
        new_mean, new_var = (torch.as_tensor(t).to(torch.float64) for t in out)
    else:
        return _wrong("return the pair (new_mean, new_var), or update the tensors in place and return None")

    var_b, mean_b = torch.var_mean(x, dim=0, correction=0)
    var_u = torch.var(x, dim=0, correction=1)
    mean_ok = _close(new_mean, want_mean)
    if mean_ok and _close(new_var, want_var):
        return _ok("your running mean and running variance match torch.nn.BatchNorm1d")
    if _close(new_mean, momentum * old_mean + (1 - momentum) * mean_b):
        return _wrong("momentum is the weight of the NEW batch statistic in PyTorch: "
                      "new = (1 - momentum) * old + momentum * batch value (Keras uses the opposite)")
    if _close(new_mean, mean_b):
        return _wrong("you replaced the running mean by the batch mean; average it with the old value")
    if not mean_ok:
        return _wrong("the running mean is wrong: new = (1 - momentum) * old + momentum * batch mean")
    if _close(new_var, (1 - momentum) * old_var + momentum * var_b):
        return _wrong("the running variance uses the biased batch variance; Algorithm 2 uses the "
                      "unbiased estimate m/(m-1) * var_B")
    if _close(new_var, momentum * old_var + (1 - momentum) * var_u):
        return _wrong("for the variance, momentum weights the NEW batch value: "
                      "new = (1 - momentum) * old + momentum * batch value")
    return _wrong("the running mean is right, the running variance is not: "
                  "new = (1 - momentum) * old + momentum * m/(m-1) * var_B")


# --- exercise: effective batch of BatchNorm2d ------------------------------------------------

def check_effective_batch(answer, N, C, H, W):
    """Check how many numbers BatchNorm2d averages per channel for an (N, C, H, W) input: N*H*W."""
    answer, verdict = _numeric_answer(answer, "the effective batch size")
    if answer is None:
        return verdict
    if answer == N * H * W:
        return _ok(f"m = N*H*W = {N * H * W} values per channel (Ioffe and Szegedy, sec. 3.2)")
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
            return _wrong(f"{answer}: {message}")
    return _wrong(f"{answer} is not it; count the values sharing one channel's mean in an "
                  f"input of shape ({N}, {C}, {H}, {W})")
