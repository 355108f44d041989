"""bnbook.chapters.gamma_beta: the probes measure what they say, the self-checks judge fairly."""
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook import models  # noqa: E402
from bnbook.chapters import gamma_beta as gb  # noqa: E402


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)


def test_step_sources_with_bn_mean_is_betas_alone():
    torch.manual_seed(0)
    net = models.mlp(6, (8, 8), 3, activation="tanh", norm="bn")
    x, y = _batch()
    result = gb.step_sources(net, x, y, lr=0.5, layer=2)
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
    mean = gb.step_sources(net, x, y, lr=0.5, layer=2)["mean"]
    assert mean["lower layers"] > 0.05 * mean["all together"]
    assert all(torch.equal(a, b) for a, b in zip(saved, net.parameters()))
    assert all(p.grad is None for p in net.parameters())
    # small steps: the groups' effects add up to first order
    small = gb.step_sources(net, x, y, lr=1e-4, layer=2)["mean"]
    assert small["interaction"] < 1e-3 * small["all together"]


def test_step_sources_rejects_bad_layer_and_lr():
    net = models.mlp(6, (8,), 3)
    x, y = _batch()
    with pytest.raises(ValueError, match="no module act2"):
        gb.step_sources(net, x, y, lr=0.1, layer=2)
    with pytest.raises(ValueError, match="lr must be positive"):
        gb.step_sources(net, x, y, lr=0.0, layer=1)


def test_steps_to_target_with_bn_follows_the_formula_and_divergence_is_recorded():
    torch.manual_seed(0)
    net = models.mlp(6, (16, 16), 3, activation="sigmoid", norm="bn")
    saved = [p.clone() for p in net.parameters()]
    x, _ = _batch()
    for lr in (1.0, 3.0, 6.0, 10.0):
        h = gb.steps_to_target(net, x, 2, 1.0, 0.5, lr=lr, max_steps=300)
        got, want = h.first_step("train_loss", 1e-3), gb.predicted_steps_to_target(lr, 16, 1.0, 0.5)
        assert not h.diverged and abs(got - want) <= 1, (lr, got, want)
        assert h.steps == list(range(got + 1)) and h.train_loss[-1] <= 1e-3 < h.train_loss[-2]
    assert all(torch.equal(a, b) for a, b in zip(saved, net.parameters()))
    assert gb.predicted_steps_to_target(40.0, 16, 1.0, 0.5) == math.inf
    diverged = gb.steps_to_target(net, x, 2, 1.0, 0.5, lr=40.0)
    assert diverged.diverged and diverged.diverged_at > 0
    assert diverged.first_step("train_loss", 1e-3) is None
    assert all(math.isfinite(v) for v in diverged.train_loss)
    slow = gb.steps_to_target(net, x, 2, 1.0, 0.5, lr=0.01, max_steps=5)
    assert not slow.diverged and slow.steps == list(range(6)) and slow.first_step("train_loss", 1e-3) is None
    assert gb.predicted_steps_to_target(8.0, 16, 1.0, 0.5) == 1  # lr = n_units / 2: one step
    assert gb.predicted_steps_to_target(8.0, 16, 0.0, 1.0) == 0  # already there


