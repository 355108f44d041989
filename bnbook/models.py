"""The few architectures the book trains, with a normalization option.

* :func:`mlp` -- fully connected net, BN before or after the activation ("Mini-batch SGD", "Internal
  covariate shift", "Are gamma and beta redundant?", "BN in practice").
* :func:`small_cnn` -- a three-layer conv net for the 8x8 digits ("BN in practice").
* :func:`deep_linear` -- a deep linear chain ("Higher-order effects", "Internal covariate shift").
* :func:`residual_mlp` -- pre-activation residual MLP with optional SkipInit or Fixup ("BN in practice",
  "Residual networks and the identity", "Training without normalization").
* :func:`nf_residual_mlp` -- its normalizer-free twin with scaled weight standardization ("Training without
  normalization").
* :func:`norm_layer` -- the one place that turns a name like ``'bn'`` into a layer.

Probes find layers by name: :func:`mlp`, :func:`deep_linear` and :func:`small_cnn` return a :class:`Net` (an
``nn.Sequential``) whose modules are called ``fc1``/``conv1``, ``norm1``, ``act1``, ``drop1``, ..., ``out``, so
``model.act3`` is the third activation and ``model.linears`` lists the hidden linear layers.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
from torch import nn

from .layers import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, NoisyBatchNorm1d, ScaledStdLinear

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}
PLACEMENTS = ("before", "after")

# name -> (factory(num_features, affine, spatial), absorbs_bias). A layer that subtracts a per-feature
# batch mean makes the preceding layer's bias redundant (Ioffe and Szegedy, sec. 3.2), so we drop that bias.
# Later chapters add entries here (e.g. layer normalization).
NORMS = {
    "bn": (lambda n, affine, spatial: (BatchNorm2d if spatial else BatchNorm1d)(n, affine=affine), True),
}


def _noisy_bn(n, affine, spatial):
    """BN plus time-varying noise (Santurkar et al.; chapter "Internal covariate shift")."""
    if spatial:
        raise ValueError("norm 'noisy_bn' is for fully connected layers only (mlp, deep_linear)")
    return NoisyBatchNorm1d(n, affine=affine)


NORMS["noisy_bn"] = (_noisy_bn, True)

GN_GROUPS = 4  # groups of norm 'gn' (Wu and He use 32 groups of 2-64 channels; our layers have 16-128)


def _layer_norm(n, affine, spatial):
    """Layer Normalization (Ba et al.): each example over all its features; for conv maps over (C, H, W) with
    per-channel scale and shift, i.e. GroupNorm with one group, as Wu and He compare it."""
    return GroupNorm(1, n, affine=affine) if spatial else LayerNorm(n, elementwise_affine=affine)


def _instance_norm(n, affine, spatial):
    """Instance Normalization (Ulyanov et al.): each example and channel over its positions."""
    if not spatial:
        raise ValueError("norm 'in' needs positions to average over: it is for conv layers only (small_cnn)")
    return GroupNorm(n, n, affine=affine)


# No batch statistics. LN and GN subtract a mean over features, which removes only the mean of a preceding
# per-feature bias, so that bias stays; IN subtracts each channel's mean over positions, so a conv bias goes.
NORMS["ln"] = (_layer_norm, False)
NORMS["gn"] = (lambda n, affine, spatial: GroupNorm(GN_GROUPS, n, affine=affine), False)
NORMS["in"] = (_instance_norm, True)


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"unknown {name} {value!r}; allowed: {options}")


def _positive_ints(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _norm_kind(norm):
    """Validate ``norm``; ``None`` and ``'none'`` both mean no normalization."""
    if norm is None or norm == "none":
        return None
    _choice("norm", norm, [None, "none", *NORMS])
    return norm


def norm_layer(kind: str, num_features: int, affine: bool = True, spatial: bool = False) -> nn.Module:
    """A normalization layer by name (``'bn'``: :class:`bnbook.BatchNorm1d`, or ``BatchNorm2d`` if ``spatial``;
    ``'ln'``, ``'gn'`` (:data:`GN_GROUPS` groups) and ``'in'`` (conv only): :class:`bnbook.LayerNorm` or
    :class:`bnbook.GroupNorm`; ``'noisy_bn'``).

    Every model builder goes through here, so a new normalization is one entry in :data:`NORMS`.
    """
    _choice("norm", kind, list(NORMS))
    return NORMS[kind][0](num_features, affine, spatial)


def _absorbs_bias(norm) -> bool:
    return norm is not None and NORMS[norm][1]


def layer_of(parameter_name: str) -> str:
    """The layer a parameter of a :class:`Net` belongs to: its number for ``fc``/``conv``/``norm`` layers.

    ``'fc2.weight'`` and ``'norm2.bias'`` -> ``'2'`` (a layer is its linear map together with its
    normalization), ``'out.bias'`` -> ``'out'``. The one parser of the book's layer names.
    """
    top = parameter_name.split(".", 1)[0]
    match = re.search(r"(\d+)$", top)
    return match[1] if match else top


class Net(nn.Sequential):
    """An ``nn.Sequential`` with named layers and shortcuts for probes (see the module docstring)."""

    def _named(self, prefix: str) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name.startswith(prefix) and name[len(prefix):].isdigit()]

    @property
    def linears(self) -> list[nn.Module]:
        """The hidden linear (or conv) layers, in order; the output layer is ``model.out``."""
        return self._named("fc") + self._named("conv")

    @property
    def norms(self) -> list[nn.Module]:
        return self._named("norm")

    @property
    def acts(self) -> list[nn.Module]:
        return self._named("act")


def _init_normal_(model: nn.Module, std: float) -> None:
    """Weights N(0, std^2), biases zero, for every linear and conv layer."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def mlp(in_features: int, hidden=(100, 100, 100), out_features: int = 10, activation: str = "relu",
        norm: str | None = None, placement: str = "before", affine: bool = True, init_std: float | None = None,
        dropout: float = 0.0, bias: bool = True) -> Net:
    """A fully connected net: for each hidden width, ``fc -> norm -> act`` (``placement='before'``, as in Ioffe
    and Szegedy) or ``fc -> act -> norm`` (``'after'``), then optional dropout, then the output layer ``out``.

    A linear layer directly followed by BN has no bias (BN would subtract it). ``init_std=None`` keeps torch's
    default init; a float draws every weight from N(0, init_std^2) with zero biases (Ioffe and Szegedy's Fig. 1
    uses small Gaussian weights). ``bias=False`` removes all biases (deep linear chains).
    """
    _choice("activation", activation, list(ACTIVATIONS))
    _choice("placement", placement, list(PLACEMENTS))
    norm = _norm_kind(norm)
    hidden = list(hidden)
    _positive_ints(in_features=in_features, out_features=out_features,
                   **{f"hidden[{i}]": h for i, h in enumerate(hidden)})
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if init_std is not None and not init_std > 0:
        raise ValueError(f"init_std must be positive or None (torch's default init), got {init_std}")
    layers = OrderedDict()
    width = in_features
    for i, h in enumerate(hidden, start=1):
        norm_first = norm is not None and placement == "before"
        layers[f"fc{i}"] = nn.Linear(width, h, bias=bias and not (norm_first and _absorbs_bias(norm)))
        if norm_first:
            layers[f"norm{i}"] = norm_layer(norm, h, affine)
        layers[f"act{i}"] = ACTIVATIONS[activation]()
        if norm is not None and placement == "after":
            layers[f"norm{i}"] = norm_layer(norm, h, affine)
        if dropout:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        width = h
    layers["out"] = nn.Linear(width, out_features, bias=bias)
    model = Net(layers)
    if init_std is not None:
        _init_normal_(model, init_std)
    return model


