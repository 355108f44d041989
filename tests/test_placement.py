"""bnbook.chapters.placement: the variants are what they say, the probes measure it, the checks judge fairly."""
import copy
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bnbook  # noqa: E402
from bnbook import data, models, train  # noqa: E402
from bnbook.chapters import placement as plc  # noqa: E402


def _names(model):
    return [name for name, _ in model.named_children()]


@pytest.mark.parametrize("label", list(plc.VARIANTS))
def test_variants_place_bn_and_affine_as_labelled(label):
    placement, affine = plc.VARIANTS[label]
    for arch, first in (("mlp", "fc1"), ("cnn", "conv1")):
        net = plc.variant(arch, label)()
        names = _names(net)
        norm, act = names.index("norm1"), names.index("act1")
        assert names[norm - 1 if placement == "before" else act - 1] == first
        assert (norm < act) == (placement == "before")
        assert all((n.weight is not None) == affine for n in net.norms)
        assert net(torch.randn(3, 64)).shape == (3, 10)
    cnn = plc.variant("cnn", label, width=4)()
    assert isinstance(cnn.norm1, bnbook.BatchNorm2d) and cnn.conv1.out_channels == 4


def test_variant_rejects_unknown_names():
    with pytest.raises(ValueError, match="arch"):
        plc.variant("rnn", "before")
    with pytest.raises(ValueError, match="unknown variant"):
        plc.variant("mlp", "middle")


def test_population_accuracy_uses_training_set_statistics_and_leaves_the_model_alone():
    d = data.digits(standardize=True, seed=0)
    torch.manual_seed(0)
    net = models.mlp(64, (16,), 10, norm="bn")
    train.train(net, d, steps=30, lr=0.2, batch_size=32, progress=False)
    with torch.no_grad():  # ruin the running statistics: population_accuracy must not need them
        net.norm1.running_mean.fill_(50.0)
    mode = net.training
    acc = plc.population_accuracy(net, d.x_train, d.x_test, d.y_test)
    assert net.norm1.running_mean.eq(50.0).all() and net.training == mode  # the model is not touched
    # by hand: the whole training set's mean and (unbiased, as BN stores it) variance of BN's input
    by_hand = copy.deepcopy(net).eval()
    with torch.no_grad():
        h = net.fc1(d.x_train)
        by_hand.norm1.running_mean.copy_(h.mean(0))
        by_hand.norm1.running_var.copy_(h.var(0, unbiased=True))
        want = (by_hand(d.x_test).argmax(1) == d.y_test).double().mean().item()
    assert acc == pytest.approx(want) and acc > 0.8
    with pytest.raises(ValueError, match="no BN layer"):
        plc.population_accuracy(models.mlp(64, (8,), 10), d.x_train, d.x_test, d.y_test)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_bias_before_bn_gets_zero_gradient_and_changes_nothing(arch):
    torch.manual_seed(0)
    net = plc.variant(arch, "before")().double()
    biased = plc.with_bias_before_norm(net, seed=3)
    layers = [m for m in biased.linears]
    assert all(m.bias is not None and m.bias.abs().max() > 0.1 for m in layers)
    assert all(m.bias is None for m in net.linears)  # the original is untouched
    x, y = torch.randn(32, 64, dtype=torch.float64), torch.randint(0, 10, (32,))
    net.train(), biased.train()
    assert torch.allclose(net(x), biased(x), atol=1e-12)
    F.cross_entropy(biased(x), y).backward()
    assert all(m.bias.grad.abs().max() < 1e-12 for m in layers)
    assert all(m.weight.grad.abs().max() > 1e-6 for m in layers)
    # the same bias in front of a ReLU (BN after it) is a live parameter
    after = plc.variant(arch, "after")().double().train()
    after.zero_grad()
    F.cross_entropy(after(x), y).backward()
    assert all(m.bias.grad.abs().max() > 1e-6 for m in after.linears)


