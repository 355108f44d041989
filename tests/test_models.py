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


@pytest.mark.parametrize("placement, order", [("before", ["conv1", "norm1", "act1"]),
                                              ("after", ["conv1", "act1", "norm1"])])
def test_small_cnn_bn_placement_order_and_bias(placement, order):
    model = models.small_cnn(1, 10, norm="bn", placement=placement, width=4)
    assert names(model)[1:4] == order
    assert names(model).index("pool") == names(model).index("conv3") - 1  # pooling after block 2 either way
    # a conv directly followed by BN has no bias; with the activation in between it keeps it
    assert all((conv.bias is None) == (placement == "before") for conv in model.linears)
    assert model(torch.randn(5, 64)).shape == (5, 10)
    assert names(models.small_cnn(1, 10, placement="after")) == names(models.small_cnn(1, 10))  # no norm
    with pytest.raises(ValueError, match="placement"):
        models.small_cnn(1, 10, norm="bn", placement="middle")


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


def test_residual_mlp_head_norm_and_he_init():
    def head_norms(model):
        return [type(m) for m in model.head.modules() if isinstance(m, bnbook.BatchNorm1d)]
    assert head_norms(models.residual_mlp(10, width=12, n_blocks=2, norm="bn")) == [bnbook.BatchNorm1d]
    branches_only = models.residual_mlp(10, width=12, n_blocks=2, norm="bn", head_norm=None)
    assert head_norms(branches_only) == [] and isinstance(branches_only.blocks[1].branch.norm2, bnbook.BatchNorm1d)
    head_only = models.residual_mlp(10, width=12, n_blocks=2, skipinit=True, head_norm="bn")
    assert head_norms(head_only) == [bnbook.BatchNorm1d] and head_only.blocks[0].alpha is not None
    assert not any(isinstance(m, bnbook.BatchNorm1d) for m in head_only.blocks.modules())
    assert head_norms(models.residual_mlp(10, width=12, norm="bn", head_norm="none")) == []
    torch.manual_seed(0)
    he = models.residual_mlp(64, width=400, n_blocks=1, init="he")
    w = he.blocks[0].branch.fc1.weight.detach()
    assert abs(float(w.std()) - (2 / 400) ** 0.5) < 0.002
    assert float(he.blocks[0].branch.fc2.bias.detach().abs().max()) == 0
    default = models.residual_mlp(64, width=400, n_blocks=1).blocks[0].branch.fc1.weight.detach()
    assert float(default.abs().max()) <= 400**-0.5
    with pytest.raises(ValueError, match="init 'xavier'"):
        models.residual_mlp(4, init="xavier")
    with pytest.raises(ValueError, match="norm 'batch'"):
        models.residual_mlp(4, head_norm="batch")


def test_norm_layer_factory():
    assert isinstance(models.norm_layer("bn", 5), bnbook.BatchNorm1d)
    assert isinstance(models.norm_layer("bn", 5, spatial=True), bnbook.BatchNorm2d)
    assert models.norm_layer("bn", 5, affine=False).weight is None
    assert models.mlp(3, [4], 2, norm="none").norms == []


def test_norm_layer_factory_ln_gn_in():
    ln, gn = models.norm_layer("ln", 8), models.norm_layer("gn", 8, spatial=True)
    assert isinstance(ln, bnbook.LayerNorm) and ln.normalized_shape == (8,)
    assert isinstance(gn, bnbook.GroupNorm) and gn.num_groups == models.GN_GROUPS
    conv_ln, inorm = models.norm_layer("ln", 8, spatial=True), models.norm_layer("in", 8, spatial=True)
    assert (conv_ln.num_groups, inorm.num_groups) == (1, 8)
    assert models.norm_layer("gn", 8, affine=False).weight is None
    # no batch statistics: an example's output does not depend on the rest of the batch, batch of one works
    x = torch.randn(6, 64)
    for kind in ("ln", "gn", "in"):
        model = models.small_cnn(1, 10, norm=kind, width=8).eval()
        assert torch.allclose(model.train()(x)[:1], model(x[:1]), atol=1e-6)
    net = models.mlp(64, [16], 10, norm="ln")
    assert net.fc1.bias is not None and isinstance(net.norm1, bnbook.LayerNorm)  # LN keeps the bias
    assert all(c.bias is None for c in models.small_cnn(1, 10, norm="in", width=8).linears)  # IN removes it
    assert all(c.bias is not None for c in models.small_cnn(1, 10, norm="gn", width=8).linears)