def deep_linear(in_features: int, width: int, depth: int, out_features: int, norm: str | None = None,
                init_std: float | None = None) -> Net:
    """A deep linear chain without biases: ``depth`` hidden linear layers of ``width`` (each followed by
    ``norm`` if given) and a linear output layer. Santurkar et al. measure ICS on such nets; Goodfellow et al.
    (sec. 8.7.1) use the chain to explain higher-order effects.
    """
    _positive_ints(width=width, depth=depth)
    return mlp(in_features, [width] * depth, out_features, activation="identity", norm=norm,
               init_std=init_std, bias=False)


class _ToImage(nn.Module):
    """Reshape flat inputs ``(N, C*S*S)`` to images ``(N, C, S, S)``; images pass through unchanged."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.channels, self.size = channels, size

    def forward(self, x):
        return x.reshape(len(x), self.channels, self.size, self.size)

    def extra_repr(self):
        return f"channels={self.channels}, size={self.size}"


def small_cnn(in_channels: int = 1, n_classes: int = 10, norm: str | None = None, width: int = 16,
              activation: str = "relu", affine: bool = True, image_size: int = 8,
              placement: str = "before") -> Net:
    """Three 3x3 conv layers (``width``, ``2*width``, ``2*width`` channels, a 2x2 max-pool after the second),
    global average pooling and a linear classifier ``out``. Each conv is followed by ``norm`` (per channel,
    BatchNorm2d) and then the activation (``placement='before'``), or by the activation and then ``norm``
    (``'after'``; the conv then keeps its bias, as in :func:`mlp`). Accepts ``(N, C, S, S)`` images or flat
    ``(N, C*S*S)`` rows, so the same :func:`bnbook.data.digits` split feeds both the MLP and the CNN.
    """
    _choice("activation", activation, list(ACTIVATIONS))
    _choice("placement", placement, list(PLACEMENTS))
    norm = _norm_kind(norm)
    _positive_ints(in_channels=in_channels, n_classes=n_classes, width=width, image_size=image_size)
    layers = OrderedDict(image=_ToImage(in_channels, image_size))
    channels = [in_channels, width, 2 * width, 2 * width]
    norm_first = norm is not None and placement == "before"
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]), start=1):
        layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not (norm_first and _absorbs_bias(norm)))
        if norm_first:
            layers[f"norm{i}"] = norm_layer(norm, c_out, affine, spatial=True)
        layers[f"act{i}"] = ACTIVATIONS[activation]()
        if norm is not None and placement == "after":
            layers[f"norm{i}"] = norm_layer(norm, c_out, affine, spatial=True)
        if i == 2:
            layers["pool"] = nn.MaxPool2d(2)
    layers["gap"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["out"] = nn.Linear(channels[-1], n_classes)
    return Net(layers)


class ResidualBlock(nn.Module):
    """``x + alpha * branch(x)`` with a pre-activation branch ``norm -> act -> fc1 -> norm -> act -> fc2``.

    With ``skipinit=True``, ``alpha`` is a learnable scalar initialized to 0 (De and Smith 2020), so the block
    starts as the identity; otherwise ``alpha`` is ``None`` (a fixed 1).
    """

    def __init__(self, width: int, norm: str | None, activation: str, skipinit: bool):
        super().__init__()
        layers = OrderedDict()
        if norm is not None:
            layers["norm1"] = norm_layer(norm, width)
        layers["act1"] = ACTIVATIONS[activation]()
        layers["fc1"] = nn.Linear(width, width, bias=not _absorbs_bias(norm))
        if norm is not None:
            layers["norm2"] = norm_layer(norm, width)
        layers["act2"] = ACTIVATIONS[activation]()
        layers["fc2"] = nn.Linear(width, width)
        self.branch = nn.Sequential(layers)
        self.alpha = nn.Parameter(torch.zeros(())) if skipinit else None

    def forward(self, x):
        out = self.branch(x)
        return x + (out if self.alpha is None else self.alpha * out)


class ResidualMLP(nn.Module):
    """``stem`` (linear) -> ``blocks`` (an ``nn.Sequential`` of :class:`ResidualBlock`) -> ``head``."""

    def __init__(self, in_features, width, n_blocks, out_features, norm, activation, skipinit, head_norm="same"):
        super().__init__()
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width, norm, activation, skipinit) for _ in range(n_blocks)])
        head = OrderedDict()
        head_norm = norm if head_norm == "same" else head_norm  # "same": the blocks' norm
        if head_norm is not None:
            head["norm"] = norm_layer(head_norm, width)
        head["act"] = ACTIVATIONS[activation]()
        head["out"] = nn.Linear(width, out_features)
        self.head = nn.Sequential(head)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


RESIDUAL_INITS = ("default", "he", "fixup")


def residual_mlp(in_features: int, width: int = 64, n_blocks: int = 4, out_features: int = 10,
                 norm: str | None = None, skipinit: bool = False, activation: str = "relu",
                 head_norm: str | None = "same", init: str = "default") -> ResidualMLP:
    """A pre-activation residual MLP (see :class:`ResidualBlock`); ``model.blocks[i].branch`` is the i-th
    residual branch. ``skipinit=True`` adds De and Smith's zero-initialized scalar to each branch, the
    normalization-free alternative to BN.

    ``head_norm`` is the normalization between the last block and the head's activation: ``'same'`` (the
    default) uses ``norm``; None or ``'none'`` leaves it out (e.g. BN in the branches alone); a name such as
    ``'bn'`` puts that layer there whatever ``norm`` is (e.g. SkipInit branches with one BN before the head).
    ``init='he'`` draws every linear weight from N(0, 2/fan_in) (He et al. 2015, ReLU gain) with zero biases;
    ``'default'`` keeps torch's init. ``init='fixup'`` (Zhang et al. 2019; no normalization, no SkipInit) is He
    init with the first layer of each branch scaled by ``n_blocks ** -0.5`` (their ``L^(-1/(2m-2))`` for m = 2
    layers per branch), the last layer of each branch and the classifier ``head.out`` set to 0, and a learnable
    scalar multiplier ``alpha`` initialized to 1 on each branch; the bias vectors (zero) stand in for Fixup's
    scalar biases.
    """
    _choice("activation", activation, list(ACTIVATIONS))
    _choice("init", init, list(RESIDUAL_INITS))
    norm = _norm_kind(norm)
    head_norm = "same" if head_norm == "same" else _norm_kind(head_norm)
    _positive_ints(in_features=in_features, width=width, n_blocks=n_blocks, out_features=out_features)
    if init == "fixup" and (norm is not None or head_norm not in ("same", None) or skipinit):
        raise ValueError("init='fixup' replaces normalization and sets its own branch multiplier (initialized "
                         "to 1): use it with norm=None, head_norm='same' and skipinit=False")
    model = ResidualMLP(in_features, width, n_blocks, out_features, norm, activation, skipinit, head_norm)
    if init in ("he", "fixup"):
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    if init == "fixup":
        _fixup_(model)
    return model


@torch.no_grad()
def _fixup_(model: ResidualMLP) -> None:
    """Fixup's rescaling of a He-initialized residual MLP (see :func:`residual_mlp`), in place."""
    for block in model.blocks:
        block.branch.fc1.weight.mul_(len(model.blocks) ** -0.5)
        nn.init.zeros_(block.branch.fc2.weight)
        block.alpha = nn.Parameter(torch.ones(()))
    nn.init.zeros_(model.head.out.weight)
    nn.init.zeros_(model.head.out.bias)


