"""Chapter "The Batch Normalization transform": the exercise self-checks accept right answers and name the
mistake in wrong ones; the explorer's data and panels are right."""

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook.chapters import bn_transform as bt  # noqa: E402
from bnbook.chapters.bn_transform import (  # noqa: E402
    check_batchnorm_backward, check_batchnorm_forward, check_effective_batch, check_running_stats)


# --- forward ---------------------------------------------------------------------------------

def right_forward(x, gamma, beta, eps):
    dims, shape = [0] + list(range(2, x.dim())), [1, -1] + [1] * (x.dim() - 2)
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
    return gamma.view(shape) * (x - mu) / torch.sqrt(var + eps) + beta.view(shape)


def fully_connected_forward(x, gamma, beta, eps):
    mu = x.mean(dim=0)
    var = ((x - mu) ** 2).mean(dim=0)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def numpy_forward_with_cache(x, gamma, beta, eps):
    axes = (0,) + tuple(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    x, gamma, beta = x.numpy(), gamma.numpy().reshape(shape), beta.numpy().reshape(shape)
    x_hat = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return gamma * x_hat + beta, (x_hat,)


def forward_with(**mistake):
    def fn(x, gamma, beta, eps):
        dim = mistake.get("dim", 0)
        var = x.var(dim=dim, unbiased=mistake.get("unbiased", False), keepdim=True)
        mu = x.mean(dim=dim, keepdim=True)
        if mistake.get("no_eps"):
            x_hat = (x - mu) / var.sqrt()
        elif mistake.get("eps_outside"):
            x_hat = (x - mu) / (var.sqrt() + eps)
        elif mistake.get("no_sqrt"):
            x_hat = (x - mu) / (var + eps)
        elif mistake.get("fixed_eps"):
            x_hat = (x - mu) / (var + 1e-5).sqrt()
        else:
            x_hat = (x - mu) / (var + eps).sqrt()
        if mistake.get("swap"):
            return beta * x_hat + gamma
        if mistake.get("no_affine"):
            return x_hat
        return gamma * x_hat + beta
    return fn


def test_right_forward_passes(capsys):
    assert check_batchnorm_forward(right_forward) is True
    assert "✔" in capsys.readouterr().out


def test_numpy_forward_returning_a_cache_passes():
    assert check_batchnorm_forward(numpy_forward_with_cache) is True


def test_bnbook_forward_passes():
    from bnbook import batch_norm
    assert check_batchnorm_forward(
        lambda x, g, b, eps: batch_norm(x, None, None, g, b, training=True, eps=eps)) is True


@pytest.mark.parametrize("mistake, words", [
    (dict(unbiased=True), "unbiased variance"),
    (dict(no_eps=True), "eps is missing"),
    (dict(eps_outside=True), "outside the square root"),
    (dict(no_sqrt=True), "square root is missing"),
    (dict(dim=1), "wrong axis"),
    (dict(swap=True), "swapped"),
    (dict(no_affine=True), "returned x_hat"),
    (dict(fixed_eps=True), "hard-code"),
])
def test_wrong_forward_fails_and_names_the_mistake(capsys, mistake, words):
    assert check_batchnorm_forward(forward_with(**mistake)) is False
    out = capsys.readouterr().out
    assert out.startswith("✘") and words in out


def test_forward_for_fully_connected_layers_only_gets_the_convolution_hint(capsys):
    assert check_batchnorm_forward(fully_connected_forward) is False
    assert "convolution maps" in capsys.readouterr().out


def test_forward_check_computes_its_expected_value_with_torch():
    import inspect
    source = inspect.getsource(bt.check_batchnorm_forward)
    assert "_torch_bn(x, gamma, beta, eps)" in source and "sqrt" not in source


def test_forward_that_raises_or_mutates_or_misshapes_is_reported(capsys):
    assert check_batchnorm_forward(lambda x, g, b, eps: x.mean(1) - x) is False   # broadcast error
    assert "raised" in capsys.readouterr().out

    def in_place(x, g, b, eps):
        x -= x.mean(0)
        return right_forward(x, g, b, eps)
    assert check_batchnorm_forward(in_place) is False
    assert "in place" in capsys.readouterr().out

    assert check_batchnorm_forward(lambda x, g, b, eps: x.mean(0)) is False
    assert "shape" in capsys.readouterr().out

    assert check_batchnorm_forward(lambda x, g, b, eps: right_forward(x, g, b, eps) + 0.01) is False
    assert "largest difference" in capsys.readouterr().out


def test_not_attempted_prints_a_hint_and_does_not_raise(capsys):
    assert check_batchnorm_forward(None) is None
    assert "not attempted" in capsys.readouterr().out


def test_non_function_is_a_friendly_wrong_answer(capsys):
    assert check_batchnorm_forward(3.0) is False
    assert check_running_stats("my_update") is False
    out = capsys.readouterr().out
    assert out.count("✘") == 2 and "pass your function itself" in out


# --- backward ------------------------------------------------------------------------------

def step_by_step_backward(dy, x, gamma, eps, paths=("mean", "var"), with_gamma=True, swap=False):
    m = x.shape[0]
    mu = x.mean(dim=0)
    x_mu = x - mu
    s = torch.sqrt((x_mu ** 2).mean(dim=0) + eps)
    x_hat = x_mu / s
    dx_hat = dy * gamma if with_gamma else dy
    dgamma, dbeta = (dy * x_hat).sum(dim=0), dy.sum(dim=0)
    dvar = -0.5 * (dx_hat * x_mu).sum(dim=0) / s ** 3
    dmu = -dx_hat.sum(dim=0) / s
    dx = dx_hat / s + ("var" in paths) * dvar * 2 * x_mu / m + ("mean" in paths) * dmu / m
    return (dx, dbeta, dgamma) if swap else (dx, dgamma, dbeta)


def test_right_backward_passes_with_its_relative_errors(capsys):
    assert check_batchnorm_backward(step_by_step_backward) is True
    out = capsys.readouterr().out
    assert out.startswith("✔") and "finite differences" in out and "autograd" in out


def test_bnbook_backward_passes():
    from bnbook.functional import bn_backward, bn_forward
    assert check_batchnorm_backward(
        lambda dy, x, g, eps: bn_backward(dy, *bn_forward(x, None, None, eps)[1:3], g)) is True


@pytest.mark.parametrize("kwargs, words", [
    (dict(paths=()), "only the direct path"),
    (dict(paths=("mean",)), "path through the batch variance"),
    (dict(paths=("var",)), "path through the batch mean"),
    (dict(with_gamma=False), "misses gamma"),
    (dict(swap=True), "swapped"),
])
def test_wrong_backward_fails_and_names_the_mistake(capsys, kwargs, words):
    assert check_batchnorm_backward(lambda dy, x, g, eps: step_by_step_backward(dy, x, g, eps, **kwargs)) is False
    out = capsys.readouterr().out
    assert out.startswith("✘") and words in out


def test_backward_with_a_hard_coded_eps_or_a_wrong_shape_fails(capsys):
    assert check_batchnorm_backward(lambda dy, x, g, eps: step_by_step_backward(dy, x, g, 1e-5)) is False
    assert "hard-code" in capsys.readouterr().out
    assert check_batchnorm_backward(lambda dy, x, g, eps: step_by_step_backward(dy, x, g, eps)[:2]) is False
    assert "three gradients" in capsys.readouterr().out
    def transposed(dy, x, g, eps):
        dx, dgamma, dbeta = step_by_step_backward(dy, x, g, eps)
        return dx.T, dgamma, dbeta
    assert check_batchnorm_backward(transposed) is False
    assert "shapes" in capsys.readouterr().out


def test_numerical_gradient_and_rel_error():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (grad,) = bt.numerical_gradient(lambda t: (t ** 3).sum(), (x,))
    assert bt.rel_error(grad, 3 * x ** 2) < 1e-9
    assert bt.rel_error(torch.tensor([1.0]), torch.tensor([3.0])) == pytest.approx(0.5)
    assert torch.equal(x, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))   # inputs untouched