def test_steps_to_target_can_train_one_layer_alone():
    torch.manual_seed(0)
    net = models.mlp(6, (16, 16), 3, activation="tanh")
    x, _ = _batch()
    # layer 2 alone: the pre-activation of layer 2 is fc2(h1), h1 fixed, so a descent that moves
    # only fc2 leaves fc1 untouched; compare the loss path of all layers, which differs
    alone = gb.steps_to_target(net, x, 2, 1.0, 0.5, lr=1.0, max_steps=3, train=("fc2",))
    whole = gb.steps_to_target(net, x, 2, 1.0, 0.5, lr=1.0, max_steps=3)
    assert alone.train_loss[0] == whole.train_loss[0] and alone.train_loss[1] != whole.train_loss[1]
    assert all(p.requires_grad for p in net.parameters())  # the model itself is not frozen
    # the first step of layer 2 alone is the full step restricted to fc2
    z_loss = lambda m: gb.steps_to_target(m, x, 2, 1.0, 0.5, lr=1.0, max_steps=0).train_loss[0]  # noqa: E731
    stepped = models.mlp(6, (16, 16), 3, activation="tanh")
    stepped.load_state_dict(net.state_dict())
    stepped.zero_grad()
    h1 = torch.tanh(stepped.fc1(x)).detach()
    z = stepped.fc2(h1)
    loss = ((z.mean(0) - 1.0) ** 2 + (z.std(0, correction=0) - 0.5) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        for p in stepped.fc2.parameters():
            p -= 1.0 * p.grad
    assert math.isclose(z_loss(stepped), alone.train_loss[1], rel_tol=1e-5)
    with pytest.raises(ValueError, match="train must name layers"):
        gb.steps_to_target(net, x, 2, 1.0, 0.5, lr=1.0, train=("fc9",))


def test_near_linear_threshold_and_fractions():
    t = gb.near_linear_threshold(0.8)
    s = torch.sigmoid(torch.tensor(t, dtype=torch.float64))
    assert math.isclose((s * (1 - s)).item(), 0.8 * 0.25, rel_tol=1e-9)
    z = torch.tensor([0.0, 0.5, -0.9, 1.0, -3.0])
    assert gb.near_linear_fraction(z) == pytest.approx(3 / 5)
    assert gb.band_fraction(1.0) == pytest.approx(math.erf(t / math.sqrt(2)))
    g = torch.Generator().manual_seed(0)
    sample = 1.5 * torch.randn(200_000, generator=g, dtype=torch.float64) + 0.7
    assert gb.near_linear_fraction(sample) == pytest.approx(gb.band_fraction(1.5, 0.7), abs=0.005)
    assert np.all(np.diff(gb.band_fraction(np.linspace(0.5, 5, 10))) < 0)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="slope"):
            gb.near_linear_threshold(bad)
    with pytest.raises(ValueError, match="empty"):
        gb.near_linear_fraction(torch.tensor([]))
    with pytest.raises(ValueError, match="non-zero"):
        gb.band_fraction(0.0)


def test_plot_sigmoid_regime_draws_and_returns_the_fraction():
    fig = plt.figure()
    frac = gb.plot_sigmoid_regime(fig, gamma=1.0, beta=0.0)
    assert len(fig.axes) == 3  # two panels and the histogram's twin axis
    assert frac == pytest.approx(gb.band_fraction(1.0).item(), abs=0.02)
    assert gb.plot_sigmoid_regime(plt.figure(), gamma=4.0) < 0.3
    # the draws follow the book's seed: the same seed gives the same fraction
    assert gb.plot_sigmoid_regime(plt.figure(), gamma=1.3, seed=5) == gb.plot_sigmoid_regime(
        plt.figure(), gamma=1.3, seed=5)
    plt.close("all")


def test_plot_sigmoid_regime_follows_bnbook_seed(monkeypatch):
    fractions = {}
    for base in (0, 1):
        monkeypatch.setenv("BNBOOK_SEED", str(base))
        fractions[base] = gb.plot_sigmoid_regime(plt.figure(), gamma=1.3, beta=0.4, n=500)
    assert fractions[0] != fractions[1]
    plt.close("all")


def test_check_fold_next(capsys):
    assert gb.check_fold_next(None) is None
    assert gb.check_fold_next(lambda W, b, g, be: (W * g, W @ be + b)) is True
    assert gb.check_fold_next(lambda W, b, g, be: (W * g, b)) is False
    assert "beta is lost" in capsys.readouterr().out
    assert gb.check_fold_next(lambda W, b, g, be: (W * g, W @ (g * be) + b)) is False
    assert "not scaled" in capsys.readouterr().out
    assert gb.check_fold_next(lambda W, b, g, be: (W, W @ be + b)) is False
    assert gb.check_fold_next(lambda W, b, g, be: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert gb.check_fold_next(3) is False
    assert "pass your function itself" in capsys.readouterr().out
    assert gb.check_fold_next(lambda W, b, g, be: (W * g,)) is False
    assert "pair" in capsys.readouterr().out


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

    assert gb.check_fold_previous(None) is None
    assert gb.check_fold_previous(right) is True
    assert gb.check_fold_previous(no_eps) is False
    assert "eps is missing" in capsys.readouterr().out
    assert gb.check_fold_previous(lost_bias) is False
    assert "bias b is lost" in capsys.readouterr().out
    assert gb.check_fold_previous(lambda *a: "no") is False
    assert gb.check_fold_previous("right") is False
    assert "pass your function itself" in capsys.readouterr().out


def test_check_threshold(capsys):
    assert gb.check_threshold(None) is None
    assert gb.check_threshold(2 * math.acosh(1 / math.sqrt(0.8))) is True
    assert gb.check_threshold(math.acosh(1 / math.sqrt(0.8))) is False
    assert "double" in capsys.readouterr().out
    assert gb.check_threshold(5.0) is False
    assert gb.check_threshold("0.96") is False
    assert "expected a number" in capsys.readouterr().out
