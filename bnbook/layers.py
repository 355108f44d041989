"""Batch Normalization layers: drop-ins for ``torch.nn.BatchNorm1d`` and ``BatchNorm2d``.

Chapter "The Batch Normalization transform". Same arguments and defaults, same
parameters and buffers (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), so a torch state_dict loads into these layers and back.
The arithmetic lives in :mod:`bnbook.functional`.
"""
import torch
from torch import nn

from .functional import batch_norm, check_input, group_norm, layer_norm
from .seeding import generator as make_generator

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "DistributionNoise", "NoisyBatchNorm1d",
           "ScaledStdLinear"]


class _BatchNorm(nn.Module):
    _version = 2  # torch's state_dict version for BN layers (with num_batches_tracked)
    _input_dims: set = set()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer (the number of channels), "
                             f"got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive (it keeps sqrt(var + eps) away from 0), got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None (cumulative average), got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            if bias:  # bias=False keeps gamma only (chapter "Are gamma and beta redundant?")
                self.bias = nn.Parameter(torch.zeros(num_features, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, x):
        check_input(x, self.num_features, self._input_dims, training=self.training)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as torch does
                momentum = 1.0 / float(self.num_batches_tracked)
        # Without running statistics, eval mode normalizes with the batch statistics (as torch does).
        use_batch_stats = self.training or self.running_mean is None
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          use_batch_stats, momentum, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """Load old checkpoints as torch does: before version 2 BN had no ``num_batches_tracked``, so a
        state_dict without it (saved by an old torch, or written by hand) loads with the counter at 0."""
        version = local_metadata.get("version", None)
        if (version is None or version < 2) and self.track_running_stats:
            key = prefix + "num_batches_tracked"
            if key not in state_dict:
                state_dict[key] = torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self):
        return ("{num_features}, eps={eps}, momentum={momentum}, affine={affine}, bias={use_bias}, "
                "track_running_stats={track_running_stats}".format(**self.__dict__,
                                                                   use_bias=self.bias is not None))


class BatchNorm1d(_BatchNorm):
    """BN over (N, C) or (N, C, L) input: statistics per feature over the batch (and length).

    A drop-in for ``torch.nn.BatchNorm1d`` (same arguments, parameters, buffers and state_dict),
    computing Algorithm 1 of Ioffe and Szegedy (2015) with a hand-derived backward pass
    (:mod:`bnbook.functional`).

    Args:
        num_features: C, the number of features (channels).
        eps: added to the variance before the square root. Default 1e-5.
        momentum: weight of the new batch statistic in the running averages; None for a
            cumulative average. Default 0.1.
        affine: learnable gamma (``weight``) and beta (``bias``). Default True.
        track_running_stats: keep running averages for eval mode. Default True.
        bias: with ``affine``, False keeps gamma only (bnbook's extra, keyword-only).

    Shape:
        Input (N, C) or (N, C, L); output the same shape. Training mode needs more than one
        value per feature (N > 1, or N*L > 1): a batch of one has no variance.

    Examples:
        >>> bn = BatchNorm1d(100)
        >>> y = bn(torch.randn(20, 100))
        >>> bn.load_state_dict(torch.nn.BatchNorm1d(100).state_dict())
        <All keys matched successfully>
    """
    _input_dims = {2, 3}


class BatchNorm2d(_BatchNorm):
    """BN over (N, C, H, W) input: statistics per channel over the batch and both spatial
    dimensions, so the effective batch is m = N*H*W (Ioffe and Szegedy, sec. 3.2)."""
    _input_dims = {4}


# --- BN's relatives: no batch statistics -------------------------------------------------------

