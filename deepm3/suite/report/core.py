"""The core table (test metrics over seeds) and DeepM3's per-user significance tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepm3.reporting import plots
from deepm3.reporting.records import RunRecord, untied_ndcg
from deepm3.reporting.text import ci, fmt, markdown, p_text, pct
from deepm3.stats import effects
from deepm3.suite.design import (
    COUNT_ROWS,
    FOCUS,
    TABLE_ROWS,
    TARGET_TIME_ROWS,
    TWIN_ROWS,
    VARIANT_ROWS,
)
from deepm3.suite.layout import Layout


@dataclass(frozen=True)
class CoreFacts:
    ndcg: dict[str, pd.Series]  # row -> per-user test NDCG@10, averaged over seeds
    rows: list[str]  # rows present, in table order
    seeds: dict[str, pd.DataFrame]  # row -> (users, seeds) per-user test NDCG@10 of each seed
    untied: pd.Index  # users whose test target is untied (effects.untied_users)


def by_row(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    grouped: dict[str, list[RunRecord]] = {}
    for record in records:
        grouped.setdefault(record.row, []).append(record)
    return grouped


def _stops(group: list[RunRecord]) -> str:
    """The stop reasons of a row's runs; ``<cap> (k still rising)`` counts the runs a cap
    stopped while their validation NDCG@10 still rose (not converged)."""
    reasons = sorted({r.metrics["stopped_by"] for r in group if r.metrics["stopped_by"]})
    rising = {
        reason: sum(r.metrics["stopped_by"] == reason and r.capped_while_rising for r in group)
        for reason in reasons
    }
    return (
        ", ".join(
            f"{reason} ({rising[reason]} still rising)" if rising[reason] else reason
            for reason in reasons
        )
        or "-"
    )


def _line(row: str, group: list[RunRecord]) -> tuple[dict, float, float]:
    metrics = [r.metrics for r in group]
    mean, sd, half = effects.seed_interval([m["test"]["ndcg@10"] for m in metrics])
    per_epoch = [m["seconds_per_epoch"] for m in metrics if m["seconds_per_epoch"]]
    untied = untied_ndcg(group)
    line = {
        "row": row,
        "seeds": len(metrics),
        "NDCG@10": f"{mean:.4f} ± {sd:.4f}",
        "95% CI": "n/a" if math.isnan(half) else f"[{mean - half:.4f}, {mean + half:.4f}]",
        "HR@10": fmt(float(np.mean([m["test"]["hr@10"] for m in metrics]))),
        "MRR@10": fmt(float(np.mean([m["test"]["mrr@10"] for m in metrics]))),
        "NDCG@10 untied": fmt(float(np.mean(untied))) if untied else "- (all tied)",
        "epochs (best)": "-"
        if row in COUNT_ROWS
        else ", ".join(f"{m['epochs_run']} ({m['best_epoch']})" for m in metrics),
        "stopped by": _stops(group),
        "s/epoch": f"{np.mean(per_epoch):.1f}" if per_epoch else "-",
        "parameters": f"{metrics[0]['parameters']['total']:,}",
    }
    return line, mean, sd


def _also_at_target_time(rows: list[str]) -> str:
    """The sentence naming the other rows that predict at the target's time, where any ran."""
    others = [f"`{r}`" for r in TARGET_TIME_ROWS if r in rows and r != "deepm3-target"]
    return f" Likewise {', '.join(others)} (the same other protocol)." if others else ""


def core(records: list[RunRecord], layout: Layout) -> tuple[str, CoreFacts]:
    """The core table (mean +- sd, 95% CI over seeds) and per-user NDCG@10 of every row."""
    grouped = by_row(records)
    rows = [r for r in TABLE_ROWS if r in grouped]  # the recorded rows, in table order
    lines, ndcg, seeds, tied, means, sds = [], {}, {}, [], [], []
    for row in rows:
        line, mean, sd = _line(row, grouped[row])
        lines.append(line)
        means.append(mean)
        sds.append(sd)
        per_user = [
            pd.read_csv(r.folder / "per_user_test.csv.gz").set_index("user") for r in grouped[row]
        ]
        seeds[row] = effects.user_ndcg_by_seed([frame["rank"] for frame in per_user])
        ndcg[row] = seeds[row].mean(axis=1)
        tied += [frame["tied"] for frame in per_user]
    frame = pd.DataFrame(lines)
    plots.core_bars(list(frame["row"]), means, sds, layout.figure("core"))
    text = (
        "## 2. Core comparison (test, full ranking)\n\nMean ± sd over seeds and the 95% "
        "Student-t interval of the mean. `NDCG@10 untied`: users whose test event does not share "
        "its timestamp with the last history event. `stopped by`: patience (early stopping), "
        "time_budget (the run's time cap was hit), epochs (its epoch cap); `(k still rising)`: "
        "k of those runs had validation NDCG@10 still rising over their last 5 validations, "
        "not converged. `deepm3-target` predicts at the target's timestamp (it knows when the next "
        "event happens): a different protocol, not comparable with the other rows."
        + _also_at_target_time(rows)
        + "\n\n"
        + markdown(frame)
        + "\n\n![core](core.png)\n"
    )
    return text, CoreFacts(ndcg, rows, seeds, effects.untied_users(tied))


