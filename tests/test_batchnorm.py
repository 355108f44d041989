"""bnbook's BN against torch's: outputs, gradients, running statistics, state_dict, errors."""
import pytest
import torch

from bnbook import BatchNorm1d, BatchNorm2d, batch_norm
from bnbook.functional import BatchNormFunction, bn_backward, bn_forward

PAIRS = [
    (BatchNorm1d, torch.nn.BatchNorm1d, (16, 5)),
    (BatchNorm1d, torch.nn.BatchNorm1d, (8, 4, 7)),
    (BatchNorm2d, torch.nn.BatchNorm2d, (6, 3, 5, 4)),
]
OPTIONS = [
    dict(),
    dict(momentum=None),
    dict(momentum=0.3, eps=1e-3),
    dict(affine=False),
    dict(bias=False),
    dict(track_running_stats=False),
]


def _twins(ours_cls, torch_cls, c, **kw):
    ours, ref = ours_cls(c, **kw), torch_cls(c, **kw)
    with torch.no_grad():
        for name, param in ref.named_parameters():
            param.uniform_(0.5, 2.0) if name == "weight" else param.normal_()
    ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize("ours_cls,torch_cls,shape", PAIRS)
@pytest.mark.parametrize("kw", OPTIONS)
def test_matches_torch_in_train_and_eval(ours_cls, torch_cls, shape, kw):
    torch.manual_seed(0)
    ours, ref = _twins(ours_cls, torch_cls, shape[1], **kw)
    for step in range(3):  # several steps exercise the running averages
        x = torch.randn(shape) * 3 + step
        dy = torch.randn(shape)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), ref(xb)
        torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
        ya.backward(dy)
        yb.backward(dy)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
        for name, param in ref.named_parameters():
            torch.testing.assert_close(getattr(ours, name).grad, param.grad, rtol=1e-4, atol=1e-4)
    for name, buf in ref.named_buffers():
        torch.testing.assert_close(dict(ours.named_buffers())[name], buf)
    ours.eval(), ref.eval()
    x = torch.randn(shape)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ours_cls,torch_cls,shape", PAIRS)
def test_state_dict_round_trip(ours_cls, torch_cls, shape):
    ours, ref = _twins(ours_cls, torch_cls, shape[1])
    ours.train()(torch.randn(shape))
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(value, ref.state_dict()[key]), key
    assert ours.state_dict()["num_batches_tracked"].item() == 1
    assert repr(ours).split("(", 1)[1] == repr(ref).split("(", 1)[1]


def test_functional_matches_torch_with_running_stats():
    torch.manual_seed(1)
    x, w, b = torch.randn(10, 4), torch.rand(4) + 0.5, torch.randn(4)
    rm_a, rv_a, rm_b, rv_b = torch.zeros(4), torch.ones(4), torch.zeros(4), torch.ones(4)
    ya = batch_norm(x, rm_a, rv_a, w, b, training=True, momentum=0.2)
    yb = torch.nn.functional.batch_norm(x, rm_b, rv_b, w, b, training=True, momentum=0.2)
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(rm_a, rm_b)
    torch.testing.assert_close(rv_a, rv_b)
    torch.testing.assert_close(batch_norm(x, rm_a, rv_a), torch.nn.functional.batch_norm(x, rm_b, rv_b))
    only_bias = batch_norm(x, None, None, None, b, training=True)
    torch.testing.assert_close(only_bias, torch.nn.functional.batch_norm(x, None, None, None, b, True))


def test_running_var_is_unbiased():
    x = torch.randn(7, 3)
    bn = BatchNorm1d(3, momentum=1.0)
    bn(x)
    torch.testing.assert_close(bn.running_var, x.var(dim=0, unbiased=True))
    torch.testing.assert_close(bn.running_mean, x.mean(dim=0))


def test_cumulative_average_with_momentum_none():
    bn = BatchNorm1d(2, momentum=None)
    batches = [torch.randn(5, 2) + i for i in range(4)]
    for x in batches:
        bn(x)
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean(0) for x in batches]).mean(0))


@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 5), (3, 2, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_hand_derived_backward_passes_gradcheck(shape, affine):
    torch.manual_seed(2)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(shape[1], dtype=torch.float64) + 0.5).requires_grad_() if affine else None
    b = torch.randn(shape[1], dtype=torch.float64, requires_grad=True) if affine else None
    assert torch.autograd.gradcheck(lambda *a: BatchNormFunction.apply(*a, None, None, 0.1, 1e-5), (x, w, b))


def test_backward_is_not_autograd_through_forward():
    x = torch.randn(8, 3, requires_grad=True)
    y = batch_norm(x, None, None, torch.ones(3, requires_grad=True), torch.zeros(3), training=True)
    assert type(y.grad_fn).__name__ == "BatchNormFunctionBackward"


