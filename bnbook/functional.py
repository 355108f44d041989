"""Batch Normalization and its relatives from scratch: the functional form.

Chapter "The Batch Normalization transform". The forward pass is Algorithm 1 of
Ioffe and Szegedy (2015), the backward pass is derived by hand (the chapter
derives :func:`bn_backward` step by step) and wrapped in a
:class:`torch.autograd.Function`, so autograd never traces the forward.
Inference is Algorithm 2: normalize with running estimates of the mean and of the
unbiased variance.

:func:`batch_norm` is a drop-in for :func:`torch.nn.functional.batch_norm`:
same arguments, defaults, outputs and gradients, with clear errors for bad input.

BN's relatives normalize the same way over other axes (Ba et al. 2016; Wu and He 2018):
:func:`layer_norm` over the last dimensions of each example, :func:`group_norm` over
groups of channels (and space) of each example. They share :func:`normalize_backward`,
the hand-derived gradient of ``x_hat = (x - mean) / sqrt(var + eps)`` over any axes, and
are drop-ins for :func:`torch.nn.functional.layer_norm` and ``group_norm``.
"""
import torch

__all__ = ["batch_norm", "bn_forward", "bn_backward", "BatchNormFunction", "check_input",
           "layer_norm", "group_norm", "normalize_forward", "normalize_backward", "check_tensor"]


def _reduce_dims(x: torch.Tensor) -> list[int]:
    """Every dimension but the channel dimension 1: the batch and, for conv maps, space."""
    return [0] + list(range(2, x.dim()))


