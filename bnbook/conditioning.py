"""Why the scale of the inputs matters to gradient descent: conditioning, standardization, whitening.

For a linear model with the least-squares loss ``f(w) = 1/(2n) ||X w - y||^2`` the Hessian is the inputs'
second-moment matrix ``H = X^T X / n`` (:func:`second_moment`; append a column of ones for a bias). Its
condition number ``kappa = lambda_max / lambda_min`` (:func:`condition_number`) governs gradient descent: the
step must stay below ``2 / lambda_max`` (:func:`stable_lr`) and the number of steps to reach a tolerance
grows like ``kappa log(1 / tol)`` (:func:`steps_to_tolerance` measures it, :func:`predicted_steps` is the
theory); :func:`least_squares_gd` trains a linear classifier this way on a data set.
:func:`fit_normalizer` standardizes or PCA/ZCA-whitens inputs with training-set statistics (LeCun et al.
1998, "Efficient BackProp"); :func:`normalized` applies it to a :class:`~bnbook.data.Dataset`.

The widget of the chapter draws the contours of a two-feature problem and the gradient-descent path on them
(:func:`plot_gd_contours`; :func:`draw_gd_path` draws one panel, for figure grids). Exercise self-checks
at the end.
Used by chapter "Input normalization".
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .data import Dataset
from .exercises import _not_attempted, _numeric_answer, _ok, _wrong
from .seeds import base_seed

__all__ = [
    "second_moment", "condition_number", "stable_lr", "excess_loss", "gd_path", "steps_to_tolerance",
    "predicted_steps", "least_squares_gd", "METHODS", "fit_normalizer", "normalized", "rescaled", "drop_constant",
    "two_feature_hessian", "draw_gd_path", "plot_gd_contours",
    "check_condition_number", "check_steps_estimate", "check_whitening",
]

METHODS = ("none", "center", "standardize", "pca", "zca")


def _one_blas_thread(fn):
    """Run ``fn`` with BLAS on one thread: its products are tiny and done thousands of times, and on a busy
    2-core machine multi-threaded BLAS made them up to 30x slower (measured)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


# --- the quadratic and its curvature ---------------------------------------------------------------------

