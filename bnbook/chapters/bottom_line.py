"""Chapter "The bottom line": the scoreboard, read from the chapters' findings.

Nothing here measures anything. The chapters record their verdicts with
:func:`bnbook.evidence.finding`; :func:`bnbook.evidence.load` reads the committed records and this
module arranges them: :data:`SECTIONS` orders the rows of the scoreboard, :data:`BEARS_ON` says which
rows answer which of the learners' questions, :func:`scoreboard` builds the rows (any record not
placed in a section lands in "Other findings", so a new finding is never dropped),
:func:`scoreboard_markdown` writes the table with links to the chapters and figures,
:func:`plot_scoreboard` draws it (the chapter's figure and explorer), and ``check_*`` are the
exercise self-checks.
"""
from __future__ import annotations

from ..evidence import CONDITIONAL, NOT_SUPPORTED, QUESTIONS, SUPPORTED, UNDECIDED, VERDICTS
from ..selfcheck import call_answer, function_answer, numeric_answer, ok, wrong

__all__ = [
    "SECTIONS", "BEARS_ON", "OTHER", "scoreboard", "unrecorded", "unanswered", "rows_for", "scoreboard_markdown",
    "verdict_counts", "NEXT_EXPERIMENT", "open_questions_markdown", "plot_scoreboard", "VERDICT_COLORS",
    "check_verdict_rule", "check_supported_count",
]

# The scoreboard's sections and their rows, as (chapter, finding key), in reading order.
SECTIONS = {
    "Why BN helps: the proposed explanations": [
        ("internal_covariate_shift", "ics"),
        ("smooth_landscape", "smoothness"),
        ("smooth_landscape", "learning_rates"),
        ("higher_order", "higher_order"),
        ("input_normalization", "conditioning"),
        ("gamma_beta", "centring"),
        ("deep_init", "rank_collapse"),
        ("residual_identity", "identity"),
        ("residual_identity", "head_norm"),
        ("dropout_noise", "noise"),
    ],
    "Costs, practice and necessity": [
        ("gamma_beta", "redundant"),
        ("placement", "placement"),
        ("dropout_noise", "dropout"),
        ("small_batches", "small_batches"),
        ("inference", "running_stats"),
        ("deep_init", "gradient_explosion"),
        ("residual_identity", "necessary"),
        ("without_normalization", "necessary"),
        ("minibatch_sgd", "noise"),
    ],
}
OTHER = "Other findings"

# Which rows bear on which of the learners' questions (the bottom line answers each from these).
BEARS_ON = {
    "Is BN necessary?": [("without_normalization", "necessary"), ("residual_identity", "necessary"),
                         ("residual_identity", "identity"), ("deep_init", "rank_collapse"),
                         ("deep_init", "gradient_explosion"), ("smooth_landscape", "learning_rates")],
    "Why does normalizing hidden units help later layers?": [
        ("gamma_beta", "centring"), ("input_normalization", "conditioning"), ("higher_order", "higher_order"),
        ("residual_identity", "head_norm"), ("internal_covariate_shift", "ics")],
    "Are gamma and beta redundant?": [("gamma_beta", "redundant")],
    "Internal covariate shift or smoothness?": [
        ("internal_covariate_shift", "ics"), ("smooth_landscape", "smoothness"),
        ("smooth_landscape", "learning_rates"), ("higher_order", "higher_order")],
    "Before or after the nonlinearity?": [("placement", "placement")],
    "BN with dropout?": [("dropout_noise", "dropout"), ("dropout_noise", "noise")],
    "Small batches?": [("small_batches", "small_batches"), ("inference", "running_stats")],
    "Why mini-batches?": [("minibatch_sgd", "noise")],
    "So, is there a bottom line?": [row for rows in SECTIONS.values() for row in rows],
}

