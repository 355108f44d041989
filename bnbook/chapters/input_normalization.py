"""Why the scale of the inputs matters to gradient descent: conditioning, standardization, whitening.

For a linear model with the least-squares loss ``f(w) = 1/(2n) ||X w - y||^2`` the Hessian is the inputs'
second-moment matrix ``H = X^T X / n`` (:func:`second_moment`; append a column of ones for a bias). Its
condition number ``kappa = lambda_max / lambda_min`` (:func:`condition_number`) governs gradient descent: the
step must stay below ``2 / lambda_max`` (:func:`stable_lr`) and the number of steps to reach a tolerance
grows like ``kappa log(1 / tol)`` (:func:`quadratic_gd` runs the iteration, :func:`steps_to_tolerance` reads
the measured count off its history, :func:`predicted_steps` is the theory); :func:`least_squares_gd` trains a
linear classifier this way on a data set (:func:`least_squares_min` is the minimum it approaches). Both
descents return a :class:`bnbook.train.History` and stop at a divergence by :func:`bnbook.train.has_diverged`.
:func:`fit_normalizer` standardizes or PCA/ZCA-whitens inputs with training-set statistics (LeCun et al.
1998, "Efficient BackProp"); :func:`normalized` applies it to a :class:`~bnbook.data.Dataset`.

The widget of the chapter draws the contours of a two-feature problem and the gradient-descent path on them
(:func:`plot_gd_contours`; :func:`draw_gd_path` draws one panel, for figure grids). Exercise self-checks
at the end.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ..data import Dataset, standardizer
from ..seeding import rng
from ..selfcheck import not_attempted, numeric_answer, ok, wrong
from ..train import History, divergence_limit, has_diverged

__all__ = [
    "second_moment", "condition_number", "stable_lr", "excess_loss", "quadratic_gd", "steps_to_tolerance",
    "predicted_steps", "STEP_RULES", "least_squares_gd", "least_squares_min", "METHODS", "fit_normalizer", "normalized",
    "rescaled", "drop_constant", "two_feature_hessian", "draw_gd_path", "plot_gd_contours",
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


def _check_steps(steps, minimum: int = 0) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < minimum:
        raise ValueError(f"steps must be an integer >= {minimum}, got {steps!r}")
    return int(steps)


@_one_blas_thread
def quadratic_gd(h, w_star, w0, lr: float, steps: int, tol: float | None = None,
                 keep_path: bool = False) -> History:
    """Full-batch gradient descent ``w <- w - lr H (w - w*)`` on the quadratic ``1/2 (w - w*)^T H (w - w*)``.

    Returns a :class:`~bnbook.train.History` evaluated at every step: ``steps`` = 0, 1, ... and
    ``train_loss`` the excess loss ``f(w) - f*`` there (:func:`excess_loss`). The run stops after ``steps``
    steps; earlier if ``tol`` is given and the excess loss falls to ``tol`` times its start (read the count
    with :func:`steps_to_tolerance`); and at the first excess loss that :func:`bnbook.train.has_diverged`
    calls diverged (limit :func:`bnbook.train.divergence_limit` of the start), which sets ``diverged`` and
    ``diverged_at`` and is not recorded. With ``keep_path`` the iterates are kept as ``probes``:
    ``(step, w)`` for every recorded step, starting with ``w0``.
    """
    h, w_star, w = _vectors(h, w_star, w0)
    lr = _check_lr(lr)
    steps = _check_steps(steps)
    if tol is not None and not 0 < tol < 1:
        raise ValueError(f"tol must be between 0 and 1 (a fraction of the initial excess loss), got {tol}")
    e = w - w_star
    g = h @ e  # one matrix-vector product per step: the gradient, reused for the loss
    start = float(0.5 * e @ g)
    limit = divergence_limit(start)
    run = History(lr=lr, steps=[0], train_loss=[start])
    if keep_path:
        run.probes.append((0, w_star + e))
    for step in range(1, steps + 1):
        if tol is not None and run.train_loss[-1] <= tol * start:
            break
        e = e - lr * g
        g = h @ e
        now = float(0.5 * e @ g)
        if has_diverged(now, limit):
            run.diverged, run.diverged_at = True, step
            break
        run.steps.append(step)
        run.train_loss.append(now)
        if keep_path:
            run.probes.append((step, w_star + e))
    return run


def steps_to_tolerance(run: History, tol: float = 1e-6) -> int | None:
    """The first step of a :func:`quadratic_gd` run at which the excess loss is at most ``tol`` times its start.

    None if the run never got there: it ran out of steps, or it diverged (``run.diverged`` says which).
    """
    if not isinstance(run, History):
        raise TypeError(f"run must be the History that quadratic_gd returns, got {type(run).__name__}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be between 0 and 1 (a fraction of the initial excess loss), got {tol}")
    return run.first_step("train_loss", tol * run.train_loss[0], below=True)


def _least_squares_problem(data: Dataset):
    """Design matrices (with a column of ones) and targets of ``data``: one-hot for class labels."""
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a bnbook.data.Dataset, got {type(data).__name__}")

    def design(x):
        x = x.flatten(1).double().numpy()
        return np.hstack([x, np.ones((len(x), 1))])

    def targets(y):
        y = y.numpy()
        return np.eye(data.n_classes)[y] if data.is_classification else y.reshape(len(y), -1).astype(float)

    return design(data.x_train), targets(data.y_train), design(data.x_test), targets(data.y_test)


def _moments(x, y) -> tuple:
    return x.T @ x / len(x), x.T @ y / len(x), float((y ** 2).sum() / len(x))


def _mse(w, moments) -> float:
    """The mean squared error (over examples and outputs) of ``x @ w`` against ``y``, from their moments: no
    pass over the data per step."""
    m, b, c = moments
    return float((np.sum(w * (m @ w)) - 2.0 * np.sum(w * b) + c) / w.shape[1])


@_one_blas_thread
def least_squares_min(data: Dataset) -> float:
    """The minimum ``f*`` of the training loss that :func:`least_squares_gd` descends (a least-squares solve)."""
    x, y, _, _ = _least_squares_problem(data)
    return _mse(np.linalg.lstsq(x, y, rcond=None)[0], _moments(x, y))


@_one_blas_thread
def least_squares_gd(data: Dataset, lr: float, steps: int, eval_every: int | None = None) -> History:
    """Full-batch gradient descent for a linear model with bias on ``data`` with the mean squared error.

    Class labels become one-hot targets and the loss averages over examples and outputs, as
    ``bnbook.train.train(..., loss='mse')`` does, so its Hessian is ``2/K`` times :func:`second_moment`
    for each of the ``K`` outputs and the stability limit is ``K / lambda_max``. The weights start at zero.
    Written out (not via :func:`bnbook.train.train`) because it is just the iteration of the quadratic and
    runs a hundred times faster. Returns a :class:`~bnbook.train.History` recorded as ``train`` records
    a full-batch run: ``step_loss[i]`` is the training loss before update ``i + 1``; losses (and
    accuracies) on the training and test sets at step 0, every ``eval_every`` steps (default
    ``steps // 20``) and at the end; a loss that :func:`bnbook.train.has_diverged` (limit
    :func:`bnbook.train.divergence_limit` of the initial loss) stops the run as diverged.
    """
    x, y, x_test, y_test = _least_squares_problem(data)
    lr = _check_lr(lr)
    steps = _check_steps(steps, minimum=1)
    eval_every = max(1, steps // 20) if eval_every is None else _check_steps(eval_every, minimum=1)
    train_moments, test_moments = _moments(x, y), _moments(x_test, y_test)
    run = History(lr=lr)

    def evaluate(w, step):
        run.steps.append(step)
        run.train_loss.append(_mse(w, train_moments))
        run.test_loss.append(_mse(w, test_moments))
        if data.is_classification:
            run.train_acc.append(float(((x @ w).argmax(1) == y.argmax(1)).mean()))
            run.test_acc.append(float(((x_test @ w).argmax(1) == y_test.argmax(1)).mean()))

    m, b, _ = train_moments
    w = np.zeros((x.shape[1], y.shape[1]))
    evaluate(w, 0)
    limit = divergence_limit(run.train_loss[0])
    for step in range(1, steps + 1):
        value = _mse(w, train_moments)
        if has_diverged(value, limit):
            run.diverged, run.diverged_at = True, step
            break
        run.step_loss.append(value)
        w = w - lr * (2.0 / w.shape[1]) * (m @ w - b)
        if step % eval_every == 0 or step == steps:
            if has_diverged(_mse(w, train_moments), limit):
                run.diverged, run.diverged_at = True, step
                break
            evaluate(w, step)
    return run


STEP_RULES = ("1/lambda_max", "2/(lambda_max+lambda_min)")


def predicted_steps(kappa: float, tol: float = 1e-6, lr: str = "1/lambda_max") -> float:
    """The textbook bound on the steps gradient descent needs (:func:`steps_to_tolerance`), from kappa alone.

    Gradient descent multiplies the error along eigenvector ``i`` by ``1 - lr lambda_i`` per step, so the
    excess loss shrinks at least by ``q^2`` with ``q = max_i |1 - lr lambda_i|``: ``q = 1 - 1/kappa`` for
    ``lr = 1/lambda_max`` and ``q = (kappa - 1)/(kappa + 1)`` for ``lr = 2/(lambda_max + lambda_min)`` (the
    rules of :data:`STEP_RULES`). Returns ``log(1/tol) / (-2 log q)``, about ``kappa/2 log(1/tol)`` and
    ``(kappa + 1)/4 log(1/tol)``.
    """
    if not kappa >= 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be between 0 and 1, got {tol}")
    if lr == STEP_RULES[0]:
        q = 1.0 - 1.0 / kappa
    elif lr == STEP_RULES[1]:
        q = (kappa - 1.0) / (kappa + 1.0)
    else:
        raise ValueError(f"lr must be one of {STEP_RULES}, got {lr!r}")
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
        matrix = np.diag(1.0 / standardizer(x)[1])
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
    gen = rng(seed)
    half = 0.5 * math.log10(spread)
    s = torch.as_tensor(10.0 ** gen.uniform(-half, half, data.n_features), dtype=data.x_train.dtype)
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
                 method: str = "none", steps: int = 40, tol: float = 1e-6, max_steps: int = 100_000) -> History:
    """Loss contours of the two-feature problem and the gradient-descent path on ``ax`` (and, if given, the
    excess loss per step on ``ax_loss``); returns the run (:func:`quadratic_gd` with the path as probes).

    Every ``method`` learns the same function from the same start (:func:`_widget_problem`); the step is
    ``lr_fraction`` times the stability limit ``2 / lambda_max`` of the Hessian that model sees, so 0.5 is
    ``1 / lambda_max`` and above 1 the path diverges. The run goes on until the excess loss falls to ``tol`` times its
    start (at most ``max_steps`` steps; read the count with :func:`steps_to_tolerance`); the first ``steps``
    of it are drawn.
    """
    h, w_star, w0 = _widget_problem(scale, correlation, method)
    run = quadratic_gd(h, w_star, w0, lr_fraction * stable_lr(h), max_steps, tol=tol, keep_path=True)
    path = np.array([w for step, w in run.probes if step <= steps])
    needed = steps_to_tolerance(run, tol)

    half = 1.15 * np.abs(w0 - w_star).max()
    g = np.linspace(-half, half, 81)
    u, v = np.meshgrid(w_star[0] + g, w_star[1] + g)
    z = excess_loss(h, np.stack([u.ravel(), v.ravel()], axis=1), w_star).reshape(u.shape)
    levels = run.train_loss[0] * np.logspace(-4, 0.5, 10)
    ax.contour(u, v, z, levels=levels, colors="0.6", linewidths=0.8)
    ax.plot(path[:, 0], path[:, 1], "o-", color="C3", ms=2.5, lw=1.2)
    ax.plot(*w_star, "k*", ms=10)
    ax.set(xlim=(w_star[0] - half, w_star[0] + half), ylim=(w_star[1] - half, w_star[1] + half),
           aspect="equal", xlabel="weight 1", ylabel="weight 2")
    names = {"none": "raw", "standardize": "standardized", "zca": "whitened"}
    status = "diverged" if run.diverged else (f"{needed} steps" if needed is not None else f"> {max_steps} steps")
    ax.set_title(rf"{names.get(method, method)}: $\kappa$ = {condition_number(h):.3g}, {status}", fontsize="small")
    if ax_loss is not None:
        loss = run.window("train_loss", 0, steps)
        ax_loss.semilogy(np.arange(len(loss)), np.maximum(loss, 1e-16), color="C3")
        ax_loss.axhline(tol * loss[0], color="0.5", ls="--", lw=1)
        ax_loss.set(xlabel="step", ylabel=r"$f(w) - f^*$", xlim=(0, steps),
                    ylim=(max(1e-16, tol * loss[0] * 1e-2), loss[0] * 1e3))
        ax_loss.set_title(rf"$\eta$ = {lr_fraction:g} $\times\ 2/\lambda_{{\max}}$ (dashed: tol)", fontsize="small")
    return run


def plot_gd_contours(fig, scale: float = 5.0, correlation: float = 0.0, lr_fraction: float = 0.5,
                     method: str = "none", steps: int = 40, tol: float = 1e-6):
    """The widget's plot function: :func:`draw_gd_path` with the loss panel, into ``fig``."""
    ax_c, ax_l = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    draw_gd_path(ax_c, ax_l, scale, correlation, lr_fraction, method, steps, tol)
    fig.tight_layout()


