"""Conditioning, gradient-descent step counts, standardization and whitening (chapter "Input normalization")."""
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook.chapters import input_normalization as cd  # noqa: E402
from bnbook import data, models, train  # noqa: E402


def test_second_moment_is_the_least_squares_hessian():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3)) + 2.0
    y = rng.standard_normal(50)
    x1 = np.hstack([x, np.ones((50, 1))])
    w = torch.zeros(4, dtype=torch.float64)
    f = lambda w: 0.5 * ((torch.as_tensor(x1) @ w - torch.as_tensor(y)) ** 2).mean()  # noqa: E731
    auto = torch.autograd.functional.hessian(f, w).numpy()
    assert np.allclose(cd.second_moment(x), auto)
    assert np.allclose(cd.second_moment(torch.as_tensor(x), bias=False), x.T @ x / 50)


def test_condition_number_handles_degenerate_matrices():
    assert cd.condition_number(np.diag([4.0, 1.0, 0.5])) == pytest.approx(8.0)
    degenerate = np.diag([4.0, 1.0, 0.0])
    assert cd.condition_number(degenerate) == math.inf
    assert cd.condition_number(degenerate, subspace=True) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="symmetric"):
        cd.condition_number(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive eigenvalue"):
        cd.condition_number(np.zeros((2, 2)))


def test_stable_lr_separates_convergence_from_divergence():
    h = np.diag([10.0, 1.0])
    assert cd.stable_lr(h) == pytest.approx(0.2)
    w_star, w0 = np.array([1.0, -1.0]), np.zeros(2)
    run = cd.quadratic_gd(h, w_star, w0, 0.19, 300, keep_path=True)
    assert isinstance(run, train.History) and not run.diverged and run.steps == list(range(301))
    path = np.array([w for _, w in run.probes])
    assert path.shape == (301, 2) and np.allclose(path[0], w0)
    assert np.allclose(cd.excess_loss(h, path, w_star), run.train_loss)
    assert run.train_loss[-1] < 1e-8
    over = cd.quadratic_gd(h, w_star, w0, 0.21, 1000, keep_path=True)
    assert over.diverged and 1 < over.diverged_at < 1000 and over.steps[-1] == over.diverged_at - 1
    assert np.all(np.isfinite(over.train_loss)) and len(over.probes) == len(over.steps)
    # the book's one divergence rule: the run stops at the first excess loss above 100 x max(1, initial)
    e = np.linalg.matrix_power(np.eye(2) - 0.21 * h, over.diverged_at) @ (w0 - w_star)
    assert train.has_diverged(0.5 * e @ h @ e, train.divergence_limit(over.train_loss[0]))
    assert max(over.train_loss) <= train.divergence_limit(over.train_loss[0])
    assert cd.steps_to_tolerance(cd.quadratic_gd(h, w_star, w0, 0.21, 1000, tol=1e-6), 1e-6) is None
    assert cd.steps_to_tolerance(cd.quadratic_gd(h, w_star, w0, 0.19, 5, tol=1e-6), 1e-6) is None  # too few steps


def test_steps_to_tolerance_match_the_exact_count_and_stay_below_the_bound():
    h = np.diag([1.0, 0.01])  # kappa = 100
    w_star, w0 = np.zeros(2), np.array([0.0, 1.0])  # all the error in the slowest direction
    tol = 1e-6

    def count(w0, lr):
        return cd.steps_to_tolerance(cd.quadratic_gd(h, w_star, w0, lr, 100_000, tol=tol), tol)

    exact = math.ceil(math.log(tol) / (2 * math.log(1 - 0.01)))  # (1 - 1/kappa)^(2t) <= tol
    run = cd.quadratic_gd(h, w_star, w0, 1.0, 100_000, tol=tol)
    assert cd.steps_to_tolerance(run, tol) == exact == run.steps[-1]  # it stops there
    assert cd.predicted_steps(100.0, tol) == pytest.approx(exact, abs=1)
    assert count(np.array([1.0, 1.0]), 1.0) <= cd.predicted_steps(100.0, tol) + 1
    both = count(w0, 2 / 1.01)
    assert both <= cd.predicted_steps(100.0, tol, "2/(lambda_max+lambda_min)") + 1 < exact
    assert cd.predicted_steps(1.0) == 1.0
    assert count(w_star, 1.0) == 0


def test_steps_grow_linearly_with_kappa_on_ill_conditioned_regression():
    steps, kappas = [], []
    for k in [10.0, 100.0]:
        d = data.ill_conditioned_regression(n=400, d=5, condition_number=k, seed=0)
        x, y = d.x_train.double().numpy(), d.y_train.double().numpy().ravel()
        h = cd.second_moment(x, bias=False)
        w_star = np.linalg.solve(h, x.T @ y / len(x))
        kappas.append(cd.condition_number(h))
        run = cd.quadratic_gd(h, w_star, np.zeros(5), 1 / np.linalg.eigvalsh(h)[-1], 100_000, tol=1e-6)
        steps.append(cd.steps_to_tolerance(run, 1e-6))
    slope = math.log(steps[1] / steps[0]) / math.log(kappas[1] / kappas[0])
    assert 0.8 < slope < 1.2


@pytest.mark.parametrize("method", ["standardize", "pca", "zca"])
def test_normalizers_use_training_statistics(method):
    rng = np.random.default_rng(1)
    mix = np.array([[3.0, 0.0, 0.0], [2.0, 0.2, 0.0], [0.0, 0.0, 0.01]])
    x = rng.standard_normal((400, 3)) @ mix + np.array([5.0, -2.0, 100.0])
    f = cd.fit_normalizer(x, method, eps=0.0)
    z = f(x)
    assert np.allclose(z.mean(axis=0), 0, atol=1e-10)
    cov = np.cov(z, rowvar=False, bias=True)
    if method == "standardize":
        assert np.allclose(np.diag(cov), 1) and abs(cov[0, 1]) > 0.5
    else:
        assert np.allclose(cov, np.eye(3), atol=1e-8)
        assert cd.condition_number(cd.second_moment(z)) == pytest.approx(1.0)
    # a test point is transformed with the training statistics, and tensors stay tensors
    t = f(torch.as_tensor(x[:5]))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    assert np.allclose(t.numpy(), z[:5])
    assert f(torch.as_tensor(x[:5], dtype=torch.float32)).dtype == torch.float32


def test_zca_stays_close_to_the_features_and_pca_rotates():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 2)) @ np.array([[1.0, 0.5], [0.5, 1.0]])
    zca, pca = cd.fit_normalizer(x, "zca", 0.0)(x), cd.fit_normalizer(x, "pca", 0.0)(x)
    corr_zca = [np.corrcoef(zca[:, j], x[:, j])[0, 1] for j in range(2)]
    assert min(corr_zca) > 0.85
    assert not np.allclose(zca, pca, atol=1e-3)
    _, vec = np.linalg.eigh(np.corrcoef(x, rowvar=False))
    assert np.allclose(zca, pca @ vec.T)  # ZCA is PCA whitening rotated back


