"""Tests for bnbook.measure against answers known in closed form."""
import math

import pytest
import torch
from torch import nn

from bnbook import measure, models


def test_capture_records_inputs_and_outputs_then_removes_hooks():
    torch.manual_seed(0)
    model = models.mlp(4, [3], 2, "tanh")
    x = torch.randn(5, 4)
    with measure.capture({"a": model.act1}, where="input") as inp, \
            measure.capture({"a": model.act1, "o": model.out}, where="output") as out:
        y = model(x)
    assert torch.allclose(inp["a"], model.fc1(x)) and torch.allclose(out["a"], torch.tanh(inp["a"]))
    assert torch.equal(out["o"], y.detach())
    model(x + 1)  # hooks are gone: nothing changes
    assert torch.allclose(inp["a"], model.fc1(x))
    with pytest.raises(ValueError, match="unknown where"):
        with measure.capture({"a": model.act1}, where="grad"):
            pass
    with pytest.raises(TypeError, match="dict mapping names"):
        with measure.capture([model.act1]):
            pass


def test_probing_in_train_mode_leaves_bn_statistics_and_mode_alone():
    torch.manual_seed(0)
    model = models.mlp(4, [6], 2, norm="bn", affine=False)
    model.eval()
    x = 3 * torch.randn(64, 4) + 2
    seen = measure.activations(model, x, model.norm1, train_mode=True)
    assert torch.allclose(seen.mean(0), torch.zeros(6), atol=1e-5)  # normalized with the batch's own stats
    assert torch.equal(model.norm1.running_mean, torch.zeros(6)) and int(model.norm1.num_batches_tracked) == 0
    assert not model.training
    eval_seen = measure.activations(model, x, model.norm1)  # running stats 0/1: the identity
    assert torch.allclose(eval_seen, model.fc1(x), atol=1e-4)


def test_grad_norms_per_parameter_and_per_module():
    layer = nn.Linear(2, 1)
    model = nn.Sequential(layer)
    with pytest.raises(ValueError, match="loss.backward"):
        measure.grad_norms(model)
    x = torch.tensor([[3.0, 4.0]])
    model(x).sum().backward()  # d/dw = x, d/db = 1
    per_param = measure.grad_norms(model)
    assert per_param == pytest.approx({"0.weight": 5.0, "0.bias": 1.0})
    assert measure.grad_norms(model, by="module") == pytest.approx({"0": math.sqrt(26.0)})
    with pytest.raises(ValueError, match="unknown by"):
        measure.grad_norms(model, by="layer")


class Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_accuracy_uses_eval_mode_and_restores_it():
    model = Fixed(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]))
    assert measure.accuracy(model, torch.zeros(4, 1), torch.tensor([0, 1, 1, 1])) == 0.5
    assert model.training
    with pytest.raises(ValueError, match="same length"):
        measure.accuracy(model, torch.zeros(3, 1), torch.zeros(4))


def test_effective_rank_known_answers():
    assert measure.effective_rank(torch.eye(5)) == pytest.approx(5.0)
    assert measure.effective_rank(torch.outer(torch.randn(20), torch.randn(7))) == pytest.approx(1.0, abs=1e-6)
    assert measure.effective_rank(torch.zeros(4, 3)) == 0.0
    between = measure.effective_rank(torch.diag(torch.tensor([1.0, 0.1, 0.01])))
    assert 1.0 < between < 2.0
    torch.manual_seed(0)
    near_copies = 10 * torch.ones(50, 1) * torch.randn(1, 4) + 1e-3 * torch.randn(50, 4)
    assert measure.effective_rank(near_copies) < 1.01
    assert measure.effective_rank(near_copies, center=True) > 3.0  # centring removes the shared direction
    with pytest.raises(ValueError, match="2-D tensor"):
        measure.effective_rank(torch.zeros(3))


def test_stable_rank_known_answers():
    assert measure.stable_rank(torch.eye(5)) == pytest.approx(5.0)
    assert measure.stable_rank(3.0 * torch.eye(5)) == pytest.approx(5.0)  # scale-free
    assert measure.stable_rank(torch.outer(torch.randn(20), torch.randn(7))) == pytest.approx(1.0)
    assert measure.stable_rank(torch.diag(torch.tensor([2.0, 1.0, 1.0]))) == pytest.approx(1.5)
    assert measure.stable_rank(torch.zeros(4, 3)) == 0.0
    h = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    assert 1.0 <= measure.stable_rank(h) <= torch.linalg.matrix_rank(h).item()
    near_copies = torch.ones(10, 4) + 1e-3 * h[:10, :4]
    assert measure.stable_rank(near_copies) < 1.001
    assert measure.stable_rank(near_copies, center=True) > 1.5  # centring removes the shared direction
    with pytest.raises(ValueError, match="2-D tensor"):
        measure.stable_rank(torch.zeros(3))


def test_probing_restores_mode_and_buffers_even_after_an_exception():
    model = models.mlp(4, (8,), 3, norm="bn")
    model.eval()
    model[1].train()  # a mixed state must come back exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        with measure.probing(model, train_mode=True):
            assert model.training
            model(torch.randn(16, 4) * 5 + 3)  # updates BN's running statistics
            raise RuntimeError("boom")
    assert not model.training and model[1].training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_probing_rejects_a_non_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        with measure.probing("model"):
            pass


def test_batch_statistics_of_every_row_are_the_population_statistics():
    values = torch.arange(10.0)[:, None] * torch.tensor([1.0, -2.0])
    means, variances = measure.batch_statistics(values, 10, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(means, values.mean(0).expand(3, 2))
    assert torch.allclose(variances, values.var(0, correction=0).expand(3, 2))
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(500, generator=g)
    means, _ = measure.batch_statistics(pool, 50, 4000, g)
    predicted = pool.std(correction=0).item() / math.sqrt(50) * math.sqrt((500 - 50) / 499)
    assert means.std().item() == pytest.approx(predicted, rel=0.05)


def test_random_batches_are_distinct_indices_and_bad_sizes_are_named():
    idx = measure.random_batches(20, 7, 50, torch.Generator().manual_seed(1))
    assert idx.shape == (50, 7) and all(len(set(row.tolist())) == 7 for row in idx)
    with pytest.raises(ValueError, match="larger than the 5 examples"):
        measure.random_batches(5, 6, 1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        measure.random_batches(5, 0, 1)
    with pytest.raises(ValueError, match="torch tensor"):
        measure.batch_statistics([1.0, 2.0], 1, 1)
