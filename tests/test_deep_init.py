"""bnbook.chapters.deep_init: the probes measure what they say, the self-checks judge fairly."""
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook.chapters import deep_init as di  # noqa: E402


def _batch(n=64, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_deep_mlp_draws_fan_in_gaussian_weights_and_rejects_other_activations():
    torch.manual_seed(0)
    net = di.deep_mlp(3, 400, "relu", in_features=300, out_features=4)
    assert net.fc2.weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert net.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / 300), rel=0.02)
    assert net.fc1.bias.abs().max() == 0
    linear = di.deep_mlp(2, 400, "identity", in_features=300)
    assert linear.fc2.weight.std().item() == pytest.approx(math.sqrt(1 / 400), rel=0.02)
    assert len(di.deep_mlp(5, 8, norm="bn").norms) == 5
    with pytest.raises(ValueError, match="activation must be one of"):
        di.deep_mlp(2, 8, "tanh")


def test_representations_are_every_layers_output_and_leave_bn_statistics_alone():
    torch.manual_seed(0)
    net = di.deep_mlp(4, 16, "relu", "bn", in_features=12)
    x, _ = _batch()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reps = di.representations(net, x)
    assert len(reps) == 4 and all(h.shape == (64, 16) for h in reps)
    assert (reps[0] >= 0).all()  # a ReLU's output
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="bnbook.models.mlp"):
        di.representations(torch.nn.Linear(3, 3), x)


def test_rank_profile_known_answers():
    g = torch.Generator().manual_seed(0)
    rank_one = torch.outer(torch.randn(50, generator=g), torch.randn(8, generator=g))
    profile = di.rank_profile([torch.eye(6), rank_one, 1e-3 * torch.eye(6)])
    assert profile["stable"] == pytest.approx([6.0, 1.0, 6.0])
    assert profile["numerical"].tolist() == [6, 1, 6]
    tiny = torch.diag(torch.tensor([1.0, 1.0, 1e-9]))  # below float32 resolution
    assert di.rank_profile(tiny)["numerical"].tolist() == [2]


def test_weight_grad_norms_match_autograd_and_leave_grad_untouched():
    torch.manual_seed(0)
    net = di.deep_mlp(3, 16, "relu", "bn", in_features=12, out_features=4)
    x, y = _batch()
    norms = di.weight_grad_norms(net, x, y)
    assert all(p.grad is None for p in net.parameters())
    torch.nn.functional.cross_entropy(net(x), y).backward()
    want = [m.weight.grad.norm().item() for m in net.linears]
    assert norms == pytest.approx(want, rel=1e-5)


def test_growth_rate_fits_a_geometric_profile_and_rejects_bad_input():
    norms = 5.0 * 1.3 ** -np.arange(10.0)
    assert di.growth_rate(norms) == pytest.approx(1.3)
    assert di.growth_rate(norms, skip=0) == pytest.approx(1.3)
    odd_first = norms.copy()
    odd_first[0] = 1e-3  # the first layer is left out by default
    assert di.growth_rate(odd_first) == pytest.approx(1.3)
    with pytest.raises(ValueError, match="at least 3"):
        di.growth_rate([1.0, 2.0])
    with pytest.raises(ValueError, match="positive and finite"):
        di.growth_rate([1.0, 0.0, 2.0, 3.0])


def test_wide_bn_relu_net_explodes_at_yangs_rate_and_plain_nets_do_not():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 32, generator=g), torch.randint(0, 10, (256,), generator=g)
    torch.manual_seed(1)
    bn = di.deep_mlp(20, 256, "relu", "bn", in_features=32)
    assert di.growth_rate(di.weight_grad_norms(bn, x, y)) == pytest.approx(di.PREDICTED_RATE, rel=0.05)
    for act, norm in [("relu", None), ("identity", "bn")]:
        torch.manual_seed(1)
        net = di.deep_mlp(20, 256, act, norm, in_features=32)
        assert 0.9 < di.growth_rate(di.weight_grad_norms(net, x, y)) < 1.06


def test_readout_accuracy_learns_separable_features_and_ignores_scale():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 4
    separable = torch.nn.functional.one_hot(y, 4).float() * 3 + 0.1 * torch.randn(40, 4, generator=g)
    acc = di.readout_accuracy([separable, 1000 * separable], y)
    assert acc.tolist() == [1.0, 1.0]
    constant = torch.ones(40, 4)
    assert di.readout_accuracy(constant, y)[0] <= 0.25  # nothing to learn from
    with pytest.raises(ValueError, match="40 examples but y has 39"):
        di.readout_accuracy(separable, y[:39])


def test_sgd_rates_leave_the_model_alone_and_bn_weights_only_grow():
    torch.manual_seed(0)
    net = di.deep_mlp(6, 32, "relu", "bn", in_features=12, out_features=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batches = [_batch(seed=s) for s in range(3)]
    out = di.sgd_rates(net, batches, lr=0.5)
    assert out["rate"].shape == (4,) and out["weight_growth"].shape == (6,)
    assert (out["weight_growth"] >= 1 - 1e-5).all()  # gradient orthogonal to scale-invariant weights
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="lr must be positive"):
        di.sgd_rates(net, batches, lr=0)


def test_plot_signal_draws_three_panels_and_returns_the_rate():
    x, y = _batch(n=32)
    fig = plt.figure()
    rate = di.plot_signal(fig, x, y, depth=6, width=16)
    assert len(fig.axes) == 3 and math.isfinite(rate) and rate > 0
    plt.close(fig)


def test_checks_pass_right_answers_and_name_mistakes(capsys):
    def stable(h):
        s = torch.linalg.svdvals(h)
        return float((s**2).sum() / s[0] ** 2)

    def rate(norms):
        return float(np.exp(-np.polyfit(np.arange(len(norms)), np.log(norms), 1)[0]))

    assert di.check_stable_rank(stable) is True
    assert di.check_stable_rank(lambda h: torch.linalg.matrix_rank(h).item()) is False
    assert "that is the rank" in capsys.readouterr().out
    assert di.check_stable_rank(lambda h: 1 / stable(h)) is False
    assert "upside down" in capsys.readouterr().out
    assert di.check_growth_rate(rate) is True
    assert di.check_growth_rate(lambda n: 1 / rate(n)) is False
    assert "upside down" in capsys.readouterr().out
    assert di.check_growth_rate(lambda n: float((n[0] / n[-1]) ** (1 / (len(n) - 1)))) is False
    assert "two layers only" in capsys.readouterr().out
    assert di.check_predicted_rate(math.sqrt(math.pi / (math.pi - 1))) is True
    assert di.check_predicted_rate(math.pi / (math.pi - 1)) is False
    assert "SQUARED" in capsys.readouterr().out
    assert di.check_predicted_rate(1.0) is False
