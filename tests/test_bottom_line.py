"""The bottom line's scoreboard: rows in order, nothing dropped, links, the figure, and the self-checks."""
import matplotlib
import matplotlib.pyplot as plt
import pytest

from bnbook import evidence
from bnbook.chapters import bottom_line as bl
from bnbook.evidence import CONDITIONAL, NOT_SUPPORTED, QUESTIONS, SUPPORTED, VERDICTS

matplotlib.use("Agg")


def _record(verdict=SUPPORTED, value=0.5, fmt=".2f", figure="fig-x"):
    return dict(explanation="an explanation", verdict=verdict, value=value, fmt=fmt, measured="m | n",
                figure=figure, seed=0)


RECORDS = {
    "smooth_landscape": {"learning_rates": _record(value=30.0, fmt=".0f"), "smoothness": _record(CONDITIONAL)},
    "internal_covariate_shift": {"ics": _record(NOT_SUPPORTED)},
    "new_chapter": {"surprise": _record()},
}


def test_rows_follow_the_sections_and_nothing_is_dropped():
    rows = bl.scoreboard(RECORDS)
    assert [(r["chapter"], r["key"]) for r in rows] == [
        ("internal_covariate_shift", "ics"), ("smooth_landscape", "smoothness"),
        ("smooth_landscape", "learning_rates"), ("new_chapter", "surprise")]
    assert rows[-1]["section"] == bl.OTHER and rows[2]["number"] == "30"
    assert ("deep_init", "rank_collapse") in bl.unrecorded(RECORDS)
    assert bl.verdict_counts(rows) == {SUPPORTED: 2, CONDITIONAL: 1, NOT_SUPPORTED: 1, evidence.UNDECIDED: 0}


def test_every_question_has_rows_and_every_planned_row_a_next_experiment():
    assert list(bl.BEARS_ON) == list(QUESTIONS) and bl.unanswered() == []
    planned = [row for rows in bl.SECTIONS.values() for row in rows]
    assert len(planned) == len(set(planned))
    assert all(row in planned for rows in bl.BEARS_ON.values() for row in rows)
    assert set(bl.NEXT_EXPERIMENT) <= set(planned)


def test_rows_for_a_question_and_an_unknown_question():
    rows = bl.scoreboard(RECORDS)
    got = bl.rows_for(rows, "Internal covariate shift or smoothness?")
    assert [r["key"] for r in got] == ["ics", "smoothness", "learning_rates"]
    with pytest.raises(ValueError, match="unknown question"):
        bl.rows_for(rows, "Is BN magic?")


def test_the_table_links_chapter_and_figure_and_escapes_pipes():
    table = bl.scoreboard_markdown(bl.scoreboard(RECORDS))
    assert "{numref}`fig-x` in {doc}`internal_covariate_shift`" in table
    assert "m / n" in table and f"**{bl.OTHER}**" in table
    assert "{doc}`new_chapter`" in bl.open_questions_markdown(bl.scoreboard(RECORDS))


def test_the_figure_has_one_line_per_row_and_fades_other_questions():
    rows = bl.scoreboard(RECORDS)
    fig = plt.figure()
    ax = bl.plot_scoreboard(fig, rows, question="Is BN necessary?")
    assert len(ax.get_yticklabels()) == len(rows) and len(ax.get_xticklabels()) == len(VERDICTS)
    assert ax.get_title() == "Is BN necessary?"
    with pytest.raises(ValueError, match="unknown question"):
        bl.plot_scoreboard(plt.figure(), rows, question="nope")
    plt.close("all")


def test_check_verdict_rule_accepts_the_rule_and_names_the_mean_mistake(capsys):
    def rule(ratios):
        if all(r < 0.8 for r in ratios):
            return SUPPORTED
        if all(r > 1.25 for r in ratios):
            return NOT_SUPPORTED
        return CONDITIONAL

    assert bl.check_verdict_rule(rule) is True
    assert bl.check_verdict_rule(lambda r: SUPPORTED if sum(r) / len(r) < 0.8 else CONDITIONAL) is False
    assert "every seed" in capsys.readouterr().out


def test_check_supported_count():
    rows = bl.scoreboard(RECORDS)
    assert bl.check_supported_count(2, rows) is True
    assert bl.check_supported_count(len(rows), rows) is False
