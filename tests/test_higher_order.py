"""The deep scalar chain of "Higher-order effects": exact algebra, errors and self-checks."""
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook.chapters import higher_order as chain  # noqa: E402


def test_gradient_is_product_of_the_other_weights_and_matches_finite_differences():
    w = np.array([1.3, -0.7, 2.0, 0.0, 1.1])
    g = chain.chain_gradient(w, x=0.5)
    assert g[3] == pytest.approx(0.5 * 1.3 * -0.7 * 2.0 * 1.1)  # only the zero weight's gradient survives
    assert np.count_nonzero(g) == 1
    w = np.array([1.3, -0.7, 2.0, 0.9])
    h = 1e-6
    fd = [(chain.output(w + h * e, 0.5) - chain.output(w - h * e, 0.5)) / (2 * h) for e in np.eye(4)]
    assert np.allclose(chain.chain_gradient(w, 0.5), fd, rtol=1e-7)


def test_polynomial_matches_direct_product_and_closed_form():
    w = chain.chain_weights(8, 1.1, spread=0.3, seed=4)
    coef = chain.step_polynomial(w, x=0.7)
    g = chain.chain_gradient(w, 0.7)
    assert coef[0] == pytest.approx(chain.output(w, 0.7))
    assert coef[1] == pytest.approx(-g @ g)
    y = chain.output(w, 0.7)
    pairs = sum(y**3 / (w[i] * w[j]) ** 2 for i in range(8) for j in range(i + 1, 8))
    assert coef[2] == pytest.approx(pairs)
    for lr in [1e-3, 0.05, 0.4]:
        direct = 0.7 * np.prod(w - lr * g)
        assert np.polyval(coef[::-1], lr) == pytest.approx(direct, rel=1e-12)
        # y(lr) = y prod(1 - lr y / w_i^2)
        assert direct == pytest.approx(y * np.prod(1 - lr * y / w**2), rel=1e-12)


def test_one_step_terms_sum_to_actual_change():
    w = chain.chain_weights(6, 1.3, spread=0.2, seed=1)
    out = chain.one_step(w, 0.02)
    assert out["terms"].sum() == pytest.approx(out["actual"], rel=1e-10)
    assert out["first"] == pytest.approx(-0.02 * chain.chain_gradient(w) @ chain.chain_gradient(w))
    assert out["relative_error"] == pytest.approx(abs(out["actual"] - out["first"]) / abs(out["first"]), rel=1e-6)
    assert len(out["terms"]) == 6


def test_single_layer_has_no_higher_order_terms():
    out = chain.one_step([2.0], 0.1, x=3.0)
    assert out["relative_error"] == 0 and out["second"] == 0
    assert out["actual"] == pytest.approx(-0.1 * 3.0**2)  # g = x = 3
    assert chain.crossover_lr([2.0]) == math.inf
    assert chain.motion([2.0])["time_scale"] == math.inf


@pytest.mark.parametrize("depth,scale", [(2, 0.5), (5, 1.0), (12, 1.2), (20, 0.8)])
def test_equal_weights_crossover_closed_form(depth, scale):
    w = chain.chain_weights(depth, scale)
    assert np.all(w == scale)
    assert chain.crossover_lr(w) == pytest.approx(chain.equal_weights_crossover(depth, scale), rel=1e-10)
    m = chain.motion(w)
    assert chain.crossover_lr(w) == pytest.approx(2 * m["time_scale"], rel=1e-12)
    # at the crossover the second-order term equals the first in size
    out = chain.one_step(w, chain.crossover_lr(w))
    assert abs(out["second"]) == pytest.approx(abs(out["first"]), rel=1e-10)


def test_relative_error_tiny_and_huge():
    small = chain.one_step(chain.chain_weights(30, 0.5), 0.01)["relative_error"]
    large = chain.one_step(chain.chain_weights(30, 1.5), 0.01)["relative_error"]
    assert small < 1e-8 and large > 1e50


@pytest.mark.parametrize("call,error", [
    (lambda: chain.chain_gradient([]), ValueError),
    (lambda: chain.chain_gradient([[1.0, 2.0]]), ValueError),
    (lambda: chain.chain_gradient([1.0, float("nan")]), ValueError),
    (lambda: chain.chain_gradient("ab"), TypeError),
    (lambda: chain.one_step([1.0, 2.0], 0.0), ValueError),
    (lambda: chain.one_step([1.0, 2.0], "big"), TypeError),
    (lambda: chain.output([1.0], x=None), TypeError),
    (lambda: chain.chain_weights(0, 1.0), ValueError),
    (lambda: chain.chain_weights(3, -1.0), ValueError),
    (lambda: chain.chain_weights(3, 1.0, spread=-0.1), ValueError),
    (lambda: chain.step_polynomial(np.full(200, 40.0)), ValueError),
])
def test_bad_input_raises_clear_errors(call, error):
    with pytest.raises(error):
        call()