def _matrix(x, name: str = "x") -> np.ndarray:
    """A 2-D float64 NumPy copy of a tensor or array, with a clear error otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        x = np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tensor or an array of numbers, got {type(x).__name__}") from None
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (examples x features), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _square(h) -> np.ndarray:
    h = _matrix(h, "h")
    if h.shape[0] != h.shape[1] or not np.allclose(h, h.T, rtol=1e-10, atol=1e-12 * np.abs(h).max()):
        raise ValueError(f"h must be a symmetric square matrix, got shape {h.shape}")
    return h


@_one_blas_thread
def second_moment(x, bias: bool = True) -> np.ndarray:
    """``X^T X / n``, the Hessian of the least-squares loss ``1/(2n) ||X w - y||^2`` of a linear model.

    With ``bias=True`` a column of ones is appended first (the model has an intercept), so a non-zero feature
    mean shows up in the curvature as it does for training.
    """
    x = _matrix(x)
    if bias:
        x = np.hstack([x, np.ones((len(x), 1))])
    return x.T @ x / len(x)


@_one_blas_thread
def condition_number(h, subspace: bool = False, rel_tol: float = 1e-10) -> float:
    """``lambda_max / lambda_min`` of a symmetric positive semi-definite matrix.

    An eigenvalue at or below ``rel_tol * lambda_max`` counts as zero: the result is ``inf`` unless
    ``subspace=True``, which reports kappa on the subspace where the curvature is non-zero (the eigenvalues
    above that threshold; gradient descent never moves along the others).
    """
    eig = np.linalg.eigvalsh(_square(h))
    top = eig[-1]
    if not top > 0:
        raise ValueError("h has no positive eigenvalue; its condition number is undefined")
    kept = eig[eig > rel_tol * top]
    if len(kept) < len(eig) and not subspace:
        return math.inf
    return float(top / kept[0])


@_one_blas_thread
def stable_lr(h) -> float:
    """The largest stable gradient-descent step on a quadratic with Hessian ``h``: ``2 / lambda_max``."""
    return float(2.0 / np.linalg.eigvalsh(_square(h))[-1])


def excess_loss(h, w, w_star) -> np.ndarray:
    """``f(w) - f(w*) = 1/2 (w - w*)^T H (w - w*)`` for one point ``w`` or a path of shape ``(steps, d)``."""
    e = np.atleast_2d(np.asarray(w, dtype=np.float64) - np.asarray(w_star, dtype=np.float64))
    return 0.5 * np.einsum("ti,ij,tj->t", e, np.asarray(h, dtype=np.float64), e)


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    return float(lr)


def _vectors(h, w_star, w0):
    h = _square(h)
    w_star = np.asarray(w_star, dtype=np.float64).ravel()
    w0 = np.asarray(w0, dtype=np.float64).ravel()
    if not len(w_star) == len(w0) == len(h):
        raise ValueError(f"h is {h.shape}, but w_star has {len(w_star)} and w0 {len(w0)} entries")
    return h, w_star, w0


@_one_blas_thread
def gd_path(h, w_star, w0, lr: float, steps: int, blow_up: float = 1e6) -> tuple[np.ndarray, bool]:
    """Full-batch gradient descent ``w <- w - lr H (w - w*)`` on the quadratic; returns ``(path, diverged)``.

    ``path`` has one row per iterate, starting with ``w0``. A run whose excess loss exceeds ``blow_up``
    times its initial value is stopped there and reported as diverged (the path ends before any overflow).
    """
    h, w_star, w = _vectors(h, w_star, w0)
    lr = _check_lr(lr)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    limit = blow_up * max(float(excess_loss(h, w, w_star)[0]), 1e-300)
    path = [w]
    for _ in range(int(steps)):
        w = w - lr * (h @ (w - w_star))
        if not excess_loss(h, w, w_star)[0] <= limit:
            return np.array(path), True
        path.append(w)
    return np.array(path), False


@_one_blas_thread
def steps_to_tolerance(h, w_star, w0, lr: float, tol: float = 1e-6, max_steps: int = 200_000) -> int | None:
    """Gradient-descent steps until ``f(w) - f* <= tol * (f(w0) - f*)``; None if not reached or diverged.

    The steps are run one by one (this is a measurement, not the formula of :func:`predicted_steps`).
    """
    h, w_star, w = _vectors(h, w_star, w0)
    lr = _check_lr(lr)
    if not 0 < tol < 1:
        raise ValueError(f"tol must be between 0 and 1 (a fraction of the initial excess loss), got {tol}")
    e = w - w_star
    g = h @ e
    start = 0.5 * e @ g
    if start == 0:
        return 0
    for step in range(1, int(max_steps) + 1):
        e = e - lr * g
        g = h @ e  # one matrix-vector product per step: the gradient, reused for the loss
        now = 0.5 * e @ g
        if now <= tol * start:
            return step
        if not now < 1e12 * start:  # growing without bound: diverged
            return None
    return None


@_one_blas_thread
def least_squares_gd(data: Dataset, lr: float, steps: int, blow_up: float = 100.0) -> dict:
    """Full-batch gradient descent for a linear model with bias on ``data`` with the mean squared error.

    Class labels become one-hot targets and the loss averages over examples and outputs, as
    ``bnbook.train.train(..., loss='mse')`` does, so its Hessian is ``2/K`` times :func:`second_moment`
    for each of the ``K`` outputs and the stability limit is ``K / lambda_max``. The weights start at zero.
    Written out (not via :func:`bnbook.train.train`) because it is just the iteration of the quadratic and
    runs a hundred times faster. Returns ``loss`` (training loss before each step and after the last one),
    ``best`` (the minimum f* from a least-squares solve), ``diverged`` (the loss exceeded ``blow_up``
    times its start: the run is stopped there) and ``test_acc`` (NaN if diverged).
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a bnbook.data.Dataset, got {type(data).__name__}")
    lr = _check_lr(lr)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")

    def design(x):
        x = x.flatten(1).double().numpy()
        return np.hstack([x, np.ones((len(x), 1))])

    def targets(y):
        y = y.numpy()
        return np.eye(data.n_classes)[y] if data.is_classification else y.reshape(len(y), -1).astype(float)

    x, y = design(data.x_train), targets(data.y_train)
    n, k = y.shape
    m, b = x.T @ x / n, x.T @ y / n
    w = np.zeros((x.shape[1], k))
    c = float((y ** 2).sum() / n)

    def loss(w):  # the mean squared error through the d x d moments: no pass over the data per step
        return float((np.sum(w * (m @ w)) - 2.0 * np.sum(w * b) + c) / k)

    losses, diverged = [loss(w)], False
    for _ in range(int(steps)):
        w = w - lr * (2.0 / k) * (m @ w - b)
        losses.append(loss(w))
        if not losses[-1] <= blow_up * losses[0]:
            diverged = True
            losses.pop()
            break
    best = loss(np.linalg.lstsq(x, y, rcond=None)[0])
    test_acc = math.nan
    if not diverged and data.is_classification:
        test_acc = float(((design(data.x_test) @ w).argmax(1) == data.y_test.numpy()).mean())
    return {"loss": np.array(losses), "best": best, "diverged": diverged, "test_acc": test_acc, "lr": lr}


