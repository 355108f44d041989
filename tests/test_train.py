"""Tests for bnbook.train: learning, determinism, seeds, divergence as a result, callbacks, argument checks."""
import math

import pytest
import torch

from bnbook import data, models, train


@pytest.fixture(scope="module")
def digits():
    return data.digits(standardize=True, seed=0)


def small(seed=0, **kwargs):
    torch.manual_seed(seed)
    return models.mlp(64, [32], 10, **kwargs)


def all_finite(history):
    lists = [history.train_loss, history.test_loss, history.train_acc, history.test_acc, history.step_loss]
    return all(math.isfinite(v) for values in lists for v in values)


def test_a_short_run_learns(digits):
    h = train.train(small(), digits, steps=150, lr=0.1, batch_size=32, seed=0, progress=False)
    assert not h.diverged and h.diverged_at is None
    assert h.train_loss[-1] < 0.3 * h.train_loss[0]
    assert h.test_acc[0] < 0.3 and h.final("test_acc") > 0.85
    assert len(h.step_loss) == 150 and h.seconds > 0 and h.seed == 0 and h.lr == 0.1


def test_evaluation_schedule_and_at(digits):
    h = train.train(small(), digits, steps=25, lr=0.05, eval_every=10, progress=True, desc="test")
    assert h.steps == [0, 10, 20, 25]
    assert len(h.train_loss) == len(h.test_loss) == len(h.train_acc) == len(h.test_acc) == 4
    assert h.at(20, "train_loss") == h.train_loss[2]
    with pytest.raises(ValueError, match="step 15 was not evaluated"):
        h.at(15)
    with pytest.raises(ValueError, match="unknown metric"):
        h.at(10, "accuracy")


def test_same_seed_same_run_other_seed_other_batches(digits):
    a = train.train(small(0), digits, steps=30, lr=0.1, seed=1, progress=False)
    b = train.train(small(0), digits, steps=30, lr=0.1, seed=1, progress=False)
    c = train.train(small(0), digits, steps=30, lr=0.1, seed=2, progress=False)
    assert a.step_loss == b.step_loss and a.test_acc == b.test_acc
    assert a.step_loss != c.step_loss


def test_training_does_not_touch_the_global_rng(digits):
    torch.manual_seed(0)
    expected = torch.rand(3)
    model = small(0, dropout=0.2)
    torch.manual_seed(0)
    train.train(model, digits, steps=5, lr=0.1, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_seed_none_and_run_seeds_follow_bnbook_seed(digits, monkeypatch):
    monkeypatch.setenv("BNBOOK_SEED", "7")
    a = train.train(small(0), digits, steps=10, lr=0.1, progress=False)
    b = train.train(small(0), digits, steps=10, lr=0.1, seed=7, progress=False)
    assert a.seed == 7 and a.step_loss == b.step_loss
    runs = train.run_seeds(lambda: models.mlp(64, [16], 10), digits, seeds=2, steps=10, lr=0.1, progress=False)
    assert [h.seed for h in runs] == [7, 8] and runs[0].step_loss != runs[1].step_loss
    again = train.run_seeds(lambda: models.mlp(64, [16], 10), digits, seeds=[7], steps=10, lr=0.1, progress=False)
    assert again[0].step_loss == runs[0].step_loss  # the seed fixes the init as well as the batches


def test_huge_learning_rate_is_recorded_as_divergence_not_an_error():
    raw = data.digits(standardize=False, seed=0)
    h = train.train(small(0, activation="relu"), raw, steps=200, lr=1e4, seed=0, progress=False)
    assert h.diverged and h.diverged_at is not None and 1 <= h.diverged_at <= 200
    assert len(h.step_loss) == h.diverged_at - 1
    assert all_finite(h)
    assert math.isnan(h.final("test_acc")) and math.isnan(h.at(200))


def test_explicit_threshold_stops_an_exploding_but_finite_loss(digits):
    h = train.train(small(), digits, steps=50, lr=0.1, diverge_threshold=1e-3, progress=False)
    assert h.diverged and h.diverged_at == 1 and h.steps == [0]


def test_callback_runs_on_schedule_with_gradients_and_stores_values(digits):
    calls = []

    def probe(model, step):
        calls.append((step, model.training))
        grads = model.fc1.weight.grad
        return None if step == 0 else float(grads.norm())

    h = train.train(small(), digits, steps=20, lr=0.1, eval_every=10, callback=probe, callback_every=5,
                    progress=False)
    assert [s for s, _ in calls] == [0, 5, 10, 15, 20]
    assert [s for s, _ in h.probes] == [5, 10, 15, 20] and all(v > 0 for _, v in h.probes)


def test_bn_model_adam_and_mse_loss(digits):
    bn = small(0, norm="bn")
    h = train.train(bn, digits, steps=60, lr=0.01, optimizer="adam", loss="mse", progress=False)
    assert not h.diverged and h.train_loss[-1] < h.train_loss[0] and h.final() > 0.5
    assert int(bn.norm1.num_batches_tracked) == 60


def test_regression_with_mse_has_no_accuracy():
    reg = data.ill_conditioned_regression(n=200, d=4, condition_number=10.0, seed=0)
    model = models.mlp(4, [], 1, activation="identity")
    h = train.train(model, reg, steps=100, lr=0.01, loss="mse", progress=False)
    assert h.test_acc == [] and h.train_loss[-1] < 0.5 * h.train_loss[0]
    with pytest.raises(ValueError, match="use loss='mse'"):
        train.train(model, reg, steps=5, lr=0.01, progress=False)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lr=-1.0), ValueError, "lr must be a positive number"),
    (dict(steps=0), ValueError, "steps must be a positive integer"),
    (dict(batch_size=5000), ValueError, "larger than the training set"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer 'rmsprop'.*'sgd'"),
    (dict(loss="hinge"), ValueError, "loss 'hinge'"),
    (dict(optimizer="adam", momentum=0.9), ValueError, "momentum applies to optimizer='sgd'"),
    (dict(eval_every=0), ValueError, "eval_every"),
    (dict(data=(1, 2)), TypeError, "bnbook.data.Dataset"),
])
def test_bad_arguments_raise_clear_errors(digits, kwargs, error, message):
    args = dict(model=small(), data=digits, steps=10, lr=0.1, progress=False) | kwargs
    with pytest.raises(error, match=message):
        train.train(**args)