RELU_GAIN = math.sqrt(2 / (1 - 1 / math.pi))  # 1 / std of ReLU(z) for z ~ N(0, 1)


class ScaledReLU(nn.Module):
    """``gamma * relu(x)`` with ``gamma =`` :data:`RELU_GAIN`: unit variance out for a standard normal input
    (Brock et al. 2021), so that normalizer-free networks keep their signal's scale through the activations."""

    def forward(self, x):
        return torch.relu(x) * RELU_GAIN


class NFBlock(nn.Module):
    """``x + alpha * skip_gain * branch(x / beta)``, the normalizer-free residual block of Brock et al. (2021).

    ``branch`` is ``act1 -> fc1 -> act2 -> fc2`` with :class:`ScaledReLU` activations and
    :class:`bnbook.layers.ScaledStdLinear` layers; ``beta`` is the expected standard deviation of the
    block's input, so the branch sees unit variance; ``alpha`` (fixed) sets how fast the stream's variance
    grows; ``skip_gain`` is a learnable scalar initialized to 0, as in NFNets, so the block starts as the identity.
    """

    def __init__(self, width: int, beta: float, alpha: float):
        super().__init__()
        self.branch = nn.Sequential(OrderedDict(act1=ScaledReLU(), fc1=ScaledStdLinear(width, width, gain_init=1.0),
                                                act2=ScaledReLU(), fc2=ScaledStdLinear(width, width, gain_init=1.0)))
        self.beta, self.alpha = float(beta), float(alpha)
        self.skip_gain = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.alpha * self.skip_gain * self.branch(x / self.beta)

    def extra_repr(self):
        return f"beta={self.beta:.3g}, alpha={self.alpha:g}"


