"""Tests for bnbook.chapters.internal_covariate_shift (ICS measures, exercise checks) and noisy BN
(bnbook.layers, models.NORMS)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import bnbook
from bnbook import data, models, train
from bnbook.chapters import internal_covariate_shift as ics
from bnbook.layers import DistributionNoise, NoisyBatchNorm1d


# --- noisy BN ---------------------------------------------------------------------------------

def test_noise_only_in_training_and_reproducible_from_a_seed():
    x = torch.randn(32, 5)
    a, b = DistributionNoise(5, seed=3), DistributionNoise(5, seed=3)
    ya, yb = a(x), b(x)
    assert torch.equal(ya, yb) and not torch.allclose(ya, x)
    assert not torch.equal(a(x), ya)  # fresh noise at every call
    a.eval()
    assert torch.equal(a(x), x)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(DistributionNoise(5, generator=g1)(x), DistributionNoise(5, generator=g2)(x))


def test_noise_has_shared_scale_and_shift_and_per_example_jitter():
    # without jitter every feature is an affine map s x + m with s in [low, high], |m| <= shift
    noise = DistributionNoise(4, scale=(0.5, 2.0), shift=3.0, jitter=0.0, seed=0)
    x = torch.randn(200, 4, dtype=torch.float64)
    for _ in range(20):
        y = noise(x)
        s = (y[1] - y[0]) / (x[1] - x[0])
        m = y[0] - s * x[0]
        assert torch.allclose(y, s * x + m)
        assert bool(((s >= 0.5) & (s <= 2.0)).all()) and bool((m.abs() <= 3.0).all())
    only_jitter = DistributionNoise(4, scale=(1.0, 1.0), shift=0.0, jitter=0.5, seed=0)
    diff = only_jitter(x) - x
    assert abs(diff.std().item() - 0.5) < 0.05 and abs(diff.mean().item()) < 0.05
    # conv-shaped input: one draw per channel
    z = DistributionNoise(3, jitter=0.0, seed=1)(torch.zeros(2, 3, 4, 4))
    assert torch.allclose(z, z[:1, :, :1, :1].expand_as(z))


def test_noise_argument_checks():
    with pytest.raises(ValueError, match="num_features"):
        DistributionNoise(0)
    with pytest.raises(ValueError, match="scale"):
        DistributionNoise(3, scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="scale must be a pair"):
        DistributionNoise(3, scale=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        DistributionNoise(3, shift=-1.0)
    with pytest.raises(ValueError, match="either a generator or a seed"):
        DistributionNoise(3, generator=torch.Generator(), seed=1)
    with pytest.raises(TypeError, match="torch.Generator"):
        DistributionNoise(3, generator=5)
    with pytest.raises(ValueError, match=r"shape \(N, 3"):
        DistributionNoise(3)(torch.zeros(4, 2))


def test_noisy_bn_is_bn_plus_noise_and_shares_the_state_dict():
    torch.manual_seed(0)
    x = torch.randn(16, 6) * 3 + 1
    noisy, plain = NoisyBatchNorm1d(6, seed=0), bnbook.BatchNorm1d(6)
    assert list(noisy.state_dict()) == list(plain.state_dict())
    expected = DistributionNoise(6, seed=0)(plain(x))
    assert torch.allclose(noisy(x), expected, atol=1e-6)
    assert torch.allclose(noisy.running_mean, plain.running_mean)
    noisy.eval()
    plain.eval()
    assert torch.allclose(noisy(x), plain(x))
    torch.nn.BatchNorm1d(6).load_state_dict(noisy.state_dict())  # strict: same keys


def test_noisy_bn_registered_in_norms():
    model = models.mlp(8, [5, 5], 3, "sigmoid", norm="noisy_bn")
    assert all(isinstance(n, NoisyBatchNorm1d) for n in model.norms) and len(model.norms) == 2
    assert all(fc.bias is None for fc in model.linears)  # absorbs the bias like BN
    assert model(torch.randn(4, 8)).shape == (4, 3)
    assert "bn" in models.NORMS  # the old entry is untouched
    with pytest.raises(ValueError, match="fully connected"):
        models.small_cnn(norm="noisy_bn")


def test_training_with_noisy_bn_is_reproducible():
    d = data.digits(standardize=True, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = models.mlp(64, [16], 10, "sigmoid", norm="noisy_bn")
        runs.append(train.train(model, d, steps=20, lr=0.1, seed=1, progress=False).step_loss)
    assert runs[0] == runs[1]


# --- percentiles over training ---------------------------------------------------------------------

def test_percentile_probe_matches_numpy_and_tracks_training():
    torch.manual_seed(0)
    model = models.mlp(4, [7], 2, "sigmoid", norm="bn")
    x = torch.randn(50, 4)
    probe = ics.percentile_probe(x, "act1")
    p = probe(model, 0)
    assert p.shape == (3, 7)
    inp = model.norm1(model.fc1(x)).detach().double().numpy()  # train mode: batch statistics
    assert np.allclose(p, np.percentile(inp, [15, 50, 85], axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="no layer named"):
        ics.percentile_probe(x, "act9")(model, 0)
    with pytest.raises(ValueError, match="between 0 and 100"):
        ics.percentile_probe(x, "act1", q=(50, 101))
    with pytest.raises(TypeError, match="name of a layer"):
        ics.percentile_probe(x, model.act1)
    d = data.digits(standardize=True, seed=0)
    model = models.mlp(64, [8], 10, "sigmoid")
    h = train.train(model, d, steps=10, lr=0.1, eval_every=5, progress=False,
                    callback=lambda m, s: {"pct": ics.percentile_probe(d.x_test, "act1")(m, s)})
    steps, track = h.probe_series("pct")
    assert list(steps) == [0, 5, 10] and track.shape == (3, 3, 8)


def test_drift_known_values():
    t = np.arange(5.0)
    # median moves 0, 1, 2, 3, 4; spread 2 then 3
    track = np.stack([t - 1, t, t + 1 + (t >= 2)], axis=1)  # (T, 3)
    out = ics.drift(track)
    assert out == {"median_range": 4.0, "median_step": 1.0, "spread_ratio": 1.5}
    still = np.tile(np.array([[-1.0, 0.0, 1.0]]), (6, 1))
    assert ics.drift(still) == {"median_range": 0.0, "median_step": 0.0, "spread_ratio": 1.0}
    with pytest.raises(ValueError, match="track must have shape"):
        ics.drift(np.zeros((1, 3, 4)))


# --- Santurkar's ICS -------------------------------------------------------------------------------

def two_layer_ics(w1, w2, x, y, lr):
    """The exercise's answer, written out: |G2 - G2'| for yhat = w2 w1 x, loss (yhat - y)^2 / 2."""
    g2 = (w2 * w1 * x - y) * w1 * x
    w1_new = w1 - lr * (w2 * w1 * x - y) * w2 * x
    return abs(g2 - (w2 * w1_new * x - y) * w1_new * x)


def test_layer_of_groups_linear_and_norm():
    assert [models.layer_of(n) for n in ["fc2.weight", "norm2.bias", "out.bias", "stem.weight"]] == \
        ["2", "2", "out", "stem"]


def test_ics_matches_the_scalar_chain_by_hand():
    # yhat = w2 * w1 * x, loss = (yhat - y)^2 (mse on one output); layer 2's ICS is known in closed form
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(1, 1, bias=False))
    model.add_module("fc2", nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        model.fc1.weight.fill_(0.5)
        model.fc2.weight.fill_(2.0)
    x, y = torch.tensor([[1.5]]), torch.tensor([[1.0]])

    def mse(out, target):
        return 0.5 * ((out - target) ** 2).sum()

    rows = ics.ics_per_layer(model, x, y, lr=0.1, loss=mse)
    assert [r["layer"] for r in rows] == ["2"]
    assert math.isclose(rows[0]["l2"], two_layer_ics(0.5, 2.0, 1.5, 1.0, 0.1), rel_tol=1e-5)
    assert math.isclose(abs(rows[0]["cosine"]), 1.0, rel_tol=1e-6)
    assert model.fc1.weight.item() == 0.5  # unchanged


def test_ics_skips_frozen_layers_keeps_buffers_and_checks_arguments():
    torch.manual_seed(0)
    model = models.mlp(6, [5, 5], 3, "tanh", norm="bn")
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    for p in model.fc1.parameters():
        p.requires_grad_(False)
    for p in model.norm1.parameters():
        p.requires_grad_(False)
    before = [b.clone() for b in model.buffers()]
    rows = ics.ics_per_layer(model, x, y, lr=0.5)
    # frozen parameters are no layer: layer 2 is now the first (nothing below it), so only 'out' is reported
    assert [r["layer"] for r in rows] == ["out"] and rows[0]["l2"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))
    with pytest.raises(ValueError, match="lr must be a positive"):
        ics.ics_per_layer(model, x, y, lr=0)
    with pytest.raises(ValueError, match="at least two layers"):
        ics.ics_per_layer(nn.Sequential(nn.Linear(6, 3)), x, y, lr=0.1)


def test_ics_grows_with_the_step_size():
    torch.manual_seed(0)
    model = models.deep_linear(8, 8, 4, 2, init_std=0.4)
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    small = np.mean([r["l2"] for r in ics.ics_per_layer(model, x, y, lr=0.001)])
    large = np.mean([r["l2"] for r in ics.ics_per_layer(model, x, y, lr=0.01)])
    assert 5 < large / small < 15  # first order in lr


def test_ics_rows_split_l2_into_relative_times_gradient_norm_and_pick_layers():
    torch.manual_seed(0)
    model = models.deep_linear(8, 8, 4, 2, norm="bn", init_std=0.4)
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    rows = ics.ics_per_layer(model, x, y, lr=0.05)
    assert [r["layer"] for r in rows] == ["2", "3", "4", "out"]
    for r in rows:
        assert math.isclose(r["l2"], r["relative"] * r["grad_norm"], rel_tol=1e-9)
    some = ics.ics_per_layer(model, x, y, lr=0.05, layers=["3", "out"])
    assert [r["layer"] for r in some] == ["3", "out"]
    assert all(math.isclose(a["l2"], b["l2"], rel_tol=1e-9) for a, b in zip(some, [rows[1], rows[3]]))
    with pytest.raises(ValueError, match="not layers above the first"):
        ics.ics_per_layer(model, x, y, lr=0.05, layers=["1"])


def test_ics_summary_uses_geometric_means_that_keep_the_product_rule():
    rows = [{"l2": 1.0, "grad_norm": 2.0, "relative": 0.5, "cosine": 0.2},
            {"l2": 4.0, "grad_norm": 8.0, "relative": 0.5, "cosine": 0.6},
            {"l2": 0.0, "grad_norm": 0.0, "relative": math.nan, "cosine": math.nan}]
    out = ics.ics_summary(rows)
    assert math.isclose(out["l2"], 2.0) and math.isclose(out["grad_norm"], 4.0)
    assert math.isclose(out["relative"], 0.5) and math.isclose(out["cosine"], 0.4)
    with pytest.raises(ValueError, match="at least one row"):
        ics.ics_summary([])
    with pytest.raises(ValueError, match="zero or non-finite"):
        ics.ics_summary(rows[2:])


def test_gaussian_linear_task_is_a_linear_map_fixed_by_the_seed():
    task = ics.gaussian_linear_task(n=50, d=4, seed=3)
    assert task.x_train.shape == (50, 4) and task.y_test.shape == (50, 4) and task.n_classes == 0
    a = torch.linalg.lstsq(task.x_train, task.y_train).solution
    assert torch.allclose(task.x_test @ a, task.y_test, atol=1e-4)
    again = ics.gaussian_linear_task(n=50, d=4, seed=3)
    assert torch.equal(task.x_train, again.x_train)
    assert not torch.equal(task.x_train, ics.gaussian_linear_task(n=50, d=4, seed=4).x_train)
    with pytest.raises(ValueError, match="n must be"):
        ics.gaussian_linear_task(n=1)
    with pytest.raises(ValueError, match="d must be"):
        ics.gaussian_linear_task(d=0)


# --- exercise checks --------------------------------------------------------------------------------

def test_two_layer_ics_check(capsys):
    assert ics.check_two_layer_ics(None) is None
    assert ics.check_two_layer_ics(two_layer_ics) is True

    def moved_both(w1, w2, x, y, lr):
        r = w2 * w1 * x - y
        w1n, w2n = w1 - lr * r * w2 * x, w2 - lr * r * w1 * x
        return abs(r * w1 * x - (w2n * w1n * x - y) * w1n * x)
    assert ics.check_two_layer_ics(moved_both) is False
    assert "only the layers *below*" in capsys.readouterr().out
    assert ics.check_two_layer_ics(lambda *a: 1 / 0) is False
    assert ics.check_two_layer_ics(42) is False


def test_bn_percentiles_check(capsys):
    assert ics.check_bn_percentiles(None) is None
    z = 1.0364333894937898
    assert ics.check_bn_percentiles([-0.5 - 1.5 * z, -0.5, -0.5 + 1.5 * z]) is True
    assert ics.check_bn_percentiles([-1.5, -0.5, 0.5], gamma=1.0) is False
    assert "1.036" in capsys.readouterr().out
    assert ics.check_bn_percentiles([1, 2]) is False
    assert ics.check_bn_percentiles("abc") is False


def test_noise_before_bn_check():
    assert ics.check_noise_before_bn(None) is None
    assert ics.check_noise_before_bn(" Jitter ") is True
    assert ics.check_noise_before_bn("shift") is False
    assert ics.check_noise_before_bn("none") is False
    assert ics.check_noise_before_bn(3) is False


def test_noise_before_bn_answer_is_true():
    # what check_noise_before_bn calls right: BN removes the shared scale and shift exactly
    bn = bnbook.BatchNorm1d(4)
    x = torch.randn(64, 4, dtype=torch.float64)
    bn = bn.double()
    no_jitter = DistributionNoise(4, jitter=0.0, seed=0)
    assert torch.allclose(bn(no_jitter(x)), bn(x), atol=1e-4)
