"""Batch Normalization layers: drop-ins for ``torch.nn.BatchNorm1d`` and ``BatchNorm2d``.

Chapter "The Batch Normalization transform". Same arguments and defaults, same
parameters and buffers (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), so a torch state_dict loads into these layers and back.
The arithmetic lives in :mod:`bnbook.functional`.
"""
import torch
from torch import nn

from .functional import batch_norm, check_input

__all__ = ["BatchNorm1d", "BatchNorm2d"]


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

    def extra_repr(self):
        return ("{num_features}, eps={eps}, momentum={momentum}, affine={affine}, bias={use_bias}, "
                "track_running_stats={track_running_stats}".format(**self.__dict__,
                                                                   use_bias=self.bias is not None))


class BatchNorm1d(_BatchNorm):
    """BN over (N, C) or (N, C, L) input: statistics per feature over the batch (and length)."""
    _input_dims = {2, 3}


class BatchNorm2d(_BatchNorm):
    """BN over (N, C, H, W) input: statistics per channel over the batch and both spatial
    dimensions, so the effective batch is m = N*H*W (Ioffe and Szegedy, sec. 3.2)."""
    _input_dims = {4}
