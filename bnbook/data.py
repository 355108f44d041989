"""Offline data sets: nothing here ever downloads.

* :func:`digits` -- scikit-learn's bundled 8x8 handwritten digits (the book's "MNIST"), used from
  "Mini-batch SGD" onwards and for the Ioffe and Szegedy Fig. 1 replication in "Internal covariate shift".
* :func:`mnist1d` -- MNIST-1D (Greydanus 2020), generated procedurally by ``mnist1d.data.make_dataset``.
* :func:`ill_conditioned_regression` -- linear regression whose features have very different scales
  ("Input normalization").
* :func:`batches` -- shuffled, deterministic mini-batches ("Mini-batch SGD"); :mod:`bnbook.train` uses it.

Every function returns a :class:`Dataset` of float32 inputs and long class labels (float32 targets of shape
``(n, 1)`` for regression, where ``n_classes`` is 0). ``seed=None`` means :func:`bnbook.seeding.base_seed`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from .seeding import resolve, rng


@dataclass
class Dataset:
    """A train/test split of one data set (``n_classes == 0`` for regression)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    n_classes: int

    @property
    def n_features(self) -> int:
        """Number of input features per example (all dimensions after the first, multiplied)."""
        return int(np.prod(self.x_train.shape[1:]))

    @property
    def is_classification(self) -> bool:
        return self.n_classes > 0

    def __repr__(self) -> str:
        kind = f"{self.n_classes} classes" if self.n_classes else "regression"
        return (f"Dataset({self.name!r}: train {tuple(self.x_train.shape)}, "
                f"test {tuple(self.x_test.shape)}, {kind})")


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, stratify: bool):
    """Deterministic shuffled train/test split (stratified by class when ``stratify``)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_fraction, random_state=seed % 2**32,
                            stratify=y if stratify else None)


def standardizer(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` per feature of the training set, for ``(x - mean) / std`` (LeCun et al. 1998).

    A constant feature (e.g. an always-blank corner pixel of the digits) gets ``std = 1``: it is centred,
    not scaled, so a test example where that pixel is not blank does not become an outlier of size 1/eps.
    """
    x_train = np.asarray(x_train, dtype=float)
    if x_train.ndim != 2 or len(x_train) < 2:
        raise ValueError(f"x_train must be a 2-D array with at least two rows, got shape {x_train.shape}")
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return mean, std


def _standardize(x_train: np.ndarray, x_test: np.ndarray):
    """Zero mean, unit variance per feature, with statistics from the training set only."""
    mean, std = standardizer(x_train)
    return (x_train - mean) / std, (x_test - mean) / std


def _make(x_tr, x_te, y_tr, y_te, name: str, n_classes: int) -> Dataset:
    y_dtype = torch.long if n_classes else torch.float32
    return Dataset(torch.as_tensor(x_tr, dtype=torch.float32), torch.as_tensor(y_tr, dtype=y_dtype),
                   torch.as_tensor(x_te, dtype=torch.float32), torch.as_tensor(y_te, dtype=y_dtype),
                   name, n_classes)


def digits(standardize: bool = False, test_fraction: float = 0.25, seed: int | None = None,
           images: bool = False) -> Dataset:
    """scikit-learn's 1,797 handwritten 8x8 digits, pixel values 0..16, 10 classes.

    ``standardize=False`` keeps the raw 0..16 scale (Ioffe and Szegedy's Fig. 1 setting, "Input
    normalization"); ``True`` standardizes each pixel with training-set statistics. The split is stratified and
    fixed by ``seed``. ``images=True`` returns inputs of shape ``(n, 1, 8, 8)`` instead of ``(n, 64)``.
    """
    from sklearn.datasets import load_digits

    _check_fraction(test_fraction)
    seed = resolve(seed)
    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = _split(bunch.data, bunch.target, test_fraction, seed, stratify=True)
    if standardize:
        x_tr, x_te = _standardize(x_tr, x_te)
    if images:
        x_tr, x_te = x_tr.reshape(-1, 1, 8, 8), x_te.reshape(-1, 1, 8, 8)
    return _make(x_tr, x_te, y_tr, y_te, "digits" + (" (standardized)" if standardize else ""), 10)


def mnist1d(n: int = 5000, seed: int | None = None, test_fraction: float = 0.2) -> Dataset:
    """MNIST-1D (Greydanus 2020): ``n`` length-40 signals of 10 classes, generated offline.

    Calls ``mnist1d.data.make_dataset`` with the package's default arguments (never ``get_dataset``, which
    downloads). The generator reseeds Python's and NumPy's global random state; we restore both afterwards so
    that calling this does not change anything else a chapter draws. Inputs are already standardized.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    _check_positive_int("n", n, minimum=20)
    _check_fraction(test_fraction)
    seed = resolve(seed)
    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = int(n), int(seed) % 2**32, 1.0 - test_fraction
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return _make(raw["x"], raw["x_test"], raw["y"], raw["y_test"], "MNIST-1D", 10)


def ill_conditioned_regression(n: int = 1000, d: int = 10, condition_number: float = 100.0,
                               offset: float = 0.0, noise: float = 0.1, test_fraction: float = 0.25,
                               seed: int | None = None) -> Dataset:
    """Linear regression ``y = x w + noise`` whose features have very different scales.

    Feature ``j`` is Gaussian with standard deviation ``s_j``, log-spaced from 1 to ``sqrt(condition_number)``,
    plus a common mean ``offset``. The covariance of the inputs, which is the Hessian of the mean squared error
    of a linear model (up to a factor 2), therefore has condition number ``condition_number`` when
    ``offset == 0``; a non-zero offset makes it worse. Each feature contributes equally to ``y``
    (``w_j ~ N(0, 1) / s_j``), so after standardization the problem is perfectly conditioned.
    """
    _check_positive_int("n", n, minimum=4)
    _check_positive_int("d", d)
    if not condition_number >= 1.0:
        raise ValueError(f"condition_number must be >= 1, got {condition_number}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    _check_fraction(test_fraction)
    seed = resolve(seed)
    draw = rng(seed)
    scales = np.logspace(0.0, 0.5 * np.log10(condition_number), d)
    z = draw.standard_normal((n, d))
    w = draw.standard_normal(d)
    y = z @ w + noise * draw.standard_normal(n)
    x = z * scales + offset
    x_tr, x_te, y_tr, y_te = _split(x, y[:, None], test_fraction, seed, stratify=False)
    return _make(x_tr, x_te, y_tr, y_te, f"ill-conditioned regression (kappa={condition_number:g})", 0)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
            drop_last: bool = True):
    """One epoch of shuffled mini-batches ``(x_batch, y_batch)``; the order is fixed by ``generator``.

    ``drop_last=True`` (the default) skips a final short batch, so every batch has exactly ``batch_size``
    examples -- BN's batch statistics depend on the batch size, and a batch of one has no variance.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    _check_positive_int("batch_size", batch_size)
    if batch_size > len(x):
        raise ValueError(f"batch_size={batch_size} is larger than the data set ({len(x)} examples)")
    order = torch.randperm(len(x), generator=generator)
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
