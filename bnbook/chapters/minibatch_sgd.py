"""Probes for chapter "Mini-batch SGD": how noisy a mini-batch gradient is, how fast a batch is processed,
how much a hidden unit's batch statistics fluctuate, and the chapter's 2-D explorer.

* :class:`LossClock` -- a :func:`bnbook.train.train` callback recording (training seconds, full training loss),
  with the clock paused while it evaluates.
* :func:`gradient_noise` -- mean squared distance between mini-batch gradients and the full-batch gradient.
* :func:`power_law` -- slope and prefactor of a log-log fit (the noise should fall like ``1/B``).
* :func:`throughput` -- examples per second of SGD steps against batch size, single thread.
* :func:`normalized_in_batches` -- what BN makes of one example in many different batches.
* :func:`toy_regression`, :func:`sgd_path`, :func:`sgd_excess_loss`, :func:`plot_sgd` -- a 2-parameter
  least-squares problem where SGD's path can be drawn (:func:`sgd_path` returns a
  :class:`bnbook.train.History`, with the iterates as probes); :func:`plot_sgd` is the plot function of the
  widget.
* :func:`check_minibatch_gradient`, :func:`check_linear_scaling` -- the chapter's exercise self-checks.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..measure import probing, random_batches
from ..seeding import generator as seeded_generator, resolve as resolve_seed, rng as seeded_rng
from ..selfcheck import as_tensor, call_answer, close, function_answer, numeric_answer, ok, wrong
from ..train import History, divergence_limit, has_diverged, threads

__all__ = ["LossClock", "gradient_noise", "power_law", "throughput", "normalized_in_batches",
           "toy_regression", "sgd_path", "sgd_excess_loss", "plot_sgd", "check_minibatch_gradient",
           "check_linear_scaling"]


def _check_batch_sizes(batch_sizes, n: int) -> list[int]:
    if not isinstance(batch_sizes, (list, tuple, range)):
        raise TypeError(f"batch_sizes must be a list of integers, got {type(batch_sizes).__name__}")
    if not batch_sizes:
        raise ValueError("batch_sizes must name at least one batch size")
    for b in batch_sizes:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"batch sizes must be positive integers, got {b!r}")
        if b > n:
            raise ValueError(f"batch size {b} is larger than the {n} examples available")
    return [int(b) for b in batch_sizes]


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# --- timing a training run ----------------------------------------------------------------------

class LossClock:
    """Callback for :func:`bnbook.train.train` that returns ``(seconds, loss)`` at each call.

    ``seconds`` is the time spent since the first call *outside* this callback, i.e. training; ``loss`` is the
    mean loss on ``(x, y)`` (usually the whole training set) in eval mode. Evaluating the whole set is slow
    for a step of one example, so pausing the clock keeps the time axis about the updates only. Pass
    ``eval_every=steps`` to :func:`~bnbook.train.train` so that its own evaluations (at step 0 and at the end)
    fall outside the timed intervals except for the last one.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, loss=F.cross_entropy):
        self.x, self.y, self.loss = x, y, loss
        self.elapsed, self._resumed = 0.0, None

    def __call__(self, model, step):
        now = time.perf_counter()
        if self._resumed is not None:
            self.elapsed += now - self._resumed
        with probing(model), torch.no_grad():
            value = self.loss(model(self.x), self.y).item()
        self._resumed = time.perf_counter()
        return self.elapsed, value


# --- gradient noise ---------------------------------------------------------------------------------

