"""Tests for bnbook.measure against answers known in closed form."""
import math

import numpy as np
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


def test_activation_percentiles_known_values_and_units():
    model = nn.Sequential(nn.Identity())
    x = torch.stack([torch.arange(101.0), -torch.arange(101.0)], dim=1)
    assert np.allclose(measure.activation_percentiles(model, x, model[0], unit=0), [15, 50, 85])
    assert np.allclose(measure.activation_percentiles(model, x, model[0], q=(0, 100), unit=1), [-100, 0])
    assert np.allclose(measure.activation_percentiles(model, x, model[0], q=(50,)), [0])
    with pytest.raises(ValueError, match="unit 2 is out of range"):
        measure.activation_percentiles(model, x, model[0], unit=2)
    with pytest.raises(ValueError, match="percentiles between 0 and 100"):
        measure.activation_percentiles(model, x, model[0], q=(50, 150))
    with pytest.raises(ValueError, match="was not called"):
        measure.activation_percentiles(model, x, nn.Identity())


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
