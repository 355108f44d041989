"""Chapter "Training without normalization": BN next to Fixup, normalizer-free nets and gradient clipping.

The networks are the toolkit's: :func:`bnbook.models.residual_mlp` (with BN, without normalization, or
with ``init='fixup'``) and :func:`bnbook.models.nf_residual_mlp` (scaled weight standardization).
Gradient clipping enters the toolkit's one training loop through its ``before_step`` hook
(:func:`bnbook.train.train`). This module holds the chapter's own pieces: :func:`adaptive_clip_`
(Brock et al.'s unit-wise adaptive gradient clipping), :func:`agc` and :func:`clip_norm` (the two
clipping hooks), :data:`METHODS` (the five recipes the chapter compares, each a model and a hook),
:func:`trains`, :func:`largest_stable_lr`, :func:`best_lr` and :func:`fastest_lr` (reading a
learning-rate sweep),
:func:`step_milliseconds` (what a training step costs), :func:`plot_at_lr` (the explorer) and the
exercises' self-checks ``check_*``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..models import nf_residual_mlp, residual_mlp
from ..seeding import generator
from ..selfcheck import as_tensor, call_answer, close, function_answer, numeric_answer, ok, wrong
from ..train import History

__all__ = [
    "unitwise_norm", "adaptive_clip_", "agc", "clip_norm", "Method", "METHODS", "trains", "largest_stable_lr",
    "best_lr", "fastest_lr", "step_milliseconds", "plot_at_lr", "fixup_scale", "check_agc", "check_fixup_scale",
    "check_agc_bound",
]


def unitwise_norm(t: torch.Tensor) -> torch.Tensor:
    """The norm of each unit's slice of ``t``: over each row (a unit's fan-in) of a weight matrix, the
    absolute value of each entry of a bias or scalar; shaped to broadcast against ``t``."""
    if t.ndim <= 1:
        return t.abs()
    return t.norm(dim=tuple(range(1, t.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_(parameters, clip: float = 0.01, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al. 2021), in place on ``p.grad``.

    For each unit (row of a weight matrix, entry of a bias or scalar) with weights ``w`` and gradient ``g``,
    ``g`` is rescaled to norm ``clip * max(||w||, eps)`` when it is larger: a step of SGD with learning rate
    ``lr`` then changes no unit's weights by more than ``lr * clip`` of their norm. ``eps`` keeps
    zero-initialized weights from being frozen (they may move by ``clip * eps`` per unit of learning rate).
    """
    if not clip > 0 or not eps > 0:
        raise ValueError(f"clip and eps must be positive, got clip={clip}, eps={eps}")
    for p in parameters:
        if p.grad is not None:
            limit = clip * unitwise_norm(p).clamp_min(eps)
            p.grad.mul_((limit / unitwise_norm(p.grad).clamp_min(1e-12)).clamp_max(1.0))


def agc(clip: float = 0.01, eps: float = 1e-3, skip: tuple[str, ...] = ("head.out.",)) -> Callable:
    """A ``before_step`` hook for :func:`bnbook.train.train` that applies :func:`adaptive_clip_` to every
    parameter except those whose name starts with one of ``skip`` (Brock et al. leave the classifier out)."""
    def hook(model):
        adaptive_clip_([p for n, p in model.named_parameters() if not n.startswith(skip)], clip, eps)
    return hook


