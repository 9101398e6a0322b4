"""The report's opening: data, budget, protocol and wall time; then the search section."""

from __future__ import annotations

import pandas as pd

from deepm3.reporting.text import fmt, markdown
from deepm3.suite.budgets import Budget
from deepm3.suite.layout import Layout
from deepm3.suite.search import read_best


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


def search(layout: Layout) -> str:
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
        "`deepm3/suite/spaces.py`. DeepM3's variants (RK4, no ODE, target time) reuse DeepM3's "
        "best settings. Short trials favour models that learn fast. Trials in "
        "`search/trials_*.csv`.\n\n" + markdown(pd.DataFrame(rows)) + "\n"
    )
