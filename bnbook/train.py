"""One training loop for the whole book, multi-seed runs, and a history that plots can trust.

A run whose loss becomes non-finite or explodes is stopped and recorded as diverged (``History.diverged``);
:func:`train` never raises for that and never stores a NaN, so plots and claims can read a history as is.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dataset, batches
from .measure import probing
from .display import progress_bar
from .seeding import base_seed, seeds as default_seeds

OPTIMIZERS = ("sgd", "adam")
DIVERGE_FACTOR = 100.0
LOSSES = ("cross_entropy", "mse")
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


@dataclass
class History:
    """What one run recorded.

    At each evaluation step (``steps``, starting with 0 = before training): loss and accuracy on the whole
    training and test sets, in eval mode (so BN uses its running statistics). Accuracy lists stay empty for
    regression data. ``step_loss[i]`` is the mini-batch loss of update ``i + 1``, computed before that update.
    ``probes`` holds ``(step, value)`` for every non-None value the callback returned. If the run diverged,
    ``diverged_at`` is the update at which a loss became non-finite or exceeded the threshold; the evaluated
    metrics end before it and nothing recorded is NaN.
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    probes: list[tuple[int, Any]] = field(default_factory=list)
    diverged: bool = False
    diverged_at: int | None = None
    seconds: float = 0.0
    seed: int | None = None
    lr: float | None = None

    def at(self, step: int, metric: str = "test_acc") -> float:
        """``metric`` at evaluation step ``step``; NaN if the run diverged before reaching it.

        >>> h.at(300, "test_acc")  # doctest: +SKIP
        """
        check_metric(metric)
        if step in self.steps:
            return getattr(self, metric)[self.steps.index(step)]
        if self.diverged and step >= self.diverged_at:
            return math.nan
        raise ValueError(f"step {step} was not evaluated; evaluated steps: {self.steps}")

    def series(self, metric: str = "test_acc") -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of an evaluated metric as arrays (what a plot of this run draws)."""
        check_metric(metric)
        return np.asarray(self.steps, dtype=int), np.asarray(getattr(self, metric), dtype=float)

    def probe_series(self, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the callback's results; ``key`` picks one entry of dict-valued results.

        >>> steps, kappa = h.probe_series("kappa")  # doctest: +SKIP
        """
        if not self.probes:
            raise ValueError("this run recorded no probes; pass callback=... to train()")
        steps = np.array([s for s, _ in self.probes], dtype=int)
        values = [v for _, v in self.probes]
        if key is not None:
            if not all(isinstance(v, dict) and key in v for v in values):
                keys = sorted(values[0]) if isinstance(values[0], dict) else "none (results are not dicts)"
                raise ValueError(f"probe key {key!r} not in every probe result; keys: {keys}")
            values = [v[key] for v in values]
        return steps, np.asarray(values, dtype=float)

    def window(self, metric: str = "train_loss", start: int = 0, stop: int | None = None) -> np.ndarray:
        """The values of ``metric`` evaluated at steps ``start <= step <= stop`` (``stop=None``: to the end)."""
        steps, values = self.series(metric)
        keep = (steps >= start) & (steps <= (steps.max(initial=0) if stop is None else stop))
        return values[keep]

    def first_step(self, metric: str, target: float, below: bool | None = None) -> int | None:
        """The first evaluated step at which ``metric`` reaches ``target``; None if it never does.

        "Reaches" means ``<= target`` for losses and ``>= target`` for accuracies (``below`` overrides).
        """
        below = metric.endswith("loss") if below is None else below
        steps, values = self.series(metric)
        hit = values <= target if below else values >= target
        return int(steps[hit][0]) if hit.any() else None

    def final(self, metric: str = "test_acc") -> float:
        """``metric`` at the last evaluation; NaN if the run diverged (its last value is not a result)."""
        check_metric(metric)
        values = getattr(self, metric)
        return math.nan if self.diverged or not values else values[-1]


