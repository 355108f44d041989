"""LayerNorm and GroupNorm from scratch behave exactly like torch's, and name bad input."""
import pytest
import torch

from bnbook import GroupNorm, LayerNorm, group_norm, layer_norm


def _pair(ours, ref, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p_ours, p_ref in zip(ours.parameters(), ref.parameters()):
            p_ours.copy_(torch.randn(p_ours.shape, generator=g, dtype=p_ours.dtype))
            p_ref.copy_(p_ours)
    return ours, ref


def _compare(ours, ref, x):
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = ours(x1), ref(x2)
    assert torch.allclose(y1, y2, rtol=0, atol=1e-8)
    dy = torch.randn(y1.shape, generator=torch.Generator().manual_seed(9), dtype=y1.dtype)
    y1.backward(dy)
    y2.backward(dy)
    assert torch.allclose(x1.grad, x2.grad, rtol=0, atol=1e-8)
    for (name, p1), p2 in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(p1.grad, p2.grad, rtol=0, atol=1e-8), name


@pytest.mark.parametrize("shape, normalized", [((8, 10), 10), ((4, 3, 6), (3, 6)), ((2, 5, 4, 4), (4, 4)),
                                               ((1, 7), [7])])
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, True)])
def test_layernorm_matches_torch_in_float64(shape, normalized, affine, bias):
    ours = LayerNorm(normalized, elementwise_affine=affine, bias=bias, dtype=torch.float64)
    ref = torch.nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias, dtype=torch.float64)
    _pair(ours, ref)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    _compare(ours, ref, torch.randn(shape, dtype=torch.float64) * 3 + 1)


@pytest.mark.parametrize("groups, channels, shape", [(1, 6, (4, 6)), (2, 6, (4, 6, 5)), (3, 6, (2, 6, 4, 4)),
                                                     (6, 6, (2, 6, 3, 3)), (4, 8, (1, 8, 2, 2))])
@pytest.mark.parametrize("affine", [True, False])
def test_groupnorm_matches_torch_in_float64(groups, channels, shape, affine):
    ours = GroupNorm(groups, channels, affine=affine, dtype=torch.float64)
    ref = torch.nn.GroupNorm(groups, channels, affine=affine, dtype=torch.float64)
    _pair(ours, ref)
    _compare(ours, ref, torch.randn(shape, dtype=torch.float64) * 2 - 1)


def test_state_dicts_load_both_ways():
    for ours, ref in [(LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4))), (GroupNorm(2, 4), torch.nn.GroupNorm(2, 4))]:
        _pair(ours, ref, seed=3)
        assert ours.state_dict().keys() == ref.state_dict().keys()
        fresh = type(ours)(*([(3, 4)] if isinstance(ours, LayerNorm) else [2, 4]))
        fresh.load_state_dict(ref.state_dict())
        ref.load_state_dict(ours.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), ours.state_dict().values()))


def test_gradcheck_and_double_backward():
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    w, b = torch.randn(4, 2, dtype=torch.float64, requires_grad=True), torch.randn(4, 2, dtype=torch.float64,
                                                                                   requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: layer_norm(x, (4, 2), w, b), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda x, w, b: layer_norm(x, (4, 2), w, b), (x, w, b))
    wc, bc = torch.randn(4, dtype=torch.float64, requires_grad=True), torch.randn(4, dtype=torch.float64,
                                                                                  requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: group_norm(x, 2, w, b), (x, wc, bc))
    assert torch.autograd.gradgradcheck(lambda x, w, b: group_norm(x, 2, w, b), (x, wc, bc))


def test_no_batch_statistics_a_batch_of_one_is_fine_and_examples_are_independent():
    ln, gn = LayerNorm(5).train(), GroupNorm(1, 5).train()
    x = torch.randn(4, 5)
    for layer in (ln, gn):
        assert torch.allclose(layer(x[:1]), layer(x)[:1], atol=1e-6)
        assert torch.equal(layer.eval()(x), layer.train()(x))


@pytest.mark.parametrize("make, call, error, match", [
    (lambda: LayerNorm(4), lambda m: m(torch.randn(2, 5)), ValueError, r"last 1 dimension\(s\) are \(4,\)"),
    (lambda: LayerNorm(4), lambda m: m(torch.ones(2, 4, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: LayerNorm(4), lambda m: m([[1.0] * 4]), TypeError, "torch.Tensor"),
    (lambda: LayerNorm(4, eps=0), None, ValueError, "eps must be positive"),
    (lambda: LayerNorm(0), None, ValueError, "normalized_shape must be a positive integer"),
    (lambda: GroupNorm(4, 6), None, ValueError, "divisible by num_groups=4"),
    (lambda: GroupNorm(2, 6), lambda m: m(torch.randn(2, 4, 3)), ValueError, "4 channels .* num_channels=6"),
    (lambda: GroupNorm(2, 6), lambda m: m(torch.ones(2, 6, dtype=torch.int32)), TypeError, "floating-point"),
    (lambda: GroupNorm(2, 6, eps=-1), None, ValueError, "eps must be positive"),
    (lambda: GroupNorm(2, 6), lambda m: m(torch.randn(6)), ValueError, "shape \\(N, C, ...\\)"),
])
def test_bad_input_is_named(make, call, error, match):
    with pytest.raises(error, match=match):
        module = make()
        call(module)


def test_functional_forms_check_groups_and_affine_shapes():
    with pytest.raises(ValueError, match="cannot be split into num_groups=4"):
        group_norm(torch.randn(2, 6), 4)
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        group_norm(torch.randn(2, 6), 3, weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        layer_norm(torch.randn(2, 3), 3, bias=torch.ones(2))
