import pytest
import torch

from bnbook import ClaimFailed, base_seed, claim, seed_everything, seeds
from bnbook.display import result_box


def test_claim_prints_a_check_mark_and_the_numbers(capsys):
    assert claim("BN output has unit variance", True, var=1.0000123, n=3) is None
    out = capsys.readouterr().out
    assert out.startswith("✔ BN output has unit variance") and "var=1" in out and "n=3" in out


def test_claim_shows_a_result_box_in_a_kernel_with_a_plain_text_fallback(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.get_ipython", lambda: object())  # as in a Jupyter kernel
    monkeypatch.setattr("IPython.display.display", shown.append)
    monkeypatch.setenv("BNBOOK_SEED", "5")
    assert claim("BN <output> has unit variance", True, var=torch.tensor(1.0000123), ratios=[0.123456, 2.5]) is None
    (box,) = shown
    assert repr(box) == "✔ BN <output> has unit variance  (var=1, ratios=[0.1235, 2.5])"
    page = box._repr_html_()
    assert 'class="bnbook-result bnbook-result-ok"' in page and "✔" in page
    assert "BN &lt;output&gt; has unit variance" in page  # escaped
    assert "<code>var</code> = 1" in page and "<code>ratios</code> = [0.1235, 2.5]" in page
    assert "base seed 5" in page and "overflow-wrap:anywhere" in page


def test_result_boxes_name_their_verdict_and_reject_bad_input():
    assert repr(result_box("wrong", "no")) == "✘ no" and repr(result_box("todo", "later")) == "… later"
    assert "not attempted yet" in result_box("todo", "later")._repr_html_()
    with pytest.raises(ValueError, match="kind must be one of"):
        result_box("maybe", "x")
    with pytest.raises(TypeError, match="text must be a string"):
        result_box("ok", 3)


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


def test_seed_resolution_generators_follow_the_base_seed(monkeypatch):
    import importlib
    seeds_module = importlib.import_module("bnbook.seeding")
    monkeypatch.setenv("BNBOOK_SEED", "4")
    assert seeds_module.resolve() == 4 and seeds_module.resolve(None, offset=2) == 6 and seeds_module.resolve(9) == 9
    assert torch.equal(torch.rand(3, generator=seeds_module.generator()),
                       torch.rand(3, generator=torch.Generator().manual_seed(4)))
    assert seeds_module.rng(offset=1).integers(1000) == __import__("numpy").random.default_rng(5).integers(1000)
    with pytest.raises(TypeError, match="seed must be an integer"):
        seeds_module.resolve("3")


def test_claims_log_records_every_claim_and_does_not_stop_at_a_failure(monkeypatch, tmp_path):
    import json
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("BNBOOK_CLAIMS_LOG", str(log))
    monkeypatch.setenv("BNBOOK_SEED", "2")
    claim("holds", True, a=1.5)
    claim("fails", False, b=torch.tensor(0.25))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["text"], r["held"], r["seed"]) for r in records] == [("holds", True, 2), ("fails", False, 2)]
    assert records[1]["measured"] == {"b": 0.25}


def test_glue_writes_what_myst_nb_glue_writes_with_numbers_made_plain(monkeypatch):
    import numpy as np
    from myst_nb import glue as myst_glue

    from bnbook import display as bnd
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setattr("myst_nb.ext.glue.ipy_display", lambda *a, **k: shown.append((a, k)))
    bnd.glue("x", np.float64(0.25))
    myst_glue("x", 0.25, display=False)
    ours, theirs = shown
    assert ours == theirs
    assert ours[0][0]["application/papermill.record/text/plain"] == "0.25"
    bnd.glue("t", torch.tensor(3))
    assert shown[-1][0][0]["application/papermill.record/text/plain"] == "3"
    with pytest.raises(ValueError, match="non-empty string name"):
        bnd.glue("", 1.0)


def test_glue_range_glues_the_finite_min_and_max(monkeypatch):
    import numpy as np

    from bnbook import display as bnd
    glued = {}
    monkeypatch.setattr(bnd, "glue", lambda name, value, display=False: glued.__setitem__(name, value))
    assert bnd.glue_range("r", [np.float64(0.5), float("nan"), torch.tensor(0.25), 2]) == (0.25, 2.0)
    assert glued == {"r_lo": 0.25, "r_hi": 2.0}
    with pytest.raises(ValueError, match="no finite value"):
        bnd.glue_range("r", [float("inf")])
