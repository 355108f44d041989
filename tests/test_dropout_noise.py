"""bnbook.chapters.dropout_noise: the models are built as documented, the probes measure what they say."""
import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook import BatchNorm1d  # noqa: E402
from bnbook.chapters import dropout_noise as dn  # noqa: E402


def names(model):
    return [name for name, _ in model.named_children()]


@pytest.mark.parametrize("where, first_block", [
    ("before BN", ["fc1", "drop1", "norm1", "act1", "fc2"]),
    ("before linear", ["fc1", "norm1", "act1", "drop1", "fc2"]),
    ("after last BN", ["fc1", "norm1", "act1", "fc2"]),
])
def test_dropout_mlp_puts_the_noise_where_it_says(where, first_block):
    model = dn.dropout_mlp(5, (6, 6), 3, p=0.3, where=where)
    assert names(model)[:len(first_block)] == first_block
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == (1 if where == "after last BN" else 2) and all(d.p == 0.3 for d in drops)
    if where == "after last BN":
        assert names(model)[-2:] == ["drop2", "out"]
    assert all(fc.bias is None for fc in model.linears)  # BN follows (directly or after dropout)
    assert model(torch.randn(4, 5)).shape == (4, 3)


def test_dropout_mlp_options_and_errors():
    plain = dn.dropout_mlp(5, (6,), 3, norm=False)
    assert names(plain) == ["fc1", "act1", "out"] and plain.fc1.bias is not None
    uout = dn.dropout_mlp(5, (6,), 3, p=0.5, noise="uout")
    assert isinstance(uout.drop1, dn.UniformNoise) and uout.drop1.beta == 0.5
    ghost = dn.dropout_mlp(5, (6,), 3, ghost=4)
    assert isinstance(ghost.norm1, dn.GhostBatchNorm1d) and ghost.norm1.ghost_size == 4
    with pytest.raises(ValueError, match="where"):
        dn.dropout_mlp(5, (6,), 3, p=0.5, where="middle")
    with pytest.raises(ValueError, match="p must be"):
        dn.dropout_mlp(5, (6,), 3, p=1.0)
    with pytest.raises(ValueError, match="noise"):
        dn.dropout_mlp(5, (6,), 3, p=0.5, noise="gaussian")


def test_noise_variance_and_predicted_shift():
    assert dn.noise_variance(0.5) == 1.0 and math.isclose(dn.noise_variance(0.2), 0.25)
    assert math.isclose(dn.noise_variance(math.sqrt(3), "uout"), 1.0)
    assert math.isclose(dn.predicted_shift(dn.noise_variance(0.5), 0.0, 1.0), 2.0)
    assert math.isclose(dn.predicted_shift(1.0, 2.0, 1.0), 6.0)  # 1 + 1 * (1 + 4)
    with pytest.raises(ValueError, match="noise"):
        dn.noise_variance(0.5, "gaussian")


def test_uniform_noise_has_mean_one_and_variance_beta_squared_over_three():
    torch.manual_seed(0)
    layer = dn.UniformNoise(1.2)
    factors = layer(torch.ones(200_000))
    assert abs(factors.mean().item() - 1) < 0.01
    assert abs(factors.var().item() - 1.2 ** 2 / 3) < 0.01
    x = torch.randn(5, 3)
    assert torch.equal(layer.eval()(x), x)
    with pytest.raises(ValueError, match="beta"):
        dn.UniformNoise(-0.1)


