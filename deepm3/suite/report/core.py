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
from deepm3.suite.design import CORE_ROWS, COUNT_ROWS, FOCUS
from deepm3.suite.layout import Layout


@dataclass(frozen=True)
class CoreFacts:
    ndcg: dict[str, pd.Series]  # row -> per-user test NDCG@10, averaged over seeds
    rows: list[str]  # rows present, in table order


def by_row(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    grouped: dict[str, list[RunRecord]] = {}
    for record in records:
        grouped.setdefault(record.row, []).append(record)
    return grouped


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
        "stopped by": ", ".join(sorted({m["stopped_by"] for m in metrics if m["stopped_by"]}))
        or "-",
        "s/epoch": f"{np.mean(per_epoch):.1f}" if per_epoch else "-",
        "parameters": f"{metrics[0]['parameters']['total']:,}",
    }
    return line, mean, sd


def core(records: list[RunRecord], layout: Layout) -> tuple[str, CoreFacts]:
    """The core table (mean +- sd, 95% CI over seeds) and per-user NDCG@10 of every row."""
    grouped = by_row(records)
    rows = [r for r in CORE_ROWS if r in grouped]
    lines, ndcg, means, sds = [], {}, [], []
    for row in rows:
        line, mean, sd = _line(row, grouped[row])
        lines.append(line)
        means.append(mean)
        sds.append(sd)
        ranks = [
            pd.read_csv(r.folder / "per_user_test.csv.gz").set_index("user")["rank"]
            for r in grouped[row]
        ]
        ndcg[row] = effects.mean_user_ndcg(ranks)
    frame = pd.DataFrame(lines)
    plots.core_bars(list(frame["row"]), means, sds, layout.figure("core"))
    text = (
        "## 2. Core comparison (test, full ranking)\n\nMean ± sd over seeds and the 95% "
        "Student-t interval of the mean. `NDCG@10 untied`: users whose test event does not share "
        "its timestamp with the last history event. `stopped by`: patience (early stopping), "
        "time_budget (the run's time cap was hit: the model may still have been improving), "
        "epochs. `deepm3-target` predicts at the target's timestamp (it knows when the next "
        "event happens): a different protocol, not comparable with the other rows.\n\n"
        + markdown(frame)
        + "\n\n![core](core.png)\n"
    )
    return text, CoreFacts(ndcg, rows)


def significance(ndcg: dict[str, pd.Series]) -> tuple[str, pd.DataFrame]:
    sig = effects.significance(ndcg, FOCUS)
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
        }
    )
    text = (
        "## 3. Significance (per-user paired tests)\n\nPer-user NDCG@10 averaged over seeds; "
        "Wilcoxon signed-rank and paired t-test, Holm-corrected over the comparisons; paired "
        "bootstrap (1,000 resamples) 95% interval of the relative difference.\n\n"
        + markdown(view)
        + "\n"
    )
    return text, sig
