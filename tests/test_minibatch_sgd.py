"""bnbook.chapters.minibatch_sgd: gradient noise, throughput, batch statistics, the 2-D explorer and the self-checks."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bnbook import data, measure, models, train  # noqa: E402
from bnbook.chapters import minibatch_sgd as mb  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = torch.randint(0, 3, (200,), generator=g)
    torch.manual_seed(0)
    model = models.mlp(6, hidden=(16,), out_features=3)
    return model, x, y


# --- gradient noise ---------------------------------------------------------------------------------------

def test_full_batch_gradient_matches_autograd(problem):
    model, x, y = problem
    r = mb.gradient_noise(model, x, y, [len(x)], n_batches=3)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    norm2 = sum(p.grad.square().sum().item() for p in model.parameters())
    assert r["full"] == pytest.approx(norm2, rel=1e-5)
    # a "mini-batch" of all examples is the full batch: no noise at all
    assert r["noise"][len(x)] == pytest.approx(0.0, abs=1e-10)


def test_gradient_noise_matches_the_sampling_formula(problem):
    """E|g_B - g|^2 = tr(Sigma)/B * (N-B)/(N-1), with tr(Sigma) from per-example gradients."""
    model, x, y = problem
    per_example = []
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        per_example.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    G = torch.stack(per_example).double()
    trace = (G - G.mean(0)).square().sum(1).mean().item()
    n = len(x)
    r = mb.gradient_noise(model, x, y, [1, 10, 100], n_batches=400, generator=torch.Generator().manual_seed(1))
    for b in (1, 10, 100):
        predicted = trace / b * (n - b) / (n - 1)
        assert r["noise"][b] == pytest.approx(predicted, rel=0.25), b


def test_gradient_noise_leaves_the_parameters_alone(problem):
    model, x, y = problem
    before = [p.detach().clone() for p in model.parameters()]
    mb.gradient_noise(model, x, y, [4], n_batches=2)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("sizes, message", [([], "at least one"), ([0], "positive"), ([2.5], "positive"),
                                            ([True], "positive"), ([1000], "larger than")])
def test_gradient_noise_rejects_bad_batch_sizes(problem, sizes, message):
    model, x, y = problem
    with pytest.raises(ValueError, match=message):
        mb.gradient_noise(model, x, y, sizes)


def test_gradient_noise_wants_a_list_of_batch_sizes(problem):
    model, x, y = problem
    with pytest.raises(TypeError, match="list of integers"):
        mb.gradient_noise(model, x, y, 4)


def test_plot_sgd_labels_a_diverged_run():
    fig = plt.figure()
    mb.plot_sgd(fig, batch_size=1, lr=50.0)
    assert "diverged" in fig.axes[0].get_title()
    for line in fig.axes[1].get_lines():
        assert np.all(np.isfinite(line.get_xydata()))
    plt.close(fig)


def test_gradient_noise_rejects_one_batch(problem):
    model, x, y = problem
    with pytest.raises(ValueError, match="n_batches"):
        mb.gradient_noise(model, x, y, [4], n_batches=1)


def test_power_law_recovers_slope_and_prefactor():
    x = np.array([1, 2, 4, 8, 16.0])
    slope, c = mb.power_law(x, 3.0 * x ** -1.0)
    assert slope == pytest.approx(-1.0) and c == pytest.approx(3.0)


@pytest.mark.parametrize("x, y", [([1, 2], [1, -1]), ([1], [1]), ([1, 2, 3], [1, 2]), ([0, 1], [1, 1])])
def test_power_law_rejects_bad_input(x, y):
    with pytest.raises(ValueError):
        mb.power_law(x, y)


# --- throughput ---------------------------------------------------------------------------------------------

def test_throughput_reports_positive_rates_and_keeps_the_model(problem):
    model, x, y = problem
    before = [p.detach().clone() for p in model.parameters()]
    threads = torch.get_num_threads()
    rates = mb.throughput(model, x, y, [1, 8], repeats=2, min_seconds=1e-3)
    assert set(rates) == {1, 8} and all(r > 0 and math.isfinite(r) for r in rates.values())
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("kwargs, message", [(dict(repeats=0), "repeats"), (dict(min_seconds=0), "min_seconds"),
                                             (dict(num_threads=0), "num_threads")])
def test_throughput_rejects_bad_arguments(problem, kwargs, message):
    model, x, y = problem
    with pytest.raises(ValueError, match=message):
        mb.throughput(model, x, y, [1], **kwargs)


# --- loss clock -------------------------------------------------------------------------------------------

def test_loss_clock_records_time_and_whole_set_loss(problem):
    model, x, y = problem
    ds = data.Dataset(x[:150], y[:150], x[150:], y[150:], "toy", 3)
    clock = mb.LossClock(ds.x_train, ds.y_train)
    h = train.train(model, ds, steps=20, lr=0.1, batch_size=10, eval_every=20, callback=clock,
                    callback_every=5, progress=False)
    steps = [s for s, _ in h.probes]
    seconds = [v[0] for _, v in h.probes]
    assert steps == [0, 5, 10, 15, 20]
    assert seconds[0] == 0.0 and all(b > a for a, b in zip(seconds, seconds[1:]))
    assert seconds[-1] <= h.seconds
    # the last probe's loss is the whole training set's loss, as train() evaluated it
    assert h.probes[-1][1][1] == pytest.approx(h.train_loss[-1], rel=1e-5)


def test_loss_clock_leaves_the_mode_alone(problem):
    model, x, y = problem
    clock = mb.LossClock(x, y)
    model.train()
    clock(model, 0)
    assert model.training
    model.eval()
    clock(model, 1)
    assert not model.training


# --- batch statistics --------------------------------------------------------------------------------------

def test_batch_moments_are_the_statistics_of_distinct_rows():
    values = torch.arange(10.0)[:, None] * torch.tensor([1.0, -2.0])
    means, variances = measure.batch_statistics(values, 10, 3, torch.Generator().manual_seed(0))
    # a batch of every row: the population statistics, every time
    assert torch.allclose(means, values.mean(0).expand(3, 2))
    assert torch.allclose(variances, values.var(0, correction=0).expand(3, 2))
    means, _ = measure.batch_statistics(values[:, 0], 1, 50, torch.Generator().manual_seed(0))
    assert set(means.tolist()) <= set(range(10))


def test_batch_mean_spread_follows_the_finite_population_formula():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(500, generator=g)
    sigma = values.std(correction=0).item()
    means, _ = measure.batch_statistics(values, 50, 4000, g)
    predicted = sigma / math.sqrt(50) * math.sqrt((500 - 50) / 499)
    assert means.std().item() == pytest.approx(predicted, rel=0.05)


def test_normalized_in_batches_always_holds_the_example():
    values = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0])
    x_hat = mb.normalized_in_batches(values, 4, 2, 20, torch.Generator().manual_seed(0))
    # in a batch of two the larger value normalizes to +1 (up to eps)
    assert torch.allclose(x_hat, torch.ones(20), atol=1e-4)
    x_hat = mb.normalized_in_batches(values, -1, 5, 3)
    mean, std = values.mean(), values.std(correction=0)
    assert torch.allclose(x_hat, ((10.0 - mean) / std).expand(3), atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [(dict(batch_size=1), "batch_size >= 2"),
                                             (dict(index=7), "out of range"),
                                             (dict(batch_size=9), "larger than")])
def test_normalized_in_batches_rejects_bad_input(kwargs, message):
    args = dict(values=torch.arange(5.0), index=0, batch_size=2, n_batches=3) | kwargs
    with pytest.raises(ValueError, match=message):
        mb.normalized_in_batches(**args)


def test_batch_statistics_reject_non_tensors():
    with pytest.raises(ValueError, match="torch tensor"):
        measure.batch_statistics([1.0, 2.0], 1, 1)
    with pytest.raises(ValueError, match="torch tensor"):
        mb.normalized_in_batches(np.zeros(4), 0, 2, 1)


# --- the 2-D problem and explorer --------------------------------------------------------------------------

def test_toy_regression_follows_the_base_seed(monkeypatch):
    monkeypatch.setenv("BNBOOK_SEED", "3")
    x3, y3, _ = mb.toy_regression(32)
    assert np.array_equal(x3, mb.toy_regression(32, seed=3)[0])
    monkeypatch.setenv("BNBOOK_SEED", "4")
    assert not np.array_equal(x3, mb.toy_regression(32)[0])


def test_full_batch_path_is_gradient_descent_and_converges():
    x, y, w_star = mb.toy_regression(64, seed=0)
    h = mb.sgd_path(x, y, 64, lr=1.0, epochs=200)
    assert isinstance(h, train.History) and not h.diverged
    steps, path = h.probe_series()
    assert path.shape == (201, 2) and list(steps) == h.steps == list(range(201))
    w = np.array([-1.5, 2.0])
    w = w - 1.0 * x.T @ (x @ w - y) / 64
    assert np.allclose(path[1], w)
    assert np.allclose(path[-1], w_star, atol=1e-6)
    excess = mb.sgd_excess_loss(x, y, path)
    assert excess[-1] == pytest.approx(0.0, abs=1e-10)
    # the recorded loss is the full-batch loss of each iterate
    assert np.allclose(np.array(h.train_loss) - h.train_loss[-1], excess, atol=1e-10)


def test_sgd_path_has_one_step_per_batch_and_stops_when_diverging():
    x, y, _ = mb.toy_regression(64, seed=0)
    h = mb.sgd_path(x, y, 8, lr=0.1, epochs=2)
    assert h.probe_series()[1].shape == (2 * 8 + 1, 2) and not h.diverged
    diverged = mb.sgd_path(x, y, 64, lr=10.0, epochs=500)
    assert diverged.diverged and diverged.diverged_at == len(diverged.steps) < 501
    assert np.isnan(diverged.final("train_loss"))
    assert np.all(np.isfinite(diverged.probe_series()[1])) and np.all(np.isfinite(diverged.train_loss))
    # the book's one rule: the run stops at the first loss above divergence_limit(initial loss)
    limit = train.divergence_limit(diverged.train_loss[0])
    assert not any(train.has_diverged(v, limit) for v in diverged.train_loss)


def test_sgd_path_order_follows_the_seed():
    x, y, _ = mb.toy_regression(64, seed=0)
    a, b = (mb.sgd_path(x, y, 8, 0.1, 1, seed=s).probe_series()[1] for s in (0, 1))
    assert np.array_equal(a, mb.sgd_path(x, y, 8, 0.1, 1, seed=0).probe_series()[1])
    assert not np.allclose(a, b)


def test_small_batches_jitter_more_around_the_minimum():
    x, y, _ = mb.toy_regression(256, seed=1)
    tail = {}
    for b in (1, 32):
        path = mb.sgd_path(x, y, b, 0.3, 20, seed=1).probe_series()[1]
        tail[b] = mb.sgd_excess_loss(x, y, path[-len(path) // 4:]).mean()
    assert tail[1] > 5 * tail[32]


@pytest.mark.parametrize("kwargs, message", [(dict(lr=0.0), "lr"), (dict(lr=math.inf), "lr"),
                                             (dict(epochs=0), "epochs"), (dict(batch_size=0), "positive")])
def test_sgd_path_rejects_bad_arguments(kwargs, message):
    x, y, _ = mb.toy_regression(32)
    args = dict(batch_size=4, lr=0.1) | kwargs
    with pytest.raises(ValueError, match=message):
        mb.sgd_path(x, y, **args)


@pytest.mark.parametrize("batch_size, lr", [(8, 0.3), (1, 1.5), (256, 0.03)])
def test_plot_sgd_draws_two_panels_without_non_finite_values(batch_size, lr):
    fig = plt.figure()
    mb.plot_sgd(fig, batch_size=batch_size, lr=lr)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        for line in ax.get_lines():
            assert np.all(np.isfinite(line.get_xydata()))
    plt.close(fig)


# --- self-checks -------------------------------------------------------------------------------------------

def test_minibatch_gradient_check(capsys):
    assert mb.check_minibatch_gradient(None) is None
    assert mb.check_minibatch_gradient(lambda w, x, y: x.T @ (x @ w - y) / len(x)) is True
    assert "✔" in capsys.readouterr().out
    assert mb.check_minibatch_gradient(lambda w, x, y: x.T @ (x @ w - y)) is False
    assert "summed" in capsys.readouterr().out
    assert mb.check_minibatch_gradient(lambda w, x, y: x.T @ (y - x @ w) / len(x)) is False
    assert "sign" in capsys.readouterr().out
    assert mb.check_minibatch_gradient(lambda w, x, y: 2 * x.T @ (x @ w - y) / len(x)) is False
    assert "0.5" in capsys.readouterr().out
    assert mb.check_minibatch_gradient(lambda w, x, y: x @ w) is False
    assert mb.check_minibatch_gradient(lambda w, x, y: 1 / 0) is False
    assert "raised ZeroDivisionError" in capsys.readouterr().out
    assert mb.check_minibatch_gradient(lambda w, x, y: (x.T @ (x @ w - y) / len(x))[:, None]) is True
    capsys.readouterr()
    assert mb.check_minibatch_gradient(3) is False
    assert "function itself" in capsys.readouterr().out
    assert mb.check_minibatch_gradient(lambda w, x, y: "grad") is False
    assert "numbers" in capsys.readouterr().out


def test_linear_scaling_check(capsys):
    assert mb.check_linear_scaling(None) is None
    assert mb.check_linear_scaling(0.8) is True
    assert mb.check_linear_scaling(0.1 * math.sqrt(8)) is False
    assert "square-root" in capsys.readouterr().out
    assert mb.check_linear_scaling(0.0125) is False
    assert "LARGER" in capsys.readouterr().out
    assert mb.check_linear_scaling(0.1) is False
    assert mb.check_linear_scaling(0.5) is False
    assert mb.check_linear_scaling("0.8") is False
    assert "expected a number" in capsys.readouterr().out