def test_ghost_bn_normalizes_each_chunk_and_is_plain_bn_otherwise():
    torch.manual_seed(0)
    x = torch.randn(12, 3) * 2 + 1
    ghost, plain = dn.GhostBatchNorm1d(3, ghost_size=4), BatchNorm1d(3)
    y = ghost(x)
    for chunk in y.split(4):
        assert torch.allclose(chunk.mean(0), torch.zeros(3), atol=1e-5)
        assert torch.allclose(chunk.var(0, unbiased=False), torch.ones(3), atol=1e-3)
    assert not torch.allclose(y, plain(x), atol=1e-3)
    # running averages: the chunks' mean statistics, one update per batch
    chunks = x.reshape(3, 4, 3)
    assert torch.allclose(ghost.running_mean, 0.1 * chunks.mean(1).mean(0), atol=1e-6)
    assert torch.allclose(ghost.running_var, 0.9 + 0.1 * chunks.var(1).mean(0), atol=1e-6)
    assert ghost.num_batches_tracked.item() == 1
    # a batch no larger than the ghost batch, and eval mode: plain BN
    same, plain2 = dn.GhostBatchNorm1d(3, ghost_size=12), BatchNorm1d(3)
    assert torch.allclose(same(x), plain2(x), atol=1e-6)
    expected = (x - ghost.running_mean) / torch.sqrt(ghost.running_var + ghost.eps)
    assert torch.allclose(ghost.eval()(x), expected, atol=1e-5)  # eval mode: the running averages
    with pytest.raises(ValueError, match="multiple"):
        dn.GhostBatchNorm1d(3, ghost_size=5).train()(x)
    with pytest.raises(ValueError, match="ghost_size"):
        dn.GhostBatchNorm1d(3, ghost_size=1)


def test_ghost_bn_gradients_flow_to_gamma_and_beta():
    torch.manual_seed(0)
    ghost = dn.GhostBatchNorm1d(3, ghost_size=4)
    x = torch.randn(8, 3, requires_grad=True)
    (ghost(x) * torch.randn(8, 3)).sum().backward()
    assert ghost.weight.grad is not None and ghost.bias.grad is not None and x.grad is not None


def test_variance_shift_of_dropout_before_bn_is_one_over_one_minus_p():
    torch.manual_seed(0)
    x = torch.randn(4000, 8)  # centred inputs: the bias-free fc1 gives centred units
    model = dn.dropout_mlp(8, (16,), 3, p=0.5)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    stats = dn.recalibrated(model, x, noise=True, seed=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved.items())  # the model is not changed
    ratio = dn.variance_shift(stats, x)[0]
    assert abs(ratio.mean() - 2.0) < 0.1
    mean, var = dn.input_moments(model, x, model.drop1)
    assert abs(ratio.mean() / dn.predicted_shift(1.0, mean, var).mean() - 1) < 0.05
    # with the noise off the statistics are the eval-mode ones: no shift
    clean = dn.variance_shift(dn.recalibrated(model, x, seed=0), x)[0]
    assert np.allclose(clean, 1.0, atol=0.05)
    with pytest.raises(ValueError, match="no BatchNorm1d"):
        dn.variance_shift(dn.dropout_mlp(8, (16,), 3, norm=False), x)
    with pytest.raises(ValueError, match="no BatchNorm1d"):
        dn.recalibrated(dn.dropout_mlp(8, (16,), 3, norm=False), x)


def test_plot_shift_measures_the_formula():
    fig = plt.figure()
    ratio = dn.plot_shift(fig, p=0.5, mean=2.0)
    assert abs(ratio / 6 - 1) < 0.05
    assert math.isclose(dn.plot_shift(plt.figure(), p=0.0, mean=1.0), 1.0, rel_tol=1e-6)
    plt.close("all")


def test_self_checks_accept_right_answers_and_name_mistakes(capsys):
    assert dn.check_shift_formula(lambda p, m, v: ((v + m ** 2) / (1 - p) - m ** 2) / v) is True
    assert dn.check_shift_formula(lambda p, m, v: 1 / (1 - p)) is False
    assert "zero-mean unit only" in capsys.readouterr().out

    def ghost_norm(x, g):
        c = x.reshape(-1, g, x.shape[1])
        return ((c - c.mean(1, keepdim=True)) / torch.sqrt(c.var(1, unbiased=False, keepdim=True) + 1e-5)
                ).reshape_as(x)

    assert dn.check_ghost_norm(ghost_norm) is True
    whole = lambda x, g: (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)  # noqa: E731
    assert dn.check_ghost_norm(whole) is False
    assert "whole batch" in capsys.readouterr().out
    assert dn.check_uout_beta(math.sqrt(3)) is True
    assert dn.check_uout_beta(1.0) is False
    assert "beta^2 / 3" in capsys.readouterr().out
    assert dn.check_uout_beta(math.sqrt(3 * 0.2 / 0.8), p=0.2) is True