def _flat_grad(model, x, y, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss(model(x), y).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def gradient_noise(model, x, y, batch_sizes, n_batches: int = 100, generator=None, loss=F.cross_entropy):
    """How far mini-batch gradients fall from the full-batch gradient, by batch size.

    For each ``B`` draws ``n_batches`` mini-batches of ``B`` distinct examples of ``(x, y)`` at random and
    returns ``{"full": ||g||^2, "noise": {B: mean ||g_B - g||^2}}`` where ``g`` is the gradient of the mean loss
    over all of ``(x, y)``. Sampling without replacement from ``N`` examples gives
    ``E||g_B - g||^2 = tr(Sigma) / B * (N - B) / (N - 1)`` (Sigma: the covariance of per-example gradients).
    The model's parameters are not changed (its ``.grad`` is). Meant for models without BN, whose batch gradient
    is the mean of per-example gradients.
    """
    sizes = _check_batch_sizes(batch_sizes, len(x))
    _check_count("n_batches", n_batches, minimum=2)
    with threads(1):
        full = _flat_grad(model, x, y, loss)
        noise = {}
        for b in sizes:
            dist = [(_flat_grad(model, x[idx], y[idx], loss) - full).square().sum().item()
                    for idx in (torch.randperm(len(x), generator=generator)[:b] for _ in range(n_batches))]
            noise[b] = float(np.mean(dist))
    model.zero_grad(set_to_none=True)
    return {"full": full.square().sum().item(), "noise": noise}


def power_law(x, y):
    """Least-squares fit of ``log y = slope * log x + log c``; returns ``(slope, c)``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two 1-D sequences of equal length >= 2, got shapes {x.shape} and {y.shape}")
    if not (np.all(x > 0) and np.all(y > 0) and np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("a log-log fit needs positive, finite values")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(np.exp(intercept))


# --- throughput ---------------------------------------------------------------------------------------

def throughput(model, x, y, batch_sizes, repeats: int = 5, min_seconds: float = 0.02, lr: float = 1e-3,
               loss=F.cross_entropy, num_threads: int = 1):
    """Examples per second of full SGD steps (forward, backward, update) on ``num_threads`` threads, by batch size.

    Each ``B`` is timed ``repeats`` times, the batch sizes taking turns; a repeat runs as many steps as fit in
    about ``min_seconds`` (at least 2) and the fastest repeat is reported: other processes can only slow a
    step down, so the minimum over repeats is the estimate least affected by the machine's load (the usual
    rule for benchmarks, e.g. Python's ``timeit``).
    Steps run on a copy of ``model`` (the model itself is not changed). Returns ``{B: examples per second}``.
    Absolute numbers depend on the machine and its load; ratios between batch sizes are what the chapter uses.
    """
    sizes = _check_batch_sizes(batch_sizes, len(x))
    _check_count("repeats", repeats)
    _check_count("num_threads", num_threads)
    if not min_seconds > 0:
        raise ValueError(f"min_seconds must be positive, got {min_seconds}")
    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss(net(xb), yb).backward()
        opt.step()

    n_steps, times = {}, {b: [] for b in sizes}
    with threads(num_threads):
        for b in sizes:  # warm-up, and a first estimate of each step time
            step(x[:b], y[:b])
            start = time.perf_counter()
            step(x[:b], y[:b])
            n_steps[b] = max(2, int(min_seconds / max(time.perf_counter() - start, 1e-6)))
        # round robin: a spell of load slows every batch size alike, not just the one being timed
        for _ in range(repeats):
            for b in sizes:
                xb, yb = x[:b], y[:b]
                start = time.perf_counter()
                for _ in range(n_steps[b]):
                    step(xb, yb)
                times[b].append((time.perf_counter() - start) / n_steps[b])
    return {b: b / min(times[b]) for b in sizes}


# --- batch statistics ------------------------------------------------------------------------------------

def normalized_in_batches(values: torch.Tensor, index: int, batch_size: int, n_batches: int, generator=None,
                          eps: float = 1e-5) -> torch.Tensor:
    """What BN makes of one example: ``x_hat`` of example ``index`` in ``n_batches`` random batches holding it.

    ``values`` is ``(N,)`` or ``(N, C)``; each batch is the example plus ``batch_size - 1`` distinct others,
    normalized with the batch's mean and biased variance (Algorithm 1 of Ioffe and Szegedy without gamma and
    beta). Returns ``(n_batches,)`` or ``(n_batches, C)``.
    """
    if not isinstance(values, torch.Tensor) or values.ndim not in (1, 2):
        raise ValueError("values must be a 1-D or 2-D torch tensor (examples first)")
    _check_batch_sizes([batch_size], len(values))
    if batch_size < 2:
        raise ValueError(f"normalizing needs batch_size >= 2 (a batch of one has no variance), got {batch_size}")
    _check_count("n_batches", n_batches)
    if not -len(values) <= index < len(values):
        raise ValueError(f"index {index} is out of range for {len(values)} examples")
    index = index % len(values)
    others = torch.cat([torch.arange(index), torch.arange(index + 1, len(values))])
    idx = others[random_batches(len(others), batch_size - 1, n_batches, generator)]
    batch = torch.cat([values[index].expand(n_batches, 1, *values.shape[1:]), values[idx]], dim=1)
    var, mean = torch.var_mean(batch, dim=1, correction=0)
    return (values[index] - mean) / torch.sqrt(var + eps)


# --- the 2-D explorer ----------------------------------------------------------------------------------

def toy_regression(n: int = 256, noise: float = 0.5, seed: int | None = None):
    """A least-squares problem with two parameters: ``y = x @ w_true + noise``, features of scale 1 and 0.4.

    Returns ``(x, y, w_star)`` as float64 NumPy arrays, ``w_star`` the exact minimizer of the mean squared
    error ``0.5 * mean((x @ w - y)^2)``. The unequal scales make the loss an elongated bowl, so the paths of
    gradient descent and SGD look different. ``seed=None`` is the book's base seed (:mod:`bnbook.seeding`).
    """
    _check_count("n", n, minimum=4)
    rng = seeded_rng(seed)
    x = rng.standard_normal((n, 2)) * np.array([1.0, 0.4])
    y = x @ np.array([2.0, -1.5]) + noise * rng.standard_normal(n)
    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    return x, y, w_star


def _mse(x, y, ws):
    return 0.5 * np.mean((ws @ x.T - y) ** 2, axis=-1)


def sgd_path(x, y, batch_size: int, lr: float, epochs: float = 4.0, w0=(-1.5, 2.0),
             seed: int | None = None) -> History:
    """Mini-batch SGD on ``0.5 * mean((x @ w - y)^2)``, recorded at every step as a :class:`~bnbook.train.History`.

    Every epoch visits the examples in a new random order (drawn with ``bnbook.seeding.rng(seed, offset=1)``, so
    ``seed=None`` follows the base seed and the order is not the stream :func:`toy_regression` drew the data
    from), in ``len(x) // batch_size`` batches. ``history.steps`` counts the updates (0 = ``w0``),
    ``history.train_loss`` is the full-batch loss at each iterate and ``history.probes`` holds ``(step, w)``:
    ``history.probe_series()[1]`` is the path, an array ``(steps + 1, 2)``. A run whose loss
    :func:`~bnbook.train.has_diverged` (limit: :func:`~bnbook.train.divergence_limit` of the initial loss)
    stops there with ``history.diverged`` and ``history.diverged_at`` set; everything recorded is finite.
    """
    n = len(x)
    _check_batch_sizes([batch_size], n)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not (epochs > 0 and math.isfinite(epochs)):
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    rng = seeded_rng(seed, offset=1)
    per_epoch = n // batch_size
    steps = max(1, int(round(epochs * per_epoch)))
    w = np.array(w0, dtype=float)
    history = History(seed=resolve_seed(seed), lr=float(lr))
    limit = divergence_limit(float(_mse(x, y, w)))
    for k in range(steps + 1):
        loss = float(_mse(x, y, w))
        if has_diverged(loss, limit):
            history.diverged, history.diverged_at = True, k
            break
        history.steps.append(k)
        history.train_loss.append(loss)
        history.probes.append((k, w.copy()))
        if k == steps:
            break
        if k % per_epoch == 0:
            order = rng.permutation(n)
        idx = order[(k % per_epoch) * batch_size:(k % per_epoch + 1) * batch_size]
        w = w - lr * x[idx].T @ (x[idx] @ w - y[idx]) / batch_size
    return history


def sgd_excess_loss(x, y, path):
    """The loss ``0.5 * mean((x @ w - y)^2)`` minus its minimum, at every row ``w`` of ``path`` (``(k, 2)``)."""
    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    return _mse(x, y, np.asarray(path, float)) - _mse(x, y, w_star[None])[0]


def plot_sgd(fig, batch_size=8, lr=0.3, epochs=4.0, seed=None, n=256):
    """The chapter's widget: SGD's path on the 2-D least-squares bowl (left) and its loss (right).

    Left: contours of the full-batch loss, the path of full-batch gradient descent (grey) and of mini-batch SGD
    with ``batch_size`` and ``lr``. Right: the full-batch loss of both against examples processed. A diverged
    run is drawn up to where it diverged and labelled. ``seed=None`` is the book's base seed.
    """
    x, y, w_star = toy_regression(n, seed=seed)
    sgd = sgd_path(x, y, batch_size, lr, epochs, seed=seed)
    gd = sgd_path(x, y, n, lr, epochs, seed=seed)  # one step per epoch
    ax_path, ax_loss = fig.subplots(1, 2)
    g0, g1 = np.meshgrid(np.linspace(-2.5, 4.5, 80), np.linspace(-4.5, 3.5, 80))
    grid = np.stack([g0, g1], axis=-1)
    ax_path.contour(g0, g1, _mse(x, y, grid), levels=np.geomspace(0.15, 20, 12), colors="0.75",
                    linewidths=0.8)
    gd_path, sgd_path_ = gd.probe_series()[1], sgd.probe_series()[1]
    ax_path.plot(gd_path[:, 0], gd_path[:, 1], "o-", color="0.4", ms=3, lw=1, label="full batch")
    ax_path.plot(sgd_path_[:, 0], sgd_path_[:, 1], "-", color="C1", lw=1, alpha=0.8, label=f"B = {batch_size}")
    ax_path.plot(*w_star, "k*", ms=12, label="minimum")
    ax_path.set(xlim=(-2.5, 4.5), ylim=(-4.5, 3.5), xlabel="$w_1$", ylabel="$w_2$",
                title=f"paths, lr = {lr:g}" + (f", B = {batch_size} diverged" if sgd.diverged else ""))
    ax_path.legend(fontsize="small", loc="lower left")

    for h, path, batch, label, col in [(gd, gd_path, n, "full batch", "0.4"),
                                       (sgd, sgd_path_, batch_size, f"B = {batch_size}", "C1")]:
        epoch = np.asarray(h.steps) * batch / n
        ax_loss.semilogy(epoch, np.maximum(sgd_excess_loss(x, y, path), 1e-8), color=col, label=label)
    ax_loss.set(xlabel="epochs (examples processed / N)", ylabel="loss - minimum", ylim=(1e-5, 1e3),
                title="excess loss")
    ax_loss.legend(fontsize="small")
    fig.tight_layout()

# --- exercise self-checks -----------------------------------------------------------------------------

def check_minibatch_gradient(fn):
    """Check ``fn(w, x, y) -> gradient`` of ``0.5 * mean((x @ w - y)^2)`` over the mini-batch ``(x, y)``.

    ``x`` is ``(B, d)``, ``w`` is ``(d,)``, ``y`` is ``(B,)``, all float64 tensors drawn from
    ``bnbook.seeding.generator()`` (the base seed: the check is exact, so any draw tests the same formula). Names the
    usual slips: a sum instead of a mean (B times too large), a lost factor or sign, a wrong shape.
    """
    fn, verdict = function_answer(fn, "the mini-batch gradient", "check_minibatch_gradient(my_gradient)")
    if fn is None:
        return verdict
    g = seeded_generator()
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    w = torch.randn(3, generator=g, dtype=torch.float64)
    y = torch.randn(8, generator=g, dtype=torch.float64)
    want = x.T @ (x @ w - y) / len(x)
    got, verdict = call_answer(fn, w.clone(), x.clone(), y.clone(),
                               signature="fn(w, x, y) with w of shape (3,), x of shape (8, 3), y of shape (8,)")
    if verdict is not None:
        return verdict
    got = as_tensor(got)
    if got is None:
        return wrong("the gradient should be a tensor (or array) of numbers, one per parameter: shape (3,)")
    if got.numel() == want.numel():
        got = got.reshape(want.shape)
    if got.shape != want.shape:
        return wrong(f"the gradient has one entry per parameter: shape (3,), got {tuple(got.shape)}")
    if close(got, want):
        return ok("your mini-batch gradient is right: the mean of the per-example gradients")
    for factor, message in [(len(x), "you summed over the batch instead of averaging: divide by B"),
                            (2.0, "that is the gradient of mean((x w - y)^2); ours has the factor 0.5"),
                            (-1.0, "the sign is flipped: the gradient is x^T (x w - y) / B"),
                            (1.0 / len(x), "you divided by B twice")]:
        if close(got, factor * want):
            return wrong(message)
    return wrong("not the gradient: compute the residuals r = x @ w - y, then x.T @ r / B")

def check_linear_scaling(answer, lr: float = 0.1, from_batch: int = 32, to_batch: int = 256):
    """Check the learning rate the linear scaling rule gives when the batch grows from ``from_batch`` to
    ``to_batch`` (Goyal et al. 2017): ``lr * to_batch / from_batch``."""
    answer, verdict = numeric_answer(answer, "the linear scaling rule")
    if answer is None:
        return verdict
    want = lr * to_batch / from_batch
    if math.isclose(answer, want, rel_tol=1e-3):
        return ok(f"lr = {lr:g} x {to_batch}/{from_batch} = {want:g}: the step grows with the batch, so the "
                   "distance moved per epoch stays about the same")
    hints = [(lr * math.sqrt(to_batch / from_batch), "that is the square-root rule (keep the noise variance "
              "per step fixed); the linear rule multiplies by the batch ratio itself"),
             (lr * from_batch / to_batch, "the rule goes the other way: a larger batch takes a LARGER step"),
             (lr, "the linear rule changes the learning rate with the batch size")]
    for value, message in hints:
        if math.isclose(answer, value, rel_tol=1e-3):
            return wrong(f"{answer:g}: {message}")
    return wrong(f"{answer:g} is not it; multiply lr by to_batch / from_batch")
