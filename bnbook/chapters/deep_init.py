"""Chapter "Deep networks at initialization": rank collapse, gradient explosion, signal propagation.

:func:`deep_mlp` builds the chapter's plain deep networks (a :func:`bnbook.models.mlp` with Gaussian
fan-in initialization). The probes look at one batch at initialization, in training mode (BN normalizes
with the batch's own statistics) and leave the model as they found it: :func:`representations` (every
hidden layer's output), :func:`rank_profile` (stable and numerical rank per layer, Daneshmand et al.),
:func:`weight_grad_norms` and :func:`growth_rate` (the per-layer growth of the gradient from the last
layer to the first, Yang et al.; :data:`PREDICTED_RATE` is their rate for BN-ReLU networks),
:func:`activation_rms`, :func:`readout_accuracy` (what a linear readout learns in its first steps from
a frozen representation) and :func:`sgd_rates` (how a few SGD steps change the growth rate).
:func:`plot_signal` is the chapter's widget; ``check_*`` are its exercise self-checks.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..measure import capture, probing, stable_rank
from ..models import mlp
from ..selfcheck import call_answer, function_answer, near, numeric_answer, ok, wrong

__all__ = [
    "PREDICTED_RATE", "GAINS", "deep_mlp", "representations", "rank_profile", "weight_grad_norms",
    "growth_rate", "activation_rms", "readout_accuracy", "sgd_rates", "plot_signal",
    "check_stable_rank", "check_growth_rate", "check_predicted_rate",
]

# Yang et al. (2019): in a wide BN-ReLU network without skip connections the squared gradient norm grows
# by pi / (pi - 1) per layer from the last layer to the first (large-batch limit), the norm by its root.
PREDICTED_RATE = math.sqrt(math.pi / (math.pi - 1))
# Weight variance gain / fan_in: 1 keeps a linear layer's signal scale, 2 a ReLU layer's (He et al.).
GAINS = {"identity": 1.0, "relu": 2.0}


def deep_mlp(depth: int, width: int, activation: str = "relu", norm: str | None = None,
             in_features: int = 64, out_features: int = 10) -> nn.Module:
    """A plain (no skip connections) :func:`bnbook.models.mlp` of ``depth`` hidden layers of ``width``.

    ``fc -> [BN] -> activation`` per layer (``activation`` ``'relu'`` or ``'identity'`` for a deep linear
    net), every weight drawn from ``N(0, GAINS[activation] / fan_in)`` and biases zero, the Gaussian
    initializations Daneshmand et al. and Yang et al. analyse. Draws from torch's global generator: seed it.
    """
    if activation not in GAINS:
        raise ValueError(f"activation must be one of {sorted(GAINS)}, got {activation!r}")
    model = mlp(in_features, [width] * depth, out_features, activation=activation, norm=norm)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, math.sqrt(GAINS[activation] / m.in_features))
                if m.bias is not None:
                    m.bias.zero_()
    return model


def representations(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every hidden layer's output (the output of ``act1``, ``act2``, ...) when ``model`` processes the
    batch ``x`` in training mode; BN's running statistics are restored afterwards."""
    acts = getattr(model, "acts", None)
    if not acts:
        raise ValueError("model must be a bnbook.models.mlp (a Net with act1, act2, ... modules)")
    with torch.no_grad(), probing(model, train_mode=True), \
            capture({i: a for i, a in enumerate(acts)}) as seen:
        model(x)
    return [seen[i] for i in range(len(acts))]


def rank_profile(reps) -> dict[str, np.ndarray]:
    """Stable rank (:func:`bnbook.measure.stable_rank`) and numerical rank of each representation in
    ``reps`` (a list of ``(n_examples, width)`` tensors, e.g. from :func:`representations`). The
    numerical rank is ``torch.linalg.matrix_rank`` of the float32 representation with torch's default
    tolerance, ``max(n, d) * eps * s_1``: the directions that float32 arithmetic can still tell from 0."""
    if isinstance(reps, torch.Tensor) and reps.dim() == 2:
        reps = [reps]
    return {"stable": np.array([stable_rank(h) for h in reps]),
            "numerical": np.array([int(torch.linalg.matrix_rank(h.detach().float())) for h in reps])}