# --- exercise self-checks ------------------------------------------------------------------------------

def check_condition_number(answer, scale: float = 10.0, correlation: float = 0.0):
    """Exercise: kappa of the Hessian (covariance) of two centred features with standard deviations 1 and
    ``scale`` and the given correlation (:func:`two_feature_hessian`); ``scale=1`` is two standardized ones."""
    value, verdict = numeric_answer(answer, "the condition number")
    if value is None:
        return verdict
    right = condition_number(two_feature_hessian(scale, correlation))
    if math.isclose(value, right, rel_tol=1e-3):
        return ok(f"kappa = {right:.4g}")
    if correlation == 0 and math.isclose(value, scale, rel_tol=1e-3):
        return wrong("the Hessian holds variances, not standard deviations: square the ratio of the scales")
    if correlation and math.isclose(value, 1 + abs(correlation), rel_tol=1e-3):
        return wrong("1 + |rho| is the largest eigenvalue; divide it by the smallest")
    return wrong(f"{value:.4g} is not it: find the eigenvalues of the Hessian and divide the largest by the "
                  "smallest")


def check_steps_estimate(answer, kappa: float = 1000.0, tol: float = 1e-6):
    """Exercise: about how many steps with ``lr = 1/lambda_max`` does gradient descent need in the worst case?"""
    value, verdict = numeric_answer(answer, "the number of steps")
    if value is None:
        return verdict
    right = predicted_steps(kappa, tol, STEP_RULES[0])
    if abs(value / right - 1) < 0.05:
        return ok(f"about kappa/2 * ln(1/tol) = {right:.0f} steps")
    if abs(value / (2 * right) - 1) < 0.05:
        return wrong("that is kappa * ln(1/tol): the excess loss is quadratic in the error, so it shrinks by "
                      "(1 - 1/kappa)^2 per step, twice as fast as the error")
    if abs(value / (right * math.log(10)) - 1) < 0.05 or abs(value / (right / math.log(10)) - 1) < 0.05:
        return wrong("mind the logarithm: the natural log of 1/tol, not log10")
    return wrong(f"{value:.4g} is not it: the slowest direction loses a factor (1 - 1/kappa)^2 of its excess loss "
                  "per step; solve (1 - 1/kappa)^(2t) = tol for t")


