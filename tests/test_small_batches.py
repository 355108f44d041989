"""bnbook.chapters.small_batches: the probes measure what they say, the self-checks judge fairly."""
import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook import data, models  # noqa: E402
from bnbook.chapters import small_batches as sb  # noqa: E402
from bnbook.functional import normalize_forward  # noqa: E402


def test_axes_of_matches_torch_normalizers():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64) * 2 + 1
    norm = {k: normalize_forward(x, list(sb.axes_of(k)), 1e-5)[0] for k in sb.AXES}
    assert torch.allclose(norm["batch norm"], F.batch_norm(x, None, None, training=True), atol=1e-12)
    assert torch.allclose(norm["layer norm"], F.layer_norm(x, x.shape[1:]), atol=1e-12)
    assert torch.allclose(norm["instance norm"], F.instance_norm(x), atol=1e-12)
    assert sb.axes_of("batch norm", ndim=2) == (0,) and sb.axes_of("layer norm", ndim=2) == (1,)
    with pytest.raises(ValueError, match="unknown normalizer"):
        sb.axes_of("group norm")
    with pytest.raises(ValueError, match="ndim"):
        sb.axes_of("batch norm", ndim=1)


def test_batch_mode_accuracy_uses_batch_statistics_and_restores_the_model():
    torch.manual_seed(0)
    d = data.digits(standardize=True, seed=0)
    net = models.mlp(64, (16,), 10, norm="bn")
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    acc = sb.batch_mode_accuracy(net, d.x_test[:40], d.y_test[:40], 40, seed=0)
    # one batch of 40 in training mode = normalizing the whole set with its own statistics
    with torch.no_grad():
        net.train()
        want = (net(d.x_test[:40]).argmax(1) == d.y_test[:40]).float().mean().item()
        net.eval()
    net.load_state_dict(saved)
    assert acc == pytest.approx(want)
    again = models.mlp(64, (16,), 10, norm="bn")
    again.load_state_dict(saved)
    sb.batch_mode_accuracy(again.eval(), d.x_test, d.y_test, 4, seed=1)
    assert not again.training
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in saved.items())


def test_batch_size_sweep_takes_equal_examples_and_scales_the_learning_rate():
    d = data.digits(standardize=True, seed=0)
    out = sb.batch_size_sweep(lambda: models.mlp(64, (8,), 10, norm="bn"), d, [16, 64], [0],
                              epochs=0.5, lr_per_32=0.2, batch_mode=True)
    n = len(d.x_train)
    for size, runs in out.items():
        assert runs[0].steps[-1] == round(0.5 * (n // size))
        assert runs[0].lr == pytest.approx(0.2 * size / 32)
        assert runs.batch_mode.shape == (1,) and 0 <= runs.batch_mode[0] <= 1
    for bad in ([1], [], [2.0]):
        with pytest.raises(ValueError, match="sizes"):
            sb.batch_size_sweep(lambda: models.mlp(64, (8,), 10), d, bad, [0])


def test_std_error_pools_positions_and_shrinks_with_the_values_pooled():
    g = torch.Generator().manual_seed(0)
    fc = torch.randn(4000, 3, generator=g)
    conv = torch.randn(4000, 3, 4, 4, generator=g)
    small = sb.std_error(fc, 2, generator=torch.Generator().manual_seed(1))
    large = sb.std_error(fc, 64, generator=torch.Generator().manual_seed(1))
    pooled = sb.std_error(conv, 2, generator=torch.Generator().manual_seed(1))  # 32 values per channel
    assert small > 0.3 and large < 0.15 and pooled < 0.2
    # batch 2 x 16 positions of independent values is like a batch of 32
    assert pooled == pytest.approx(sb.std_error(fc, 32, generator=torch.Generator().manual_seed(1)), abs=0.04)
    # a constant channel is left out, not divided by zero
    const = torch.cat([fc[:, :1], torch.zeros(4000, 1)], dim=1)
    assert np.isfinite(sb.std_error(const, 4))
    with pytest.raises(ValueError, match="shape"):
        sb.std_error(torch.randn(10), 2)


def test_plot_jitter_spread_and_seed():
    fig = plt.figure()
    two = sb.plot_jitter(fig, batch_size=2)
    assert len(fig.axes) == 2
    assert 0.6 < two < 0.9  # +1 when the partner is below 1.0 (p = 0.84), else -1: spread 2 sqrt(p (1 - p))
    assert sb.plot_jitter(plt.figure(), batch_size=2, positions=64) < 0.3
    assert sb.plot_jitter(plt.figure(), batch_size=64) < 0.3
    assert sb.plot_jitter(plt.figure(), batch_size=4, seed=3) == sb.plot_jitter(plt.figure(), batch_size=4, seed=3)
    with pytest.raises(ValueError, match="two values"):
        sb.plot_jitter(plt.figure(), batch_size=1)
    plt.close("all")


def _right(dy, x, gamma, eps):
    inv_std = 1 / torch.sqrt(x.var(dim=1, keepdim=True, correction=0) + eps)
    x_hat = (x - x.mean(dim=1, keepdim=True)) * inv_std
    d = dy * gamma
    return inv_std * (d - d.mean(dim=1, keepdim=True) - x_hat * (d * x_hat).mean(dim=1, keepdim=True))


def test_check_layer_norm_backward(capsys):
    assert sb.check_layer_norm_backward(None) is None
    assert sb.check_layer_norm_backward(_right) is True

    def bn_axis(dy, x, gamma, eps):
        inv_std = 1 / torch.sqrt(x.var(dim=0, keepdim=True, correction=0) + eps)
        x_hat = (x - x.mean(dim=0, keepdim=True)) * inv_std
        d = dy * gamma
        return inv_std * (d - d.mean(dim=0, keepdim=True) - x_hat * (d * x_hat).mean(dim=0, keepdim=True))

    capsys.readouterr()
    assert sb.check_layer_norm_backward(bn_axis) is False
    assert "BN's backward" in capsys.readouterr().out
    assert sb.check_layer_norm_backward(lambda dy, x, gamma, eps: _right(dy, x, torch.ones_like(gamma), eps)) is False
    assert "gamma is missing" in capsys.readouterr().out
    assert sb.check_layer_norm_backward(lambda dy, x, gamma, eps: dy * gamma / x.std(dim=1, keepdim=True)) is False
    assert sb.check_layer_norm_backward(lambda *a: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert sb.check_layer_norm_backward(lambda *a: torch.zeros(2)) is False
    assert "shape" in capsys.readouterr().out
    assert sb.check_layer_norm_backward("dx") is False


def test_check_axes(capsys):
    assert sb.check_axes(None) is None
    assert sb.check_axes({"batch norm": (0, 2, 3), "layer norm": [1, 2, 3], "instance norm": (-2, -1)}) is True
    capsys.readouterr()
    assert sb.check_axes({"batch norm": (0,), "layer norm": (1, 2, 3), "instance norm": (2, 3)}) is False
    assert "positions too" in capsys.readouterr().out
    assert sb.check_axes({"batch norm": (0, 2, 3), "layer norm": (0, 1, 2, 3), "instance norm": (2, 3)}) is False
    assert "never averages over the batch" in capsys.readouterr().out
    assert sb.check_axes({"batch norm": (0, 2, 3)}) is False
    assert "lacks" in capsys.readouterr().out
    assert sb.check_axes({"batch norm": "x", "layer norm": (1,), "instance norm": (2, 3)}) is False
    assert sb.check_axes([(0, 2, 3)]) is False