def test_overflow_message_names_the_problem():
    with pytest.raises(ValueError, match="overflow"):
        chain.step_polynomial(np.full(200, 40.0))


def test_plot_chain_draws_two_panels():
    fig = plt.figure()
    chain.plot_chain(fig, depth=8, scale=1.2, log10_lr=-2.5, spread=0.2)
    assert len(fig.axes) == 2
    plt.close(fig)


def right_second_order(w, x):
    g = chain.chain_gradient(w, x)
    total = 0.0
    for i in range(len(w)):
        for j in range(i + 1, len(w)):
            total += x * g[i] * g[j] * np.prod(np.delete(w, [i, j]))
    return total


def test_check_second_order(capsys):
    assert chain.check_second_order(None) is None
    assert chain.check_second_order(right_second_order) is True
    assert chain.check_second_order(lambda w, x: 2 * right_second_order(w, x)) is False
    assert "pairs i < j" in capsys.readouterr().out
    assert chain.check_second_order(lambda w, x: -right_second_order(w, x)) is False
    assert "sign" in capsys.readouterr().out
    pair = lambda w, x: x * chain.chain_gradient(w, x)[0] * chain.chain_gradient(w, x)[1] * np.prod(w[2:])  # noqa: E731
    assert chain.check_second_order(pair) is False
    assert "pair (1, 2)" in capsys.readouterr().out
    assert chain.check_second_order(lambda w, x: 1 / 0) is False
    assert "raised ZeroDivisionError" in capsys.readouterr().out
    assert chain.check_second_order(3.0) is False


def test_check_crossover(capsys):
    right = 2 / (11 * 1.2**10)
    assert chain.check_crossover(None) is None
    assert chain.check_crossover(right) is True
    assert chain.check_crossover(right / 2) is False
    assert "pairs" in capsys.readouterr().out
    assert chain.check_crossover(right * 2) is False
    assert chain.check_crossover(right / 1.2) is False
    assert "scale" in capsys.readouterr().out
    assert chain.check_crossover("soon") is False
    assert chain.check_crossover(1.0) is False


def test_chain_weights_follow_the_base_seed(monkeypatch):
    monkeypatch.setenv("BNBOOK_SEED", "7")
    assert np.array_equal(chain.chain_weights(5, 1.0, spread=0.3), chain.chain_weights(5, 1.0, spread=0.3, seed=7))
    assert not np.array_equal(chain.chain_weights(5, 1.0, spread=0.3), chain.chain_weights(5, 1.0, spread=0.3, seed=8))
    monkeypatch.setenv("BNBOOK_SEED", "8")
    assert np.array_equal(chain.chain_weights(5, 1.0, spread=0.3), chain.chain_weights(5, 1.0, spread=0.3, seed=8))
    assert np.all(chain.chain_weights(5, 1.3) == 1.3)  # no spread: the seed does not matter


def test_layer_groups_put_a_linear_layer_and_its_bn_together():
    from bnbook import models
    net = models.mlp(4, [3, 3], 2, norm="bn")
    names = [n for n, _ in net.named_parameters()]
    groups = chain.layer_groups(net)
    assert [[names[i] for i in g] for g in groups] == [
        ["fc1.weight", "norm1.weight", "norm1.bias"], ["fc2.weight", "norm2.weight", "norm2.bias"],
        ["out.weight", "out.bias"]]


def test_curvature_split_finds_the_cross_terms_of_a_known_hessian():
    import torch
    # f(a, b) = a^2 + 3 b^2 + 2 a b: H = [[2, 2], [2, 6]]; d = (1, 1): within 2 + 6, across 2 * 2
    f = lambda a, b: (a ** 2 + 3 * b ** 2 + 2 * a * b).sum()  # noqa: E731
    params = (torch.tensor([0.5], dtype=torch.float64), torch.tensor([-1.0], dtype=torch.float64))
    d = (torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    out = chain.curvature_split(f, params, d, [[0], [1]])
    assert out["total"] == pytest.approx(12.0)
    assert out["within"] == pytest.approx([2.0, 6.0])
    assert out["cross"] == pytest.approx(4.0)
    assert out["cross_share"] == pytest.approx(4.0 / 12.0)
    separable = chain.curvature_split(lambda a, b: (a ** 2 + b ** 4).sum(), params, d, [[0], [1]])
    assert separable["cross"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="groups"):
        chain.curvature_split(f, params, d, [[0]])