def weight_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The norm of the cross-entropy gradient on the batch ``(x, y)`` for each hidden layer's weight
    matrix (``fc1``, ``fc2``, ...), in training mode. Uses ``torch.autograd.grad``: the parameters'
    ``.grad`` and BN's running statistics are left as they were."""
    weights = [m.weight for m in model.linears]
    with probing(model, train_mode=True):
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, weights)
    return np.array([g.double().norm().item() for g in grads])


def growth_rate(norms, skip: int = 1) -> float:
    """The per-layer factor by which gradient norms grow from the last layer to the first.

    Fits ``log(norms[l]) = a - l log(rate)`` by least squares over the layers after the first ``skip``
    (the first layer reads the data, not a hidden representation) and returns ``rate``: 1 means equal
    gradients in every layer, above 1 larger gradients in earlier layers.
    """
    norms = np.asarray(norms, dtype=float)
    if norms.ndim != 1 or len(norms) - skip < 2:
        raise ValueError(f"need at least {skip + 2} gradient norms (one per layer), got {norms.shape}")
    if not (np.all(np.isfinite(norms)) and np.all(norms > 0)):
        raise ValueError("gradient norms must be positive and finite")
    layers = np.arange(len(norms))[skip:]
    slope = np.polyfit(layers, np.log(norms[skip:]), 1)[0]
    return float(np.exp(-slope))


def activation_rms(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The root mean square of every hidden layer's output on the batch ``x`` (training mode)."""
    return np.array([h.double().pow(2).mean().sqrt().item() for h in representations(model, x)])


def readout_accuracy(features, y: torch.Tensor, steps: int = 100) -> np.ndarray:
    """Training accuracy of a linear softmax readout after ``steps`` full-batch gradient steps on frozen
    features (what a layer above learns in its first steps from a given representation).

    ``features`` is a list of ``(n_examples, width)`` representations of the same examples (labels
    ``y``); each gets its own readout, trained side by side, and the result is one accuracy per
    representation. Each representation is centred and scaled to unit mean square, and its step size is
    ``1 / lambda_max`` of its second-moment matrix, the largest step that is stable along its top
    direction; so the result depends on the representation's shape, not its scale. Readouts start at zero.
    """
    if isinstance(features, torch.Tensor) and features.dim() == 2:
        features = [features]
    f = torch.stack([h.detach().double() for h in features])  # (k, n, d)
    if f.shape[1] != len(y):
        raise ValueError(f"features have {f.shape[1]} examples but y has {len(y)} labels")
    f = f - f.mean(1, keepdim=True)
    f = f / f.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-300)
    n = f.shape[1]
    lam = torch.linalg.eigvalsh(f.transpose(1, 2) @ f / n)[:, -1].clamp_min(1e-12)
    lr = (1.0 / lam)[:, None, None]
    n_classes = int(y.max()) + 1
    w = torch.zeros(f.shape[0], f.shape[2], n_classes, dtype=torch.float64)
    b = torch.zeros(f.shape[0], 1, n_classes, dtype=torch.float64)
    onehot = F.one_hot(y, n_classes).double()
    for _ in range(steps):
        err = torch.softmax(f @ w + b, dim=2) - onehot
        w -= lr * f.transpose(1, 2) @ err / n
        b -= lr * err.mean(1, keepdim=True)
    return ((f @ w + b).argmax(2) == y).double().mean(1).numpy()


