"""bnbook.chapters.residual_identity: the probes measure what they say, the self-checks judge fairly."""
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook import models  # noqa: E402
from bnbook.chapters import residual_identity as ri  # noqa: E402
from bnbook.train import History  # noqa: E402


def _net(**kw):
    torch.manual_seed(0)
    return models.residual_mlp(8, width=32, n_blocks=6, out_features=3, init="he", **kw)


def _x():
    return torch.randn(256, 8, generator=torch.Generator().manual_seed(1))


def test_stream_moments_by_hand_and_the_model_is_unchanged():
    net = _net(norm="bn")
    x = _x()
    saved = [b.clone() for b in net.buffers()]
    net.eval()
    stream, branch = ri.stream_moments(net, x)
    assert stream.shape == (7,) and branch.shape == (6,)
    assert not net.training and all(torch.equal(a, b) for a, b in zip(saved, net.buffers()))
    net.train()
    with torch.no_grad():
        h = net.stem(x)
        assert math.isclose(stream[0], h.pow(2).mean().item(), rel_tol=1e-5)
        out = net.blocks[0](h)
        assert math.isclose(branch[0], (out - h).pow(2).mean().item(), rel_tol=1e-5)
        assert math.isclose(stream[1], out.pow(2).mean().item(), rel_tol=1e-5)


def test_stream_grows_linearly_with_bn_exponentially_without_and_not_with_skipinit():
    x = _x()
    bn, _ = ri.stream_moments(_net(norm="bn"), x)
    slope, r2 = ri.linear_fit(bn)
    assert 0.6 < slope < 1.4 and r2 > 0.95
    plain, _ = ri.stream_moments(_net(), x)
    assert 1.5 < ri.per_block_factor(plain) < 2.5
    skip, branch = ri.stream_moments(_net(skipinit=True), x)
    assert np.ptp(skip) == 0 and (branch == 0).all()


def test_predicted_moments_and_fits():
    assert np.allclose(ri.predicted_moments(3, 2.0, norm="bn"), [2, 3, 4, 5])
    assert np.allclose(ri.predicted_moments(3, 1.0, alpha=0.5), 1.25 ** np.arange(4))
    assert math.isclose(ri.per_block_factor([1, 2, 4, 8]), 2.0)
    assert np.allclose(ri.linear_fit([1, 3, 5, 7]), (2.0, 1.0))
    with pytest.raises(ValueError, match="norm"):
        ri.predicted_moments(3, 1.0, norm="ln")
    with pytest.raises(ValueError, match="residual_mlp"):
        ri.stream_moments(models.mlp(8, [4], 3), _x())


def _run(loss, diverged=False):
    h = History()
    h.steps, h.train_loss = [0, 10], [2.3, loss]
    h.diverged = diverged
    return h


def test_largest_lr_reads_divergence_and_loss():
    runs = [[_run(0.1), _run(0.9)], [_run(0.2, diverged=True), _run(0.3)], [_run(2.0), _run(0.9)]]
    assert ri.largest_lr([0.1, 1.0, 10.0], runs, 0.5) == [0.1, 1.0]
    assert ri.largest_lr([0.1], [[_run(1.0)]], 0.5) == [None]
    assert ri.trains(_run(0.4), 0.5) and not ri.trains(_run(0.4, diverged=True), 0.5)
    with pytest.raises(ValueError, match="learning rates"):
        ri.largest_lr([0.1, 1.0], runs, 0.5)


def test_plot_stream_matches_its_prediction():
    growth, predicted = ri.plot_stream(plt.figure(), n_blocks=8, alpha=0.5, norm="none", seed=0)
    assert math.isclose(predicted, 1.25 ** 8) and 1 / 3 < growth / predicted < 3
    assert ri.plot_stream(plt.figure(), n_blocks=8, alpha=0.0, seed=0) == (1.0, 1.0)
    with pytest.raises(ValueError, match="norm"):
        ri.plot_stream(plt.figure(), norm="ln")
    plt.close("all")


def test_checks_accept_the_right_answers_and_name_mistakes(capsys):
    def moments(model, x):
        return ri.stream_moments(model, x)[0]

    def variances(model, x):
        from bnbook.measure import probing
        with torch.no_grad(), probing(model, train_mode=True):
            h = model.stem(x)
            out = [h.var(0, correction=0).mean().item()]
            for block in model.blocks:
                h = block(h)
                out.append(h.var(0, correction=0).mean().item())
        return out

    def changes_buffers(model, x):
        model.train()
        model(x)
        return moments(model, x)

    assert ri.check_stream_moments(moments) is True
    assert ri.check_stream_moments(lambda m, x: moments(m, x)[1:]) is False
    assert "stem" in capsys.readouterr().out
    assert ri.check_stream_moments(variances) is False
    assert "mean square" in capsys.readouterr().out
    assert ri.check_stream_moments(changes_buffers) is False
    assert "running statistics" in capsys.readouterr().out

    assert ri.check_largest_lr(ri.largest_lr) is True

    def ignores_divergence(lrs, runs, max_loss):
        return [max([lr for lr, r in zip(lrs, runs) if r[k].train_loss[-1] < max_loss], default=None)
                for k in range(len(runs[0]))]
    assert ri.check_largest_lr(ignores_divergence) is False
    assert "diverged" in capsys.readouterr().out

    assert ri.check_alpha(math.sqrt(2 ** (1 / 16) - 1)) is True
    assert ri.check_alpha(0.25) is False and "e, not 2" in capsys.readouterr().out
    assert ri.check_alpha(math.sqrt(math.log(2) / 16)) is False
    assert ri.check_alpha(math.sqrt(2 ** (1 / 8) - 1), n_blocks=8) is True
