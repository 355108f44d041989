"""Tests for bnbook.chapters.smooth_landscape: measures along the gradient, scale invariance, widget, self-checks."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bnbook import data, models, train  # noqa: E402
from bnbook.chapters import smooth_landscape as landscape  # noqa: E402


def quadratic_case(seed=0):
    """Least squares with a linear model: the Hessian 2 X^T X / n is constant, so every measure is exact."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randn(32, 1, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(5, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 5, generator=g, dtype=torch.float64))
    H = 2 * x.T @ x / len(x)
    w = model.weight.detach().flatten()
    grad = 2 * x.T @ (x @ w - y.flatten()) / len(x)
    loss = lambda w_: float(((x @ w_ - y.flatten()) ** 2).mean())  # noqa: E731
    return model, x, y, H, w, grad, loss


def test_along_gradient_is_exact_on_a_quadratic():
    model, x, y, H, w, grad, loss = quadratic_case()
    steps = [0.4, 0.01, 0.1]  # unsorted on purpose
    res = landscape.along_gradient(model, x, y, steps, loss=F.mse_loss)
    assert np.allclose(res["step"], [0.01, 0.1, 0.4])
    assert math.isclose(res["grad_norm"], float(grad.norm()), rel_tol=1e-10)
    assert math.isclose(res["loss0"], loss(w), rel_tol=1e-10)
    for eta, value, change, dist in zip(res["step"], res["loss"], res["grad_change"], res["distance"]):
        assert math.isclose(value, loss(w - eta * grad), rel_tol=1e-9)
        assert math.isclose(change, float((eta * H @ grad).norm()), rel_tol=1e-9)
        assert math.isclose(dist, eta * float(grad.norm()), rel_tol=1e-12)
    summary = landscape.summarize(res)
    beta = float((H @ grad).norm() / grad.norm())  # the same for every step on a quadratic
    assert math.isclose(summary["smoothness"], beta, rel_tol=1e-9)
    losses = [loss(w)] + [loss(w - e * grad) for e in res["step"]]
    assert math.isclose(summary["loss_range"], max(losses) - min(losses), rel_tol=1e-9)
    assert math.isclose(summary["grad_change"], 0.4 * float((H @ grad).norm()), rel_tol=1e-9)
    assert math.isclose(summary["rel_grad_change"], summary["grad_change"] / res["grad_norm"], rel_tol=1e-12)


def test_matched_moves_the_same_distance_whatever_the_gradient_scale():
    model, x, y, H, w, grad, loss = quadratic_case()
    small = landscape.along_gradient(model, x, y, [0.1, 0.5], matched=True, loss=F.mse_loss)
    big = landscape.along_gradient(model, x, 10 * y, [0.1, 0.5], matched=True, loss=F.mse_loss)
    assert np.allclose(small["distance"], [0.1, 0.5]) and np.allclose(big["distance"], [0.1, 0.5])
    unit = grad / grad.norm()
    assert np.allclose(small["loss"], [loss(w - s * unit) for s in (0.1, 0.5)], rtol=1e-9)
    assert np.allclose(small["grad_change"], [s * float((H @ unit).norm()) for s in (0.1, 0.5)], rtol=1e-9)
    # a larger gradient moves Santurkar's raw step further; the matched step does not move
    raw_big = landscape.along_gradient(model, x, 10 * y, [0.1], loss=F.mse_loss)
    assert math.isclose(raw_big["distance"][0], 0.1 * raw_big["grad_norm"], rel_tol=1e-12)
    assert raw_big["grad_norm"] > 3 * small["grad_norm"]


