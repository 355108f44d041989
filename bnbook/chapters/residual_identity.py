"""Chapter "Residual networks and the identity": how BN scales a residual network's branches.

The networks are the toolkit's :func:`bnbook.models.residual_mlp` (``head_norm`` places a
normalization before the head, ``init='he'`` gives He et al.'s initialization). This module holds
the chapter's probes: :func:`stream_moments` measures the residual stream and each branch's
contribution at initialization, :func:`per_block_factor` and :func:`linear_fit` summarize how the
stream grows, :func:`predicted_moments` is the signal-propagation formula the chapter derives,
and :func:`trains` / :func:`largest_lr` read a learning-rate sweep. :func:`plot_stream` is the
chapter's widget; ``check_*`` are its exercise self-checks.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..measure import probing
from ..models import residual_mlp
from ..seeding import generator
from ..selfcheck import call_answer, function_answer, numeric_answer, ok, wrong
from ..train import History

__all__ = [
    "stream_moments", "per_block_factor", "linear_fit", "predicted_moments", "trains", "largest_lr",
    "plot_stream", "check_stream_moments", "check_largest_lr", "check_alpha",
]


def _mean_square(h: torch.Tensor) -> float:
    return h.double().pow(2).mean().item()


@torch.no_grad()
def stream_moments(model, x) -> tuple[np.ndarray, np.ndarray]:
    """The residual stream of a :func:`bnbook.models.residual_mlp` on the batch ``x``, at every depth.

    Returns ``(stream, branch)``: ``stream[l]`` is the mean square (over examples and features) of the
    stream after ``l`` blocks (``stream[0]``: the stem's output), ``branch[l]`` that of what block
    ``l + 1`` adds to it (its branch times its SkipInit scalar, if any). The mean square is the
    variance about zero that signal-propagation analyses follow (De and Smith 2020). BN normalizes
    with the statistics of ``x`` (training mode); the model is left as it was (mode and running
    statistics, :func:`bnbook.measure.probing`).
    """
    if not (hasattr(model, "stem") and hasattr(model, "blocks")):
        raise ValueError("stream_moments needs a bnbook.models.residual_mlp (a model with .stem and .blocks)")
    stream, branch = [], []
    with probing(model, train_mode=True):
        h = model.stem(x)
        stream.append(_mean_square(h))
        for block in model.blocks:
            out = block(h)
            branch.append(_mean_square(out - h))
            h = out
            stream.append(_mean_square(h))
    return np.array(stream), np.array(branch)


def per_block_factor(stream) -> float:
    """The geometric mean of ``stream[l + 1] / stream[l]``: how much one block multiplies the stream."""
    stream = np.asarray(stream, dtype=float)
    if len(stream) < 2 or not (stream > 0).all():
        raise ValueError("need at least two positive values")
    return float(np.exp(np.mean(np.diff(np.log(stream)))))


def linear_fit(stream) -> tuple[float, float]:
    """``(slope, r2)`` of a least-squares line through ``stream[l]`` against ``l``."""
    stream = np.asarray(stream, dtype=float)
    depth = np.arange(len(stream))
    slope, intercept = np.polyfit(depth, stream, 1)
    residual = stream - (slope * depth + intercept)
    r2 = 1.0 - residual.var() / stream.var() if stream.var() > 0 else 1.0
    return float(slope), float(r2)


def predicted_moments(n_blocks: int, start: float, alpha: float = 1.0, norm: str | None = None) -> np.ndarray:
    """The stream's mean square after 0..``n_blocks`` blocks at He initialization, from the chapter's
    recursion: with BN at the branch's entrance each block adds ``alpha^2`` (the branch's own mean square
    is 1 whatever the stream's), without normalization it multiplies by ``1 + alpha^2`` (a He-initialized
    ReLU branch returns the mean square it receives). ``alpha`` scales every branch (SkipInit's scalar)."""
    depth = np.arange(n_blocks + 1)
    if norm == "bn":
        return start + alpha ** 2 * depth
    if norm is not None:
        raise ValueError(f"norm must be None or 'bn', got {norm!r}")
    return start * (1.0 + alpha ** 2) ** depth


# --- reading a learning-rate sweep ------------------------------------------------------------

def trains(history: History, max_loss: float) -> bool:
    """True if a run did not diverge (:func:`bnbook.train.has_diverged` stopped it) and its final
    training loss (whole training set, eval mode) is below ``max_loss``."""
    loss = history.final("train_loss")
    return not history.diverged and math.isfinite(loss) and loss < max_loss


def largest_lr(lrs, runs_per_lr, max_loss: float) -> list:
    """Per seed, the largest learning rate of the grid at which the run :func:`trains` (None if none).

    ``runs_per_lr[i]`` holds the runs (one per seed, in the same seed order) trained with ``lrs[i]``.
    """
    if len(lrs) != len(runs_per_lr):
        raise ValueError(f"got {len(lrs)} learning rates but {len(runs_per_lr)} lists of runs")
    n_seeds = {len(runs) for runs in runs_per_lr}
    if len(n_seeds) != 1:
        raise ValueError(f"every learning rate needs the same number of runs, got {sorted(n_seeds)}")
    out = []
    for k in range(n_seeds.pop()):
        good = [lr for lr, runs in zip(lrs, runs_per_lr) if trains(runs[k], max_loss)]
        out.append(max(good) if good else None)
    return out


# --- the widget ---------------------------------------------------------------------------------

def plot_stream(fig, n_blocks: int = 16, alpha: float = 1.0, norm: str = "none", width: int = 64,
                seed=None) -> float:
    """The widget: the residual stream's mean square after each block of a He-initialized residual MLP
    whose branches are all scaled by ``alpha`` (``norm='bn'``: BN in the branches and none before the
    head), measured on 512 standard normal inputs and next to :func:`predicted_moments`.

    Left: the stream's mean square against depth (log scale). Right: the relative size of what each block
    adds, ``sqrt(branch / stream)``. Returns ``(growth, predicted)``: the stream's growth
    ``stream[-1] / stream[0]`` (also in the title) and the growth :func:`predicted_moments` gives.
    """
    if norm not in ("none", "bn"):
        raise ValueError(f"norm must be 'none' or 'bn', got {norm!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator(seed).initial_seed())
        model = residual_mlp(width, width, n_blocks, 10, norm=None if norm == "none" else "bn",
                             skipinit=True, head_norm=None, init="he")
    with torch.no_grad():
        for block in model.blocks:
            block.alpha.fill_(alpha)
    x = torch.randn(512, width, generator=generator(seed, offset=1))
    stream, branch = stream_moments(model, x)
    predicted = predicted_moments(n_blocks, stream[0], alpha, None if norm == "none" else "bn")
    growth = stream[-1] / stream[0]
    ax_s, ax_b = fig.subplots(1, 2)
    depth = np.arange(n_blocks + 1)
    ax_s.plot(depth, stream, "o-", ms=3, color="#0072B2" if norm == "bn" else "#7f7f7f", label="measured")
    ax_s.plot(depth, predicted, "k--", lw=1, label="predicted")
    ax_s.set(yscale="log", xlabel="block l", ylabel="mean square of the stream",
             title=f"grows {growth:.3g}x over {n_blocks} blocks")
    ax_s.legend(fontsize="small")
    blocks = np.arange(1, n_blocks + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ax_b.plot(blocks, np.sqrt(branch / stream[:-1]), "o-", ms=3, color="#D55E00")
    ax_b.set(xlabel="block l", ylabel="|branch| / |stream|", ylim=(0, max(1.5, 1.2 * alpha)),
             title=f"alpha = {alpha:.2f}, norm = {norm}")
    fig.tight_layout()
    return float(growth), float(predicted[-1] / predicted[0])


# --- exercise self-checks -------------------------------------------------------------------------

def _check_model(seed=311):
    """A fixed case (the seed is a constant on purpose: a check must not move with BNBOOK_SEED)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = residual_mlp(8, width=16, n_blocks=5, out_features=3, norm="bn", init="he")
        x = torch.randn(64, 8) * 2 + 1
    return model, x


def check_stream_moments(fn):
    """Check ``fn(model, x)``: the mean square of the residual stream after 0, 1, ..., L blocks, BN in
    training mode, the model left unchanged."""
    fn, verdict = function_answer(fn, "the stream's mean square", "check_stream_moments(my_stream_moments)")
    if fn is None:
        return verdict
    model, x = _check_model()
    before = [b.clone() for b in model.buffers()]
    out, verdict = call_answer(fn, model, x.clone(), signature="fn(model, x) with a 5-block residual_mlp")
    if verdict is not None:
        return verdict
    try:
        got = np.asarray(torch.as_tensor(out, dtype=torch.float64), dtype=float).ravel()
    except (TypeError, ValueError, RuntimeError):
        return wrong(f"return a list or tensor of numbers, not {type(out).__name__}")
    want, _ = stream_moments(model, x)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.buffers()))
    if got.shape == want.shape and np.allclose(got, want, rtol=1e-4):
        if changed:
            return wrong("right numbers, but your function changed BN's running statistics: wrap the forward "
                         "passes in bnbook.measure.probing(model, train_mode=True)")
        return ok("the stream's mean square after each block, the stem's output first")
    if got.shape == want[1:].shape and np.allclose(got, want[1:], rtol=1e-4):
        return wrong("you left out the stem's output: the list starts at depth 0, before the first block")
    with probing(model, train_mode=True), torch.no_grad():
        h, variances = model.stem(x), []
        variances.append(h.var(0, correction=0).mean().item())
        for block in model.blocks:
            h = block(h)
            variances.append(h.var(0, correction=0).mean().item())
    if got.shape == want.shape and np.allclose(got, variances, rtol=1e-4):
        return wrong("that is the variance about each feature's mean; the chapter follows the mean square "
                     "(the variance about zero): h.pow(2).mean()")
    return wrong("not the stream's mean square: run model.stem, then each block of model.blocks in turn, "
                 "in training mode, and record h.pow(2).mean() before the first block and after each")


def _history(loss, diverged=False):
    """A hand-made run whose last evaluated training loss is ``loss``; a diverged one blew up after it."""
    h = History(lr=None)
    h.steps, h.train_loss = [0, 50], [2.3, loss]
    h.diverged, h.diverged_at = diverged, (57 if diverged else None)
    return h


def check_largest_lr(fn):
    """Check ``fn(lrs, runs_per_lr, max_loss)`` against :func:`largest_lr` on hand-made sweeps."""
    fn, verdict = function_answer(fn, "the largest learning rate that trains",
                                  "check_largest_lr(my_largest_lr)")
    if fn is None:
        return verdict
    lrs = [0.01, 0.1, 1.0]
    # [lr][seed] as (last loss, diverged): a run that diverged after a low loss, one that did not learn,
    # a seed that trains at no learning rate, a non-monotone sweep
    cases = [
        [[(0.2, False), (0.3, False)], [(0.1, False), (0.9, False)], [(0.05, True), (2.2, False)]],
        [[(0.4, False), (2.0, False)], [(3.0, False), (0.1, True)], [(0.3, False), (0.1, True)]],
    ]
    for case in cases:
        runs = [[_history(loss, div) for loss, div in row] for row in case]
        want = largest_lr(lrs, runs, 0.5)
        got, verdict = call_answer(fn, lrs, runs, 0.5, signature="fn(lrs, runs_per_lr, max_loss=0.5)")
        if verdict is not None:
            return verdict
        if isinstance(got, np.ndarray):
            got = got.tolist()
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return wrong(f"return one learning rate per seed (a list of {len(want)}), not {got!r:.60}")
        if list(got) == want:
            continue
        ignoring = largest_lr(lrs, [[_history(loss) for loss, _ in row] for row in case], 0.5)
        if list(got) == ignoring:
            return wrong("a diverged run did not train, whatever loss it had before: check history.diverged")
        return wrong(f"on a sweep where the answer is {want} you returned {list(got)}: per seed, take the "
                     "largest lr whose run did not diverge and ends with a training loss below max_loss "
                     "(None if there is none)")
    return ok("per seed, the largest learning rate whose run trained (None where none did)")


def check_alpha(answer, n_blocks: int = 16):
    """Check the reader's alpha: the branch scale with which the stream of a He-initialized residual MLP
    without normalization grows by exactly 2x over ``n_blocks`` blocks, (1 + alpha^2)^L = 2."""
    answer, verdict = numeric_answer(answer, "alpha")
    if answer is None:
        return verdict
    want = math.sqrt(2 ** (1 / n_blocks) - 1)
    if abs(answer - want) <= 1e-3 * want:
        return ok(f"alpha = sqrt(2^(1/{n_blocks}) - 1) = {want:.4f}")
    if abs(answer - math.sqrt(math.log(2) / n_blocks)) < 1e-4:
        return wrong("that is the small-alpha approximation (1 + alpha^2)^L ~ exp(L alpha^2); solve "
                     "(1 + alpha^2)^L = 2 exactly")
    if abs(answer - 1 / math.sqrt(n_blocks)) < 1e-4:
        return wrong(f"alpha = 1/sqrt(L) gives (1 + 1/L)^L = {(1 + 1 / n_blocks) ** n_blocks:.2f}, close to e, "
                     "not 2")
    if abs(answer - (2 ** (1 / n_blocks) - 1)) < 1e-4:
        return wrong("that is alpha^2: the branch's mean square scales with alpha squared")
    return wrong(f"{answer} is not it: each block multiplies the stream's mean square by (1 + alpha^2)")