def check_whitening(fn):
    """Exercise: ``fn(x)`` ZCA-whitens a (n, d) float64 array with its own statistics (no ridge)."""
    if fn is None:
        return not_attempted("your whiten(x)")
    if not callable(fn):
        return wrong(f"expected a function whiten(x), got {type(fn).__name__}")
    gen = np.random.default_rng(1998)  # a fixed test case: the check must not change with BNBOOK_SEED
    x = gen.standard_normal((500, 3)) @ np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.0, 0.3, 4.0]]) + 3.0
    try:
        out = np.asarray(fn(x.copy()), dtype=np.float64)
    except Exception as err:  # the reader's code: report, never raise
        return wrong(f"your function raised {type(err).__name__}: {err}")
    if out.shape != x.shape:
        return wrong(f"the output should have the input's shape {x.shape}, got {out.shape}")
    if not np.allclose(out.mean(axis=0), 0, atol=1e-8):
        return wrong("the output is not centred: subtract the mean first")
    cov = np.cov(out, rowvar=False, bias=True)
    if not np.allclose(cov, np.eye(3), atol=1e-3):
        if np.allclose(np.diag(cov), 1, atol=1e-3):
            return wrong("every feature has variance 1 but they are still correlated: that is standardization")
        return wrong("the covariance of the output is not the identity: multiply by Sigma^(-1/2)")
    eig, vec = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    want = (x - x.mean(axis=0)) @ (vec / np.sqrt(eig)) @ vec.T  # the symmetric Sigma^(-1/2)
    if not np.allclose(out, want, atol=1e-6):
        if np.allclose(out, fit_normalizer(x, "zca", eps=0.0)(x), atol=1e-6):
            return ok("white, and close to the features: you standardized first and then ZCA-whitened the "
                       "correlation matrix, as bnbook's fit_normalizer does (plain ZCA uses Sigma^(-1/2) itself)")
        return wrong("the output is white, but it is not the ZCA solution (PCA whitening? rotate back with "
                      "U^T: x_white = (x - mean) U Lambda^(-1/2) U^T)")
    return ok("ZCA whitening: covariance I, and each output stays as close as possible to its input feature")
