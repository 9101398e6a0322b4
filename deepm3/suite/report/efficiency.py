"""Efficiency (parameters, epoch time, inference latency) and the paper's own protocol."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from deepm3.reporting.records import RunRecord, row_name
from deepm3.reporting.text import fmt, markdown
from deepm3.suite.claims import ParameterFact
from deepm3.suite.layout import Layout
from deepm3.suite.report.core import by_row

SIZE_MODELS = ("deepm3", "sasrec", "tisasrec", "gru4rec")
PAPER_SIZES = (
    ("ml-1m_full_paper_sizes", "the full ML-1M item count (3,706) and 200-event histories"),
    ("amazon-books_sizes", "Amazon Books' item count (367,982) and 50-event histories"),
)
CLAIM_SIZES = "ml-1m_full_paper_sizes"  # the paper's parameter claim is about ML-1M


def histories(measured: dict) -> str:
    """How a latency file's model saw a history: ``history`` trimmed (deepm3.suite.measure),
    or, in files written before that key, padded to ``max_len``."""
    if measured.get("history") == "trimmed":
        return (
            f"each user's own events (at most {measured['max_len']}), no padding: users of "
            "similar history length batched, as the evaluator ranks them"
        )
    return f"every history padded to {measured['max_len']} events"


def _latency_lines(layout: Layout, core: list[RunRecord]) -> list[dict]:
    grouped = by_row(core)
    lines = []
    for path in layout.efficiency_files():
        measured = json.loads(path.read_text())
        row = row_name(measured["run"])
        metrics = [r.metrics for r in grouped[row]]
        params = metrics[0]["parameters"]
        peak = measured["peak_gpu_bytes"]
        lines.append(
            {
                "row": row,
                "parameters (embedding / other)": f"{params['embedding']:,} / {params['other']:,}",
                "width": metrics[0]["options"].get("hidden_size", "-"),
                "s/epoch": f"{np.mean([m['seconds_per_epoch'] for m in metrics]):.1f}",
                "ms, one user": f"{measured['ms_single_user']:.2f}",
                "ms / 1000 users": f"{measured['ms_per_1000_users']:.0f}",
                "peak GPU memory": "-" if peak is None else f"{peak / 2**20:.0f} MiB",
                "device": measured["device"],
            }
        )
    return lines


def _sizes_view(table: dict) -> pd.DataFrame:
    widths = sorted({int(k.split("@")[1]) for k in table})
    return pd.DataFrame(
        [
            {"width": w, **{m: f"{table[f'{m}@{w}']['total'] / 1e6:.2f}M" for m in SIZE_MODELS}}
            for w in widths
        ]
    )


def efficiency(layout: Layout, core: list[RunRecord]) -> tuple[str, ParameterFact | None]:
    lines = _latency_lines(layout, core)
    parts = ["## 8. Efficiency\n"]
    if lines:
        seen = sorted({histories(json.loads(p.read_text())) for p in layout.efficiency_files()})
        parts.append(
            "Searched configurations; on CPU one thread per process with two processes at once, "
            "so timings are indicative; batched latency at the evaluation batch size; "
            f"histories: {'; '.join(seen)}.\n\n" + markdown(pd.DataFrame(lines)) + "\n"
        )
    if not layout.parameters.is_file():
        return "\n".join(parts), None
    sizes = json.loads(layout.parameters.read_text())
    for key, what in PAPER_SIZES:
        if key in sizes:
            parts.append(
                f"Parameters at equal width with default options, for {what}:\n\n"
                + markdown(_sizes_view(sizes[key]["counts"]))
                + "\n"
            )
    counts = sizes[CLAIM_SIZES]["counts"]
    widths = sorted({int(k.split("@")[1]) for k in counts})
    ratios = [counts[f"sasrec@{w}"]["total"] / counts[f"deepm3@{w}"]["total"] for w in widths]
    return "\n".join(parts), ParameterFact(min(ratios), max(ratios))


def paper_protocol(core: list[RunRecord], paper: list[RunRecord]) -> str:
    if not paper:
        return ""
    grouped = by_row(core)
    lines = []
    for record in paper:
        row = record.row.removesuffix("-paper")
        ours = [r.metrics["test"]["ndcg@10"] for r in grouped.get(row, [])]
        test = record.metrics["test"]
        lines.append(
            {
                "model": row,
                "paper protocol NDCG@10 (100 sampled negatives)": fmt(test["ndcg@10"]),
                "paper protocol HR@10": fmt(test["hr@10"]),
                "our protocol NDCG@10 (full ranking, core mean)": fmt(float(np.mean(ours)))
                if ours
                else "-",
            }
        )
    return (
        "## 9. The paper's protocol\n\n20-event histories, BPR with one negative, the target "
        "ranked among 100 sampled negatives (first seed, otherwise the searched settings). "
        "Sampled metrics are far higher and can reorder models; shown to measure what the "
        "protocol alone changes.\n\n" + markdown(pd.DataFrame(lines)) + "\n"
    )
