"""The suite's report: ``<out>/report.md`` with every table, PNG plots and the claims table.

Reads only the committed files of the other stages (run records, analysis files, the suite
log), so anyone can rebuild it from a clone (``--skip`` every other stage).
"""

from __future__ import annotations

import json

import pandas as pd

from deepm3.suite import claims, perturbations, sections
from deepm3.suite.sections import FOCUS, TRAINED_BASELINES


def robust_focus(effects: pd.DataFrame, grid: list, local_window: int) -> pd.DataFrame:
    """DeepM3's rows at every robustness family's largest level (the claim's noise)."""
    keys = sections.focus_keys(grid, local_window)
    return effects[(effects["row"] == FOCUS) & effects["key"].isin(keys)].reset_index(drop=True)


def claims_table(facts: dict) -> pd.DataFrame:
    rows = []
    if facts.get("parameters"):
        rows.append(claims.parameters(*facts["parameters"]))
    if facts.get("irregular"):
        fact = facts["irregular"]
        rows.append(
            claims.irregular(
                fact["baseline"], fact["gain"], fact["low"], fact["high"], fact["p"], fact["users"]
            )
        )
    if facts.get("robust") is not None and not facts["robust"].empty:
        rows.append(claims.robust(facts["robust"]))
    if facts.get("duels") is not None and not facts["duels"].empty:
        rows.append(claims.robust_relative(facts["duels"]))
    if facts.get("euler"):
        rows.append(claims.euler(*facts["euler"]))
    sig = facts["significance"]
    trained = sig[sig["baseline"].isin(TRAINED_BASELINES)]
    if not trained.empty:
        rows.append(claims.main_table(trained))
    ablation = sig[sig["baseline"] == "deepm3-noode"]
    if not ablation.empty:
        rows.append(claims.ode_helps(next(ablation.itertuples())))
    return pd.DataFrame(rows)


def write(settings) -> dict:
    budget, out = settings.budget, settings.place.out
    core_records = sections.records(out, "core")
    if not core_records:
        raise RuntimeError(f"{out}/core/runs holds no finished runs: run the core stage first")
    grid = perturbations.build(budget.sigmas_hours, budget.drop_ps, budget.local_window)
    stats = next(iter(core_records.values()))["provenance"].get("data", {})
    log_path = out / "suite_log.jsonl"
    log = (
        [json.loads(line) for line in log_path.read_text().splitlines()]
        if log_path.is_file()
        else []
    )

    core_text, ndcg = sections.core(core_records, out)
    significance_text, significance = sections.significance(ndcg)
    irregular_text, irregular = sections.irregularity(out, ndcg)
    rows = [r for r in sections.CORE_ROWS if r in ndcg]
    perturb_text, effects = sections.time_and_robustness(out, rows, grid)
    headline_text, duels = sections.robustness_headline(effects, grid, rows, budget.local_window)
    solver_text, euler = sections.solver(out, core_records)
    efficiency_text, parameter_ratios = sections.efficiency(out, core_records)
    facts = {
        "parameters": parameter_ratios,
        "irregular": irregular,
        "robust": None if effects.empty else robust_focus(effects, grid, budget.local_window),
        "duels": duels,
        "euler": euler,
        "significance": significance,
    }
    verdicts = claims_table(facts)
    subset = "subset" in str(stats.get("source", ""))
    verdicts.insert(
        2, "data, budget", f"{stats.get('dataset')}{' subset' if subset else ''}, {budget.name}"
    )
    parts = [
        sections.header(settings.title, budget, stats, log),
        "## Claims\n\nEach claim of the paper, our figure (mean, 95% CI, Holm-corrected p where a "
        "test applies) and a verdict: confirmed when our interval supports the claim, refuted "
        "when it excludes it, inconclusive otherwise (rules in `deepm3/suite/claims.py`).\n\n"
        + sections.markdown(verdicts)
        + "\n",
        headline_text if settings.headline == "robustness" else "",
        sections.search(out),
        core_text,
        significance_text,
        irregular_text,
        perturb_text,
        solver_text,
        sections.lipschitz(out, core_records, grid, budget.seeds[0]),
        efficiency_text,
        sections.paper_protocol(out, core_records),
    ]
    (out / "report.md").write_text("\n".join(p for p in parts if p))
    print(f"report: {out / 'report.md'}", flush=True)
    return {"claims": len(verdicts)}