def _per_channel(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a (C,) tensor so it broadcasts against x of shape (N, C, ...)."""
    return t.view([1, -1] + [1] * (x.dim() - 2))


def _scale_shift(x, scale, shift):
    """x * scale + shift with per-channel scale and shift (shift may be None).

    One fused addcmul for 2-D input; for conv maps torch's addcmul with a broadcast first
    operand is several times slower than a multiply followed by an in-place add (measured).
    """
    if shift is None:
        return x * scale
    if x.dim() == 2:
        return torch.addcmul(shift, x, scale)
    return (x * scale).add_(shift)


def bn_forward(x, weight=None, bias=None, eps=1e-5):
    """Algorithm 1 on x of shape (N, C, ...): returns y and what the backward pass needs.

    mu and var are per channel over the batch (and space for convolutions); var is
    the biased (1/m) variance, as in the paper. Returns (y, x_c, inv_std, mu, var)
    with x_c = x - mu and inv_std = 1/sqrt(var + eps), so x_hat = x_c * inv_std.
    """
    dims = _reduce_dims(x)
    mu = x.mean(dim=dims, keepdim=True)                   # mini-batch mean
    x_c = x - mu
    var = (x_c * x_c).mean(dim=dims, keepdim=True)        # mini-batch variance (biased)
    inv_std = torch.rsqrt(var + eps)                      # 1 / sqrt(var + eps)
    # y = gamma * x_hat + beta with x_hat = x_c * inv_std, in one pass over the data:
    # storing x_hat as a tensor of its own would cost a pass and an allocation.
    scale = inv_std if weight is None else inv_std * _per_channel(weight, x)
    y = _scale_shift(x_c, scale, None if bias is None else _per_channel(bias, x))
    return y, x_c, inv_std, mu, var


def bn_backward(dy, x_c, inv_std, weight=None):
    """The hand-derived backward pass of Algorithm 1 (chapter "The BN transform").

    With m values per channel and x_hat = x_c * inv_std:
    dbeta = sum dy,  dgamma = sum dy * x_hat,
    dx = gamma * inv_std * (dy - dbeta/m - x_hat * dgamma/m)   (gamma = 1 without weight).
    """
    dims = _reduce_dims(dy)
    dbeta = dy.sum(dim=dims, keepdim=True)
    dgamma = (dy * x_c).sum(dim=dims, keepdim=True) * inv_std
    scale = inv_std if weight is None else inv_std * _per_channel(weight, dy)
    k = scale / (dy.numel() // dy.shape[1])               # gamma * inv_std / m
    # dx = scale * dy - k * dbeta - (k * inv_std * dgamma) * x_c, in two passes over the data.
    dx = _scale_shift(dy, scale, -k * dbeta)
    dx.addcmul_(x_c, k * inv_std * dgamma, value=-1)
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)


class BatchNormFunction(torch.autograd.Function):
    """Training-mode BN with the hand-derived backward (not autograd through the forward).

    ``BatchNormFunction.apply(x, weight, bias, running_mean, running_var, momentum, eps)``
    also updates the running buffers (if given) with the batch statistics.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        y, x_c, inv_std, mu, var = bn_forward(x, weight, bias, eps)
        _update_running_stats(running_mean, running_var, mu, var, x.numel() // x.shape[1], momentum)
        ctx.save_for_backward(x, x_c, inv_std, weight)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, dy):
        x, x_c, inv_std, weight = ctx.saved_tensors
        if torch.is_grad_enabled():
            # A double backward (Hessian-vector products, chapter "A smoother landscape") needs the
            # gradient as a function of x: recompute x_c and inv_std from x with tracked operations,
            # so autograd differentiates the hand-derived formula itself.
            _, x_c, inv_std, _, _ = bn_forward(x, None, None, ctx.eps)
        dx, dgamma, dbeta = bn_backward(dy, x_c, inv_std, weight)
        needs_weight, needs_bias = ctx.needs_input_grad[1:3]
        return dx, dgamma if needs_weight else None, dbeta if needs_bias else None, None, None, None, None


def _check_per_channel(name, t, x):
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    channels = x.shape[1]
    if t.dim() != 1 or t.numel() != channels:
        raise ValueError(
            f"{name} must hold one value per channel, shape ({channels},), but has shape {tuple(t.shape)}"
        )
    if t.dtype != x.dtype:
        raise TypeError(f"input has dtype {x.dtype} but {name} has dtype {t.dtype}; convert one of them "
                        f"(e.g. x.to({t.dtype}) or layer.to({x.dtype}))")


def check_input(x, num_features=None, dims=None, training=False):
    """Validate a BN input; raise a ValueError/TypeError that names the problem.

    ``dims`` is the allowed set of input dimensions (e.g. {2, 3} for BatchNorm1d).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"batch norm expects a torch.Tensor input, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"batch norm expects a floating-point tensor, got dtype {x.dtype}; convert it with x.float()"
        )
    if dims is not None and x.dim() not in dims:
        want = " or ".join(f"{d}-D" for d in sorted(dims))
        raise ValueError(f"expected {want} input of shape (N, C{', ...' if max(dims) > 2 else ''}), "
                         f"got {x.dim()}-D input of shape {tuple(x.shape)}")
    if x.dim() < 2:
        raise ValueError(f"batch norm needs input of shape (N, C, ...), got shape {tuple(x.shape)}")
    if num_features is not None and x.shape[1] != num_features:
        raise ValueError(
            f"input has {x.shape[1]} channels (dimension 1 of shape {tuple(x.shape)}) "
            f"but the layer was built with num_features={num_features}"
        )
    if training and x.numel() // max(x.shape[1], 1) <= 1:
        raise ValueError(
            f"batch norm in training mode needs more than one value per channel to estimate a "
            f"variance, got input of shape {tuple(x.shape)}; use a larger batch, or call .eval() "
            f"to normalize with the running statistics"
        )


def _update_running_stats(running_mean, running_var, mu, var, m, momentum):
    """Exponential moving averages, r <- (1 - momentum) r + momentum * batch value.

    The variance estimate is the unbiased one, m/(m-1) times the batch variance (Algorithm 2).
    """
    with torch.no_grad():
        if running_mean is not None:
            running_mean.lerp_(mu.view(-1), momentum)
        if running_var is not None:
            running_var.lerp_(var.view(-1) * (m / (m - 1)), momentum)


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5):
    """Drop-in for :func:`torch.nn.functional.batch_norm`.

    Training mode normalizes with the batch statistics (Algorithm 1) and, when
    running buffers are given, updates them in place with ``momentum``.
    Eval mode normalizes with ``running_mean`` and ``running_var`` (Algorithm 2).
    """
    check_input(input, training=training)
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_per_channel(name, t, input)
    if not eps > 0:
        raise ValueError(f"eps must be positive (it keeps sqrt(var + eps) away from 0), got {eps}")
    if training:
        if momentum is None or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum}")
        return BatchNormFunction.apply(input, weight, bias, running_mean, running_var, momentum, eps)
    if running_mean is None or running_var is None:
        raise ValueError(
            "eval mode normalizes with running statistics, but running_mean/running_var are None; "
            "pass training=True (or build the layer with track_running_stats=True)"
        )
    # Algorithm 2: a fixed affine map, so autograd through it is exact and cheap.
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return torch.addcmul(_per_channel(shift, input), input, _per_channel(scale, input))


# --- Layer and Group Normalization ---------------------------------------------------------------

def check_tensor(x, what: str = "normalization") -> None:
    """Raise a TypeError naming the problem unless ``x`` is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} expects a torch.Tensor input, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} expects a floating-point tensor, got dtype {x.dtype}; convert it with x.float()")


def _check_eps(eps) -> None:
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be positive (it keeps sqrt(var + eps) away from 0), got {eps!r}")