def predicted_steps(kappa: float, tol: float = 1e-6, lr: str = "1/L") -> float:
    """The textbook bound on the steps :func:`steps_to_tolerance` needs, from kappa alone.

    Gradient descent multiplies the error along eigenvector ``i`` by ``1 - lr lambda_i`` per step, so the
    excess loss shrinks at least by ``q^2`` with ``q = max_i |1 - lr lambda_i|``: ``q = 1 - 1/kappa`` for
    ``lr = 1/L`` and ``q = (kappa - 1)/(kappa + 1)`` for ``lr = 2/(L + mu)``. Returns
    ``log(1/tol) / (-2 log q)``, about ``kappa/2 log(1/tol)`` and ``(kappa + 1)/4 log(1/tol)``.
    """
    if not kappa >= 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be between 0 and 1, got {tol}")
    if lr == "1/L":
        q = 1.0 - 1.0 / kappa
    elif lr == "2/(L+mu)":
        q = (kappa - 1.0) / (kappa + 1.0)
    else:
        raise ValueError(f"lr must be '1/L' or '2/(L+mu)', got {lr!r}")
    if q <= 0:
        return 1.0  # kappa == 1: one step reaches the minimum
    return math.log(1.0 / tol) / (-2.0 * math.log(q))


# --- standardization and whitening -----------------------------------------------------------------------