def test_ridge_caps_nearly_redundant_directions_and_constant_features_need_it():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((300, 1))
    x = np.hstack([base, base + 1e-4 * rng.standard_normal((300, 1)), np.ones((300, 1))])
    with pytest.raises(ValueError, match="eps > 0"):
        cd.fit_normalizer(x, "zca", eps=0.0)
    z = cd.fit_normalizer(x, "zca", eps=1e-2)(x)
    assert np.all(np.isfinite(z)) and np.abs(z).max() < 20
    assert np.allclose(z[:, 2], 0)  # the constant feature stays zero


def test_dataset_helpers_on_digits():
    raw = data.digits(seed=0)
    kept = cd.drop_constant(raw)
    assert kept.n_features < raw.n_features and (kept.x_train.std(dim=0) > 0).all()
    assert cd.condition_number(cd.second_moment(raw.x_train)) == math.inf
    assert math.isfinite(cd.condition_number(cd.second_moment(kept.x_train)))
    scaled = cd.rescaled(kept, spread=100.0, seed=0)
    ratio = (scaled.x_train / kept.x_train.clamp(min=1))[kept.x_train > 0]
    assert 0.09 < float(ratio.min()) and float(ratio.max()) < 11
    std_a = cd.normalized(kept, "standardize")
    std_b = cd.normalized(scaled, "standardize")
    assert torch.allclose(std_a.x_train, std_b.x_train, atol=1e-4)  # units no longer matter
    white = cd.normalized(kept, "zca")
    assert white.x_test.shape == kept.x_test.shape and white.n_classes == 10
    assert cd.condition_number(cd.second_moment(white.x_train)) < 2