def normalize_forward(x: torch.Tensor, dims: list[int], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_hat, inv_std)``: x centred and scaled by its mean and biased variance over ``dims`` (kept)."""
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    inv_std = torch.rsqrt(var + eps)
    return (x - mean) * inv_std, inv_std


def normalize_backward(dx_hat: torch.Tensor, x_hat: torch.Tensor, inv_std: torch.Tensor,
                       dims: list[int]) -> torch.Tensor:
    """The gradient through ``x_hat = (x - mean) / sqrt(var + eps)`` over ``dims``, derived by hand.

    With n values per normalized group, ``dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat *
    x_hat))``, the means taken over ``dims``: the same formula as BN's backward, over other axes.
    """
    mean_d = dx_hat.mean(dim=dims, keepdim=True)
    mean_dx = (dx_hat * x_hat).mean(dim=dims, keepdim=True)
    return inv_std * (dx_hat - mean_d - x_hat * mean_dx)


class _AffineNormFunction(torch.autograd.Function):
    """``y = x_hat * weight + bias`` with ``x_hat`` normalized over ``dims`` of a view of x.

    ``group_shape`` reshapes x before normalizing (GroupNorm: (N, G, -1)); ``param_shape`` views weight and
    bias so they broadcast against x. The backward recomputes x_hat from x with tracked operations, so a
    double backward (Hessian-vector products) differentiates the hand-derived formula itself.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, dims, group_shape, param_shape, eps):
        x_hat, _ = normalize_forward(x.reshape(group_shape), dims, eps)
        x_hat = x_hat.reshape(x.shape)
        ctx.save_for_backward(x, weight)
        ctx.config = dims, group_shape, param_shape, eps
        y = x_hat if weight is None else x_hat * weight.reshape(param_shape)
        return y if bias is None else y + bias.reshape(param_shape)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dims, group_shape, param_shape, eps = ctx.config
        x_hat, inv_std = normalize_forward(x.reshape(group_shape), dims, eps)
        dx_hat = dy if weight is None else dy * weight.reshape(param_shape)
        dx = normalize_backward(dx_hat.reshape(group_shape), x_hat, inv_std, dims).reshape(x.shape)
        sum_dims = [d for d in range(dy.dim()) if param_shape[d] == 1]
        dweight = dbias = None
        if weight is not None and ctx.needs_input_grad[1]:
            dweight = (dy * x_hat.reshape(x.shape)).sum(dim=sum_dims)
        if ctx.needs_input_grad[2]:
            dbias = dy.sum(dim=sum_dims)
        return dx, dweight, dbias, None, None, None, None


def _check_affine(name, t, shape, x) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.dtype != x.dtype:
        raise TypeError(f"input has dtype {x.dtype} but {name} has dtype {t.dtype}; convert one of them")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Drop-in for :func:`torch.nn.functional.layer_norm` (Ba et al. 2016).

    Each example is normalized over its last ``len(normalized_shape)`` dimensions, which must equal
    ``normalized_shape``; ``weight`` and ``bias`` have that shape. No batch statistics: an example's output
    does not depend on the other examples, in training and in eval mode alike.
    """
    check_tensor(input, "layer norm")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(f"normalized_shape must be a positive integer or a tuple of them, got {normalized_shape!r}")
    if input.dim() < k or tuple(input.shape[-k:]) != shape:
        raise ValueError(f"layer norm over normalized_shape={shape} needs input whose last {k} dimension(s) are "
                         f"{shape}, got input of shape {tuple(input.shape)}")
    _check_eps(eps)
    _check_affine("weight", weight, shape, input)
    _check_affine("bias", bias, shape, input)
    dims = list(range(input.dim() - k, input.dim()))
    param_shape = [1] * (input.dim() - k) + list(shape)
    return _AffineNormFunction.apply(input, weight, bias, dims, input.shape, param_shape, eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Drop-in for :func:`torch.nn.functional.group_norm` (Wu and He 2018).

    ``input`` is ``(N, C, ...)``; the C channels are split into ``num_groups`` groups of C/G channels, and each
    example is normalized over each group's channels and positions. One group is Layer Normalization over
    (C, ...); C groups is Instance Normalization. ``weight`` and ``bias`` have one value per channel.
    """
    check_tensor(input, "group norm")
    if input.dim() < 2:
        raise ValueError(f"group norm needs input of shape (N, C, ...), got shape {tuple(input.shape)}")
    channels = input.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
    if channels % num_groups:
        raise ValueError(f"the {channels} channels of the input cannot be split into num_groups={num_groups} "
                         "groups of equal size")
    _check_eps(eps)
    _check_affine("weight", weight, (channels,), input)
    _check_affine("bias", bias, (channels,), input)
    group_shape = (input.shape[0], num_groups, -1)
    param_shape = [1, channels] + [1] * (input.dim() - 2)
    return _AffineNormFunction.apply(input, weight, bias, [2], group_shape, param_shape, eps)