def test_with_bias_before_norm_needs_a_layer_to_fill():
    with pytest.raises(ValueError, match="no fc/conv layer"):
        plc.with_bias_before_norm(plc.variant("mlp", "after")())


def test_relu_bn_moments_match_sampling():
    m = plc.relu_bn_moments()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400_000, generator=g, dtype=torch.float64)
    r = torch.relu(z)
    assert m["relu_mean"] == pytest.approx(r.mean().item(), abs=0.005)
    assert m["relu_std"] == pytest.approx(r.std().item(), abs=0.005)
    bn = (r - r.mean()) / r.std(correction=0)
    assert m["after_positive"] == pytest.approx((bn > 0).double().mean().item(), abs=0.003)
    assert m["after_floor"] == pytest.approx(bn.min().item(), abs=0.005)
    assert m["after_positive"] == pytest.approx(0.345, abs=0.001)


def test_plot_next_input_returns_the_fractions_and_follows_gamma_beta():
    fractions = plc.plot_next_input(plt.figure(), gamma=1.0, beta=0.0)
    assert fractions["before"] == pytest.approx(0.5, abs=0.02)
    assert fractions["after"] == pytest.approx(plc.relu_bn_moments()["after_positive"], abs=0.02)
    shifted = plc.plot_next_input(plt.figure(), gamma=1.0, beta=1.0)
    # before the ReLU beta = 1 leaves units active where x_hat > -1: Phi(1) = 0.84
    assert shifted["before"] == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), abs=0.02)
    assert shifted["after"] > fractions["after"] + 0.2
    fig = plt.figure()
    plc.plot_next_input(fig)
    assert len(fig.axes) == 2
    plt.close("all")


def test_plot_seed_spread_draws_one_column_per_variant():
    fig, ax = plt.subplots()
    plc.plot_seed_spread(ax, {"a": [0.9, 0.95, 0.92], "b": [0.91, 0.96, 0.9]})
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert len(ax.collections) == 2  # one scatter per variant
    with pytest.raises(ValueError, match="same number of seeds"):
        plc.plot_seed_spread(ax, {"a": [0.9, 0.95], "b": [0.9]})
    plt.close("all")


def test_check_positive_fraction(capsys):
    assert plc.check_positive_fraction(None) is None
    assert plc.check_positive_fraction(0.345) is True
    assert plc.check_positive_fraction(0.5) is False
    assert "before" in capsys.readouterr().out
    assert plc.check_positive_fraction(34.5) is False
    assert "between 0 and 1" in capsys.readouterr().out
    assert plc.check_positive_fraction(0.2) is False


def _right(linear, bn):
    linear2 = nn.Linear(linear.in_features, linear.out_features, bias=False, dtype=linear.weight.dtype)
    bn2 = copy.deepcopy(bn)
    with torch.no_grad():
        linear2.weight.copy_(linear.weight)
        bn2.running_mean -= linear.bias
    return linear2, bn2


def _no_correction(linear, bn):
    linear2 = nn.Linear(linear.in_features, linear.out_features, bias=False, dtype=linear.weight.dtype)
    with torch.no_grad():
        linear2.weight.copy_(linear.weight)
    return linear2, bn


def _added(linear, bn):
    linear2, _ = _no_correction(linear, bn)
    with torch.no_grad():
        bn.running_mean += linear.bias
    return linear2, bn


def test_check_strip_bias(capsys):
    assert plc.check_strip_bias(None) is None
    assert plc.check_strip_bias(_right) is True
    assert plc.check_strip_bias(_no_correction) is False
    assert "still contains the old bias" in capsys.readouterr().out
    assert plc.check_strip_bias(_added) is False
    assert "do not add" in capsys.readouterr().out
    assert plc.check_strip_bias(lambda linear, bn: (linear, bn)) is False
    assert "still has a bias" in capsys.readouterr().out
    assert plc.check_strip_bias(lambda linear, bn: linear) is False
    assert "pair" in capsys.readouterr().out
    assert plc.check_strip_bias("my_strip_bias") is False
