"""Tests for bnbook.data: shapes, determinism, seeds, offline generation, argument checks."""
import random
import socket

import numpy as np
import pytest
import torch

from bnbook import data


def test_digits_shapes_dtypes_and_raw_scale():
    d = data.digits(seed=0)
    assert d.x_train.shape == (1347, 64) and d.x_test.shape == (450, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    assert d.n_classes == 10 and d.n_features == 64 and d.is_classification
    assert d.x_train.min() == 0 and d.x_train.max() == 16
    assert set(d.y_test.tolist()) == set(range(10))


def test_digits_standardize_uses_training_statistics():
    d = data.digits(standardize=True, seed=0)
    std = d.x_train.std(dim=0, unbiased=False)
    varying = std > 0
    assert torch.allclose(d.x_train.mean(dim=0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(std[varying], torch.ones(int(varying.sum())), atol=1e-4)
    assert not torch.allclose(d.x_test.mean(dim=0)[varying], torch.zeros(int(varying.sum())), atol=1e-3)


def test_digits_images_and_split_determinism():
    a, b, c = data.digits(seed=3), data.digits(seed=3), data.digits(seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    img = data.digits(seed=3, images=True)
    assert img.x_train.shape == (1347, 1, 8, 8) and img.n_features == 64
    assert torch.equal(img.x_train.reshape(-1, 64), a.x_train)


def test_seed_none_follows_bnbook_seed(monkeypatch):
    monkeypatch.setenv("BNBOOK_SEED", "5")
    assert torch.equal(data.digits().x_train, data.digits(seed=5).x_train)
    assert not torch.equal(data.digits().x_train, data.digits(seed=0).x_train)


def test_mnist1d_offline_deterministic_and_leaves_global_rng_alone(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("bnbook.data.mnist1d tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    a = data.mnist1d(n=200, seed=1)
    assert (np.random.rand(), random.random()) == (expected_np, expected_py)
    assert list(tmp_path.iterdir()) == []  # no cache file written
    assert a.x_train.shape == (160, 40) and a.x_test.shape == (40, 40)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.long and a.n_classes == 10
    b, c = data.mnist1d(n=200, seed=1), data.mnist1d(n=200, seed=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


def test_ill_conditioned_regression_has_the_requested_conditioning():
    d = data.ill_conditioned_regression(n=4000, d=5, condition_number=100.0, test_fraction=0.1, seed=0)
    assert d.n_classes == 0 and not d.is_classification
    assert d.y_train.shape == (3600, 1) and d.y_train.dtype == torch.float32
    eig = torch.linalg.eigvalsh(torch.cov(d.x_train.T.double()))
    assert 70 < float(eig[-1] / eig[0]) < 140
    # y is linear in x up to the small noise
    x1 = torch.cat([d.x_train.double(), torch.ones(len(d.x_train), 1, dtype=torch.float64)], dim=1)
    w = torch.linalg.lstsq(x1, d.y_train.double()).solution
    assert float((x1 @ w - d.y_train).std()) < 0.12
    shifted = data.ill_conditioned_regression(n=400, d=3, offset=5.0, seed=0)
    assert abs(float(shifted.x_train.mean()) - 5.0) < 1.0


def test_batches_cover_an_epoch_once_in_a_seeded_order():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    order = [yb.tolist() for _, yb in data.batches(x, y, 3, torch.Generator().manual_seed(0))]
    assert [len(b) for b in order] == [3, 3, 3]  # the short last batch is dropped
    assert len(set(sum(order, []))) == 9
    again = [yb.tolist() for _, yb in data.batches(x, y, 3, torch.Generator().manual_seed(0))]
    other = [yb.tolist() for _, yb in data.batches(x, y, 3, torch.Generator().manual_seed(1))]
    assert order == again and order != other
    full = [yb for _, yb in data.batches(x, y, 3, torch.Generator().manual_seed(0), drop_last=False)]
    assert sorted(torch.cat(full).tolist()) == list(range(10))
    for xb, yb in data.batches(x, y, 5):
        assert torch.equal(xb[:, 0].long(), yb)


@pytest.mark.parametrize("call, message", [
    (lambda: data.digits(test_fraction=1.5), "test_fraction"),
    (lambda: data.mnist1d(n=5), "n must be"),
    (lambda: data.ill_conditioned_regression(condition_number=0.5), "condition_number"),
    (lambda: list(data.batches(torch.zeros(4, 1), torch.zeros(3), 2)), "same length"),
    (lambda: list(data.batches(torch.zeros(4, 1), torch.zeros(4), 8)), "larger than the data set"),
    (lambda: list(data.batches(torch.zeros(4, 1), torch.zeros(4), 0)), "batch_size"),
])
def test_bad_arguments_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
