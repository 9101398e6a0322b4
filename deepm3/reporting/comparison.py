"""``deepm3 report``: a comparison table and plot from run records.

:func:`~deepm3.reporting.records.collect` copies the small files of each run into
``<out>/runs/<run name>/``, where they are committed beside the table; :func:`write_report`
reads only those committed records. Runs named ``<label>-s<seed>`` are seeds of one row,
reported as mean +- standard deviation over seeds.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

from deepm3.errors import ConfigError
from deepm3.reporting import plots, records
from deepm3.reporting.records import COLUMNS, RunRecord
from deepm3.reporting.text import markdown, mean_sd

PLOTTED = ("ndcg@10", "hr@10")


def load_groups(out: Path) -> dict[str, list[RunRecord]]:
    """Committed records under ``out/runs``, grouped by row label (the name less ``-s<seed>``),
    count baselines first, then trainable models, each alphabetically."""
    records.check_out(out)
    groups: dict[str, list[RunRecord]] = {}
    for record in records.read_all(out / "runs", skip_unfinished=False):
        groups.setdefault(record.row, []).append(record)
    if not groups:
        raise ConfigError(f"{out}/runs holds no run records")
    return dict(sorted(groups.items(), key=lambda g: (g[1][0].metrics["epochs_run"] > 0, g[0])))


def table(groups: dict[str, list[RunRecord]]) -> pd.DataFrame:
    """One row per group: every test metric as mean +- sd, seeds, size and time."""
    rows = []
    for label, group in groups.items():
        metrics = [r.metrics for r in group]
        epoch_seconds = [m["seconds_per_epoch"] for m in metrics if m["seconds_per_epoch"]]
        untied = records.untied_ndcg(group)
        rows.append(
            {
                "model": label,
                **{c: mean_sd([m["test"][c] for m in metrics]) for c in COLUMNS},
                "ndcg@10 untied": mean_sd(untied) if untied else "- (all tied)",
                "seeds": str(len(group)),
                "params": f"{metrics[0]['parameters']['total']:,}",
                "s/epoch": f"{statistics.mean(epoch_seconds):.1f}" if epoch_seconds else "-",
                "epochs": "/".join(str(m["epochs_run"]) for m in metrics) if epoch_seconds else "-",
            }
        )
    return pd.DataFrame(rows)


def plotted(groups: dict[str, list[RunRecord]]) -> dict[str, tuple[list[float], list[float]]]:
    """metric -> (mean, sd over seeds) per group, for :func:`plots.comparison_bars`."""
    series = {}
    for metric in PLOTTED:
        values = [[r.metrics["test"][metric] for r in group] for group in groups.values()]
        series[metric] = (
            [statistics.mean(v) for v in values],
            [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values],
        )
    return series


def describe(groups: dict[str, list[RunRecord]]) -> list[str]:
    """The lines under the table: data, protocol, hardware, code."""
    every = [r for group in groups.values() for r in group]
    data = every[0].provenance["data"]
    fingerprints = sorted({r.provenance["data_fingerprint"] for r in every})
    hardware = sorted(
        {f"{r.provenance['device']}, {r.provenance['torch_threads']} torch threads" for r in every}
    )
    commits = sorted({r.provenance["git_commit"][:12] for r in every})
    protocol = every[0].metrics["protocol"]
    return [
        f"Data: {data['dataset']} ({data['filtered']['users']:,} users, "
        f"{data['filtered']['items']:,} items, {data['filtered']['interactions']:,} events; "
        f"fingerprint {', '.join(fingerprints)}). Test split, full ranking over all items, "
        f"history items masked: {protocol['exclude_seen']}. "
        f"'untied' keeps only the {protocol['untied_users']:,} users "
        "whose test event does not share its timestamp with the previous event.",
        "",
        "Trained on: " + "; ".join(hardware) + ". Seconds per epoch count training only. "
        f"Code: {', '.join(commits)}.",
        "",
        "Each row's command, config, seed, data fingerprint, git commit, log and per-user ranks "
        "are under `runs/` beside this table.",
    ]


def write_report(out: Path, title: str) -> str:
    """Write ``out/table.md`` and ``out/comparison.png`` from ``out/runs``; return the table."""
    groups = load_groups(out)
    text = markdown(table(groups))
    lines = [f"# {title}", "", text, "", *describe(groups)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plots.comparison_bars(list(groups), plotted(groups), out / "comparison.png")
    return text