# For a row that holds only under conditions or cannot be decided at our scale: the experiment, at which scale,
# that would decide it (the chapter shows which rows need one; a claim there checks that each has one).
NEXT_EXPERIMENT = {
    ("internal_covariate_shift", "ics"):
        "Santurkar et al.'s VGG on CIFAR-10 with their noisy BN, and their l2 / cosine ICS over a full run, on "
        "five seeds: does BN's benefit survive noise that makes the inputs less stable than without BN?",
    ("smooth_landscape", "smoothness"):
        "The same matched-distance probes at initialization and through training in a ResNet or VGG on "
        "CIFAR-10 (Santurkar et al.'s setting): is BN smoother from the start at that depth and width, or, as "
        "here, only once training has started?",
    ("smooth_landscape", "learning_rates"):
        "Bjorck et al.'s learning-rate sweep on CIFAR-10 with a ResNet-110, with and without BN, at equal "
        "budgets: the largest stable rate and the accuracy reached at it.",
    ("higher_order", "higher_order"):
        "Block Hessian-vector products (within- and cross-layer) along training in a ResNet-18 on CIFAR-10: "
        "do the cross-layer terms stay the larger share with BN at that depth?",
    ("input_normalization", "conditioning"):
        "The condition number of each layer's inputs after per-unit and after full whitening (decorrelated BN, "
        "Huang et al. 2018) in a ResNet on CIFAR-10: does removing the correlations that BN leaves speed "
        "training further?",
    ("gamma_beta", "centring"):
        "Mean-only BN (Salimans and Kingma) against full BN and against centred activations without BN in a "
        "CIFAR-10 ResNet: how much of BN's speed-up is centring at that scale?",
    ("gamma_beta", "redundant"):
        "Frankle et al.'s experiment (train only gamma and beta) and the folded twins of this book in a "
        "ResNet on ImageNet: do the twins' predictions still disagree at equal accuracy?",
    ("deep_init", "rank_collapse"):
        "Daneshmand et al.'s rank measurements in a 50-100 layer network on CIFAR-10 or ImageNet, together "
        "with training speed: does the rank at initialization predict how fast each variant trains?",
    ("deep_init", "gradient_explosion"):
        "Yang et al.'s gradient-norm ratio at initialization in plain (non-residual) BN networks of depth "
        "50-200 on CIFAR-10, and the largest learning rate each depth trains at.",
    ("residual_identity", "necessary"):
        "De and Smith's BN, SkipInit and unnormalized residual networks on ImageNet at equal budgets and "
        "batch sizes 256-4096: at which batch size and learning rate does BN's advantage open?",
    ("residual_identity", "identity"):
        "De and Smith's comparison of BN and SkipInit in a Wide-ResNet on CIFAR-10 and a ResNet-50 on "
        "ImageNet over batch sizes 64-4096: where does SkipInit stop matching BN?",
    ("dropout_noise", "noise"):
        "BN's regularization at ImageNet scale: train and test accuracy with BN at several ghost batch sizes, "
        "with and without dropout and weight decay, on five seeds (Luo et al.'s and Hoffer et al.'s setting).",
    ("dropout_noise", "dropout"):
        "Li et al.'s dropout-before-BN placements in a DenseNet or ResNeXt on CIFAR-10/100, where they "
        "report the variance shift costing accuracy: does recalibrating BN's statistics recover it?",
    ("placement", "placement"):
        "BN before and after ReLU, with and without scale and shift, in a CaffeNet or ResNet on ImageNet "
        "with ten seeds per variant: the differences ducha-aiki's table reports (about 2-3 points) are "
        "larger than our seed spread only at that scale.",
    ("small_batches", "small_batches"):
        "Wu and He's ResNet-50 on ImageNet (or Mask R-CNN on COCO) at batch sizes 2-32 per device with BN, "
        "GN and LN: where does BN's gap open when each channel pools many positions?",
    ("inference", "running_stats"):
        "SWA and small-batch fine-tuning of a ResNet on CIFAR-100 or ImageNet, with running averages against "
        "recomputed population statistics (torch.optim.swa_utils.update_bn): how much accuracy does "
        "recalibration recover at that scale?",
    ("without_normalization", "necessary"):
        "Brock et al.'s NF-ResNet with AGC against a BN ResNet on ImageNet at batch sizes 256-4096, and "
        "Fixup on CIFAR-10 and ImageNet, at equal budgets: accuracy, largest stable learning rate, cost.",
}

