"""The rules shared by every verdict of the claims tables (:mod:`deepm3.suite.claims`, the
paper's claims; :mod:`deepm3.suite.goals`, issue 20's goals): an interval against a claimed
effect, the co-primary tests of one significance row, and the budget rule that makes a verdict
inconclusive when a row it uses had a run stopped by a cap while its validation still rose."""

from __future__ import annotations

import math

from deepm3.reporting.text import ci, p_text, pct

IRREGULAR_DATASET = "ml-1m"  # the irregular-users claim and goal are about MovieLens-1M only


def interval_verdict(low: float, high: float, p: float, claimed: float = 0.0) -> str:
    """A claimed positive effect: confirmed when the interval lies above 0 (p < 0.05), refuted
    when it lies below ``claimed`` (the effect is smaller than stated, or negative)."""
    if low > 0 and p < 0.05:
        return "confirmed"
    if high < claimed:
        return "refuted"
    return "inconclusive"


def _tests(row) -> list[tuple[str, float, float, float, float]]:
    """The tests a verdict reads from one significance row: (label, relative, ci_low, ci_high,
    Holm p). With the users x seeds bootstrap columns (``h_*``, ``untied_*``: a report built
    from per-seed records) both co-primary tests, all users and untied users; without them
    (seed averages only) the per-user paired bootstrap and Wilcoxon test."""
    if not hasattr(row, "h_ci_low"):
        return [("", row.relative, row.ci_low, row.ci_high, row.wilcoxon_p_holm)]
    tests = [("", row.relative, row.h_ci_low, row.h_ci_high, row.h_p_holm)]
    if not math.isnan(row.untied_relative):
        tests.append(
            (
                "untied ",
                row.untied_relative,
                row.untied_ci_low,
                row.untied_ci_high,
                row.untied_p_holm,
            )
        )
    return tests


def _row_verdict(row) -> str:
    """confirmed when every co-primary test confirms; "worse" when every one shows DeepM3
    significantly below; inconclusive otherwise (including when they disagree)."""
    tests = _tests(row)
    if all(interval_verdict(low, high, p) == "confirmed" for _, _, low, high, p in tests):
        return "confirmed"
    if all(high < 0 and p < 0.05 for _, _, _, high, p in tests):
        return "worse"
    return "inconclusive"


def _row_figure(row) -> str:
    """``+1.00% [low, high], p=...``, the untied co-primary test in brackets after it."""
    texts = [
        f"{label}{pct(relative)} {ci(low, high)}, p={p_text(p)}"
        for label, relative, low, high, p in _tests(row)
    ]
    return texts[0] + "".join(f" ({text})" for text in texts[1:])


def unconverged(verdict: dict, rows: list[str], capped: dict[str, tuple[int, int]]) -> dict:
    """``verdict`` made inconclusive when any of ``rows`` (the rows its figure uses) had a run
    stopped by a cap while its validation still rose; the figure is kept."""
    used = dict.fromkeys(row for row in rows if row in capped)  # each row once, in order
    hit = [f"{row} ({capped[row][0]} of {capped[row][1]} runs)" for row in used]
    if not hit or verdict["verdict"].startswith("n/a"):
        return verdict
    reason = f"inconclusive: stopped by a cap while validation still rose: {', '.join(hit)}"
    was = verdict["verdict"].split(":")[0]
    return {**verdict, "verdict": f"{reason} (the figures alone: {was})"}