def test_two_feature_hessians_and_the_plot():
    assert cd.condition_number(cd.two_feature_hessian(10.0)) == pytest.approx(100.0)
    assert cd.condition_number(cd.two_feature_hessian(1.0, 0.9, "standardize")) == pytest.approx(19.0)
    assert cd.condition_number(cd.two_feature_hessian(7.0, 0.5, "zca")) == pytest.approx(1.0)
    fig, axes = plt.subplots(1, 3)
    raw = cd.draw_gd_path(axes[0], scale=5.0, method="none")
    white = cd.draw_gd_path(axes[1], scale=5.0, correlation=0.8, method="zca")
    over = cd.draw_gd_path(axes[2], scale=5.0, lr_fraction=1.1)
    assert axes[0].get_title().startswith("raw: $\\kappa$ = 25,") and axes[1].get_title().endswith("1 steps")
    assert axes[2].get_title().endswith("diverged")
    assert cd.steps_to_tolerance(raw) > 100 and len(raw.probes) == len(raw.steps)
    assert cd.steps_to_tolerance(white) == 1 and over.diverged and cd.steps_to_tolerance(over) is None
    fig = plt.figure()
    cd.plot_gd_contours(fig, scale=3.0, correlation=0.5, method="standardize")
    assert len(fig.axes) == 2
    plt.close("all")


@pytest.mark.parametrize("call, message", [
    (lambda: cd.condition_number(np.ones(3)), "2-D"),
    (lambda: cd.second_moment([[1.0, float("nan")]]), "NaN"),
    (lambda: cd.quadratic_gd(np.eye(2), np.zeros(2), np.zeros(3), 0.1, 5), "entries"),
    (lambda: cd.quadratic_gd(np.eye(2), np.zeros(2), np.ones(2), -0.1, 5), "lr"),
    (lambda: cd.quadratic_gd(np.eye(2), np.zeros(2), np.ones(2), 0.1, -1), "steps"),
    (lambda: cd.quadratic_gd(np.eye(2), np.zeros(2), np.ones(2), 0.1, 5, tol=2.0), "tol"),
    (lambda: cd.steps_to_tolerance(cd.quadratic_gd(np.eye(2), np.zeros(2), np.ones(2), 0.1, 5), tol=0.0), "tol"),
    (lambda: cd.predicted_steps(0.5), "kappa"),
    (lambda: cd.predicted_steps(10.0, lr="1/mu"), "lr"),
    (lambda: cd.fit_normalizer(np.ones((3, 2)), "sphere"), "unknown method"),
    (lambda: cd.fit_normalizer(np.ones((3, 2)))(np.ones((3, 5))), "features"),
    (lambda: cd.two_feature_hessian(1.0, 1.0), "correlation"),
    (lambda: cd.rescaled(data.digits(seed=0), spread=0.5), "spread"),
])
def test_bad_arguments_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_non_numbers_and_non_datasets_raise_type_errors():
    with pytest.raises(TypeError, match="array of numbers"):
        cd.second_moment("abc")
    with pytest.raises(TypeError, match="Dataset"):
        cd.normalized(np.ones((3, 2)), "standardize")
    with pytest.raises(TypeError, match="History"):
        cd.steps_to_tolerance((np.zeros((3, 2)), False))