@_one_blas_thread
def fit_normalizer(x_train, method: str = "standardize", eps: float = 1e-2):
    """A function ``transform(x)`` that normalizes inputs with statistics of ``x_train`` (LeCun et al. 1998).

    ``method``: ``'none'``; ``'center'`` (subtract the mean); ``'standardize'`` (mean 0 and variance 1 per
    feature; a constant feature is centred, not scaled); ``'pca'`` and ``'zca'`` whiten: they standardize,
    then decorrelate with the eigendecomposition ``R = U diag(lambda) U^T`` of the standardized features'
    covariance (their correlation matrix), ``'pca'`` mapping onto the principal axes ``z U diag(lambda +
    eps)^(-1/2)`` and ``'zca'`` rotating back with ``U^T`` so each output stays close to its own feature.
    Standardizing first makes whitening independent of the features' units, and the ridge ``eps`` (relative
    to the average eigenvalue, 1) keeps nearly redundant directions from being blown up: their whitened
    variance is ``lambda / (lambda + eps)`` instead of 1. ``transform`` keeps the input's type (tensor or
    array) and float dtype.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(map(repr, METHODS))}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x = _matrix(x_train, "x_train")
    mean = x.mean(axis=0) if method != "none" else np.zeros(x.shape[1])
    matrix = np.eye(x.shape[1])
    if method in ("standardize", "pca", "zca"):
        std = x.std(axis=0)
        std[std == 0] = 1.0
        matrix = np.diag(1.0 / std)
    if method in ("pca", "zca"):
        eig, vec = np.linalg.eigh(np.cov((x - mean) @ matrix, rowvar=False, bias=True))
        eig = np.clip(eig, 0.0, None)
        ridge = eps * eig.mean()
        if ridge == 0 and eig.min() <= 1e-12 * eig.max():
            raise ValueError("x_train has a zero-variance direction (a constant or redundant feature); "
                             "whitening it needs eps > 0")
        matrix = matrix @ (vec / np.sqrt(eig + ridge))
        if method == "zca":
            matrix = matrix @ vec.T

    @_one_blas_thread
    def transform(z):
        z_np = _matrix(z, "x")
        if z_np.shape[1] != len(mean):
            raise ValueError(f"x has {z_np.shape[1]} features, the normalizer was fitted on {len(mean)}")
        out = (z_np - mean) @ matrix
        if isinstance(z, torch.Tensor):
            return torch.as_tensor(out, dtype=z.dtype if z.is_floating_point() else torch.float32)
        return out

    transform.method = method
    return transform


def normalized(data: Dataset, method: str, eps: float = 1e-2) -> Dataset:
    """A copy of ``data`` whose inputs are normalized by :func:`fit_normalizer` fitted on the training set."""
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a bnbook.data.Dataset, got {type(data).__name__}")
    f = fit_normalizer(data.x_train.flatten(1), method, eps)
    shape = data.x_train.shape[1:]
    return Dataset(f(data.x_train.flatten(1)).reshape(-1, *shape), data.y_train,
                   f(data.x_test.flatten(1)).reshape(-1, *shape), data.y_test,
                   f"{data.name}, {method}", data.n_classes)


def rescaled(data: Dataset, spread: float = 100.0, seed: int | None = None) -> Dataset:
    """A copy of ``data`` with feature ``j`` multiplied by ``s_j``, log-uniform in ``[1/sqrt(spread),
    sqrt(spread)]``: the same information on very different scales (as if measured in different units)."""
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a bnbook.data.Dataset, got {type(data).__name__}")
    if not spread >= 1:
        raise ValueError(f"spread must be >= 1 (the ratio of the largest to the smallest scale), got {spread}")
    rng = np.random.default_rng(base_seed() if seed is None else seed)
    half = 0.5 * math.log10(spread)
    s = torch.as_tensor(10.0 ** rng.uniform(-half, half, data.n_features), dtype=data.x_train.dtype)
    s = s.reshape(data.x_train.shape[1:])
    return Dataset(data.x_train * s, data.y_train, data.x_test * s, data.y_test,
                   f"{data.name}, rescaled x{spread:g}", data.n_classes)


def drop_constant(data: Dataset) -> Dataset:
    """A copy of ``data`` without the features that are constant on the training set (zero variance).

    Their eigenvalue of the input covariance is exactly 0, so kappa would be infinite; no weight on them can
    ever change a training prediction. On the digits these are three or four always-blank border pixels.
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a bnbook.data.Dataset, got {type(data).__name__}")
    x_tr, x_te = data.x_train.flatten(1), data.x_test.flatten(1)
    keep = x_tr.std(dim=0) > 0
    return Dataset(x_tr[:, keep], data.y_train, x_te[:, keep], data.y_test,
                   f"{data.name}, {int(keep.sum())} non-constant features", data.n_classes)


# --- the widget: contours and the gradient-descent path ------------------------------------------------

