"""Chapter "BN at inference": running averages, recalibration, folding and the classic bugs.

Eval-mode BN normalizes with running averages collected during training
(:func:`bn_layers` finds the layers). :func:`recalibrated` recomputes them for the weights
the model has now, as ``torch.optim.swa_utils.update_bn`` does, and works for bnbook's
drop-in layers too (``update_bn`` only knows torch's own BN classes);
:func:`normalization_error` says how far apart two sets of statistics are in units a
reader can feel (standard deviations of the normalized value). :func:`fold_conv_bn` and
:func:`fold_cnn` merge eval-mode BatchNorm2d into the convolution before it (the
convolutional twin of :func:`bnbook.folding.fold_bn_into_previous`), and
:func:`speed_ratio` times two models against each other in one run. The bugs:
:func:`batch_dependence` (does a prediction change with its batch? then BN is in training
mode) and :func:`tracked_batches` (did a pass update the running statistics?).
:func:`plot_running_average` is the chapter's widget; ``check_*`` are its self-checks.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from ..layers import BatchNorm1d, BatchNorm2d
from ..measure import accuracy
from ..models import mlp, small_cnn
from ..selfcheck import as_tensor, call_answer, close, function_answer, numeric_answer, ok, wrong

__all__ = [
    "BN_TYPES", "bn_layers", "recalibrated", "normalization_error", "torch_twin",
    "fold_conv_bn", "fold_cnn", "parameter_count", "speed_ratio", "batch_dependence", "tracked_batches",
    "stats_recorder", "batch_statistics_of", "replay", "replay_error", "MOMENTA", "plot_running_average",
    "half_life", "check_fold_conv", "check_uses_batch_statistics", "check_half_life",
]

BN_TYPES = (BatchNorm1d, BatchNorm2d, nn.BatchNorm1d, nn.BatchNorm2d)


def bn_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The BN layers of ``model`` (bnbook's and torch's), by name, in order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: m for name, m in model.named_modules() if isinstance(m, BN_TYPES)}


@torch.no_grad()
def recalibrated(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> nn.Module:
    """A copy of ``model`` in eval mode whose BN running statistics are recomputed on ``x``.

    As ``torch.optim.swa_utils.update_bn``: reset the running statistics, set ``momentum=None``
    (a cumulative average: every batch weighs the same), run ``x`` through the copy in training
    mode, restore the momenta. ``batch_size=None`` passes all of ``x`` as one batch, which makes
    the statistics exactly the population mean and (unbiased) variance of each BN input over
    ``x`` for the current weights; each layer then sees the layers below normalized with their
    population statistics, as in eval mode. The model itself is not changed.
    """
    layers = bn_layers(model)
    if not layers:
        raise ValueError("the model has no BN layer: there are no statistics to recalibrate")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 2):
        raise ValueError(f"batch_size must be an integer >= 2 or None (one batch), got {batch_size!r}")
    twin = copy.deepcopy(model).train()
    momenta = {}
    for name, bn in bn_layers(twin).items():
        if bn.running_mean is None:
            raise ValueError(f"BN layer {name} keeps no running statistics (track_running_stats=False)")
        bn.reset_running_stats()
        momenta[name], bn.momentum = bn.momentum, None
    for chunk in ([x] if batch_size is None else torch.split(x, batch_size)):
        twin(chunk)
    for name, bn in bn_layers(twin).items():
        bn.momentum = momenta[name]
    return twin.eval()


def normalization_error(model: nn.Module, reference: nn.Module) -> dict[str, np.ndarray]:
    """Per BN layer and channel, how far ``model``'s eval-mode normalization is from ``reference``'s.

    With reference statistics ``mu, var`` and the model's ``m, v``, a value x normalized with the
    model's statistics, ``(x - m) / sqrt(v + eps)``, differs from ``(x - mu) / sqrt(var + eps)`` by a
    root mean square (over x with mean ``mu`` and variance ``var``) of
    ``sqrt(((mu - m) / s)^2 + (sigma / s - 1)^2)`` with ``s = sqrt(v + eps)``,
    ``sigma = sqrt(var + eps)``: in units of the normalized value, 0 for equal statistics.
    """
    mine, ref = bn_layers(model), bn_layers(reference)
    if list(mine) != list(ref):
        raise ValueError(f"the two models have different BN layers: {list(mine)} and {list(ref)}")
    out = {}
    for name, bn in mine.items():
        r = ref[name]
        s = torch.sqrt(bn.running_var + bn.eps)
        sigma = torch.sqrt(r.running_var + r.eps)
        err = torch.sqrt(((r.running_mean - bn.running_mean) / s) ** 2 + (sigma / s - 1) ** 2)
        out[name] = err.detach().cpu().numpy()
    return out


def torch_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every bnbook BN layer replaced by torch's own (same state_dict), so
    that tools which only know torch's classes (``torch.optim.swa_utils.update_bn``) act on it."""
    twin = copy.deepcopy(model)
    for name, bn in list(bn_layers(twin).items()):
        if not isinstance(bn, (BatchNorm1d, BatchNorm2d)):
            continue
        kind = nn.BatchNorm2d if isinstance(bn, BatchNorm2d) else nn.BatchNorm1d
        new = kind(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats)
        new.load_state_dict(bn.state_dict())
        new.train(bn.training)
        parent = twin.get_submodule(name.rpartition(".")[0]) if "." in name else twin
        setattr(parent, name.rpartition(".")[2], new)
    return twin