def check_metric(metric: str) -> None:
    """Raise a ValueError naming the allowed metrics if ``metric`` is not one of :data:`METRICS`."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(map(repr, METRICS))}")


def divergence_limit(initial_loss: float, factor: float = DIVERGE_FACTOR) -> float:
    """The default loss above which a run counts as diverged: ``factor * max(1, |initial loss|)``."""
    return factor * max(1.0, abs(initial_loss))


def has_diverged(value: float, limit: float) -> bool:
    """The book's one rule for divergence: ``value`` is non-finite or above ``limit``.

    Every loop in bnbook that can blow up (training, gradient descent on a quadratic, SGD paths) stops at the
    first such value and records it as a divergence (``limit`` from :func:`divergence_limit` by default).
    """
    return not (math.isfinite(value) and value <= limit)


class Runs(list):
    """The result of :func:`run_seeds`: a list of :class:`History` (one per seed) plus the trained models.

    ``runs.models[i]`` is the model trained with ``runs.seeds[i]``; ``runs.final(metric)`` and
    ``runs.at(step, metric)`` give one value per seed as an array (NaN for a diverged seed).
    """

    def __init__(self, histories, models, seeds):
        super().__init__(histories)
        self.models = list(models)
        self.seeds = list(seeds)

    def final(self, metric: str = "test_acc") -> np.ndarray:
        return np.array([h.final(metric) for h in self])

    def at(self, step: int, metric: str = "test_acc") -> np.ndarray:
        return np.array([h.at(step, metric) for h in self])

    @property
    def n_diverged(self) -> int:
        return sum(h.diverged for h in self)


def _loss_fn(loss: str, data: Dataset) -> Callable:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(map(repr, LOSSES))}")
    if loss == "cross_entropy":
        if not data.is_classification:
            raise ValueError(f"loss='cross_entropy' needs class labels but {data.name!r} is a regression "
                             "data set; use loss='mse'")
        return F.cross_entropy
    if data.is_classification:  # mse on one-hot targets
        return lambda out, y: F.mse_loss(out, F.one_hot(y, data.n_classes).to(out.dtype))
    return F.mse_loss


def _optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(map(repr, OPTIMIZERS))}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if momentum:
        raise ValueError("momentum applies to optimizer='sgd' only (Adam has its own betas)")
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _check_args(model, data, steps, lr, batch_size, eval_every, callback_every) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a bnbook.data.Dataset (e.g. bnbook.data.digits()), got {type(data).__name__}")
    for name, value in [("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every),
                        ("callback_every", callback_every)]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if batch_size > len(data.x_train):
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(data.x_train)} examples)")


@contextmanager
def threads(n: int | None):
    """Run a block with ``torch.set_num_threads(n)`` (unchanged if ``n`` is None), then restore."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batch_stream(data: Dataset, batch_size: int, generator: torch.Generator):
    while True:
        yield from batches(data.x_train, data.y_train, batch_size, generator)