class NFResidualMLP(nn.Module):
    """``stem`` (:class:`bnbook.layers.ScaledStdLinear`) -> ``blocks`` (:class:`NFBlock`) -> ``head``."""

    def __init__(self, in_features, width, n_blocks, out_features, alpha):
        super().__init__()
        self.stem = ScaledStdLinear(in_features, width)
        # the stream's expected variance before block i is 1 + i alpha^2 (each branch adds alpha^2)
        self.blocks = nn.Sequential(*[NFBlock(width, math.sqrt(1 + i * alpha**2), alpha) for i in range(n_blocks)])
        self.head = nn.Sequential(OrderedDict(act=ScaledReLU(), out=nn.Linear(width, out_features)))
        nn.init.normal_(self.head.out.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.out.bias)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def nf_residual_mlp(in_features: int, width: int = 64, n_blocks: int = 4, out_features: int = 10,
                    alpha: float = 0.2) -> NFResidualMLP:
    """A normalizer-free residual MLP (Brock et al. 2021, NF-ResNets and NFNets, as an MLP): scaled weight
    standardization in every hidden layer, ReLUs scaled to unit variance, branches that see their input
    divided by its expected standard deviation and add ``alpha`` times a zero-initialized gain, and no
    normalization anywhere. Same ``stem``/``blocks``/``head`` layout as :func:`residual_mlp`. Brock et al.
    train such nets with adaptive gradient clipping, which is an optimizer-side choice (not part of the model).
    """
    _positive_ints(in_features=in_features, width=width, n_blocks=n_blocks, out_features=out_features)
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    return NFResidualMLP(in_features, width, n_blocks, out_features, float(alpha))