class LayerNorm(nn.Module):
    """Layer Normalization (Ba et al. 2016): a drop-in for ``torch.nn.LayerNorm``.

    Each example is normalized over its last ``len(normalized_shape)`` dimensions with its own mean and
    biased variance, then scaled and shifted elementwise. No running statistics: training and eval mode
    compute the same thing, and a batch of one is fine. The backward pass is hand-derived
    (:func:`bnbook.functional.normalize_backward`).

    Args:
        normalized_shape: the trailing shape to normalize over (an int for the last dimension).
        eps: added to the variance. Default 1e-5.
        elementwise_affine: learnable ``weight`` (ones) and ``bias`` (zeros) of ``normalized_shape``.
        bias: with ``elementwise_affine``, False drops the bias (as torch's).

    Shape:
        Input (*, normalized_shape); output the same shape.

    Examples:
        >>> ln = LayerNorm(10)
        >>> ln(torch.randn(1, 10)).shape
        torch.Size([1, 10])
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
            raise ValueError(f"normalized_shape must be a positive integer or a tuple of them, "
                             f"got {normalized_shape!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive (it keeps sqrt(var + eps) away from 0), got {eps}")
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        factory = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(shape, **factory))
            self.bias = nn.Parameter(torch.zeros(shape, **factory)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.elementwise_affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, x):
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(nn.Module):
    """Group Normalization (Wu and He 2018): a drop-in for ``torch.nn.GroupNorm``.

    The ``num_channels`` channels are split into ``num_groups`` groups; each example is normalized over each
    group's channels and positions, then scaled and shifted per channel. ``num_groups=1`` normalizes over all
    of (C, ...) like Layer Normalization; ``num_groups=num_channels`` is Instance Normalization (Ulyanov et al.
    2016). No batch statistics. The backward pass is hand-derived.

    Args:
        num_groups: G, which must divide ``num_channels``.
        num_channels: C, the channels of the input.
        eps: added to the variance. Default 1e-5.
        affine: learnable per-channel ``weight`` (ones) and ``bias`` (zeros). Default True.

    Shape:
        Input (N, C, *); output the same shape.

    Examples:
        >>> gn = GroupNorm(2, 6)
        >>> gn(torch.randn(1, 6, 4, 4)).shape
        torch.Size([1, 6, 4, 4])
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None):
        super().__init__()
        for name, value in [("num_groups", num_groups), ("num_channels", num_channels)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_channels % num_groups:
            raise ValueError(f"num_channels={num_channels} must be divisible by num_groups={num_groups}")
        if not eps > 0:
            raise ValueError(f"eps must be positive (it keeps sqrt(var + eps) away from 0), got {eps}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, **factory))
            self.bias = nn.Parameter(torch.zeros(num_channels, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x):
        if isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[1] != self.num_channels:
            raise ValueError(f"input has {x.shape[1]} channels (dimension 1 of shape {tuple(x.shape)}) but the "
                             f"layer was built with num_channels={self.num_channels}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


# --- noisy BN (chapter "Internal covariate shift") ---------------------------------------------

class DistributionNoise(nn.Module):
    """Time-varying noise with non-zero mean and non-unit variance, in training mode only.

    After Santurkar et al. (2018, sec. 2.1), who inject such noise after BN to make layer
    inputs *less* stable. At every training-mode call, each feature (channel) ``j`` draws
    a scale ``s_j ~ U(scale)`` and a shift ``m_j ~ U(-shift, shift)``, shared by the batch,
    and every value gets its own jitter ``N(0, jitter^2)``:
    ``y = s * x + m + jitter * eps``. So the next layer's input distribution moves in
    mean and variance from one step to the next. In eval mode the module is the identity.

    Noise comes from ``generator`` if given, else from a generator seeded with ``seed``,
    else from torch's global generator (which :func:`bnbook.train.train` seeds), so runs
    are reproducible. Chapter "Internal covariate shift" documents the recipe.
    """

    def __init__(self, num_features, scale=(0.5, 2.0), shift=4.0, jitter=0.5,
                 generator=None, seed=None):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        try:
            low, high = (float(v) for v in scale)
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a pair (low, high), got {scale!r}") from None
        if not 0 <= low <= high:
            raise ValueError(f"scale must satisfy 0 <= low <= high, got {scale!r}")
        if not (shift >= 0 and jitter >= 0):
            raise ValueError(f"shift and jitter must be non-negative, got shift={shift}, jitter={jitter}")
        if generator is not None and seed is not None:
            raise ValueError("pass either a generator or a seed, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is not None:
            generator = make_generator(seed)
        self.num_features, self.scale, self.shift, self.jitter = num_features, (low, high), shift, jitter
        self.generator = generator

    def forward(self, x):
        if not self.training:
            return x
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (N, {self.num_features}, ...), got {tuple(x.shape)}")
        shape = (1, self.num_features) + (1,) * (x.dim() - 2)  # one draw per feature, shared by the batch
        g, low, high = self.generator, *self.scale
        s = low + (high - low) * torch.rand(shape, generator=g, dtype=x.dtype)
        m = self.shift * (2 * torch.rand(shape, generator=g, dtype=x.dtype) - 1)
        eps = torch.randn(x.shape, generator=g, dtype=x.dtype)
        return s * x + m + self.jitter * eps

    def extra_repr(self):
        return f"{self.num_features}, scale={self.scale}, shift={self.shift}, jitter={self.jitter}"


class NoisyBatchNorm1d(BatchNorm1d):
    """:class:`BatchNorm1d` followed by :class:`DistributionNoise` ("noisy BN" of Santurkar et al.).

    Same parameters and buffers as ``BatchNorm1d`` (the noise has none), so state dicts are
    interchangeable. Noise arguments as in :class:`DistributionNoise`; the noise module is
    ``self.noise``. Registered in :data:`bnbook.models.NORMS` as ``'noisy_bn'``.
    """

    def __init__(self, num_features, *args, scale=(0.5, 2.0), shift=4.0, jitter=0.5,
                 generator=None, seed=None, **kwargs):
        super().__init__(num_features, *args, **kwargs)
        self.noise = DistributionNoise(num_features, scale, shift, jitter, generator, seed)

    def forward(self, x):
        return self.noise(super().forward(x))


class ScaledStdLinear(nn.Linear):
    """A linear layer with scaled weight standardization (Qiao et al. 2019; Brock et al. 2021).

    The layer stores an ordinary weight ``W`` (out, in) but multiplies its input by
    ``gain * (W - mean) / (std * sqrt(fan_in))``, mean and (biased) standard deviation taken over each
    row (each output unit's fan-in). Every output unit thus has weights of mean 0 and squared norm
    ``gain^2`` whatever ``W`` has become, so a unit-variance input with independent features keeps
    unit variance at initialization and during training: the normalization acts on the weights, not
    on the batch, and an example's output never depends on the rest of its batch. ``gain`` is a
    learnable per-unit scale (initialized to ``gain_init``), the bias starts at zero, ``eps`` guards a row
    of equal weights.
    The normalizer-free networks of :func:`bnbook.models.nf_residual_mlp` use it.

    Examples:
        >>> layer = ScaledStdLinear(64, 32)
        >>> layer(torch.randn(5, 64)).shape
        torch.Size([5, 32])
    """

    def __init__(self, in_features, out_features, bias=True, gain_init=1.0, eps=1e-4):
        super().__init__(in_features, out_features, bias=bias)
        self.gain = nn.Parameter(torch.full((out_features, 1), float(gain_init)))
        self.eps = eps
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def standardized_weight(self):
        """The weight the layer applies: ``gain * (W - mean) / (std * sqrt(fan_in))``, per row."""
        # layer_norm over each row is (W - mean) / sqrt(var + eps / fan_in), one fused op
        n = self.in_features
        return nn.functional.layer_norm(self.weight, (n,), eps=self.eps / n) * (self.gain / n**0.5)

    def forward(self, x):
        return nn.functional.linear(x, self.standardized_weight(), self.bias)
