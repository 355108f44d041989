import copy

import pytest
import torch
from torch import nn

from bnbook import hessian
from bnbook.models import mlp


def _quadratic(eigs):
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T
    return a, (lambda w: 0.5 * w @ a @ w + w.sum())


def test_hvp_and_curvature_of_a_quadratic_are_exact():
    a, f = _quadratic([1.0, 2.0, 3.0, 0.5])
    w = torch.randn(4, dtype=torch.float64)
    v = torch.randn(4, dtype=torch.float64)
    assert torch.allclose(hessian.hvp(f, (w,), (v,))[0], a @ v)
    assert hessian.curvature(f, (w,), (v,)) == pytest.approx(float(v @ a @ v / (v @ v)))
    assert torch.allclose(hessian.gradient(f, (w,))[0], a @ w + 1)


@pytest.mark.parametrize("eigs", [[1.0, 2.0, 3.0, 0.5, 0.1, 9.0], [1.0, -12.0, 3.0, 0.5, 4.0, 2.0]])
def test_top_eigenvalue_of_quadratics(eigs):
    _, f = _quadratic(eigs)
    w = torch.randn(len(eigs), dtype=torch.float64)
    top = hessian.top_eigenvalue(f, (w,), iters=300, tol=1e-10)
    assert top == pytest.approx(max(eigs, key=abs), rel=1e-4)


def test_top_eigenvalue_of_least_squares_matches_exact():
    torch.manual_seed(0)
    x, y = torch.randn(50, 4, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64)
    layer = nn.Linear(4, 1, bias=False).double()
    f, params = hessian.loss_function(layer, x, y, loss=nn.functional.mse_loss)
    exact = torch.linalg.eigvalsh(2 * x.T @ x / 50)[-1]  # Hessian of the mean squared error
    assert hessian.top_eigenvalue(f, params, iters=300, tol=1e-10) == pytest.approx(float(exact), rel=1e-6)


def test_hvp_through_bnbook_batchnorm_matches_torch_batchnorm():
    torch.manual_seed(0)
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,))
    ours = mlp(5, (8,), 3, norm="bn").double()
    native = copy.deepcopy(ours)
    native.norm1 = nn.BatchNorm1d(8).double()  # same name, same place in the net
    native.load_state_dict(ours.state_dict())
    results = []
    for model in (ours, native):
        f, params = hessian.loss_function(model, x, y)
        v = tuple(torch.ones_like(p) for p in params)
        results.append(hessian.hvp(f, params, v))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-10)


def test_loss_function_leaves_the_model_unchanged():
    torch.manual_seed(0)
    model = mlp(4, (6,), 2, norm="bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    f, params = hessian.loss_function(model, x, y)
    hessian.top_eigenvalue(f, params, iters=3)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_taylor_terms_predict_a_small_step():
    torch.manual_seed(0)
    model = mlp(4, (6,), 2, activation="tanh").double()
    x, y = torch.randn(64, 4, dtype=torch.float64), torch.randint(0, 2, (64,))
    f, params = hessian.loss_function(model, x, y)
    t = hessian.taylor_terms(f, params, lr=1e-2)
    assert t["first"] < 0
    assert t["actual"] == pytest.approx(t["first"] + t["second"], rel=1e-3)
    # the second-order term grows as lr^2, the first as lr
    t10 = hessian.taylor_terms(f, params, lr=1e-1)
    assert t10["second"] / t["second"] == pytest.approx(100, rel=1e-6)


def test_bad_input_is_named():
    f = lambda w: (w ** 2).sum()  # noqa: E731
    w = torch.ones(3)
    with pytest.raises(ValueError, match="iters"):
        hessian.top_eigenvalue(f, (w,), iters=0)
    with pytest.raises(ValueError, match="one tensor per parameter"):
        hessian.hvp(f, (w,), (torch.ones(2),))
    with pytest.raises(ValueError, match="scalar"):
        hessian.gradient(lambda w: w, (w,))
    with pytest.raises(ValueError, match="lr must be positive"):
        hessian.taylor_terms(f, (w,), lr=0)
    with pytest.raises(ValueError, match="not be zero"):
        hessian.curvature(f, (w,), (torch.zeros(3),))
    with pytest.raises(ValueError, match="same length"):
        hessian.loss_function(nn.Linear(3, 1), torch.ones(4, 3), torch.ones(5))