def test_backward_formula_matches_autograd_of_algorithm_1():
    torch.manual_seed(3)
    x = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(9, 4, dtype=torch.float64)
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0)
    ((x - mu) / torch.sqrt(var + 1e-5) * w + b).backward(dy)
    y, x_c, inv_std, _, _ = bn_forward(x.detach(), w.detach(), b.detach(), 1e-5)
    dx, dw, db = bn_backward(dy, x_c, inv_std, w.detach())
    for ours, ref in [(dx, x.grad), (dw, w.grad), (db, b.grad)]:
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_training_output_is_standardized_per_channel():
    x = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 10.0, 0.1]).view(1, 3, 1, 1) + 5
    y = BatchNorm2d(3)(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_eval_without_running_stats_uses_batch_statistics_like_torch():
    x = torch.randn(5, 3)
    ours = BatchNorm1d(3, track_running_stats=False).eval()
    ref = torch.nn.BatchNorm1d(3, track_running_stats=False).eval()
    torch.testing.assert_close(ours(x), ref(x))


BAD_INPUTS = [
    (lambda: BatchNorm1d(3)(torch.randn(4, 3, 2, 2)), ValueError, "2-D or 3-D"),
    (lambda: BatchNorm2d(3)(torch.randn(4, 3)), ValueError, "4-D"),
    (lambda: BatchNorm1d(3)(torch.randn(4, 5)), ValueError, "num_features=3"),
    (lambda: BatchNorm1d(3)(torch.randn(1, 3)), ValueError, "more than one value per channel"),
    (lambda: BatchNorm2d(3)(torch.randn(1, 3, 1, 1)), ValueError, "more than one value per channel"),
    (lambda: BatchNorm1d(3)(torch.ones(4, 3, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: BatchNorm1d(3)([[1.0, 2.0, 3.0]]), TypeError, "torch.Tensor"),
    (lambda: BatchNorm1d(3)(torch.randn(4, 3, dtype=torch.float64)), TypeError, "dtype torch.float64"),
    (lambda: BatchNorm1d(3).eval()(torch.randn(4, 3, dtype=torch.float64)), TypeError, "dtype torch.float32"),
    (lambda: BatchNorm1d(0), ValueError, "num_features"),
    (lambda: BatchNorm1d(2.5), ValueError, "num_features"),
    (lambda: BatchNorm1d(3, momentum=1.5), ValueError, "momentum"),
    (lambda: BatchNorm1d(3, eps=0), ValueError, "eps"),
    (lambda: batch_norm(torch.randn(4, 3), None, None), ValueError, "running statistics"),
    (lambda: batch_norm(torch.randn(4, 3), torch.zeros(2), torch.ones(3)), ValueError, "running_mean"),
    (lambda: batch_norm(torch.randn(4, 3), torch.zeros(3), torch.ones(4)), ValueError, "running_var"),
    (lambda: batch_norm(torch.randn(4, 3), None, None, torch.ones(2), training=True), ValueError, "weight"),
    (lambda: batch_norm(torch.randn(4, 3), None, None, None, torch.ones(5), training=True), ValueError, "bias"),
    (lambda: batch_norm(torch.randn(4, 3), None, None, training=True, eps=-1), ValueError, "eps"),
    (lambda: batch_norm(torch.randn(4, 3), None, None, training=True, momentum=2), ValueError, "momentum"),
    (lambda: batch_norm(torch.randn(4), None, None, training=True), ValueError, "(N, C"),
]


@pytest.mark.parametrize("call,error,words", BAD_INPUTS)
def test_bad_input_gets_a_message_that_names_the_problem(call, error, words):
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value), str(info.value)


def test_batch_of_one_works_in_eval_mode():
    bn = BatchNorm1d(3).eval()
    assert bn(torch.randn(1, 3)).shape == (1, 3)


def test_wrong_size_state_dict_is_refused():
    with pytest.raises(RuntimeError, match="size mismatch"):
        BatchNorm1d(3).load_state_dict(torch.nn.BatchNorm1d(4).state_dict())


def test_buffers_of_the_wrong_size_are_named():
    bn = BatchNorm1d(3)
    bn.running_mean = torch.zeros(4)
    with pytest.raises(ValueError, match=r"running_mean must hold one value per channel, shape \(3,\)"):
        bn.eval()(torch.randn(2, 3))
    bn = BatchNorm1d(3)
    bn.weight = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="weight must hold one value per channel"):
        bn(torch.randn(2, 3))


@pytest.mark.parametrize("shape", [(12, 3), (4, 2, 3, 3)])
def test_second_derivatives_match_torch(shape):
    """Hessian-vector products through BN in training mode (used by the smoothness chapter)."""
    torch.manual_seed(4)
    x = torch.randn(shape, dtype=torch.float64)
    target = torch.randn(shape, dtype=torch.float64)
    c = shape[1]
    w0, b0 = torch.rand(c, dtype=torch.float64) + 0.5, torch.randn(c, dtype=torch.float64)
    v = [torch.randn(shape, dtype=torch.float64), torch.randn(c, dtype=torch.float64),
         torch.randn(c, dtype=torch.float64)]

    def hvp(bn_fn):
        params = [x.clone().requires_grad_(), w0.clone().requires_grad_(), b0.clone().requires_grad_()]
        y = bn_fn(params[0], None, None, params[1], params[2], training=True)
        loss = ((y - target) ** 2 * torch.linspace(0.5, 2, y.numel(), dtype=y.dtype).view(y.shape)).sum()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(sum((g * vi).sum() for g, vi in zip(grads, v)), params)

    for ours, ref in zip(hvp(batch_norm), hvp(torch.nn.functional.batch_norm)):
        torch.testing.assert_close(ours, ref, rtol=1e-8, atol=1e-10)


def test_state_dict_without_num_batches_tracked_loads_as_torch_does():
    old = {k: v for k, v in torch.nn.BatchNorm1d(4).state_dict().items() if k != "num_batches_tracked"}
    ours, ref = BatchNorm1d(4), torch.nn.BatchNorm1d(4)
    ours.num_batches_tracked.fill_(7)
    assert not ours.load_state_dict(old, strict=True).missing_keys
    ref.load_state_dict(old, strict=True)
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == 0
    with pytest.raises(RuntimeError, match="running_var"):
        BatchNorm1d(4).load_state_dict({k: v for k, v in old.items() if k != "running_var"})