def sgd_rates(model: nn.Module, batches, lr: float) -> dict[str, np.ndarray]:
    """Plain SGD on a copy of ``model``, one step per batch ``(x, y)`` of ``batches``.

    Returns ``"rate"``: :func:`growth_rate` of the weight-gradient norms before each step, and after the
    last step on the last batch; and ``"weight_growth"``: each hidden layer's weight norm after the steps
    divided by its norm before. The model itself is not changed.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    batches = list(batches)
    if not batches:
        raise ValueError("batches must hold at least one (x, y) batch")
    net = copy.deepcopy(model).train()
    before = np.array([m.weight.norm().item() for m in net.linears])
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    rates = []
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        rates.append(growth_rate([m.weight.grad.norm().item() for m in net.linears]))
        opt.step()
    rates.append(growth_rate(weight_grad_norms(net, x, y)))
    after = np.array([m.weight.norm().item() for m in net.linears])
    return {"rate": np.array(rates), "weight_growth": after / before}


# --- the widget ------------------------------------------------------------------------------

def plot_signal(fig, x, y, depth=30, activation="relu", norm="bn", width=64, seed=0):
    """The widget: a fresh :func:`deep_mlp` (torch seed ``seed``) at initialization, on the batch ``(x, y)``.

    Left: each layer's activation RMS; middle: each layer's weight-gradient norm (log scale) with the
    fitted :func:`growth_rate` in the title; right: the stable rank of each layer's representation.
    ``norm`` is ``'bn'`` or ``'none'``. Returns the growth rate.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = deep_mlp(depth, width, activation, None if norm == "none" else norm, x.shape[1])
    layers = np.arange(1, depth + 1)
    grads = weight_grad_norms(model, x, y)
    rate = growth_rate(grads)
    ranks = rank_profile(representations(model, x))["stable"]
    ax_act, ax_grad, ax_rank = fig.subplots(1, 3, sharex=True)
    rms = activation_rms(model, x)
    ax_act.semilogy(layers, rms, color="k")
    # a fixed range (widened only if needed), so that a level signal looks level
    ax_act.set(xlabel="layer", ylabel="activation RMS", title="forward signal",
               ylim=(min(1e-2, rms.min() / 2), max(1e2, rms.max() * 2)))
    ax_grad.semilogy(layers, grads, color="#D55E00")
    ax_grad.set(xlabel="layer", ylabel="weight-gradient norm",
                title=f"gradient: x{rate:.3f} per layer to the input")
    ax_rank.plot(layers, ranks, color="#0072B2")
    ax_rank.set(xlabel="layer", ylabel="stable rank", ylim=(0, None),
                title=f"{activation}, {'BN' if norm == 'bn' else 'no BN'}, width {width}")
    fig.tight_layout()
    return rate


# --- exercise self-checks --------------------------------------------------------------------

def _matrices():
    """Fixed test matrices (constant seeds on purpose: a check must not move with BNBOOK_SEED)."""
    g = torch.Generator().manual_seed(1103)
    u, v = torch.randn(12, 1, generator=g, dtype=torch.float64), torch.randn(1, 5, generator=g, dtype=torch.float64)
    full = torch.randn(12, 5, generator=g, dtype=torch.float64)
    return {"a random 12x5 matrix": full, "a rank-one matrix": u @ v,
            "a rank-one matrix plus a little noise": u @ v + 0.05 * full, "the same, times 7": 7.0 * full}


def _number(got, what):
    """A reader's function's result as ``(float, None)``, or ``(None, verdict)`` (None is a wrong answer
    here: the function was called, it just returned nothing)."""
    if got is None:
        return None, wrong(f"{what}: your function returned None; return a number")
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    return numeric_answer(got, what)


