"""The report's opening: data, budget, protocol and wall time; then the search section."""

from __future__ import annotations

import pandas as pd

from deepm3.reporting.text import fmt, markdown
from deepm3.suite.budgets import Budget
from deepm3.suite.design import TABLE_ROWS, VARIANT_ROWS
from deepm3.suite.layout import Layout
from deepm3.suite.search import read_best, spread_count
from deepm3.suite.spaces import spread


def is_subset(stats: dict) -> bool:
    """The data mirror's ML-1M subset (its folder says so)."""
    return "subset" in str(stats.get("source", ""))


def header(title: str, budget: Budget, stats: dict, log: list[dict]) -> str:
    kept = stats.get("filtered", {})
    source = str(stats.get("source", "?"))
    lines = [
        f"# {title} experiment suite ({budget.name} budget)\n",
        f"Data: **{stats.get('dataset', budget.dataset)}** from `{source}`, "
        f"{kept.get('users', 0):,} users, {kept.get('items', 0):,} items, "
        f"{kept.get('interactions', 0):,} events, fingerprint `{stats.get('fingerprint', '?')}`."
        + (
            " This is the data mirror's ML-1M subset (users 1-2999 of 6,040): numbers are "
            "**not** comparable with published full ML-1M numbers."
            if is_subset(stats)
            else ""
        )
        + "\n",
        f"Budget `{budget.name}`: {budget.note}. Shared by every trainable model: data "
        f"{budget.data}, training {budget.train}; {budget.trials} search trials per model "
        f"({budget.trial_train}); seeds {list(budget.seeds)}. Protocol: leave-one-out, full "
        "ranking over all items, items already in the history masked, validation NDCG@10 for "
        "early stopping and selection, the test split touched once per run.\n",
    ]
    wall: dict[str, dict] = {}
    for entry in log:  # every (re)start of a stage adds its wall time
        seen = wall.setdefault(entry["stage"], {"seconds": 0.0, "commits": set(), "jobs": 0})
        seen["seconds"] += entry["wall_seconds"]
        seen["commits"].add(entry["git_commit"][:8])
        seen["jobs"] = max(seen["jobs"], entry["jobs"])
        seen["device"] = entry["device"]
    if wall:
        total = sum(e["seconds"] for e in wall.values())
        commits = sorted(set().union(*(e["commits"] for e in wall.values())))
        lines.append(
            f"Wall time per stage (summed over restarts; device setting "
            f"{next(iter(wall.values()))['device']}, "
            f"{max(e['jobs'] for e in wall.values())} parallel jobs): "
            + ", ".join(f"{s} {e['seconds'] / 60:.1f} min" for s, e in wall.items())
            + f"; **total {total / 60:.1f} min**. Code: commits {', '.join(commits)}.\n"
        )
    return "\n".join(lines)


def _variants_text(best: dict) -> str:
    """How the variant rows were searched; the time-aware ones named where they were."""
    timed = ", ".join(row for row in VARIANT_ROWS if row in best)
    also = f"The time-aware variant rows ({timed}) had studies of their own. " if timed else ""
    if any(TABLE_ROWS[row].model != row for row in best):  # a variant row had its own study
        return (
            "DeepM3's variants (RK4, no ODE, target time) are searched on their own, with the "
            "same trials and epochs. " + also
        )
    return "DeepM3's variants (RK4, no ODE, target time) reuse DeepM3's best settings. " + also


def _cut_text(checks: dict) -> str:
    if checks["cut"] is None:
        return "unknown"  # a trial from before its best epoch was recorded
    return f"**yes** ({checks['stopped_by']})" if checks["cut"] else "no"


def _tuning(best: dict) -> str:
    """Per searched row: the best trial's learning rate, the settings it took at an edge of
    the space, and whether its validation was still rising when its limit stopped it."""
    checked = {row: entry for row, entry in best.items() if "tuning" in entry}
    if not checked:  # a search from before these checks were recorded
        return ""
    rows = [
        {
            "row": row,
            "best lr": f"{entry['params']['lr']:.2g}",
            "at an edge of the space": ", ".join(
                f"{name} ({side})" for name, side in entry["tuning"]["edges"].items()
            )
            or "none",
            "best epoch / epochs run": (
                f"{entry['tuning']['best_epoch']} / {entry['tuning']['epochs_run']}"
            ),
            "cut by its limit": _cut_text(entry["tuning"]),
        }
        for row, entry in checked.items()
    ]
    return (
        "\nDid the search tune? A setting at an edge of its range (5% of the range, on the log "
        "scale for the learning rate, or the smallest or largest of ordered choices) may have "
        "its best beyond the space; a best trial **cut by its limit** was still at its best "
        "validation on its last epoch, so longer trials might pick other settings.\n\n"
        + markdown(pd.DataFrame(rows))
        + "\n"
    )


def _schedule_text(budget: Budget) -> str:
    """The spread first trials and the pruning warm-up, when the budget sets them."""
    count = spread_count(budget)
    if not count:
        return ""
    rates = ", ".join(f"{params['lr']:.2g}" for params in spread("gru4rec", budget.widths, count))
    return (
        f"The first {count} trials of every study tried the same learning rates ({rates}), "
        "the other settings at the middle of the space; then TPE. A trial may be pruned once "
        f"it has run {budget.prune_warmup} epochs. "
    )


def search(layout: Layout, budget: Budget) -> str:
    best = read_best(layout)
    if best is None:
        return "## 1. Search\n\nSkipped: every model ran with the shipped defaults.\n"
    rows = [
        {
            "model": model,
            "best valid NDCG@10": fmt(entry["valid_ndcg@10"]),
            "trials (pruned)": f"{entry['trials_counted']} ({entry['trials_pruned']})",
            "best parameters": ", ".join(
                f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in entry["params"].items()
            ),
        }
        for model, entry in best.items()
    ]
    return (
        "## 1. Search (validation only)\n\nOptuna TPE (seeded), median pruning on validation "
        "NDCG@10, the same number of trials for every model; spaces in "
        f"`deepm3/suite/spaces.py`. {_schedule_text(budget)}{_variants_text(best)}Short "
        "trials favour models that learn fast. Trials in `search/trials_*.csv`.\n\n"
        + markdown(pd.DataFrame(rows))
        + "\n"
        + _tuning(best)
    )