def test_speed_ratio_is_the_ratio_of_the_fastest_times(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(bt.time, "perf_counter", lambda: clock[0])
    calls = []

    def slow():   # takes 4 time units, 40 once (a busy moment)
        calls.append("slow")
        clock[0] += 40.0 if len(calls) == 7 else 4.0

    def fast():
        calls.append("fast")
        clock[0] += 1.0
    assert bt.speed_ratio(slow, fast, repeats=5) == 4.0
    assert calls[:4] == ["slow", "fast", "slow", "fast"]      # alternating, in one run


# --- running statistics -------------------------------------------------------------------

def right_update(rm, rv, x, momentum):
    m = x.shape[0]
    new_mean = (1 - momentum) * rm + momentum * x.mean(0)
    new_var = (1 - momentum) * rv + momentum * x.var(0, unbiased=False) * m / (m - 1)
    return new_mean, new_var


def in_place_update(rm, rv, x, momentum):
    rm.mul_(1 - momentum).add_(momentum * x.mean(0))
    rv.mul_(1 - momentum).add_(momentum * x.var(0, unbiased=True))


def test_right_running_stats_pass():
    assert check_running_stats(right_update) is True
    assert check_running_stats(in_place_update) is True
    assert check_running_stats(right_update, momentum=0.5) is True


@pytest.mark.parametrize("fn, words", [
    (lambda rm, rv, x, mo: (mo * rm + (1 - mo) * x.mean(0), mo * rv + (1 - mo) * x.var(0)), "NEW batch"),
    (lambda rm, rv, x, mo: (x.mean(0), x.var(0)), "replaced the running mean"),
    (lambda rm, rv, x, mo: ((1 - mo) * rm + mo * x.mean(0), (1 - mo) * rv + mo * x.var(0, unbiased=False)),
     "biased batch variance"),
    (lambda rm, rv, x, mo: ((1 - mo) * rm + mo * x.mean(0), mo * rv + (1 - mo) * x.var(0)),
     "weights the NEW"),
    (lambda rm, rv, x, mo: ((1 - mo) * rm + mo * x.mean(1).mean(), rv), "running mean is wrong"),
    (lambda rm, rv, x, mo: ((1 - mo) * rm + mo * x.mean(0), rv), "running variance is not"),
    (lambda rm, rv, x, mo: 0, "return the pair"),
    (lambda rm, rv, x, mo: x[7], "raised"),
])
def test_wrong_running_stats_fail_with_a_hint(capsys, fn, words):
    assert check_running_stats(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("✘") and words in out


def test_running_stats_not_attempted(capsys):
    assert check_running_stats(None) is None
    assert "not attempted" in capsys.readouterr().out


# --- effective batch --------------------------------------------------------------------------

def test_effective_batch(capsys):
    assert check_effective_batch(32 * 8 * 8, N=32, C=16, H=8, W=8) is True
    assert check_effective_batch(2048.0, N=32, C=16, H=8, W=8) is True
    for wrong, words in [(32, "number of examples"), (32 * 16 * 8 * 8, "per channel"),
                         (64, "one example's feature map"), (16, "number of statistics"), (7, "not it")]:
        assert check_effective_batch(wrong, N=32, C=16, H=8, W=8) is False
        assert words in capsys.readouterr().out
    assert check_effective_batch(None, N=32, C=16, H=8, W=8) is None
    assert check_effective_batch("2048", N=32, C=16, H=8, W=8) is False
    assert "expected a number" in capsys.readouterr().out


# --- the explorer -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(bt.DISTRIBUTIONS))
def test_samples_have_the_stated_mean_and_std(name):
    x = bt.sample(name, (200_000,), torch.Generator().manual_seed(0))
    pop = bt.DISTRIBUTIONS[name]
    assert x.dtype == torch.float64
    assert abs(x.mean().item() - pop["mean"]) < 0.03
    assert abs(x.std().item() / pop["std"] - 1) < 0.01


def test_explorer_noise_panel_shows_sigma_over_sqrt_b_for_the_batch_mean():
    fig = plt.figure()
    bt.plot_bn_transform(fig, "bimodal", batch_size=16, n_batches=2000, seed=3)
    mean_line, std_line = fig.axes[2].lines[:2]
    sizes = np.array(bt.BATCH_SIZES)
    assert list(mean_line.get_xdata()) == list(sizes)
    # drawn from a training set of POOL_SIZE values: sigma/sqrt(B) times the finite-population factor
    predicted = np.sqrt((bt.POOL_SIZE - sizes) / (bt.POOL_SIZE - 1) / sizes)
    assert np.allclose(mean_line.get_ydata() / predicted, 1, atol=0.05)
    assert np.all(np.diff(std_line.get_ydata()) < 0)        # the batch std's spread shrinks with B
    plt.close(fig)


def test_explorer_follows_the_seed(monkeypatch):
    def middle_histogram(**kw):
        fig = plt.figure()
        bt.plot_bn_transform(fig, "uniform", batch_size=8, n_batches=20, **kw)
        heights = [p.get_height() for p in fig.axes[1].patches]
        plt.close(fig)
        return heights
    monkeypatch.setenv("BNBOOK_SEED", "5")
    assert middle_histogram() == middle_histogram(seed=5) != middle_histogram(seed=6)


def test_sample_and_plot_reject_bad_input():
    with pytest.raises(ValueError, match="unknown distribution"):
        bt.sample("cauchy", (3,))
    with pytest.raises(ValueError, match="unknown distribution"):
        bt.plot_bn_transform(plt.figure(), "cauchy")
    with pytest.raises(ValueError, match="batch_size >= 2"):
        bt.plot_bn_transform(plt.figure(), "gaussian", batch_size=1)
    plt.close("all")


def test_plot_bn_transform_output_has_mean_beta_and_std_gamma():
    fig = plt.figure()
    bt.plot_bn_transform(fig, "skewed", batch_size=64, gamma=2.0, beta=-1.0, n_batches=50)
    assert len(fig.axes) == 3
    label = fig.axes[1].get_xlabel()
    assert "mean -1.00" in label and "std 2.0" in label
    plt.close(fig)


def test_bn_transform_explorer_has_the_four_controls():
    box = bt.bn_transform_explorer()
    names = [w.description for w in box.children[0].children]
    assert names == ["distribution", "batch size", "gamma", "beta"]
    plt.close("all")
