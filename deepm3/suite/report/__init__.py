"""The suite's report: ``report.md`` with every table, PNG plots and the claims table.

Reads only the committed files of the other stages (run records, analysis files, the suite
log), so anyone can rebuild it from a clone (``--skip`` every other stage). Each section is a
function of one topic that returns its markdown and the typed facts the claims need:

    header, search -> core, significance -> irregularity -> time sensitivity and robustness
    -> solver and Lipschitz ablations -> efficiency -> the paper's protocol; claims from facts
"""

from __future__ import annotations

import json
from pathlib import Path

from deepm3.errors import DeepM3Error
from deepm3.reporting import calibration, records
from deepm3.reporting.text import markdown
from deepm3.stats.perturbation_grid import build
from deepm3.suite import claims
from deepm3.suite.budgets import Budget, Design
from deepm3.suite.design import FOCUS, NO_FLOW_TWIN, TRAINED_BASELINES
from deepm3.suite.layout import Layout
from deepm3.suite.report import core, efficiency, goals, header, irregular, robustness, solver

CLAIMS_INTRO = (
    "## Claims\n\nEach claim of the paper, our figure (mean, 95% CI, Holm-corrected p where a "
    "test applies) and a verdict: confirmed when our interval supports the claim, refuted "
    "when it excludes it, inconclusive otherwise (rules in `deepm3/suite/claims.py`). A verdict "
    "whose rows include a run stopped by a cap (time or epochs) while its validation NDCG@10 "
    "still rose over its last 5 validations is inconclusive: that run had not converged. The "
    "comparisons of DeepM3 with a trained row (the main table, the ablation) read the users x "
    "seeds bootstrap (section 3) on all users and on untied users, co-primary: confirmed only "
    "when both confirm, refuted only when both show a significant loss.\n\n"
)
GOALS_INTRO = (
    "The last five rows are our goals for the time-aware rows (issue 20). The best "
    "continuous-time model is the time-aware row at the last-event protocol (deepm3, "
    "deepm3-rk4, deepm3-decay, deepm3-gaps, timeattn) with the best validation NDCG@10, never "
    "the test's; the target-time rows (deepm3-target, timeattn-flow) answer another question "
    "and are not candidates. Each goal is one users x seeds test (all users and untied users, "
    "co-primary, not corrected). Parity with SASRec: confirmed when every interval covers 0 or "
    "lies above it; the +5% goal is met when every point estimate is at least +5% and every "
    "interval lies above 0, ruled out when every interval lies below +5%. The irregular-users "
    "goal (ML-1M only) is the +5% goal on the most irregular CV tertile (section 4's). Time "
    "helps: against the chosen row's time-off twin, the same row trained with its own searched "
    "settings and its time terms off (`<row>-notime`: no flow, no gap features; timeattn without "
    "its time bias; tisasrec-gaps has none, as tisasrec reads time). Under jitter with the order "
    "kept: the paired test of the drops against TiSASRec (section 6's ranks). Speed: the ratios "
    "of `make bench` (not of this suite's runs), met when every median is within its limit. A "
    'goal whose rows have no finished run yet says "not run yet".\n\n'
)


def _log(layout: Layout) -> list[dict]:
    if not layout.log.is_file():
        return []
    return [json.loads(line) for line in layout.log.read_text().splitlines()]