def test_run_seeds_rejects_conflicting_arguments(digits):
    with pytest.raises(ValueError, match="run_seeds sets seed"):
        train.run_seeds(small, digits, seeds=2, seed=1, steps=5, lr=0.1)
    with pytest.raises(ValueError, match="at least one seed"):
        train.run_seeds(small, digits, seeds=[], steps=5, lr=0.1)


def test_run_seeds_returns_the_trained_models_and_per_seed_arrays():
    d = data.digits()
    runs = train.run_seeds(lambda: models.mlp(64, (16,), norm="bn"), d, seeds=[3, 4], steps=20, lr=0.1,
                           eval_every=10, progress=False)
    assert isinstance(runs, list) and len(runs) == 2 and runs.seeds == [3, 4]
    assert [h.seed for h in runs] == [3, 4] and len(runs.models) == 2
    assert runs.final("test_acc") == pytest.approx([h.final("test_acc") for h in runs])
    assert runs.at(10, "train_loss").shape == (2,) and runs.n_diverged == 0
    x = d.x_test[:5]
    again = models.mlp(64, (16,), norm="bn")
    assert not torch.equal(runs.models[0](x), runs.models[1](x))
    assert again is not runs.models[0]


def test_history_queries():
    h = train.History(steps=[0, 10, 20, 30], train_loss=[2.0, 1.0, 0.5, 0.4], test_acc=[0.1, 0.5, 0.8, 0.9],
                      probes=[(0, {"k": 1.0}), (10, {"k": 2.0})])
    steps, values = h.series("train_loss")
    assert steps.tolist() == [0, 10, 20, 30] and values.tolist() == [2.0, 1.0, 0.5, 0.4]
    assert h.window("train_loss", 10, 20).tolist() == [1.0, 0.5]
    assert h.first_step("train_loss", 0.5) == 20 and h.first_step("test_acc", 0.8) == 20
    assert h.first_step("train_loss", 0.1) is None
    assert h.probe_series("k")[1].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="probe key 'q'"):
        h.probe_series("q")
    with pytest.raises(ValueError, match="no probes"):
        train.History().probe_series()


def test_one_divergence_rule():
    assert train.divergence_limit(2.3) == pytest.approx(230.0) and train.divergence_limit(0.01) == 100.0
    assert train.has_diverged(float("nan"), 10.0) and train.has_diverged(float("inf"), 10.0)
    assert train.has_diverged(11.0, 10.0) and not train.has_diverged(10.0, 10.0)


def test_before_step_sees_every_gradient_before_the_update_and_can_change_it(digits):
    seen = []

    def record(model):
        seen.append(sum(p.grad.norm() ** 2 for p in model.parameters()).sqrt().item())

    h = train.train(small(0), digits, steps=12, lr=0.1, progress=False, before_step=record)
    assert len(seen) == 12 and all(g > 0 for g in seen) and not h.diverged
    # zeroing the gradient there means no update at all; without the hook the same run moves
    frozen, moved = small(0), small(0)
    start = [p.clone() for p in frozen.parameters()]
    train.train(frozen, digits, steps=5, lr=0.1, progress=False,
                before_step=lambda m: [p.grad.zero_() for p in m.parameters()])
    train.train(moved, digits, steps=5, lr=0.1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(start, frozen.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(start, moved.parameters()))
    with pytest.raises(TypeError, match="before_step must be a function"):
        train.train(small(), digits, steps=2, lr=0.1, progress=False, before_step=1.0)
