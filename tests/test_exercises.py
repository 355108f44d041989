"""The exercise self-checks accept right answers and name the mistake in wrong ones."""
import numpy as np
import pytest
import torch

from bnbook.exercises import check_batchnorm_forward, check_effective_batch, check_running_stats


# --- forward ---------------------------------------------------------------------------------

def right_forward(x, gamma, beta, eps):
    mu = x.mean(dim=0)
    var = ((x - mu) ** 2).mean(dim=0)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def numpy_forward_with_cache(x, gamma, beta, eps):
    x, gamma, beta = x.numpy(), gamma.numpy(), beta.numpy()
    x_hat = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
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


def test_non_function_is_a_type_error():
    with pytest.raises(TypeError, match="pass your function"):
        check_batchnorm_forward(3.0)


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
