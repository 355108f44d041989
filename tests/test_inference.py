"""bnbook.chapters.inference: recalibration, folding, bug detectors and replay measure what they say."""
import math

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch.optim.swa_utils import update_bn  # noqa: E402

from bnbook import data, models, train  # noqa: E402
from bnbook.chapters import inference as inf  # noqa: E402


def _trained_cnn(steps=20):
    torch.manual_seed(0)
    d = data.digits(standardize=True, images=True)
    net = models.small_cnn(norm="bn", width=4)
    train.train(net, d, steps=steps, lr=0.05, batch_size=32, progress=False)
    return net, d


def test_recalibrated_gives_the_population_statistics_and_leaves_the_model_alone():
    net, d = _trained_cnn()
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    fresh = inf.recalibrated(net, d.x_train)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in saved.items())
    assert not fresh.training
    z = d.x_train.reshape(-1, 1, 8, 8)
    with torch.no_grad():
        conv = fresh.conv1(z)
    bn = fresh.norm1
    assert torch.allclose(bn.running_mean, conv.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, conv.var((0, 2, 3), correction=1), rtol=1e-4)
    assert bn.momentum == net.norm1.momentum
    # update_bn on torch's layers: the same statistics up to batching
    twin = inf.torch_twin(net)
    update_bn(torch.split(d.x_train, 64), twin)
    assert max(e.max() for e in inf.normalization_error(twin, fresh).values()) < 0.05
    batched = inf.recalibrated(net, d.x_train, batch_size=64)
    assert max(e.max() for e in inf.normalization_error(batched, twin.eval()).values()) < 1e-4


def test_update_bn_ignores_bnbook_layers_and_the_counter_shows_it():
    net, d = _trained_cnn(steps=5)
    before = inf.tracked_batches(net)
    update_bn(torch.split(d.x_train, 64), net)
    assert inf.tracked_batches(net) == before == 3 * 5


def test_normalization_error_formula_and_bad_input():
    net, _ = _trained_cnn(steps=5)
    assert all((e == 0).all() for e in inf.normalization_error(net, net).values())
    other = inf.torch_twin(net)
    with torch.no_grad():
        other.norm1.running_mean += 2 * torch.sqrt(other.norm1.running_var + other.norm1.eps)
    err = inf.normalization_error(other, net)["norm1"]
    assert torch.allclose(torch.as_tensor(err), torch.full_like(torch.as_tensor(err), 2.0), atol=1e-5)
    with pytest.raises(ValueError, match="different BN layers"):
        inf.normalization_error(net, models.mlp(4, (3,), 2, norm="bn"))
    with pytest.raises(ValueError, match="no BN layer"):
        inf.recalibrated(models.mlp(4, (3,), 2), torch.randn(5, 4))
    with pytest.raises(ValueError, match="batch_size"):
        inf.recalibrated(net, torch.randn(5, 64), batch_size=1)
    with pytest.raises(TypeError):
        inf.bn_layers("net")


def test_torch_twin_has_torch_layers_and_the_same_function():
    net, d = _trained_cnn(steps=5)
    twin = inf.torch_twin(net)
    assert all(isinstance(m, nn.BatchNorm2d) for m in inf.bn_layers(twin).values())
    net.eval()
    twin.eval()
    with torch.no_grad():
        assert torch.allclose(net(d.x_test), twin(d.x_test), atol=1e-5)


def test_fold_cnn_is_exact_in_float64_and_rejects_what_it_cannot_fold():
    net, d = _trained_cnn()
    net = net.double()
    folded = inf.fold_cnn(net)
    assert not any(isinstance(m, nn.BatchNorm2d) or type(m).__name__ == "BatchNorm2d" for m in folded.modules())
    net.eval()
    with torch.no_grad():
        assert (net(d.x_test.double()) - folded(d.x_test.double())).abs().max() < 1e-12
    assert inf.parameter_count(net) - inf.parameter_count(folded) == 3 * (4 + 8 + 8)
    with pytest.raises(ValueError, match="no Conv2d"):
        inf.fold_cnn(models.mlp(4, (3,), 2, norm="bn"))
    with pytest.raises(TypeError):
        inf.fold_conv_bn(nn.Linear(3, 3), nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match="channels"):
        inf.fold_conv_bn(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(4))