VERDICT_COLORS = {SUPPORTED: "#2e7d32", CONDITIONAL: "#ef8c00", NOT_SUPPORTED: "#c62828", UNDECIDED: "#757575"}


def scoreboard(records: dict) -> list[dict]:
    """One row per committed finding, in :data:`SECTIONS` order, then any unplaced ones under :data:`OTHER`.

    ``records`` is :func:`bnbook.evidence.load`'s ``{chapter: {key: record}}``. A row is the record plus
    ``section``, ``chapter``, ``key`` and ``number`` (the value in its format). A row of :data:`SECTIONS`
    without a record is left out; :func:`unrecorded` lists those.
    """
    rows, placed = [], set()
    for section, keys in SECTIONS.items():
        for chapter, key in keys:
            placed.add((chapter, key))
            if key in records.get(chapter, {}):
                rows.append(_row(section, chapter, key, records[chapter][key]))
    for chapter, keys in records.items():
        for key, record in keys.items():
            if (chapter, key) not in placed:
                rows.append(_row(OTHER, chapter, key, record))
    return rows


def _row(section, chapter, key, record):
    return dict(record, section=section, chapter=chapter, key=key, number=format(record["value"], record["fmt"]))


def unrecorded(records: dict) -> list[tuple[str, str]]:
    """The (chapter, key) rows of :data:`SECTIONS` that have no committed record."""
    return [(c, k) for keys in SECTIONS.values() for c, k in keys if k not in records.get(c, {})]


def unanswered() -> list[str]:
    """The learners' questions (:data:`bnbook.evidence.QUESTIONS`) that :data:`BEARS_ON` gives no rows."""
    return [q for q in QUESTIONS if not BEARS_ON.get(q)]


def rows_for(rows: list[dict], question: str) -> list[dict]:
    """The rows of the scoreboard that bear on one of the learners' questions (see :data:`BEARS_ON`)."""
    if question not in BEARS_ON:
        raise ValueError(f"unknown question {question!r}; the questions are {list(BEARS_ON)}")
    wanted = BEARS_ON[question]
    return sorted((r for r in rows if (r["chapter"], r["key"]) in wanted),
                  key=lambda r: wanted.index((r["chapter"], r["key"])))


def verdict_counts(rows: list[dict]) -> dict[str, int]:
    """How many rows carry each verdict (every verdict present, zeros included)."""
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}


def scoreboard_markdown(rows: list[dict]) -> str:
    """The scoreboard as a MyST table per section, linking each row's chapter and figure."""
    out = []
    for section in dict.fromkeys(r["section"] for r in rows):
        out += [f"**{section}**", "", "| explanation or question | verdict | key number | what was measured "
                "| evidence |", "|---|---|---|---|---|"]
        for r in (r for r in rows if r["section"] == section):
            measured = r["measured"].replace("|", "/")
            out.append(f"| {r['explanation']} | {r['verdict']} | {r['number']} | {measured} "
                       f"| {{numref}}`{r['figure']}` in {{doc}}`{r['chapter']}` |")
        out.append("")
    return "\n".join(out)