def clip_norm(max_norm: float = 1.0) -> Callable:
    """A ``before_step`` hook: global gradient-norm clipping (Pascanu et al. 2013) with
    ``torch.nn.utils.clip_grad_norm_`` (the whole gradient rescaled to norm ``max_norm`` when larger)."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    return lambda model: torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


@dataclass(frozen=True)
class Method:
    """One recipe: ``make(in_features, width, n_blocks, out_features)`` builds the model, ``hook()`` gives its
    ``before_step`` (None: none), ``extra`` names the hyperparameters it adds to plain SGD."""
    label: str
    make: Callable
    hook: Callable | None
    extra: str
    color: str


METHODS = {
    "bn": Method("BN", lambda i, w, n, o: residual_mlp(i, w, n, o, norm="bn"), None,
                 "none (BN's eps and momentum keep their defaults)", "#0072B2"),
    "none": Method("no normalization", lambda i, w, n, o: residual_mlp(i, w, n, o, init="he"), None, "none",
                   "#7f7f7f"),
    "clip": Method("gradient clipping", lambda i, w, n, o: residual_mlp(i, w, n, o, init="he"),
                   lambda: clip_norm(1.0), "the clipping threshold (1.0)", "#E69F00"),
    "fixup": Method("Fixup", lambda i, w, n, o: residual_mlp(i, w, n, o, init="fixup"), None,
                    "none (the init is set by the depth)", "#D55E00"),
    "nf": Method("NF: scaled WS + AGC", lambda i, w, n, o: nf_residual_mlp(i, w, n, o, alpha=0.2),
                 lambda: agc(0.01), "alpha (0.2) and the AGC threshold (0.01)", "#009E73"),
}
"""The five recipes on one residual MLP. BN keeps torch's default init (BN undoes the weights' scale);
"none" and "clip" use He init, the standard init that Fixup rescales."""


def trains(history: History, min_acc: float) -> bool:
    """True if a run did not diverge and ended with test accuracy at least ``min_acc``."""
    return not history.diverged and history.final("test_acc") >= min_acc


def largest_stable_lr(lrs, runs_per_lr, min_acc: float) -> float:
    """The largest learning rate of the grid at which every seed :func:`trains`; 0.0 if there is none."""
    good = [lr for lr, runs in zip(lrs, runs_per_lr) if all(trains(h, min_acc) for h in runs)]
    return max(good, default=0.0)


def best_lr(lrs, runs_per_lr) -> tuple[float, int]:
    """``(lr, index)`` of the grid's learning rate with the highest median final test accuracy (a diverged
    seed counts as 0)."""
    medians = [np.median([0.0 if h.diverged else h.final("test_acc") for h in runs]) for runs in runs_per_lr]
    i = int(np.argmax(medians))
    return lrs[i], i


def fastest_lr(lrs, runs_per_lr, target: float) -> tuple[float, int, float]:
    """``(lr, index, steps)``: the grid's learning rate at which every seed reaches test accuracy ``target``
    soonest; ``steps`` is the slowest seed's first evaluated step at ``target`` (inf if some seed never gets
    there or diverged: then the lr is :func:`best_lr`'s). Ties go to the higher median final accuracy."""
    def slowest(runs):
        steps = [None if h.diverged else h.first_step("test_acc", target) for h in runs]
        return math.inf if None in steps else max(steps)

    def median(runs):
        return np.median([0.0 if h.diverged else h.final("test_acc") for h in runs])

    keys = [(slowest(runs), -median(runs), i) for i, runs in enumerate(runs_per_lr)]
    steps, _, i = min(keys)
    if math.isinf(steps):
        lr, i = best_lr(lrs, runs_per_lr)
        return lr, i, math.inf
    return lrs[i], i, steps


def step_milliseconds(models: dict, hooks: dict, x, y, lr: float = 0.01, steps: int = 30, repeats: int = 5) -> dict:
    """Milliseconds per SGD step (forward, backward, hook, update) of each model on the batch ``(x, y)``.

    The models take turns, ``repeats`` rounds of ``steps`` steps each, and each gets the median of its rounds,
    so a busy machine slows them alike. Steps run on copies; the models are not changed.
    """
    copies = {k: copy.deepcopy(m).train() for k, m in models.items()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=lr) for k, m in copies.items()}
    times = {k: [] for k in copies}
    for _ in range(repeats):
        for k, model in copies.items():
            start = time.perf_counter()
            for _ in range(steps):
                opts[k].zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                if hooks.get(k) is not None:
                    hooks[k](model)
                opts[k].step()
            times[k].append((time.perf_counter() - start) / steps * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def plot_at_lr(fig, lr, results, lrs, methods=None):
    """Explorer: test accuracy during training of every method at learning rate ``lr`` (a value of ``lrs``).

    ``results[method][i]`` is the list of :class:`bnbook.train.History` (one per seed) at ``lrs[i]``. The
    median over seeds is a line, the range a band; a diverged seed is a dotted line ending in an x.
    """
    from ..plots import seed_band
    i = int(np.argmin([abs(math.log(lr / v)) for v in lrs]))
    ax = fig.add_subplot()
    for key in methods or results:
        m = METHODS[key]
        seed_band(ax, results[key][i], label=m.label, color=m.color)
    ax.set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1), title=f"learning rate {lrs[i]:g}")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return ax


# --- the exercises' self-checks ---------------------------------------------------------------------


def _reference_agc(grad, weight, clip, eps):
    limit = clip * unitwise_norm(weight).clamp_min(eps)
    norm = unitwise_norm(grad)
    return torch.where(norm > limit, grad * limit / norm.clamp_min(1e-12), grad)