def test_speed_ratio_is_a_positive_ratio_and_restores_modes():
    net, d = _trained_cnn(steps=2)
    net.train()
    ratio = inf.speed_ratio(net, inf.fold_cnn(net), d.x_test[:4], repeats=2, number=1)
    assert ratio > 0 and math.isfinite(ratio) and net.training
    with pytest.raises(ValueError):
        inf.speed_ratio(net, net, d.x_test[:4], repeats=0)


def test_batch_dependence_catches_training_mode_and_restores_buffers():
    net, d = _trained_cnn(steps=5)
    saved = [b.clone() for b in net.buffers()]
    net.eval()
    assert inf.batch_dependence(net, d.x_test[:16], chunk=4) < 1e-5
    net.train()
    assert inf.batch_dependence(net, d.x_test[:16], chunk=4) > 1e-2
    assert all(torch.equal(a, b) for a, b in zip(saved, net.buffers()))


def test_replay_recovers_the_recorded_running_statistics():
    torch.manual_seed(0)
    d = data.digits(standardize=True)
    net = models.mlp(64, (8, 8), 10, norm="bn")
    h = train.train(net, d, steps=60, lr=0.05, batch_size=16, progress=False, callback_every=1,
                    callback=inf.stats_recorder(d.x_train, "norm2", every=10))
    steps, means, variances = inf.replay(h.probes, 0.1)
    assert list(steps) == list(range(1, 61))
    recorded = torch.stack([row["running"][0] for _, row in h.probes[1:]]).numpy()
    assert abs(means - recorded).max() < 1e-4
    assert inf.replay_error(h.probes, 1.0) > 0
    with pytest.raises(ValueError):
        inf.replay(h.probes, 0.0)
    with pytest.raises(ValueError, match="every step"):
        inf.batch_statistics_of(h.probes[::2])
    fig = plt.figure()
    err = inf.plot_running_average(fig, 0.3, records={"mlp": (h.probes, 40)})
    assert err > 0 and len(fig.axes) == 2
    plt.close(fig)


def test_half_life():
    assert math.isclose(0.9 ** inf.half_life(0.1), 0.5)


def test_check_fold_conv(capsys):
    assert inf.check_fold_conv(None) is None
    right = lambda W, b, m, v, g, be, eps: (W * (g / torch.sqrt(v + eps))[:, None, None, None],  # noqa: E731
                                            g / torch.sqrt(v + eps) * (b - m) + be)
    assert inf.check_fold_conv(right) is True
    no_eps = lambda W, b, m, v, g, be, eps: (W * (g / torch.sqrt(v))[:, None, None, None], b)  # noqa: E731
    assert inf.check_fold_conv(no_eps) is False
    assert "eps" in capsys.readouterr().out
    lost = lambda W, b, m, v, g, be, eps: (right(W, b, m, v, g, be, eps)[0],  # noqa: E731
                                           be - g / torch.sqrt(v + eps) * m)
    assert inf.check_fold_conv(lost) is False
    assert "bias" in capsys.readouterr().out


def test_check_uses_batch_statistics(capsys):
    assert inf.check_uses_batch_statistics(None) is None
    right = lambda m: any(bn.training or bn.running_mean is None for bn in inf.bn_layers(m).values())  # noqa: E731
    assert inf.check_uses_batch_statistics(right) is True
    assert inf.check_uses_batch_statistics(lambda m: m.training) is False
    assert inf.check_uses_batch_statistics(
        lambda m: any(bn.training for bn in inf.bn_layers(m).values())) is False
    assert inf.check_uses_batch_statistics(lambda m: 1) is False


def test_check_half_life(capsys):
    assert inf.check_half_life(None) is None
    assert inf.check_half_life(math.log(2) / -math.log(0.9)) is True
    assert inf.check_half_life(math.log(2) / 0.1) is False
    assert "approximation" in capsys.readouterr().out
    assert inf.check_half_life(10) is False