@torch.no_grad()
def _evaluate(model, data: Dataset, loss_fn, history: History, step: int) -> bool:
    """Append whole-set losses (and accuracies) at ``step``; False, appending nothing, if any is non-finite."""
    row = {}
    with probing(model, train_mode=False):
        for split, x, y in [("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)]:
            out = model(x)
            row[f"{split}_loss"] = loss_fn(out, y).item()
            if data.is_classification:
                row[f"{split}_acc"] = (out.argmax(dim=1) == y).float().mean().item()
    if not all(math.isfinite(v) for v in row.values()):
        return False
    history.steps.append(step)
    for key, value in row.items():
        getattr(history, key).append(value)
    return True


def _probe(callback, model, step: int, history: History) -> None:
    with probing(model, train_mode=model.training):  # a probe leaves mode and BN statistics as it found them
        value = callback(model, step)
    if value is not None:
        history.probes.append((step, value))


def train(model: torch.nn.Module, data: Dataset, steps: int, lr: float, batch_size: int = 64,
          optimizer: str = "sgd", momentum: float = 0.0, weight_decay: float = 0.0, seed: int | None = None,
          eval_every: int | None = None, loss: str = "cross_entropy", callback: Callable | None = None,
          callback_every: int | None = None, progress: bool = True, diverge_threshold: float | None = None,
          desc: str | None = None, num_threads: int | None = 1, before_step: Callable | None = None) -> History:
    """Train ``model`` in place for ``steps`` mini-batch updates and return its :class:`History`.

    ``seed`` (default: the book's base seed) fixes the batch order and any randomness during training
    (dropout, noisy BN) without touching the global random state; seed the model's init yourself, or use
    :func:`run_seeds`. Whole-set metrics are evaluated at step 0, every ``eval_every`` steps (default
    ``steps // 20``) and at the end. ``callback(model, step)`` runs at step 0 and every ``callback_every`` steps
    (default ``eval_every``) after the update, when ``p.grad`` still holds that step's gradient; non-None return
    values go to ``History.probes``. A loss that :func:`has_diverged` (non-finite or above
    ``diverge_threshold``, default :func:`divergence_limit` of the initial training loss) stops the run and
    marks it diverged.

    ``before_step(model)`` (optional) runs at every update after ``loss.backward()`` and before the optimizer
    step, when ``p.grad`` holds the mini-batch gradient it may change in place: the place for gradient clipping,
    e.g. ``before_step=lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)`` (Pascanu et al. 2013).

    ``num_threads=1`` runs torch on one thread during training (restored afterwards): the book's nets are too
    small to gain from more, and on a busy 2-core machine two threads per process made runs up to 10x slower.
    ``None`` keeps torch's setting.
    """
    _check_args(model, data, steps, lr, batch_size, eval_every, callback_every)
    if before_step is not None and not callable(before_step):
        raise TypeError(f"before_step must be a function before_step(model), got {type(before_step).__name__}")
    loss_fn = _loss_fn(loss, data)
    opt = _optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    seed = base_seed() if seed is None else int(seed)
    eval_every = eval_every or max(1, steps // 20)
    callback_every = callback_every or eval_every
    history = History(seed=seed, lr=lr)
    start = time.perf_counter()
    with threads(num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stream = _batch_stream(data, batch_size, torch.Generator().manual_seed(seed))
        with progress_bar(total=steps, progress=progress, desc=desc, leave=False) as bar:
            _run(model, data, steps, loss_fn, opt, stream, eval_every, callback, callback_every, diverge_threshold,
                 history, bar, before_step)
    history.seconds = time.perf_counter() - start
    return history


def _run(model, data, steps, loss_fn, opt, stream, eval_every, callback, callback_every, threshold, history, bar,
         before_step=None):
    if not _evaluate(model, data, loss_fn, history, 0):
        history.diverged, history.diverged_at = True, 0
        return
    limit = divergence_limit(history.train_loss[0]) if threshold is None else threshold
    if callback is not None:
        _probe(callback, model, 0, history)
    model.train()
    for step in range(1, steps + 1):
        xb, yb = next(stream)
        loss = loss_fn(model(xb), yb)
        value = loss.item()
        if has_diverged(value, limit):
            history.diverged, history.diverged_at = True, step
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:
            before_step(model)
        opt.step()
        history.step_loss.append(value)
        bar.update()
        if step % eval_every == 0 or step == steps:
            if not _evaluate(model, data, loss_fn, history, step):
                history.diverged, history.diverged_at = True, step
                break
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3g}", refresh=False)
        if callback is not None and step % callback_every == 0:
            _probe(callback, model, step, history)


def run_seeds(make_model: Callable[[], torch.nn.Module], data: Dataset, seeds=3, progress: bool = True,
              desc: str | None = None, **train_kwargs) -> Runs:
    """Train a fresh ``make_model()`` per seed; the seed fixes both the init and the batch order.

    ``seeds`` is a list of seeds or a count ``n`` (then :func:`bnbook.seeding.seeds` gives ``n`` seeds from the
    book's base seed, so ``BNBOOK_SEED`` moves them). Other keyword arguments go to :func:`train`. One progress
    bar counts the seeds. Returns :class:`Runs`: the histories, and the trained models in ``runs.models``.
    """
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = default_seeds(seeds)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if "seed" in train_kwargs or "progress" in train_kwargs:
        raise ValueError("run_seeds sets seed and progress itself; pass seeds=[...] and progress=...")
    histories, models = [], []
    for seed in progress_bar(seeds, progress=progress, desc=desc, leave=False):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make_model()
        histories.append(train(model, data, seed=seed, progress=False, **train_kwargs))
        models.append(model)
    return Runs(histories, models, seeds)