def two_feature_hessian(scale: float = 5.0, correlation: float = 0.0, method: str = "none") -> np.ndarray:
    """Hessian (input covariance) of a linear model on two centred features with standard deviations
    ``1`` and ``scale`` and the given correlation, after ``method`` ('none', 'standardize' or 'zca')."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not -1 < correlation < 1:
        raise ValueError(f"correlation must be strictly between -1 and 1, got {correlation}")
    if method == "none":
        return np.array([[1.0, correlation * scale], [correlation * scale, scale**2]])
    if method == "standardize":
        return np.array([[1.0, correlation], [correlation, 1.0]])
    if method == "zca":
        return np.eye(2)
    raise ValueError(f"unknown method {method!r}; allowed: 'none', 'standardize', 'zca'")


def _widget_problem(scale, correlation, method):
    """Hessian, minimum and start in the coordinates of the model that sees the ``method``-normalized input.

    The same function is learned in every case: if ``x' = A x`` then ``w^T x = v^T x'`` with ``v = A^{-T} w``,
    so the minimum and the start are mapped from the raw coordinates ``w``.
    """
    h_raw = two_feature_hessian(scale, correlation, "none")
    w_star = np.array([1.0, 1.0 / scale])        # both features matter equally
    w0 = w_star + np.array([-2.0, 2.0 / scale])  # the same relative error on each
    if method == "none":
        a_inv_t = np.eye(2)
    elif method == "standardize":
        a_inv_t = np.diag([1.0, scale])
    else:
        eig, vec = np.linalg.eigh(h_raw)
        a_inv_t = vec @ np.diag(np.sqrt(eig)) @ vec.T  # ZCA: A = H^(-1/2), so A^(-T) = H^(1/2)
    return two_feature_hessian(scale, correlation, method), a_inv_t @ w_star, a_inv_t @ w0


def draw_gd_path(ax, ax_loss=None, scale: float = 5.0, correlation: float = 0.0, lr_fraction: float = 0.5,
                 method: str = "none", steps: int = 40, tol: float = 1e-6) -> dict:
    """Loss contours of the two-feature problem and the gradient-descent path on ``ax`` (and, if given, the
    excess loss per step on ``ax_loss``). Returns ``{kappa, lr, steps_to_tol, diverged}``.

    Every ``method`` learns the same function from the same start (:func:`_widget_problem`); the step is
    ``lr_fraction`` times the stability limit ``2 / lambda_max`` of the Hessian that model sees, so 0.5 is
    ``1 / L`` and above 1 the path diverges. ``steps_to_tol`` is measured by :func:`steps_to_tolerance`.
    """
    h, w_star, w0 = _widget_problem(scale, correlation, method)
    lr = lr_fraction * stable_lr(h)
    path, diverged = gd_path(h, w_star, w0, lr, steps)
    kappa = condition_number(h)
    needed = steps_to_tolerance(h, w_star, w0, lr, tol, max_steps=100_000)

    half = 1.15 * np.abs(w0 - w_star).max()
    g = np.linspace(-half, half, 81)
    u, v = np.meshgrid(w_star[0] + g, w_star[1] + g)
    z = excess_loss(h, np.stack([u.ravel(), v.ravel()], axis=1), w_star).reshape(u.shape)
    levels = excess_loss(h, w0, w_star)[0] * np.logspace(-4, 0.5, 10)
    ax.contour(u, v, z, levels=levels, colors="0.6", linewidths=0.8)
    ax.plot(path[:, 0], path[:, 1], "o-", color="C3", ms=2.5, lw=1.2)
    ax.plot(*w_star, "k*", ms=10)
    ax.set(xlim=(w_star[0] - half, w_star[0] + half), ylim=(w_star[1] - half, w_star[1] + half),
           aspect="equal", xlabel="weight 1", ylabel="weight 2")
    names = {"none": "raw", "standardize": "standardized", "zca": "whitened"}
    status = "diverged" if diverged else (f"{needed} steps" if needed else f"> {100_000} steps")
    ax.set_title(f"{names.get(method, method)}: kappa = {kappa:.3g}, {status}", fontsize="small")
    if ax_loss is not None:
        loss = excess_loss(h, path, w_star)
        ax_loss.semilogy(np.arange(len(loss)), np.maximum(loss, 1e-16), color="C3")
        ax_loss.axhline(tol * loss[0], color="0.5", ls="--", lw=1)
        ax_loss.set(xlabel="step", ylabel="f(w) - f*", xlim=(0, steps),
                    ylim=(max(1e-16, tol * loss[0] * 1e-2), loss[0] * 1e3))
        ax_loss.set_title(f"lr = {lr_fraction:g} x 2/lambda_max (dashed: tol)", fontsize="small")
    return {"kappa": kappa, "lr": lr, "steps_to_tol": needed, "diverged": diverged}


def plot_gd_contours(fig, scale: float = 5.0, correlation: float = 0.0, lr_fraction: float = 0.5,
                     method: str = "none", steps: int = 40, tol: float = 1e-6):
    """The widget's plot function: :func:`draw_gd_path` with the loss panel, into ``fig``."""
    ax_c, ax_l = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    draw_gd_path(ax_c, ax_l, scale, correlation, lr_fraction, method, steps, tol)
    fig.tight_layout()


# --- exercise self-checks ------------------------------------------------------------------------------

