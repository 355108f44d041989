"""bnbook.folding: the folds are exact, the probes measure what they say, the self-checks judge fairly."""
import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook import BatchNorm1d, folding, models  # noqa: E402


def _randomize(model, seed=0):
    """Non-trivial gamma, beta and running statistics, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (BatchNorm1d, nn.BatchNorm1d)):
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.num_features, generator=g, dtype=m.weight.dtype) * 2 + 0.2)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=m.bias.dtype))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=m.running_mean.dtype))
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=m.running_var.dtype) + 0.1)
    return model


def _x(n=32, d=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + 1


# --- folds -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bn_class", [BatchNorm1d, nn.BatchNorm1d])
@pytest.mark.parametrize("train_mode", [True, False])
def test_fold_affine_into_next_is_exact(bn_class, train_mode):
    torch.manual_seed(0)
    norm = _randomize(bn_class(6, dtype=torch.float64))
    lin = nn.Linear(6, 3, dtype=torch.float64)
    new_norm, new_lin = folding.fold_affine_into_next(norm, lin)
    assert new_norm.weight is None and new_norm.bias is None and type(new_norm) is bn_class
    assert torch.equal(new_norm.running_mean, norm.running_mean)
    for m in (norm, new_norm):
        m.train(train_mode)
    x = _x()
    assert torch.allclose(lin(norm(x)), new_lin(new_norm(x)), atol=1e-12, rtol=0)


def test_fold_affine_into_next_without_bias_in_the_linear_layer():
    norm = _randomize(BatchNorm1d(6, dtype=torch.float64)).eval()
    lin = nn.Linear(6, 3, bias=False, dtype=torch.float64)
    new_norm, new_lin = folding.fold_affine_into_next(norm, lin)
    x = _x()
    assert torch.allclose(lin(norm(x)), new_lin(new_norm.eval()(x)), atol=1e-12, rtol=0)


def test_fold_bn_into_previous_is_exact_in_eval_mode_only():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4, dtype=torch.float64)
    norm = _randomize(nn.BatchNorm1d(4, dtype=torch.float64)).eval()
    merged = folding.fold_bn_into_previous(lin, norm)
    x = _x()
    assert torch.allclose(norm(lin(x)), merged(x), atol=1e-12, rtol=0)
    norm.train()
    assert (norm(lin(x)) - merged(x)).abs().max() > 1e-3


def test_fold_bn_into_previous_without_affine_or_bias():
    lin = nn.Linear(6, 4, bias=False, dtype=torch.float64)
    norm = _randomize(BatchNorm1d(4, affine=False, dtype=torch.float64)).eval()
    merged = folding.fold_bn_into_previous(lin, norm)
    x = _x()
    assert torch.allclose(norm(lin(x)), merged(x), atol=1e-12, rtol=0)


def test_whole_net_folds_keep_the_function_and_the_original():
    torch.manual_seed(0)
    after = _randomize(models.mlp(6, (8, 8), 3, norm="bn", placement="after").double())
    before = _randomize(models.mlp(6, (8, 8), 3, activation="sigmoid", norm="bn").double())
    saved = [p.clone() for p in after.parameters()]
    folded = folding.fold_affine(after)
    deployed = folding.fold_for_inference(before)
    x = _x()
    assert folding.max_output_gap(after, folded, x, train_mode=True) < 1e-12
    assert folding.max_output_gap(after, folded, x, train_mode=False) < 1e-12
    assert folding.max_output_gap(before, deployed, x) < 1e-12
    assert all(torch.equal(a, b) for a, b in zip(saved, after.parameters()))
    assert after.norm1.weight is not None and folded.norm1.weight is None
    assert isinstance(deployed.norm1, nn.Identity) and not deployed.training
    assert sum(p.numel() for p in after.parameters()) - sum(p.numel() for p in folded.parameters()) == 2 * 16


def test_max_output_gap_restores_running_statistics_and_modes():
    net = _randomize(models.mlp(6, (8,), 3, norm="bn").double()).eval()
    other = folding.fold_for_inference(net).train()
    before = [b.clone() for b in net.buffers()]
    gap = folding.max_output_gap(net, other, _x(), train_mode=True)
    assert gap > 1e-3  # training-mode BN is not the folded affine map
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffers()))
    assert not net.training and other.training


def test_folds_refuse_what_cannot_be_folded():
    with pytest.raises(ValueError, match="placement='before'"):
        folding.fold_affine(models.mlp(6, (8,), 3, norm="bn"))
    with pytest.raises(ValueError, match="placement='after'"):
        folding.fold_for_inference(models.mlp(6, (8,), 3, norm="bn", placement="after"))
    with pytest.raises(ValueError, match="8 features but the linear layer has 5"):
        folding.fold_affine_into_next(BatchNorm1d(8), nn.Linear(5, 2))
    with pytest.raises(TypeError, match="expected a BN layer"):
        folding.fold_affine_into_next(nn.Linear(5, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        folding.fold_bn_into_previous(nn.Linear(5, 4), BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(TypeError, match="nn.Sequential"):
        folding.fold_affine(nn.Linear(3, 3))


# --- probes ------------------------------------------------------------------------------------

def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)


def test_step_sources_with_bn_mean_is_betas_alone():
    torch.manual_seed(0)
    net = models.mlp(6, (8, 8), 3, activation="tanh", norm="bn")
    x, y = _batch()
    result = folding.step_sources(net, x, y, lr=0.5, layer=2)
    mean = result["mean"]
    assert mean["all together"] > 1e-4
    assert mean["lower layers"] < 1e-12 and mean["weights and gamma"] < 1e-12
    assert math.isclose(mean["bias or beta"], mean["all together"], rel_tol=1e-9)
    assert result["std"]["bias or beta"] < 1e-12  # beta shifts, it never scales


def test_step_sources_without_bn_lower_layers_move_the_mean_and_the_model_is_unchanged():
    torch.manual_seed(0)
    net = models.mlp(6, (8, 8), 3, activation="tanh")
    saved = [p.clone() for p in net.parameters()]
    x, y = _batch()
    mean = folding.step_sources(net, x, y, lr=0.5, layer=2)["mean"]
    assert mean["lower layers"] > 0.05 * mean["all together"]
    assert all(torch.equal(a, b) for a, b in zip(saved, net.parameters()))
    assert all(p.grad is None for p in net.parameters())
    # small steps: the groups' effects add up to first order
    small = folding.step_sources(net, x, y, lr=1e-4, layer=2)["mean"]
    assert small["interaction"] < 1e-3 * small["all together"]


def test_step_sources_rejects_bad_layer_and_lr():
    net = models.mlp(6, (8,), 3)
    x, y = _batch()
    with pytest.raises(ValueError, match="no module act2"):
        folding.step_sources(net, x, y, lr=0.1, layer=2)
    with pytest.raises(ValueError, match="lr must be positive"):
        folding.step_sources(net, x, y, lr=0.0, layer=1)


def test_steps_to_target_with_bn_follows_the_formula_and_divergence_is_recorded():
    torch.manual_seed(0)
    net = models.mlp(6, (16, 16), 3, activation="sigmoid", norm="bn")
    x, _ = _batch()
    for lr in (1.0, 3.0, 6.0, 10.0):
        got = folding.steps_to_target(net, x, 2, 1.0, 0.5, lr=lr, max_steps=300)
        want = folding.predicted_steps(lr, 16, 1.0, 0.5)
        assert abs(got - want) <= 1, (lr, got, want)
    assert folding.predicted_steps(40.0, 16, 1.0, 0.5) is None
    assert folding.steps_to_target(net, x, 2, 1.0, 0.5, lr=40.0) is None
    assert folding.steps_to_target(net, x, 2, 1.0, 0.5, lr=0.01, max_steps=5) == 6
    assert folding.predicted_steps(8.0, 16, 1.0, 0.5) == 1  # lr = n_units / 2: one step


def test_near_linear_threshold_and_fractions():
    t = folding.near_linear_threshold(0.8)
    s = torch.sigmoid(torch.tensor(t, dtype=torch.float64))
    assert math.isclose((s * (1 - s)).item(), 0.8 * 0.25, rel_tol=1e-9)
    z = torch.tensor([0.0, 0.5, -0.9, 1.0, -3.0])
    assert folding.near_linear_fraction(z) == pytest.approx(3 / 5)
    assert folding.band_fraction(1.0) == pytest.approx(math.erf(t / math.sqrt(2)))
    g = torch.Generator().manual_seed(0)
    sample = 1.5 * torch.randn(200_000, generator=g, dtype=torch.float64) + 0.7
    assert folding.near_linear_fraction(sample) == pytest.approx(folding.band_fraction(1.5, 0.7), abs=0.005)
    assert np.all(np.diff(folding.band_fraction(np.linspace(0.5, 5, 10))) < 0)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="slope"):
            folding.near_linear_threshold(bad)
    with pytest.raises(ValueError, match="empty"):
        folding.near_linear_fraction(torch.tensor([]))
    with pytest.raises(ValueError, match="non-zero"):
        folding.band_fraction(0.0)


def test_plot_sigmoid_regime_draws_and_returns_the_fraction():
    fig = plt.figure()
    frac = folding.plot_sigmoid_regime(fig, gamma=1.0, beta=0.0)
    assert len(fig.axes) == 3  # two panels and the histogram's twin axis
    assert frac == pytest.approx(folding.band_fraction(1.0).item(), abs=0.02)
    assert folding.plot_sigmoid_regime(plt.figure(), gamma=4.0) < 0.3
    plt.close("all")


# --- exercise self-checks ------------------------------------------------------------------------

def test_check_fold_next(capsys):
    assert folding.check_fold_next(None) is None
    assert folding.check_fold_next(lambda W, b, g, be: (W * g, W @ be + b)) is True
    assert folding.check_fold_next(lambda W, b, g, be: (W * g, b)) is False
    assert "beta is lost" in capsys.readouterr().out
    assert folding.check_fold_next(lambda W, b, g, be: (W * g, W @ (g * be) + b)) is False
    assert "not scaled" in capsys.readouterr().out
    assert folding.check_fold_next(lambda W, b, g, be: (W, W @ be + b)) is False
    assert folding.check_fold_next(lambda W, b, g, be: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(TypeError):
        folding.check_fold_next(3)


def test_check_fold_previous(capsys):
    def right(W, b, mean, var, gamma, beta, eps):
        s = gamma / torch.sqrt(var + eps)
        return s[:, None] * W, s * (b - mean) + beta

    def no_eps(W, b, mean, var, gamma, beta, eps):
        s = gamma / torch.sqrt(var)
        return s[:, None] * W, s * (b - mean) + beta

    def lost_bias(W, b, mean, var, gamma, beta, eps):
        s = gamma / torch.sqrt(var + eps)
        return s[:, None] * W, -s * mean + beta

    assert folding.check_fold_previous(None) is None
    assert folding.check_fold_previous(right) is True
    assert folding.check_fold_previous(no_eps) is False
    assert "eps is missing" in capsys.readouterr().out
    assert folding.check_fold_previous(lost_bias) is False
    assert "bias b is lost" in capsys.readouterr().out
    assert folding.check_fold_previous(lambda *a: "no") is False


def test_check_threshold(capsys):
    assert folding.check_threshold(None) is None
    assert folding.check_threshold(2 * math.acosh(1 / math.sqrt(0.8))) is True
    assert folding.check_threshold(math.acosh(1 / math.sqrt(0.8))) is False
    assert "double" in capsys.readouterr().out
    assert folding.check_threshold(5.0) is False
    assert folding.check_threshold("0.96") is False
    assert "expected a number" in capsys.readouterr().out
