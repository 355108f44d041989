"""bnbook.chapters.without_normalization: the clipping hooks clip what they say, the sweep readers read
right, the recipes build what the chapter describes, and the self-checks judge fairly."""
import math
from functools import partial

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnbook import data, train  # noqa: E402
from bnbook.chapters import without_normalization as wn  # noqa: E402


def test_adaptive_clip_bounds_each_row_relative_to_its_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 8, generator=g))
    with torch.no_grad():
        w[4] = 0.0  # a zero row may move by clip * eps
    grad = torch.randn(5, 8, generator=g) * torch.tensor([[100.0], [1e-4], [1.0], [0.0], [3.0]])
    w.grad = grad.clone()
    wn.adaptive_clip_([w], clip=0.01, eps=1e-3)
    limit = 0.01 * w.detach().norm(dim=1).clamp_min(1e-3)
    got, before = w.grad.norm(dim=1), grad.norm(dim=1)
    assert torch.all(got <= limit * (1 + 1e-5))
    assert torch.allclose(got[0], limit[0]) and torch.allclose(got[4], limit[4])  # clipped to the limit
    assert torch.equal(w.grad[1], grad[1]) and torch.equal(w.grad[3], grad[3])  # small ones untouched
    # direction kept
    assert torch.allclose(w.grad[0] / got[0], grad[0] / before[0], atol=1e-6)
    b = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
    b.grad = torch.tensor([0.5, 0.001, 1.0])
    wn.adaptive_clip_([b], clip=0.1, eps=1e-3)  # entry-wise for biases
    assert torch.allclose(b.grad, torch.tensor([0.1, 0.001, 1e-4]))
    with pytest.raises(ValueError, match="clip and eps must be positive"):
        wn.adaptive_clip_([b], clip=0.0)


def test_hooks_leave_the_classifier_alone_and_clip_the_global_norm():
    torch.manual_seed(0)
    net = wn.METHODS["nf"].make(6, 8, 2, 3)
    for p in net.parameters():
        p.grad = torch.full_like(p, 100.0)
    wn.agc(0.01)(net)
    assert torch.all(net.head.out.weight.grad == 100.0)  # Brock et al. do not clip the classifier
    assert net.stem.weight.grad.norm(dim=1).max() <= 0.01 * net.stem.weight.norm(dim=1).max() * 1.0001
    wn.clip_norm(1.0)(net)
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in net.parameters()))
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="max_norm must be positive"):
        wn.clip_norm(0.0)


def test_the_recipes_build_the_described_nets():
    x = torch.randn(20, 6)
    for key, m in wn.METHODS.items():
        torch.manual_seed(0)
        net = m.make(6, 8, 3, 4)
        assert net(x).shape == (20, 4), key
    has_bn = {k: any("BatchNorm" in type(mod).__name__ for mod in m.make(6, 8, 3, 4).modules())
              for k, m in wn.METHODS.items()}
    assert has_bn == {"bn": True, "none": False, "clip": False, "fixup": False, "nf": False}
    assert wn.METHODS["clip"].hook is not None and wn.METHODS["nf"].hook is not None
    assert wn.METHODS["fixup"].hook is None and wn.METHODS["bn"].hook is None


def _h(acc, diverged=False):
    return train.History(steps=[0, 10], test_acc=[0.1, acc], diverged=diverged, diverged_at=5 if diverged else None)


def test_sweep_readers():
    lrs = [0.1, 0.3, 1.0]
    runs = [[_h(0.95), _h(0.96)], [_h(0.97), _h(0.85)], [_h(0.99), _h(0.5, diverged=True)]]
    assert wn.trains(runs[0][0], 0.9) and not wn.trains(runs[1][1], 0.9) and not wn.trains(runs[2][1], 0.4)
    assert wn.largest_stable_lr(lrs, runs, 0.9) == 0.1
    assert wn.largest_stable_lr(lrs, runs, 0.8) == 0.3
    assert wn.largest_stable_lr(lrs, runs, 0.999) == 0.0
    # medians 0.955, 0.91, 0.495 (a diverged seed counts 0)
    assert wn.best_lr(lrs, runs) == (0.1, 0)
    fast = [[_h(0.95), _h(0.96)], [train.History(steps=[0, 10, 20], test_acc=[0.1, 0.92, 0.97])] * 2,
            [_h(0.99), _h(0.5, diverged=True)]]
    assert wn.fastest_lr(lrs, fast, 0.9) == (0.3, 1, 10)
    assert wn.fastest_lr(lrs, fast, 0.99) == (0.3, 1, math.inf)  # nobody gets there: best_lr decides


def test_step_milliseconds_times_every_model_and_changes_none():
    torch.manual_seed(0)
    nets = {k: wn.METHODS[k].make(6, 8, 2, 3) for k in ("none", "nf")}
    before = [p.clone() for p in nets["nf"].parameters()]
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    ms = wn.step_milliseconds(nets, {"nf": wn.agc()}, x, y, steps=3, repeats=2)
    assert set(ms) == {"none", "nf"} and all(v > 0 for v in ms.values())
    assert all(torch.equal(a, b) for a, b in zip(before, nets["nf"].parameters()))


def test_plot_at_lr_draws_every_method_and_marks_divergence():
    d = data.digits(standardize=True)
    lrs = [0.1, 1.0]
    results = {k: [train.run_seeds(partial(wn.METHODS[k].make, 64, 8, 2, 10), d, [0], steps=4, lr=lr,
                                   eval_every=2, progress=False) for lr in lrs] for k in ("bn", "fixup")}
    fig = plt.figure()
    ax = wn.plot_at_lr(fig, 0.9, results, lrs)
    assert "learning rate 1" in ax.get_title()
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"BN", "Fixup"}
    plt.close(fig)


def test_fixup_scale_and_self_checks(capsys):
    assert wn.fixup_scale(16, 2) == pytest.approx(0.25) and wn.fixup_scale(81, 3) == pytest.approx(1 / 3)
    assert wn.check_fixup_scale(wn.fixup_scale) is True
    assert wn.check_fixup_scale(lambda n, m: n ** (-1 / (2 * m))) is False
    assert "2m - 2" in capsys.readouterr().out

    def right(grad, weight, clip, eps):
        limit = clip * weight.norm(dim=1, keepdim=True).clamp_min(eps)
        norm = grad.norm(dim=1, keepdim=True)
        return torch.where(norm > limit, grad * limit / norm, grad)

    def whole(grad, weight, clip, eps):
        return grad * min(1.0, (clip * weight.norm() / grad.norm()).item())

    def no_eps(grad, weight, clip, eps):
        return right(grad, weight, clip, 0.0)

    assert wn.check_agc(right) is True
    assert wn.check_agc(whole) is False and "unit-wise" in capsys.readouterr().out
    assert wn.check_agc(no_eps) is False and "eps" in capsys.readouterr().out
    assert wn.check_agc(lambda g, w, c, e: g) is False
    assert wn.check_agc_bound(0.006) is True
    assert wn.check_agc_bound(0.02) is False and wn.check_agc_bound(0.3) is False
    assert wn.check_agc_bound(math.nan) is False