@pytest.mark.parametrize("call, message", [
    (lambda: models.mlp(4, [5], 2, activation="gelu"), "activation 'gelu'.*'relu'"),
    (lambda: models.mlp(4, [5], 2, norm="batch"), "norm 'batch'.*'bn'"),
    (lambda: models.mlp(4, [5], 2, placement="middle"), "placement 'middle'.*'before'"),
    (lambda: models.mlp(4, [0], 2), r"hidden\[0\]"),
    (lambda: models.mlp(4, [5], 2, init_std=-1.0), "init_std"),
    (lambda: models.mlp(4, [5], 2, dropout=1.0), "dropout"),
    (lambda: models.deep_linear(4, 5, 0, 2), "depth"),
    (lambda: models.small_cnn(1, 10, norm="wn"), "norm 'wn'"),
    (lambda: models.mlp(4, [8], 2, norm="in"), "conv layers only"),
    (lambda: models.residual_mlp(4, n_blocks=0), "n_blocks"),
    (lambda: models.norm_layer("layer", 4), "norm 'layer'"),
])
def test_bad_arguments_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_fixup_init_starts_as_the_stem_with_a_zero_classifier_and_rescaled_branches():
    torch.manual_seed(0)
    net = models.residual_mlp(16, width=32, n_blocks=9, out_features=3, init="fixup")
    x = torch.randn(50, 16)
    assert torch.equal(net(x), torch.zeros(50, 3))  # classifier at 0
    assert torch.equal(net.blocks(net.stem(x)), net.stem(x))  # every branch ends in a zero layer
    for block in net.blocks:
        assert block.alpha.item() == 1.0 and block.alpha.requires_grad
        assert torch.count_nonzero(block.branch.fc2.weight) == 0 and torch.count_nonzero(block.branch.fc2.bias) == 0
    # the first layer of each branch: He's std sqrt(2 / fan_in) times n_blocks ** -0.5 = 1/3
    std = torch.cat([b.branch.fc1.weight.flatten() for b in net.blocks]).std().item()
    assert std == pytest.approx((2 / 32) ** 0.5 / 3, rel=0.05)
    default = models.residual_mlp(16, width=32, n_blocks=9, out_features=3)
    assert all(b.alpha is None for b in default.blocks)  # the default is unchanged
    loss = torch.nn.functional.cross_entropy(net(x), torch.randint(0, 3, (50,)))
    loss.backward()  # the zero layers still get gradients
    assert net.head.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="init='fixup' replaces normalization"):
        models.residual_mlp(16, norm="bn", init="fixup")
    with pytest.raises(ValueError, match="skipinit=False"):
        models.residual_mlp(16, skipinit=True, init="fixup")


def test_scaled_std_linear_standardizes_each_row_whatever_the_weights():
    layer = bnbook.layers.ScaledStdLinear(50, 7, gain_init=2.0)
    with torch.no_grad():
        layer.weight.mul_(30).add_(5)  # any scale and offset of the stored weights
    w = layer.standardized_weight()
    assert torch.allclose(w.mean(1), torch.zeros(7), atol=1e-5)
    assert torch.allclose(w.pow(2).sum(1), torch.full((7,), 4.0), rtol=1e-3)  # squared row norm gain^2
    assert torch.count_nonzero(layer.bias) == 0
    x = torch.randn(4000, 50)
    assert layer(x).var(0).mean().item() == pytest.approx(4.0, rel=0.1)  # unit variance in, gain^2 out
    assert torch.allclose(layer(x[:3]), layer(x)[:3])  # no batch statistics


def test_nf_residual_mlp_starts_as_the_identity_and_keeps_unit_scale():
    torch.manual_seed(0)
    net = models.nf_residual_mlp(16, width=64, n_blocks=6, out_features=3, alpha=0.2)
    x = torch.randn(2000, 16)
    h = net.stem(x)
    assert torch.equal(net.blocks(h), h)  # zero skip gains
    assert [b.beta for b in net.blocks] == pytest.approx([(1 + 0.04 * i) ** 0.5 for i in range(6)])
    assert not any(isinstance(m, (bnbook.BatchNorm1d, torch.nn.BatchNorm1d)) for m in net.modules())
    assert models.ScaledReLU()(torch.randn(100_000)).std().item() == pytest.approx(1.0, rel=0.02)
    with torch.no_grad():
        for b in net.blocks:
            b.skip_gain.fill_(1.0)
        branch = net.blocks[0].branch(h)  # a unit-scale input keeps about unit scale through a branch
    assert 0.5 < branch.pow(2).mean().item() / h.pow(2).mean().item() < 2.0
    with pytest.raises(ValueError, match="alpha must be a positive number"):
        models.nf_residual_mlp(16, alpha=0.0)