def check_agc(fn) -> bool | None:
    """Self-check for ``fn(grad, weight, clip, eps)``: AGC of one weight matrix's gradient, row by row."""
    fn, verdict = function_answer(fn, "my_agc", "check_agc(my_agc)")
    if fn is None:
        return verdict
    g = generator(0, offset=11)
    weight = torch.randn(6, 5, generator=g, dtype=torch.float64)
    weight[2] = 0.0  # a zero row: eps decides
    grad = torch.randn(6, 5, generator=g, dtype=torch.float64) * torch.tensor([[0.001], [5.0], [1.0], [0.0],
                                                                              [0.02], [3.0]], dtype=torch.float64)
    clip, eps = 0.1, 1e-3
    want = _reference_agc(grad, weight, clip, eps)
    got, verdict = call_answer(fn, grad.clone(), weight.clone(), clip, eps,
                               signature="fn(grad, weight, clip, eps) with grad and weight of shape (6, 5)")
    if verdict is not None:
        return verdict
    got = as_tensor(got)
    if close(got, want, rtol=1e-6, atol=1e-12):
        return ok("right: each row's gradient is at most clip * max(||row of W||, eps) long, and short rows "
                  "are left alone.")
    if got is None or got.shape != want.shape:
        return wrong(f"return the clipped gradient, a tensor of shape {tuple(want.shape)}")
    if close(got, grad):
        return wrong("nothing was clipped: compare each row's gradient norm with clip * max(||W_row||, eps)")
    whole = grad * min(1.0, (clip * weight.norm() / grad.norm()).item())
    if close(got, whole):
        return wrong("that clips the whole matrix at once; AGC is unit-wise: one norm per row (dim=1)")
    no_eps = _reference_agc(grad, weight, clip, 0.0)
    if close(got, no_eps, atol=1e-12):
        return wrong("a zero row of W is frozen: use max(||W_row||, eps) so it can still move")
    return wrong("not quite: rows whose gradient is longer than clip * max(||W_row||, eps) must be rescaled to "
                 "exactly that length, keeping their direction")


def fixup_scale(n_blocks: int, m: int) -> float:
    """Fixup's factor for the weight layers inside a residual branch: ``L ** (-1 / (2m - 2))``."""
    return n_blocks ** (-1.0 / (2 * m - 2))


def check_fixup_scale(fn) -> bool | None:
    """Self-check for ``fn(n_blocks, m)``: Fixup's rescaling factor for ``m`` layers per branch."""
    fn, verdict = function_answer(fn, "my_fixup_scale", "check_fixup_scale(my_fixup_scale)")
    if fn is None:
        return verdict
    cases = [(8, 2), (16, 2), (100, 3), (1000, 2), (50, 4)]
    for n, m in cases:
        got, verdict = call_answer(fn, n, m, signature="fn(n_blocks, m) with two integers")
        if verdict is not None:
            return verdict
        if got is None:
            return wrong("your function returned None: end it with return <the factor>")
        got, verdict = numeric_answer(got, f"my_fixup_scale({n}, {m})")
        if verdict is not None:
            return verdict
        want = fixup_scale(n, m)
        if not math.isclose(got, want, rel_tol=1e-6):
            hint = ("that is L^(-1/(2m)); the exponent is -1/(2m - 2)" if math.isclose(got, n ** (-1 / (2 * m)))
                    else "that grows with depth; the factor must shrink" if got > 1
                    else "not the exponent -1/(2m - 2)")
            return wrong(f"my_fixup_scale({n}, {m}) = {got:.4g}, expected {want:.4g}: {hint}")
    return ok("right: L^(-1/(2m-2)); with m = 2 layers per branch, 1/sqrt(L).")


def check_agc_bound(answer, lr: float = 0.3, clip: float = 0.02) -> bool | None:
    """Self-check: the largest relative change ``||dW_i|| / ||W_i||`` of a unit in one plain SGD step with
    AGC (``lr``, ``clip``), for a unit whose weights are longer than eps."""
    value, verdict = numeric_answer(answer, "the largest relative change")
    if value is None:
        return verdict
    want = lr * clip
    if math.isclose(value, want, rel_tol=1e-6):
        return ok(f"right: ||dW_i|| = lr ||G_i|| <= lr * clip * ||W_i||, so at most {want:g}.")
    if math.isclose(value, clip, rel_tol=1e-6):
        return wrong("that is the bound on the gradient; the step is the gradient times the learning rate")
    if math.isclose(value, lr, rel_tol=1e-6):
        return wrong("the learning rate alone does not bound the step: the clipped gradient's length does")
    return wrong(f"not {value:g}: write ||dW_i|| = lr ||G_i|| and use AGC's bound on ||G_i||")