def check_condition_number(answer, scale: float = 10.0, correlation: float = 0.0):
    """Exercise: kappa of the Hessian of two centred, uncorrelated features with standard deviations 1 and
    ``scale`` (``correlation=0``), or of two standardized features with correlation ``rho`` (``scale=1``)."""
    value, verdict = _numeric_answer(answer, "the condition number")
    if value is None:
        return verdict
    right = condition_number(two_feature_hessian(scale, correlation))
    if math.isclose(value, right, rel_tol=1e-3):
        return _ok(f"kappa = {right:.4g}")
    if correlation == 0 and math.isclose(value, scale, rel_tol=1e-3):
        return _wrong("the Hessian holds variances, not standard deviations: square the ratio of the scales")
    if correlation and math.isclose(value, 1 + abs(correlation), rel_tol=1e-3):
        return _wrong("1 + |rho| is the largest eigenvalue; divide it by the smallest")
    return _wrong(f"{value:.4g} is not it: find the eigenvalues of the Hessian and divide the largest by the "
                  "smallest")


def check_steps_estimate(answer, kappa: float = 1000.0, tol: float = 1e-6):
    """Exercise: about how many steps with ``lr = 1/L`` does gradient descent need in the worst case?"""
    value, verdict = _numeric_answer(answer, "the number of steps")
    if value is None:
        return verdict
    right = predicted_steps(kappa, tol, "1/L")
    if abs(value / right - 1) < 0.05:
        return _ok(f"about kappa/2 * ln(1/tol) = {right:.0f} steps")
    if abs(value / (2 * right) - 1) < 0.05:
        return _wrong("that is kappa * ln(1/tol): the excess loss is quadratic in the error, so it shrinks by "
                      "(1 - 1/kappa)^2 per step, twice as fast as the error")
    if abs(value / (right * math.log(10)) - 1) < 0.05 or abs(value / (right / math.log(10)) - 1) < 0.05:
        return _wrong("mind the logarithm: the natural log of 1/tol, not log10")
    return _wrong(f"{value:.4g} is not it: the slowest direction loses a factor (1 - 1/kappa)^2 of its excess loss "
                  "per step; solve (1 - 1/kappa)^(2t) = tol for t")


def check_whitening(fn):
    """Exercise: ``fn(x)`` ZCA-whitens a (n, d) float64 array with its own statistics (no ridge)."""
    if fn is None:
        return _not_attempted("your whiten(x)")
    if not callable(fn):
        return _wrong(f"expected a function whiten(x), got {type(fn).__name__}")
    rng = np.random.default_rng(1998)
    x = rng.standard_normal((500, 3)) @ np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.0, 0.3, 4.0]]) + 3.0
    try:
        out = np.asarray(fn(x.copy()), dtype=np.float64)
    except Exception as err:  # the reader's code: report, never raise
        return _wrong(f"your function raised {type(err).__name__}: {err}")
    if out.shape != x.shape:
        return _wrong(f"the output should have the input's shape {x.shape}, got {out.shape}")
    if not np.allclose(out.mean(axis=0), 0, atol=1e-8):
        return _wrong("the output is not centred: subtract the mean first")
    cov = np.cov(out, rowvar=False, bias=True)
    if not np.allclose(cov, np.eye(3), atol=1e-3):
        if np.allclose(np.diag(cov), 1, atol=1e-3):
            return _wrong("every feature has variance 1 but they are still correlated: that is standardization")
        return _wrong("the covariance of the output is not the identity: multiply by Sigma^(-1/2)")
    eig, vec = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    want = (x - x.mean(axis=0)) @ (vec / np.sqrt(eig)) @ vec.T  # the symmetric Sigma^(-1/2)
    if not np.allclose(out, want, atol=1e-6):
        if np.allclose(out, fit_normalizer(x, "zca", eps=0.0)(x), atol=1e-6):
            return _ok("white, and close to the features: you standardized first and then ZCA-whitened the "
                       "correlation matrix, as bnbook's fit_normalizer does (plain ZCA uses Sigma^(-1/2) itself)")
        return _wrong("the output is white, but it is not the ZCA solution (PCA whitening? rotate back with "
                      "U^T: x_white = (x - mean) U Lambda^(-1/2) U^T)")
    return _ok("ZCA whitening: covariance I, and each output stays as close as possible to its input feature")