def _label(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def open_questions_markdown(rows: list[dict]) -> str:
    """A MyST list: each row's verdict and the experiment that would decide it (:data:`NEXT_EXPERIMENT`)."""
    items = []
    for r in rows:
        plan = NEXT_EXPERIMENT.get((r["chapter"], r["key"]), "(no experiment named)")
        items.append(f"- **{r['explanation']}** ({r['verdict']}, {{doc}}`{r['chapter']}`): {plan}")
    return "\n".join(items)


def plot_scoreboard(fig, rows: list[dict], question: str | None = None):
    """Draw the scoreboard into ``fig``: one line per row, a marker in its verdict's column with the key number.

    With ``question`` (one of the learners' questions), the rows bearing on it are drawn in full colour
    and the others faded. Returns the axes.
    """
    if question is not None and question not in BEARS_ON:
        raise ValueError(f"unknown question {question!r}; the questions are {list(BEARS_ON)}")
    wanted = set(BEARS_ON[question]) if question else None
    ax = fig.add_subplot()
    n = len(rows)
    for i, r in enumerate(rows):
        y = n - 1 - i
        strong = wanted is None or (r["chapter"], r["key"]) in wanted
        x = VERDICTS.index(r["verdict"])
        ax.scatter([x], [y], s=170, marker="s", color=VERDICT_COLORS[r["verdict"]], alpha=1.0 if strong else 0.15,
                   zorder=3)
        ax.annotate(r["number"], (x, y), xytext=(12, 0), textcoords="offset points", va="center", fontsize=9,
                    alpha=1.0 if strong else 0.3)
    boundaries = [i for i in range(1, n) if rows[i]["section"] != rows[i - 1]["section"]]
    for b in boundaries:
        ax.axhline(n - b - 0.5, color="0.6", lw=0.8)
    ax.set_yticks(range(n), [_label(r["explanation"]) for r in reversed(rows)], fontsize=9)
    ax.set_xticks(range(len(VERDICTS)), [v.replace(" at ", "\nat ").replace("under ", "under\n")
                                         for v in VERDICTS], fontsize=9)
    ax.set(xlim=(-0.5, len(VERDICTS) - 0.2), ylim=(-0.7, n - 0.3))
    ax.grid(False)
    ax.set_title(question or "every finding of the book", fontsize=11)
    ax.tick_params(axis="y", length=0)
    for i, label in enumerate(ax.get_yticklabels()):
        r = rows[n - 1 - i]
        if wanted is not None and (r["chapter"], r["key"]) not in wanted:
            label.set_alpha(0.35)
    return ax


# --- exercise self-checks ---------------------------------------------------------------------

_RULE_CASES = [  # (BN/plain ratio per seed, the verdict the rule must give); fixed cases, no seed involved
    ([0.3, 0.5, 0.7], SUPPORTED),
    ([0.79, 0.2], SUPPORTED),
    ([0.5, 0.9, 0.6], CONDITIONAL),
    ([1.1, 0.7, 1.5], CONDITIONAL),
    ([0.8, 0.5], CONDITIONAL),
    ([1.3, 1.26, 2.0], NOT_SUPPORTED),
    ([1.25, 1.4], CONDITIONAL),
]


def check_verdict_rule(fn):
    """Check ``fn(ratios) -> verdict``: SUPPORTED if every seed's BN/plain ratio is below 0.8, NOT_SUPPORTED if
    every one is above 1.25, CONDITIONAL otherwise (the verdict constants of :mod:`bnbook.evidence`)."""
    fn, verdict = function_answer(fn, "a verdict rule", "check_verdict_rule(my_rule)")
    if fn is None:
        return verdict
    for ratios, want in _RULE_CASES:
        got, verdict = call_answer(fn, list(ratios), signature="fn(ratios) with a list of floats")
        if verdict is not None:
            return verdict
        if got not in VERDICTS:
            return wrong(f"fn({ratios}) returned {got!r}; return one of SUPPORTED, CONDITIONAL, NOT_SUPPORTED")
        if got != want:
            if want == CONDITIONAL and got == SUPPORTED:
                return wrong(f"fn({ratios}) says {got!r}: a verdict must hold on every seed, not on most "
                             "(or the boundary is strict: below 0.8)")
            if want == CONDITIONAL and got == NOT_SUPPORTED:
                return wrong(f"fn({ratios}) says {got!r}: 'not supported' needs every seed above 1.25")
            return wrong(f"fn({ratios}) says {got!r}, the rule gives {want!r}")
    return ok("the rule gives the same verdict as the book's on all seven cases")


def check_supported_count(answer, rows):
    """Check the reader's count of scoreboard rows whose verdict is "supported"."""
    answer, verdict = numeric_answer(answer, "the number of supported rows")
    if answer is None:
        return verdict
    want = verdict_counts(rows)[SUPPORTED]
    if answer == want:
        return ok(f"{want} of {len(rows)} rows are supported at our scale")
    if answer == len(rows):
        return wrong("that is every row: count only the verdict 'supported'")
    return wrong(f"count the rows whose verdict is exactly 'supported' (you said {answer:g})")