# --- folding for deployment -----------------------------------------------------------------

def fold_conv_bn(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """Merge an eval-mode BatchNorm2d into the Conv2d before it: one convolution for inference.

    Eval-mode BN scales channel ``k`` by ``s_k = gamma_k / sqrt(running_var_k + eps)`` and shifts it,
    so ``norm(conv(x)) == new_conv(x)`` with the filters of output channel ``k`` multiplied by ``s_k``
    and bias ``s * (b - running_mean) + beta``: :func:`bnbook.folding.fold_bn_into_previous` with a
    filter in place of a weight row.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    if not isinstance(norm, (BatchNorm2d, nn.BatchNorm2d)):
        raise TypeError(f"expected a BatchNorm2d (bnbook's or torch's), got {type(norm).__name__}")
    if norm.num_features != conv.out_channels:
        raise ValueError(f"the BN layer has {norm.num_features} channels but the convolution has "
                         f"{conv.out_channels} output channels")
    if norm.running_mean is None:
        raise ValueError("the BN layer keeps no running statistics, so eval mode uses batch statistics "
                         "and it cannot be folded")
    w = conv.weight.detach()
    ones = torch.ones(norm.num_features, dtype=w.dtype)
    gamma = norm.weight.detach() if norm.weight is not None else ones
    beta = norm.bias.detach() if norm.bias is not None else torch.zeros_like(ones)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(ones)
    s = gamma / torch.sqrt(norm.running_var + norm.eps)
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                    padding_mode=conv.padding_mode, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w * s[:, None, None, None])
        new.bias.copy_(s * (b - norm.running_mean) + beta)
    return new


def fold_cnn(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` (e.g. :func:`bnbook.models.small_cnn`) in eval mode with every
    BatchNorm2d that directly follows a Conv2d merged into it (:func:`fold_conv_bn`) and replaced
    by ``nn.Identity``."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential such as bnbook.models.small_cnn(...), got "
                        f"{type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    names = list(folded._modules)
    pairs = [(a, b) for a, b in zip(names, names[1:]) if isinstance(folded._modules[a], nn.Conv2d)
             and isinstance(folded._modules[b], (BatchNorm2d, nn.BatchNorm2d))]
    if not pairs:
        raise ValueError("no Conv2d is directly followed by a BatchNorm2d: nothing to fold")
    for a, b in pairs:
        folded._modules[a] = fold_conv_bn(folded._modules[a], folded._modules[b])
        folded._modules[b] = nn.Identity()
    return folded.eval()


def parameter_count(model: nn.Module) -> int:
    """Learned numbers a deployed model stores: parameters plus BN's running statistics."""
    stats = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return sum(p.numel() for p in model.parameters()) + stats


@torch.no_grad()
def speed_ratio(model: nn.Module, other: nn.Module, x: torch.Tensor, repeats: int = 15,
                number: int = 5) -> float:
    """``other``'s eval-mode forward time on ``x`` divided by ``model``'s, measured in one run.

    The two are timed in alternation (``number`` forward passes per timing, ``repeats`` timings
    each) on one thread, and the ratio of the *fastest* timings is returned: on a shared machine
    other processes only ever slow a timing down, so the minimum is the least disturbed estimate.
    Below 1: ``other`` is faster. A ratio, never an absolute time.
    """
    if repeats < 1 or number < 1:
        raise ValueError(f"repeats and number must be positive, got {repeats} and {number}")
    best = [float("inf"), float("inf")]
    modes = [(m, m.training) for m in (model, other)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for m, _ in modes:
            m.eval()
            m(x)  # warm up
        for _ in range(repeats):
            for i, (m, _) in enumerate(modes):
                start = time.perf_counter()
                for _ in range(number):
                    m(x)
                best[i] = min(best[i], time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        for m, was_training in modes:
            m.train(was_training)
    return best[1] / best[0]


# --- the classic bugs, and how to catch them --------------------------------------------------

@torch.no_grad()
def batch_dependence(model: nn.Module, x: torch.Tensor, chunk: int = 1) -> float:
    """The largest change of ``model``'s outputs on ``x`` when ``x`` is passed in chunks of ``chunk``
    examples instead of all at once, in the model's *current* mode; its BN running statistics are
    restored afterwards. 0 (to rounding) in eval mode: a prediction must not depend on the rest of its
    batch. Far from 0: some BN layer is in training mode (forgotten ``model.eval()``)."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        whole = model(x)
        parts = torch.cat([model(c) for c in torch.split(x, chunk)])
    finally:
        for b, value in saved:
            b.copy_(value)
    return (whole - parts).abs().max().item()


def tracked_batches(model: nn.Module) -> int:
    """The total ``num_batches_tracked`` of ``model``'s BN layers: it grows by one per layer with
    every training-mode forward pass, also under ``torch.no_grad()``, and never in eval mode, so
    comparing it before and after an evaluation catches a pass that updated the running statistics."""
    return sum(int(bn.num_batches_tracked) for bn in bn_layers(model).values()
               if bn.num_batches_tracked is not None)


# --- the running average, replayed (the chapter's widget) --------------------------------------

def stats_recorder(x, layer: str, every: int = 10, x_test=None, y_test=None):
    """A ``callback`` for :func:`bnbook.train.train` (run it with ``callback_every=1``) that records
    what BN layer ``layer`` keeps and what it should keep.

    Each step it returns ``{"running": (mean, var)}``, the layer's running statistics after that step's
    update; every ``every`` steps also ``"population": (mean, var)``, the statistics of the layer's input
    over ``x`` for the weights at that step (:func:`recalibrated`), and, given ``x_test`` and ``y_test``,
    ``"accuracy"``: the eval-mode test accuracy with the running statistics and with the recalibrated
    ones. :func:`replay` recovers each batch's own statistics from the running ones and averages them
    again with any momentum.
    """
    def record(model, step):
        bn = dict(model.named_modules())[layer]
        row = {"running": (bn.running_mean.clone(), bn.running_var.clone())}
        if step % every == 0:
            fresh = recalibrated(model, x)
            pop = dict(fresh.named_modules())[layer]
            row["population"] = (pop.running_mean.clone(), pop.running_var.clone())
            if x_test is not None:
                row["accuracy"] = (accuracy(model, x_test, y_test), accuracy(fresh, x_test, y_test))
        return row
    return record


def batch_statistics_of(probes, momentum: float = 0.1):
    """Each step's batch mean and (unbiased) batch variance, per channel, recovered from the running
    statistics recorded by :func:`stats_recorder` (trained with ``momentum``): the update
    ``r_t = (1 - momentum) r_{t-1} + momentum b_t`` solved for ``b_t``. Returns (steps, means, vars)."""
    steps = [s for s, _ in probes]
    if steps != list(range(steps[0], steps[0] + len(steps))):
        raise ValueError("the probes must be recorded at every step (train with callback_every=1)")
    run = [torch.stack([row["running"][i] for _, row in probes]) for i in (0, 1)]
    batch = [(r[1:] - (1 - momentum) * r[:-1]) / momentum for r in run]
    return np.array(steps[1:]), batch[0].numpy(), batch[1].numpy()


def replay(probes, momentum: float, trained_momentum: float = 0.1):
    """The running mean and variance the layer would have kept with another ``momentum``: the
    exponential moving average (starting, like BN, from mean 0 and variance 1) of the recorded batch
    statistics. Returns (steps, means, vars), one row per step."""
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum must be in (0, 1], got {momentum}")
    steps, means, variances = batch_statistics_of(probes, trained_momentum)
    out_m, out_v = np.empty_like(means), np.empty_like(variances)
    m, v = np.zeros(means.shape[1]), np.ones(means.shape[1])
    for t in range(len(steps)):
        m = (1 - momentum) * m + momentum * means[t]
        v = (1 - momentum) * v + momentum * variances[t]
        out_m[t], out_v[t] = m, v
    return steps, out_m, out_v


def replay_error(probes, momentum: float, start: int = 0, stop: int | None = None,
                 eps: float = 1e-5) -> float:
    """The mean over channels and recorded population steps in ``[start, stop]`` of the normalization
    error (:func:`normalization_error`) of the running statistics replayed with ``momentum``."""
    steps, m, v = replay(probes, momentum)
    index = {int(s): i for i, s in enumerate(steps)}
    errors = []
    for step, row in probes:
        if "population" not in row or step not in index or step < start or (stop is not None and step > stop):
            continue
        mu, var = (t.numpy() for t in row["population"])
        s = np.sqrt(v[index[step]] + eps)
        errors.append(np.sqrt(((mu - m[index[step]]) / s) ** 2 + (np.sqrt(var + eps) / s - 1) ** 2))
    if not errors:
        raise ValueError(f"no population statistics recorded between steps {start} and {stop}")
    return float(np.mean(errors))


MOMENTA = np.geomspace(0.01, 1.0, 25)


def plot_running_average(fig, momentum: float = 0.1, network: str | None = None, records=None,
                         channel: int = 0):
    """The explorer: one BN layer's running mean, replayed with another ``momentum``.

    ``records`` maps a network's name to ``(probes, decay_step)``: the :func:`stats_recorder` probes of
    one training run (recorded at every step) and the step where the learning rate was lowered. Left:
    channel ``channel``'s batch means (dots), its running mean replayed with ``momentum`` (line) and the
    population mean for the weights of that step (crosses). Right: :func:`replay_error` against the
    momentum, before and after the decay, with ``momentum`` marked. Returns the error at ``momentum``
    before the decay.
    """
    if not records:
        raise ValueError("records must map a network's name to (probes, decay_step)")
    network = next(iter(records)) if network is None else network
    if network not in records:
        raise ValueError(f"unknown network {network!r}; recorded: {', '.join(records)}")
    probes, decay = records[network]
    steps, means, _ = batch_statistics_of(probes)
    _, run_m, _ = replay(probes, momentum)
    pop = [(s, row["population"][0][channel].item()) for s, row in probes if "population" in row]
    ax, ax_err = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    ax.plot(steps, means[:, channel], ".", ms=3, color="0.6", label="batch mean")
    ax.plot(steps, run_m[:, channel], color="#0072B2", lw=1.8, label=f"running mean, momentum {momentum:.2g}")
    ax.plot(*zip(*pop), "kx", ms=7, mew=2, label="population mean")
    ax.axvline(decay, color="0.3", ls=":", lw=1)
    ax.set(xlabel="training step", ylabel=f"BN input, channel {channel}", title=network)
    ax.legend(fontsize="small", loc="best")
    errors = {}
    for label, start, stop, color in [("high learning rate", 25, decay, "#D55E00"),
                                      ("after the decay", decay + 10, None, "#009E73")]:
        curve = [replay_error(probes, m, start, stop) for m in MOMENTA]
        ax_err.plot(MOMENTA, curve, color=color, label=label)
        errors[label] = replay_error(probes, momentum, start, stop)
        ax_err.plot([momentum], [errors[label]], "o", color=color)
    ax_err.axvline(0.1, color="0.5", ls="--", lw=1, label="torch's default 0.1")
    ax_err.set(xscale="log", xlabel="momentum", ylabel="normalization error (std)",
               title=f"error {errors['high learning rate']:.3f} / {errors['after the decay']:.3f}")
    ax_err.legend(fontsize="small")
    fig.tight_layout()
    return errors["high learning rate"]


# --- exercise self-checks ------------------------------------------------------------------

def _conv_case():
    """A fixed case (constant seed on purpose: a check's case must not move with BNBOOK_SEED)."""
    g = torch.Generator().manual_seed(811)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    mean = torch.randn(3, generator=g, dtype=torch.float64)
    var = torch.rand(3, generator=g, dtype=torch.float64) * 2 + 1e-3
    gamma = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(3, generator=g, dtype=torch.float64)
    return w, b, mean, var, gamma, beta


def check_fold_conv(fn, eps=1e-5):
    """Check ``fn(W, b, mean, var, gamma, beta, eps) -> (W', b')`` for a Conv2d weight ``W`` of shape
    (out, in, kh, kw): eval-mode BatchNorm2d after the convolution equals the convolution (W', b')."""
    fn, verdict = function_answer(fn, "folding BN into a convolution",
                                  "check_fold_conv(my_fold_conv)")
    if fn is None:
        return verdict
    args = _conv_case()
    out, verdict = call_answer(fn, *(a.clone() for a in args), eps,
                               signature="fn(W, b, mean, var, gamma, beta, eps) with W of shape (3, 2, 3, 3)")
    if verdict is not None:
        return verdict
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return wrong(f"return the pair (W2, b2), not {type(out).__name__} {out!r:.40}")
    new_w, new_b = (as_tensor(o) for o in out)
    if new_w is None or new_b is None:
        return wrong("W2 and b2 must be tensors (or arrays) of numbers")
    w, b, mean, var, gamma, beta = args
    s = gamma / torch.sqrt(var + eps)
    want_w, want_b = w * s[:, None, None, None], s * (b - mean) + beta

    def same(x, y):
        return close(x, y, rtol=1e-9, atol=1e-12)
    if new_w.shape != want_w.shape or new_b.shape != want_b.shape:
        return wrong(f"W2 should have W's shape {tuple(w.shape)} and b2 the shape {tuple(b.shape)}: "
                     "one number per output channel")
    if same(new_w, want_w) and same(new_b, want_b):
        return ok("W2 = s[:, None, None, None] * W and b2 = s (b - mean) + beta, s = gamma / sqrt(var + eps): "
                  "every filter of output channel k scaled by s_k")
    if same(new_w, w * (gamma / torch.sqrt(var))[:, None, None, None]):
        return wrong("eps is missing: divide by sqrt(var + eps)")
    if same(new_w, w * (gamma / (var + eps))[:, None, None, None]):
        return wrong("divide by the standard deviation sqrt(var + eps), not by the variance")
    if same(new_w, want_w):
        if same(new_b, s * b + beta - mean):
            return wrong("the running mean is subtracted after scaling: b2 = s (b - mean) + beta")
        if same(new_b, beta - s * mean):
            return wrong("the convolution's own bias b is lost: b2 = s (b - mean) + beta")
        return wrong("W2 is right, b2 is not: b2 = s (b - mean) + beta")
    return wrong("W2 is not right: BN scales each OUTPUT channel, so s multiplies W along its first "
                 "dimension, W2 = s[:, None, None, None] * W")


def _bug_cases():
    """(description, model, uses batch statistics?) for :func:`check_uses_batch_statistics`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(812)  # fixed on purpose, like _conv_case
        cases = [("an MLP with BN in eval mode", mlp(4, (6, 6), 3, norm="bn").eval(), False),
                 ("an MLP with BN in training mode", mlp(4, (6, 6), 3, norm="bn").train(), True),
                 ("a CNN with BatchNorm2d in eval mode", small_cnn(norm="bn", width=4).eval(), False),
                 ("a CNN with BatchNorm2d in training mode", small_cnn(norm="bn", width=4).train(), True),
                 ("an MLP without BN in training mode", mlp(4, (6,), 3).train(), False)]
        one = mlp(4, (6, 6), 3, norm="bn").eval()
        one.norm2.train()  # a model in eval mode except one BN layer
        cases.append(("an MLP in eval mode whose second BN layer alone is in training mode", one, True))
        no_stats = nn.Sequential(nn.Linear(4, 6), BatchNorm1d(6, track_running_stats=False)).eval()
        cases.append(("a BN layer without running statistics, in eval mode", no_stats, True))
    return cases


def check_uses_batch_statistics(fn):
    """Check ``fn(model) -> bool``: True exactly when some BN layer of ``model`` would normalize with
    the statistics of the batch (training mode, or no running statistics to use)."""
    fn, verdict = function_answer(fn, "the bug detector", "check_uses_batch_statistics(my_detector)")
    if fn is None:
        return verdict
    for what, model, want in _bug_cases():
        got, verdict = call_answer(fn, model, signature="fn(model) with a torch.nn.Module")
        if verdict is not None:
            return verdict
        if not isinstance(got, (bool, np.bool_)) and not (isinstance(got, torch.Tensor) and got.numel() == 1
                                                           and got.dtype == torch.bool):
            return wrong(f"return True or False, not {type(got).__name__} {got!r:.40}")
        if bool(got) != want:
            hint = {True: "look at every BN layer's own .training flag (and at running_mean is None), "
                          "not only the model's",
                    False: "a model without BN layers, or with all of them in eval mode, never uses "
                           "batch statistics"}[want]
            return wrong(f"wrong for {what}: it {'does' if want else 'does not'} use batch statistics; {hint}")
    return ok("right on all 7 models, including a single BN layer left in training mode and a BN "
              "layer without running statistics")


def half_life(momentum: float) -> float:
    """The number k of most recent batches that hold half the weight of a running average with
    ``momentum``: (1 - momentum)^k = 1/2."""
    return float(np.log(0.5) / np.log1p(-momentum))


def check_half_life(answer, momentum=0.1):
    """Check the reader's k with (1 - momentum)^k = 1/2."""
    answer, verdict = numeric_answer(answer, "the half-life of the running average")
    if answer is None:
        return verdict
    k = half_life(momentum)
    if abs(answer - k) < 0.02:
        return ok(f"k = ln 2 / -ln(1 - {momentum}) = {k:.2f} batches")
    if abs(answer - np.log(2) / momentum) < 0.02:
        return wrong("ln 2 / momentum is the small-momentum approximation: solve (1 - momentum)^k = 1/2 exactly")
    if abs(answer - 1 / momentum) < 0.02 or abs(answer - (1 - momentum) / momentum) < 0.02:
        return wrong("that is the average age of the batches in the running average, not the number "
                     "that holds half its weight")
    return wrong(f"{answer} is not it: batch t steps back has weight momentum (1 - momentum)^t")
