"""Tests for bnbook.models: shapes, BN placement, dropped biases, init, argument checks."""
import pytest
import torch
from torch import nn

import bnbook
from bnbook import models


def names(model):
    return [name for name, _ in model.named_children()]


def test_mlp_shapes_and_names():
    model = models.mlp(64, [100, 100, 100], 10, "sigmoid")
    assert model(torch.randn(5, 64)).shape == (5, 10)
    assert names(model) == ["fc1", "act1", "fc2", "act2", "fc3", "act3", "out"]
    assert isinstance(model.act3, nn.Sigmoid) and len(model.linears) == 3 and model.norms == []
    assert all(fc.bias is not None for fc in model.linears)


@pytest.mark.parametrize("placement, order", [("before", ["fc1", "norm1", "act1"]),
                                              ("after", ["fc1", "act1", "norm1"])])
def test_bn_placement_order_and_dropped_bias(placement, order):
    model = models.mlp(8, [6, 6], 3, "relu", norm="bn", placement=placement)
    assert names(model)[:3] == order
    assert all(isinstance(n, bnbook.BatchNorm1d) for n in model.norms) and len(model.norms) == 2
    # a linear layer directly followed by BN has no bias (Ioffe and Szegedy, sec. 3.2)
    assert all((fc.bias is None) == (placement == "before") for fc in model.linears)
    assert model.out.bias is not None
    assert model(torch.randn(4, 8)).shape == (4, 3)


def test_bn_output_is_normalized_before_the_activation():
    model = models.mlp(8, [16], 2, "relu", norm="bn", affine=False)
    seen = {}
    model.act1.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    model(torch.randn(32, 8) * 5 + 3)
    assert torch.allclose(seen["x"].mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(seen["x"].var(0, unbiased=False), torch.ones(16), atol=1e-3)
    assert model.norm1.weight is None


def test_init_std_sets_gaussian_weights_and_zero_biases():
    torch.manual_seed(0)
    model = models.mlp(64, [200, 200], 10, "sigmoid", init_std=0.1)
    assert abs(float(model.fc2.weight.detach().std()) - 0.1) < 0.005
    assert all(float(fc.bias.detach().abs().max()) == 0 for fc in model.linears)
    default = models.mlp(64, [200, 200], 10, "sigmoid")
    assert float(default.fc2.weight.detach().abs().max()) <= 1 / 200**0.5  # torch's uniform default


def test_dropout_layers_follow_activations():
    model = models.mlp(4, [5, 5], 2, dropout=0.5)
    assert names(model)[:3] == ["fc1", "act1", "drop1"] and isinstance(model.drop2, nn.Dropout)


def test_deep_linear_is_linear_without_biases():
    torch.manual_seed(0)
    model = models.deep_linear(5, 7, 4, 3)
    assert len(model.linears) == 4 and all(p.dim() == 2 for p in model.parameters())
    a, b = torch.randn(2, 5), torch.randn(2, 5)
    assert torch.allclose(model(2 * a - b), 2 * model(a) - model(b), atol=1e-5)
    bn = models.deep_linear(5, 7, 4, 3, norm="bn")
    assert len(bn.norms) == 4 and bn(torch.randn(6, 5)).shape == (6, 3)


def test_small_cnn_takes_flat_or_image_input():
    model = models.small_cnn(1, 10, norm="bn")
    flat, img = torch.randn(4, 64), torch.randn(4, 1, 8, 8)
    assert model(flat).shape == (4, 10)
    assert torch.equal(model(flat), model(flat.reshape(4, 1, 8, 8)))
    assert model(img).shape == (4, 10)
    assert all(isinstance(n, bnbook.BatchNorm2d) for n in model.norms) and len(model.norms) == 3
    assert all(conv.bias is None for conv in model.linears)
    assert all(conv.bias is not None for conv in models.small_cnn(1, 10).linears)


def test_residual_mlp_skipinit_starts_as_identity():
    model = models.residual_mlp(10, width=12, n_blocks=3, out_features=4, skipinit=True)
    h = torch.randn(5, 12)
    assert torch.equal(model.blocks(h), h)
    assert model(torch.randn(5, 10)).shape == (5, 4)
    plain = models.residual_mlp(10, width=12, n_blocks=3, out_features=4)
    assert plain.blocks[0].alpha is None and not torch.equal(plain.blocks(h), h)
    bn = models.residual_mlp(10, width=12, n_blocks=2, out_features=4, norm="bn")
    assert sum(isinstance(m, bnbook.BatchNorm1d) for m in bn.modules()) == 5
    assert bn.blocks[0].branch.fc1.bias is None and bn.blocks[0].branch.fc2.bias is not None


def test_norm_layer_factory():
    assert isinstance(models.norm_layer("bn", 5), bnbook.BatchNorm1d)
    assert isinstance(models.norm_layer("bn", 5, spatial=True), bnbook.BatchNorm2d)
    assert models.norm_layer("bn", 5, affine=False).weight is None
    assert models.mlp(3, [4], 2, norm="none").norms == []


@pytest.mark.parametrize("call, message", [
    (lambda: models.mlp(4, [5], 2, activation="gelu"), "activation 'gelu'.*'relu'"),
    (lambda: models.mlp(4, [5], 2, norm="batch"), "norm 'batch'.*'bn'"),
    (lambda: models.mlp(4, [5], 2, placement="middle"), "placement 'middle'.*'before'"),
    (lambda: models.mlp(4, [0], 2), r"hidden\[0\]"),
    (lambda: models.mlp(4, [5], 2, init_std=-1.0), "init_std"),
    (lambda: models.mlp(4, [5], 2, dropout=1.0), "dropout"),
    (lambda: models.deep_linear(4, 5, 0, 2), "depth"),
    (lambda: models.small_cnn(1, 10, norm="gn"), "norm 'gn'"),
    (lambda: models.residual_mlp(4, n_blocks=0), "n_blocks"),
    (lambda: models.norm_layer("ln", 4), "norm 'ln'"),
])
def test_bad_arguments_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
