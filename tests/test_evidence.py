"""The scoreboard's findings (bnbook.evidence): checked against the committed record, rewritten on request,
and every committed record belongs to a finding() call in a chapter (no orphans, none missing)."""
import json
import re
from pathlib import Path

import pytest

from bnbook import ClaimFailed, evidence
from bnbook.evidence import CONDITIONAL, NOT_SUPPORTED, SUPPORTED, VERDICTS, finding

ROOT = Path(__file__).resolve().parents[1]
CALL = re.compile(r"finding\(\s*\"(\w+)\",\s*\"(\w+)\"")
ARGS = dict(explanation="Reduces ICS", value=0.5, fmt=".2f", measured="BN/plain ICS", figure="fig-ics")


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(evidence, "RECORDS", tmp_path)
    monkeypatch.setattr(evidence, "_rewritten", set())
    monkeypatch.delenv("BNBOOK_SEED", raising=False)
    return tmp_path


def test_update_mode_writes_the_record_and_a_later_run_checks_against_it(records, monkeypatch, capsys):
    monkeypatch.setenv(evidence.UPDATE_VARIABLE, "1")
    finding("ics_chapter", "ics", verdict=SUPPORTED, **ARGS)
    finding("ics_chapter", "other", verdict=NOT_SUPPORTED, **dict(ARGS, value=2))
    saved = json.loads((records / "ics_chapter.json").read_text())
    assert saved["ics"] == dict(ARGS, verdict=SUPPORTED, value=0.5, seed=0) and set(saved) == {"ics", "other"}
    monkeypatch.delenv(evidence.UPDATE_VARIABLE)
    finding("ics_chapter", "ics", verdict=SUPPORTED, **dict(ARGS, value=0.5004))  # same to its precision
    assert "scoreboard agrees" in capsys.readouterr().out
    assert evidence.load() == {"ics_chapter": saved} and evidence.load("nothing") == {}


def test_a_changed_result_fails_until_the_record_is_rewritten(records, monkeypatch):
    monkeypatch.setenv(evidence.UPDATE_VARIABLE, "1")
    finding("ch", "ics", verdict=SUPPORTED, **ARGS)
    monkeypatch.delenv(evidence.UPDATE_VARIABLE)
    with pytest.raises(ClaimFailed, match=r"measured='0\.70'.*committed='supported, 0\.50'"):
        finding("ch", "ics", verdict=SUPPORTED, **dict(ARGS, value=0.7))
    with pytest.raises(ClaimFailed, match="committed='supported"):
        finding("ch", "ics", verdict=CONDITIONAL, **ARGS)
    with pytest.raises(ClaimFailed, match="make evidence"):
        finding("ch", "new_key", verdict=SUPPORTED, **ARGS)


def test_on_another_base_seed_only_the_verdict_must_agree(records, monkeypatch):
    monkeypatch.setenv(evidence.UPDATE_VARIABLE, "1")
    finding("ch", "ics", verdict=SUPPORTED, **ARGS)
    monkeypatch.delenv(evidence.UPDATE_VARIABLE)
    monkeypatch.setenv("BNBOOK_SEED", "4")
    finding("ch", "ics", verdict=SUPPORTED, **dict(ARGS, value=0.9))
    with pytest.raises(ClaimFailed):
        finding("ch", "ics", verdict=NOT_SUPPORTED, **dict(ARGS, value=0.9))


def test_a_rewrite_drops_findings_the_chapter_no_longer_makes(records, monkeypatch):
    (records / "ch.json").write_text(json.dumps({"gone": dict(ARGS, verdict=SUPPORTED, seed=0)}))
    monkeypatch.setenv(evidence.UPDATE_VARIABLE, "1")
    finding("ch", "ics", verdict=SUPPORTED, **ARGS)
    assert set(evidence.load("ch")) == {"ics"}


@pytest.mark.parametrize("change, error, message", [
    (dict(verdict="probably"), ValueError, "verdict must be one of"),
    (dict(value="big"), TypeError, "value must be a number"),
    (dict(value=float("nan")), ValueError, "value must be finite"),
    (dict(fmt="%d"), ValueError, "not a format spec"),
    (dict(figure=""), ValueError, "figure must be a non-empty string"),
    (dict(key="two words"), ValueError, "must be identifiers"),
])
def test_bad_findings_are_named(records, change, error, message):
    args = dict(ARGS, chapter="ch", key="ics", verdict=SUPPORTED)
    args.update(change)
    with pytest.raises(error, match=message):
        finding(args.pop("chapter"), args.pop("key"), **args)


def _calls():
    found = set()
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                for chapter, key in CALL.findall("".join(cell["source"])):
                    assert chapter == nb.stem, f"{nb.name} records a finding for another chapter, {chapter!r}"
                    found.add((chapter, key))
    return found


def test_every_committed_record_is_made_by_a_chapter_and_every_finding_is_committed():
    committed = {(chapter, key) for chapter, keys in evidence.load().items() for key in keys}
    calls = _calls()
    assert committed - calls == set(), "records no chapter makes any more: run `make evidence`"
    assert calls - committed == set(), "findings without a committed record: run `make evidence`"
    for chapter, keys in evidence.load().items():
        for key, record in keys.items():
            assert record["verdict"] in VERDICTS and record["seed"] == 0, (chapter, key)


def test_agreement_allows_a_last_digit_or_five_percent_and_nothing_more():
    record = dict(ARGS, verdict=SUPPORTED, value=0.004, fmt=".3f", seed=0)
    assert evidence.agrees(record, SUPPORTED, 0.005, 0) and not evidence.agrees(record, SUPPORTED, 0.0065, 0)
    assert evidence.agrees(dict(record, value=40.0, fmt=".0f"), SUPPORTED, 41.9, 0)
    assert not evidence.agrees(dict(record, value=40.0, fmt=".0f"), SUPPORTED, 43, 0)
    assert evidence.last_digit(".1%") == 0.001 and evidence.last_digit(".2g") == 0.0