def test_landscape_measures_add_the_gradient_norm_and_leave_a_bn_model_unchanged():
    torch.manual_seed(0)
    model = models.mlp(6, (8, 8), 3, norm="bn")
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    row = landscape.landscape_measures(model, x, y, [0.1, 0.3])
    assert set(row) == set(landscape.MEASURES) | {"grad_norm"}
    assert all(math.isfinite(v) and v >= 0 for v in row.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_non_finite_points_become_nan_and_are_left_out():
    model, x, y, *_ = quadratic_case()
    res = landscape.along_gradient(model, x, y, [0.1, 1e200], loss=F.mse_loss)
    assert math.isfinite(res["loss"][0]) and math.isnan(res["loss"][1]) and math.isnan(res["grad_change"][1])
    assert all(math.isfinite(v) for v in landscape.summarize(res).values())
    res["loss"][:] = np.nan
    assert all(math.isnan(v) for v in landscape.summarize(res).values())


@pytest.mark.parametrize("steps", [[], [0.1, -0.1], [0.0], [float("nan")], "fast", [None]])
def test_bad_step_sizes_are_refused(steps):
    model, x, y, *_ = quadratic_case()
    with pytest.raises(ValueError, match="step_sizes"):
        landscape.along_gradient(model, x, y, steps, loss=F.mse_loss)


def test_zero_gradient_is_refused():
    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    x, y = torch.randn(8, 3), torch.zeros(8, 1)
    with pytest.raises(ValueError, match="gradient norm"):
        landscape.along_gradient(model, x, y, [0.1], loss=F.mse_loss)


def test_scale_invariance_holds_for_a_weight_feeding_bn_only():
    torch.manual_seed(0)
    x, y = torch.randn(32, 10), torch.randint(0, 4, (32,))
    bn = models.mlp(10, (16, 16, 16), 4, norm="bn")
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    res = landscape.scale_invariance(bn, "fc2", x, y, a=3.0)
    assert res["output_change"] < 1e-4
    assert math.isclose(res["grad_ratio"], 1 / 3, rel_tol=1e-3)
    assert math.isclose(res["rel_update_ratio"], 1 / 9, rel_tol=1e-3)
    assert res["radial"] < 1e-4
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())
    plain = models.mlp(10, (16, 16, 16), 4)
    res = landscape.scale_invariance(plain, "fc2", x, y, a=3.0)
    assert res["output_change"] > 1e-3 and res["radial"] > 1e-4


@pytest.mark.parametrize("kwargs, match", [(dict(layer="fc9"), "no trainable layer"),
                                           (dict(layer="fc1", a=0.0), "positive"),
                                           (dict(layer="fc1", a=True), "positive")])
def test_scale_invariance_bad_input(kwargs, match):
    model = models.mlp(4, (5,), 2, norm="bn")
    with pytest.raises(ValueError, match=match):
        landscape.scale_invariance(model, x=torch.randn(8, 4), y=torch.randint(0, 2, (8,)), **kwargs)


def test_explorer_plot_draws_three_panels_with_a_diverged_run():
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    small = data.Dataset(x[:48], y[:48], x[48:], y[48:], "random", 3)
    net = models.mlp(8, (16, 16), 3, norm="bn")
    ok = train.train(net, small, steps=5, lr=0.1, batch_size=16, progress=False, seed=0)
    bad = train.train(models.mlp(8, (16, 16), 3, init_std=3.0), small, steps=5, lr=50.0, batch_size=16,
                      progress=False, seed=0)
    assert bad.diverged
    line = landscape.along_gradient(net, x, y, [0.01, 0.1, 1.0])
    fig = plt.figure()
    landscape.plot_landscape_explorer(fig, step=0.1, lr=0.5, curves={"bn": line, "plain": line},
                                      sweep={"bn": {0.1: ok, 1.0: ok}, "plain": {0.1: ok, 1.0: bad}})
    assert len(fig.axes) == 3
    assert fig.axes[2].get_title() == "training, lr = 1"  # the nearest rate on a log scale
    for ax in fig.axes:
        for artist in ax.lines:
            assert np.all(np.isfinite(np.asarray(artist.get_ydata(), float)))
    plt.close(fig)


def test_check_stable_lr(capsys):
    assert landscape.check_stable_lr(None, 10.0) is None
    assert landscape.check_stable_lr(0.2, 10.0) is True
    assert landscape.check_stable_lr(0.1, 10.0) is False
    assert "1 / lambda" in capsys.readouterr().out
    assert landscape.check_stable_lr("fast", 10.0) is False


def test_check_effective_smoothness(capsys):
    assert landscape.check_effective_smoothness(None) is None
    assert landscape.check_effective_smoothness(lambda d, c: np.max(c / d)) is True
    assert landscape.check_effective_smoothness(lambda d, c: c[-1] / d[-1]) is False
    assert landscape.check_effective_smoothness(lambda d, c: c.max() / d.min()) is False
    assert landscape.check_effective_smoothness(lambda d, c: 1 / 0) is False  # never raises
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert landscape.check_effective_smoothness(3.0) is False
    assert landscape.check_effective_smoothness(lambda d, c: None) is False
    assert "returned None" in capsys.readouterr().out


def test_check_scale_invariance():
    assert landscape.check_scale_invariance(None, 0.25) is None
    assert landscape.check_scale_invariance(0.5, 0.25, a=2.0) is True
    assert landscape.check_scale_invariance(2.0, 0.25, a=2.0) is False
    assert landscape.check_scale_invariance(0.5, 0.5, a=2.0) is False
    assert landscape.check_scale_invariance("x", 0.5) is False
    assert landscape.check_scale_invariance(0.5, None) is None
    assert landscape.check_scale_invariance(0.5, "0.25") is False  # a string is not a number, even a right one
    assert landscape.check_scale_invariance(1 / 3, 1 / 9, a=3.0) is True