def test_self_checks(capsys):
    assert cd.check_condition_number(None) is None
    assert cd.check_condition_number(100.0, scale=10.0) is True
    assert cd.check_condition_number(10.0, scale=10.0) is False
    assert "variances" in capsys.readouterr().out
    assert cd.check_condition_number(19.0, scale=1.0, correlation=0.9) is True
    assert cd.check_condition_number(1.9, scale=1.0, correlation=0.9) is False
    assert cd.check_condition_number("many") is False
    steps = cd.predicted_steps(1000.0, 1e-6)
    assert cd.check_steps_estimate(round(steps)) is True
    assert cd.check_steps_estimate(2 * steps) is False
    assert "twice" in capsys.readouterr().out
    assert cd.check_steps_estimate(steps / math.log(10)) is False

    def zca(x):
        eig, vec = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
        return (x - x.mean(0)) @ vec @ np.diag(eig ** -0.5) @ vec.T

    assert cd.check_whitening(zca) is True
    assert cd.check_whitening(lambda x: (x - x.mean(0)) / x.std(0)) is False
    assert "standardization" in capsys.readouterr().out
    assert cd.check_whitening(lambda x: cd.fit_normalizer(x, "pca", 0.0)(x)) is False
    assert cd.check_whitening(lambda x: cd.fit_normalizer(x, "zca", 0.0)(x)) is True
    assert cd.check_whitening(lambda x: 1 / 0) is False
    assert cd.check_whitening(None) is None


def test_least_squares_gd_matches_the_training_loop_and_its_stability_limit():
    d = cd.normalized(cd.drop_constant(data.digits(seed=0)), "standardize")
    run = cd.least_squares_gd(d, lr=0.3, steps=50, eval_every=10)
    # the same iteration through bnbook.train (full batch, zero init, mse on one-hot targets)
    model = models.mlp(d.n_features, hidden=(), out_features=10)
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    hist = train.train(model, d, steps=50, lr=0.3, loss="mse", batch_size=len(d.x_train),
                       eval_every=10, progress=False)
    assert isinstance(run, train.History) and run.steps == hist.steps == [0, 10, 20, 30, 40, 50]
    for metric in train.METRICS:
        assert np.allclose(getattr(run, metric), getattr(hist, metric), rtol=1e-4, atol=1e-6), metric
    assert np.allclose(run.step_loss, hist.step_loss, rtol=1e-4)
    f_star = cd.least_squares_min(d)
    assert not run.diverged and f_star < run.final("train_loss") < run.train_loss[0]
    assert 0.5 < run.final("test_acc") <= 1.0
    limit = 10 / np.linalg.eigvalsh(cd.second_moment(d.x_train))[-1]
    assert not cd.least_squares_gd(d, 0.9 * limit, 300).diverged
    over = cd.least_squares_gd(d, 1.1 * limit, 300)
    assert over.diverged and 1 < over.diverged_at < 300 and math.isnan(over.final("test_acc"))
    assert np.all(np.isfinite(over.step_loss)) and len(over.step_loss) == over.diverged_at - 1
    assert max(over.step_loss) <= train.divergence_limit(over.train_loss[0])
    with pytest.raises(TypeError, match="Dataset"):
        cd.least_squares_gd(np.ones((3, 2)), 0.1, 5)
    with pytest.raises(TypeError, match="Dataset"):
        cd.least_squares_min(np.ones((3, 2)))
    with pytest.raises(ValueError, match="steps"):
        cd.least_squares_gd(d, 0.1, 0)