def check_stable_rank(fn):
    """Check ``fn(H) -> float``, the stable rank ``||H||_F^2 / ||H||_2^2`` of a 2-D tensor."""
    fn, verdict = function_answer(fn, "the stable rank", "check_stable_rank(my_stable_rank)")
    if fn is None:
        return verdict
    for name, h in _matrices().items():
        got, verdict = call_answer(fn, h.clone(), signature="fn(H) with H a float64 tensor of shape (12, 5)")
        if verdict is not None:
            return verdict
        value, verdict = _number(got, "your stable rank")
        if value is None:
            return verdict
        s = torch.linalg.svdvals(h)
        want = float((s**2).sum() / s[0] ** 2)
        if abs(value - want) <= 1e-6 * want:
            continue
        if abs(value - float(s.sum() / s[0])) <= 1e-6 * want:
            return wrong(f"for {name}: square the singular values, ||H||_F^2 = sum of s_i^2")
        if abs(value - float(torch.linalg.matrix_rank(h))) < 1e-9:
            return wrong(f"for {name}: that is the rank; the stable rank is sum(s_i^2) / s_1^2")
        if abs(value - float(s[0] ** 2 / (s**2).sum())) <= 1e-6:
            return wrong(f"for {name}: the ratio is upside down: ||H||_F^2 / ||H||_2^2 is at least 1")
        return wrong(f"for {name} the stable rank is {want:.4f}, your function gives {value:.4f}")
    return ok("right: 1 for a rank-one matrix, close to 1 with a little noise, and scale-free")


def check_growth_rate(fn):
    """Check ``fn(norms) -> float``: the per-layer factor ``r`` with ``norms[l]`` about ``c / r**l``, from
    a least-squares fit of ``log(norms)`` against the layer index (all layers)."""
    fn, verdict = function_answer(fn, "the growth rate", "check_growth_rate(my_rate)")
    if fn is None:
        return verdict
    g = torch.Generator().manual_seed(1104)
    noise = torch.exp(0.1 * torch.randn(20, generator=g, dtype=torch.float64)).numpy()
    cases = {"exactly geometric norms": 3.0 * 1.25 ** -np.arange(20.0),
             "noisy geometric norms": 3.0 * 1.25 ** -np.arange(20.0) * noise}
    for name, norms in cases.items():
        got, verdict = call_answer(fn, norms.copy(), signature="fn(norms) with norms a NumPy array of 20 floats")
        if verdict is not None:
            return verdict
        value, verdict = _number(got, "your growth rate")
        if value is None:
            return verdict
        k = np.arange(20.0)
        want = float(np.exp(-np.polyfit(k, np.log(norms), 1)[0]))
        if near(value, want, 1e-6):
            continue
        if near(value, 1 / want, 1e-6):
            return wrong("upside down: gradients grow towards the FIRST layer, so the rate is above 1 here")
        if near(value, -np.polyfit(k, np.log(norms), 1)[0], 1e-6):
            return wrong("that is the slope of log(norm); the rate is exp(-slope)")
        if near(value, float((norms[0] / norms[-1]) ** (1 / 19)), 1e-6):
            return wrong("the first/last ratio uses two layers only; fit a line through all of log(norms)")
        return wrong(f"for {name} the rate is {want:.4f}, your function gives {value:.4f}")
    return ok("right: exp(-slope) of the least-squares line through log(norms)")


def check_predicted_rate(answer):
    """Check the reader's per-layer growth of the gradient norm in a wide BN-ReLU net: sqrt(pi / (pi - 1))."""
    answer, verdict = numeric_answer(answer, "the predicted growth rate")
    if answer is None:
        return verdict
    if near(answer, PREDICTED_RATE, 1e-3):
        return ok(f"sqrt(pi / (pi - 1)) = {PREDICTED_RATE:.4f}: BN divides by the standard deviation "
                  "sqrt((pi - 1) / pi) of its input, forwards and backwards")
    if near(answer, PREDICTED_RATE**2, 1e-3):
        return wrong("that is the growth of the SQUARED norm; take its square root")
    if near(answer, 1 / PREDICTED_RATE, 1e-3):
        return wrong("upside down: backwards, BN divides by sigma < 1, so the gradient grows")
    if near(answer, math.sqrt(2.0), 1e-3) or near(answer, 1.0, 1e-3):
        return wrong("the ReLU's output is not centred: its variance is E[relu(z)^2] - E[relu(z)]^2 = "
                     "1/2 - 1/(2 pi), not 1/2")
    return wrong(f"{answer} is not it: compute the variance of relu(z) for a standard normal z, times the "
                 "weight gain 2, and take 1/sqrt of that")