def _users_seeds_p(holm_p: float, raw_p: float) -> str:
    """A users x seeds p-value (Holm); ``≤`` where no replicate crossed zero, as the bootstrap
    then only bounds the p-value."""
    text = p_text(holm_p)
    return f"≤ {text}" if raw_p <= effects.H_P_FLOOR else text


# the variant rows and their twins: a family of their own; the core rows: one family as before
HOLM_FAMILIES = {row: "variants" for row in (*VARIANT_ROWS, *TWIN_ROWS)}


def _families_text(rows: list[str]) -> str:
    """The sentence on Holm's two families, where variant rows ran (empty otherwise)."""
    variants = [f"`{r}`" for r in rows if r in VARIANT_ROWS or r in TWIN_ROWS]
    if not variants:
        return ""
    return (
        " Holm's correction runs in two families: the core rows (the paper's baselines, the "
        f"counts, DeepM3's own variants), as in a run without variant rows, and the variant rows "
        f"({', '.join(variants)}) on their own, so that adding them leaves the baseline "
        "comparisons' p-values as they were."
    )


def significance(found: CoreFacts) -> tuple[str, pd.DataFrame]:
    """DeepM3 against every other row; Holm over the core rows and, separately, over the
    variant rows (:data:`HOLM_FAMILIES`)."""
    sig = effects.significance(found.ndcg, FOCUS, found.seeds, found.untied, HOLM_FAMILIES)

    def interval(prefix: str) -> list[str]:
        lows, highs = sig[f"{prefix}_ci_low"], sig[f"{prefix}_ci_high"]
        return [ci(a, b) for a, b in zip(lows, highs, strict=True)]

    def p_values(prefix: str) -> list[str]:
        pairs = zip(sig[f"{prefix}_p_holm"], sig[f"{prefix}_p"], strict=True)
        return [_users_seeds_p(adjusted, raw) for adjusted, raw in pairs]

    view = pd.DataFrame(
        {
            "DeepM3 vs": sig["baseline"],
            "NDCG@10 DeepM3 / other": [
                f"{a:.4f} / {b:.4f}" for a, b in zip(sig["mean_a"], sig["mean_b"], strict=True)
            ],
            "relative": sig["relative"].map(pct),
            "95% CI": [ci(a, b) for a, b in zip(sig["ci_low"], sig["ci_high"], strict=True)],
            "Wilcoxon p (Holm)": sig["wilcoxon_p_holm"].map(p_text),
            "t-test p (Holm)": sig["t_p_holm"].map(p_text),
            "users x seeds 95% CI": interval("h"),
            "users x seeds p (Holm)": p_values("h"),
            "untied relative": sig["untied_relative"].map(pct),
            "untied users x seeds 95% CI": interval("untied"),
            "untied p (Holm)": p_values("untied"),
        }
    )
    untied = int(sig["untied_users"].max()) if len(sig) else 0
    text = (
        "## 3. Significance (per-user paired tests, users x seeds bootstrap)\n\n"
        "Per-user NDCG@10 averaged over seeds; Wilcoxon signed-rank and paired t-test, "
        "Holm-corrected over the comparisons; paired bootstrap (1,000 resamples) 95% interval of "
        "the relative difference." + _families_text(found.rows) + "\n\n"
        "These treat each user's seed average as fixed, so they leave out how much a model "
        "changes from one training seed to the next. `users x seeds`: a two-stage bootstrap "
        f"({effects.H_RESAMPLES:,} resamples) that in each replicate redraws every row's seeds "
        "(separately: seed s of two rows are unrelated runs) and the users (the same users for "
        "both rows), so its 95% interval and two-sided p (Holm-corrected) count both sources; "
        "its point estimate is `relative`. A count baseline (one deterministic fit) adds no seed "
        "variance; with few seeds the seed variance is itself uncertain. `≤`: no "
        f"replicate crossed zero, the smallest p {effects.H_RESAMPLES:,} resamples can show "
        f"(2 / {effects.H_RESAMPLES + 1:,} before Holm). `untied`: the same comparison on the "
        f"{untied:,} users whose test event does not share its timestamp with the last history "
        "event (co-primary: a tied target's place among same-timestamp events follows the "
        "data's tie rule, which a model that reads event order can exploit).\n\n"
        + markdown(view)
        + "\n"
    )
    return text, sig
