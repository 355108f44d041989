"""bnbook.folding: the folds are exact, the probes measure what they say, the self-checks judge fairly."""

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from bnbook import BatchNorm1d, folding, models  # noqa: E402


def _randomize(model, seed=0):
    """Non-trivial gamma, beta and running statistics, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (BatchNorm1d, nn.BatchNorm1d)):
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.num_features, generator=g, dtype=m.weight.dtype) * 2 + 0.2)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=m.bias.dtype))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=m.running_mean.dtype))
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=m.running_var.dtype) + 0.1)
    return model


def _x(n=32, d=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + 1


# --- folds -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bn_class", [BatchNorm1d, nn.BatchNorm1d])
@pytest.mark.parametrize("train_mode", [True, False])
def test_fold_affine_into_next_is_exact(bn_class, train_mode):
    torch.manual_seed(0)
    norm = _randomize(bn_class(6, dtype=torch.float64))
    lin = nn.Linear(6, 3, dtype=torch.float64)
    new_norm, new_lin = folding.fold_affine_into_next(norm, lin)
    assert new_norm.weight is None and new_norm.bias is None and type(new_norm) is bn_class
    assert torch.equal(new_norm.running_mean, norm.running_mean)
    for m in (norm, new_norm):
        m.train(train_mode)
    x = _x()
    assert torch.allclose(lin(norm(x)), new_lin(new_norm(x)), atol=1e-12, rtol=0)


def test_fold_affine_into_next_without_bias_in_the_linear_layer():
    norm = _randomize(BatchNorm1d(6, dtype=torch.float64)).eval()
    lin = nn.Linear(6, 3, bias=False, dtype=torch.float64)
    new_norm, new_lin = folding.fold_affine_into_next(norm, lin)
    x = _x()
    assert torch.allclose(lin(norm(x)), new_lin(new_norm.eval()(x)), atol=1e-12, rtol=0)


def test_fold_bn_into_previous_is_exact_in_eval_mode_only():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4, dtype=torch.float64)
    norm = _randomize(nn.BatchNorm1d(4, dtype=torch.float64)).eval()
    merged = folding.fold_bn_into_previous(lin, norm)
    x = _x()
    assert torch.allclose(norm(lin(x)), merged(x), atol=1e-12, rtol=0)
    norm.train()
    assert (norm(lin(x)) - merged(x)).abs().max() > 1e-3


def test_fold_bn_into_previous_without_affine_or_bias():
    lin = nn.Linear(6, 4, bias=False, dtype=torch.float64)
    norm = _randomize(BatchNorm1d(4, affine=False, dtype=torch.float64)).eval()
    merged = folding.fold_bn_into_previous(lin, norm)
    x = _x()
    assert torch.allclose(norm(lin(x)), merged(x), atol=1e-12, rtol=0)


def test_whole_net_folds_keep_the_function_and_the_original():
    torch.manual_seed(0)
    after = _randomize(models.mlp(6, (8, 8), 3, norm="bn", placement="after").double())
    before = _randomize(models.mlp(6, (8, 8), 3, activation="sigmoid", norm="bn").double())
    saved = [p.clone() for p in after.parameters()]
    folded = folding.fold_affine(after)
    deployed = folding.fold_for_inference(before)
    x = _x()
    assert folding.max_output_gap(after, folded, x, train_mode=True) < 1e-12
    assert folding.max_output_gap(after, folded, x, train_mode=False) < 1e-12
    assert folding.max_output_gap(before, deployed, x) < 1e-12
    assert all(torch.equal(a, b) for a, b in zip(saved, after.parameters()))
    assert after.norm1.weight is not None and folded.norm1.weight is None
    assert isinstance(deployed.norm1, nn.Identity) and not deployed.training
    assert sum(p.numel() for p in after.parameters()) - sum(p.numel() for p in folded.parameters()) == 2 * 16


def test_max_output_gap_restores_running_statistics_and_modes():
    net = _randomize(models.mlp(6, (8,), 3, norm="bn").double()).eval()
    other = folding.fold_for_inference(net).train()
    before = [b.clone() for b in net.buffers()]
    gap = folding.max_output_gap(net, other, _x(), train_mode=True)
    assert gap > 1e-3  # training-mode BN is not the folded affine map
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffers()))
    assert not net.training and other.training


def test_folds_refuse_what_cannot_be_folded():
    with pytest.raises(ValueError, match="placement='before'"):
        folding.fold_affine(models.mlp(6, (8,), 3, norm="bn"))
    with pytest.raises(ValueError, match="placement='after'"):
        folding.fold_for_inference(models.mlp(6, (8,), 3, norm="bn", placement="after"))
    with pytest.raises(ValueError, match="8 features but the linear layer has 5"):
        folding.fold_affine_into_next(BatchNorm1d(8), nn.Linear(5, 2))
    with pytest.raises(TypeError, match="expected a BN layer"):
        folding.fold_affine_into_next(nn.Linear(5, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        folding.fold_bn_into_previous(nn.Linear(5, 4), BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(TypeError, match="nn.Sequential"):
        folding.fold_affine(nn.Linear(3, 3))
