import pytest
import torch

from bnbook import ClaimFailed, base_seed, claim, seed_everything, seeds


def test_claim_prints_a_check_mark_and_the_numbers(capsys):
    assert claim("BN output has unit variance", True, var=1.0000123, n=3) is None
    out = capsys.readouterr().out
    assert out.startswith("✔ BN output has unit variance") and "var=1" in out and "n=3" in out


def test_false_claim_raises_with_the_measured_numbers():
    with pytest.raises(ClaimFailed, match=r"does not hold: BN wins.*bn_acc=0\.5.*plain_acc=0\.9"):
        claim("BN wins", 0.5 > 0.9, bn_acc=0.5, plain_acc=0.9)


def test_claim_accepts_zero_dim_tensors():
    with pytest.raises(ClaimFailed, match="gap=0.25"):
        claim("gap is large", torch.tensor(False), gap=torch.tensor(0.25))


def test_seeds_honour_the_environment(monkeypatch):
    monkeypatch.delenv("BNBOOK_SEED", raising=False)
    assert base_seed() == 0 and seeds(3) == [0, 1, 2]
    monkeypatch.setenv("BNBOOK_SEED", "7")
    assert base_seed() == 7 and seeds(2) == [7, 8]
    assert seed_everything() == 7
    a = torch.rand(3)
    seed_everything()
    assert torch.equal(a, torch.rand(3))


def test_bad_seed_settings_are_named(monkeypatch):
    monkeypatch.setenv("BNBOOK_SEED", "seven")
    with pytest.raises(ValueError, match="BNBOOK_SEED must be an integer"):
        base_seed()
    monkeypatch.delenv("BNBOOK_SEED")
    with pytest.raises(ValueError, match="at least one seed"):
        seeds(0)
