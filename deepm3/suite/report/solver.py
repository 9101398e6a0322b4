"""The solver ablation (same weights re-solved) and the Lipschitz ablation (retrained)."""

from __future__ import annotations

import json

import pandas as pd

from deepm3.reporting.records import RunRecord
from deepm3.reporting.text import fmt, markdown, pct
from deepm3.stats import effects
from deepm3.stats.perturbation_grid import Perturbation
from deepm3.suite.claims import EULER_CLAIM, LatencyFact
from deepm3.suite.design import FOCUS
from deepm3.suite.layout import Layout
from deepm3.suite.report.efficiency import histories


def solver(layout: Layout, core: list[RunRecord]) -> tuple[str, LatencyFact | None]:
    files = layout.solver_files()
    if not files:
        return "", None
    trained = next(r.metrics["options"] for r in core if r.row == FOCUS)
    ablations = [json.loads(p.read_text()) for p in files]
    first = ablations[0]["rows"][0]
    summary = effects.solver_summary(ablations)
    fact = LatencyFact(
        effects.latency_ratio(summary, "ms_per_1000_users", *EULER_CLAIM),
        effects.latency_ratio(summary, "ms_single_user", *EULER_CLAIM),
    )
    view = pd.DataFrame(
        {
            "solver": summary["solver"],
            "steps": summary["steps"],
            "NDCG@10": summary["ndcg@10"].map(fmt),
            "state error vs dopri5": summary["relative_state_error"].map(lambda v: f"{v:.2e}"),
            "ms / 1000 users (batched)": summary["ms_per_1000_users"].map(lambda v: f"{v:.0f}"),
            "ms, one user": summary["ms_single_user"].map(lambda v: f"{v:.2f}"),
            "field evaluations / batch": summary["nfe_per_batch"].map(lambda v: f"{v:.0f}"),
        }
    )
    text = (
        f"## 7. Solver and Lipschitz ablation\n\nThe trained DeepM3 runs ({len(files)} seeds, "
        f"trained with {trained['solver']} x {trained['steps']} step(s) per gap) re-solved with "
        "each solver (same weights). `state error`: mean distance of the "
        "final state from dopri5's (rtol 1e-5), relative to its norm: the solver's real error on "
        f"the trained field. Latency on {first['device']}, one thread, evaluation batches of "
        f"{first['batch_size']} users; histories: {histories(first)}.\n\n"
        + markdown(view)
        + f"\n\nEuler / RK4 latency at one step per gap: **{fact.batched:.2f}** batched, "
        f"**{fact.single:.2f}** for one user. The `deepm3-rk4` row of the core table is a model "
        "trained with RK4.\n"
    )
    return text, fact


def lipschitz(
    layout: Layout,
    core: list[RunRecord],
    ablation: list[RunRecord],
    grid: tuple[Perturbation, ...],
    first_seed: int,
) -> str:
    runs = {f"core/{r.name}": ("core", r) for r in core if (r.row, r.seed) == (FOCUS, first_seed)}
    runs.update({f"lipschitz/{r.name}": ("lipschitz", r) for r in ablation})
    if len(runs) < 2:
        return ""
    largest_jitter = [p for p in grid if p.family == "jitter_sorted"][-1].key
    keys = ["order_full", largest_jitter, [p for p in grid if p.family == "dropout"][-1].key]
    lines = []
    for label, (stage, record) in runs.items():
        metrics = record.metrics
        lip = metrics.get("lipschitz", {})
        path = layout.perturb_ranks(stage, record.name)
        changes = {}
        if path.is_file():
            found = effects.perturbation_effects([pd.read_csv(path)], keys).set_index("key")
            changes = {f"change: {k}": pct(found.loc[k, "relative"]) for k in keys}
        lines.append(
            {
                "run": label,
                "field": f"{lip.get('mode')} L={lip.get('constant', float('nan')):.3g}",
                "valid NDCG@10": fmt(metrics["valid"]["ndcg@10"]),
                "test NDCG@10": fmt(metrics["test"]["ndcg@10"]),
                "measured constant": fmt(lip.get("measured"), 3),
                "upper bound": fmt(lip.get("upper_bound"), 3),
                **changes,
            }
        )
    return (
        "\n**Lipschitz ablation** (first seed; `measured`: the largest Jacobian norm of the "
        "field at real inputs; `upper bound`: the product of the layers' spectral norms; "
        "`bounded` bounds the drift's size, not its constant).\n\n"
        + markdown(pd.DataFrame(lines))
        + "\n"
    )