def calibration_section(
    out: Path, dataset: str, core_records: list[records.RunRecord], required: bool
) -> str:
    """This report's SASRec against the published numbers on the same split (and the
    calibration ladder's recipe, when ``out/calibration.md`` exists: written by ``deepm3
    calibration``, scripts/experiments/calibrate.sh, with its own verdict and a link); for a
    data set without published numbers, one line saying so. Only where the budget is
    ``required`` to calibrate (standard, full) or a ladder ran: empty for quick and smoke."""
    table = out / calibration.FILE
    if not table.is_file() and not required:
        return ""
    sasrec = [r for r in core_records if r.row == calibration.MODEL]
    rows, said = calibration.suite_rows(dataset, sasrec, "this report", out / "ladder")
    parts = ["## Calibration\n"]
    if said:
        parts.append(
            "This report's SASRec (the core table's row: its searched settings) against "
            "published full-ranking leave-one-out numbers on the same split:\n\n"
            + markdown(rows)
            + "\n\n"
            + "\n".join(f"{key} {text}" for key, text in calibration.SOURCES.items())
            + f"\n\n{said}\n"
        )
    else:
        parts.append(
            f"No published number on this split ({dataset}): no baseline of this report is "
            "calibrated, so its comparisons rest on the same recipe as the calibrated data "
            "set's.\n"
        )
    if table.is_file():
        text = table.read_text()
        ladder_said = text.split("## Verdict", 1)[1].strip() if "## Verdict" in text else ""
        parts.append(
            "The ladder of recipes that led to the settings used here, one change per rung: "
            f"[{calibration.FILE}]({calibration.FILE}). {ladder_said}\n"
        )
    return "\n".join(parts)


def capped_rows(core_records: list[records.RunRecord]) -> dict[str, tuple[int, int]]:
    """Row -> (runs stopped by a cap while validation still rose, runs) for rows with any."""
    found: dict[str, tuple[int, int]] = {}
    for row, group in core.by_row(core_records).items():
        hit = sum(r.capped_while_rising for r in group)
        if hit:
            found[row] = (hit, len(group))
    return found


def write(title: str, headline: str | None, budget: Budget, design: Design, layout: Layout) -> dict:
    """Write ``report.md`` and its figures from the committed files; returns a summary."""
    core_records = records.read_all(layout.records("core"))
    if not core_records:
        raise DeepM3Error(
            f"{layout.records('core')} holds no finished runs: run the core stage first"
        )
    rows = {r.row for r in core_records}
    if FOCUS not in rows:
        raise DeepM3Error(
            f"{layout.records('core')} holds no finished {FOCUS} run (rows: "
            f"{', '.join(sorted(rows))}): the report compares every row with it, run the core "
            "stage to its end first"
        )
    grid = build(design.sigmas_hours, design.drop_ps, design.local_window)
    stats = core_records[0].provenance.get("data", {})

    core_text, found = core.core(core_records, layout)
    significance_text, significance = core.significance(found)
    irregular_text, irregular_fact = irregular.irregularity(layout, found.ndcg)
    perturb_text, robust = robustness.time_and_robustness(
        layout, found.rows, grid, design.local_window
    )
    headline_text = robustness.headline(robust, grid, found.rows, design.local_window)
    solver_text, latency = solver.solver(layout, core_records)
    efficiency_text, parameters = efficiency.efficiency(layout, core_records)
    facts = claims.Facts(
        significance=significance,
        parameters=parameters,
        irregular=irregular_fact,
        robust=None if robust.effects.empty else robust.focus,
        duels=robust.duels,
        latency=latency,
        dataset=str(stats.get("dataset")),
        capped=capped_rows(core_records),
        goals=goals.goals(layout, core_records, found, grid, str(stats.get("dataset")))
        if budget.variant_rows
        else None,
    )
    verdicts = claims.claims_table(facts, TRAINED_BASELINES, NO_FLOW_TWIN)
    subset = " subset" if header.is_subset(stats) else ""
    verdicts.insert(2, "data, budget", f"{stats.get('dataset')}{subset}, {budget.name}")
    parts = [
        header.header(title, budget, stats, _log(layout)),
        CLAIMS_INTRO + (GOALS_INTRO if facts.goals else "") + markdown(verdicts) + "\n",
        headline_text if headline == "robustness" else "",
        header.search(layout, budget),
        calibration_section(
            layout.out, str(stats.get("dataset")), core_records, budget.variant_rows
        ),
        core_text,
        significance_text,
        irregular_text,
        perturb_text,
        solver_text,
        solver.lipschitz(
            layout,
            core_records,
            records.read_all(layout.records("lipschitz")),
            grid,
            budget.seeds[0],
        ),
        efficiency_text,
        efficiency.paper_protocol(core_records, records.read_all(layout.records("paper"))),
    ]
    layout.report.write_text("\n".join(p for p in parts if p))
    print(f"report: {layout.report}", flush=True)
    return {"claims": len(verdicts)}
